"""Test helper: a copy of a GGUF file with another `tokenizer.chat_template` embedded.

The tensors are copied unchanged; only the metadata section is rebuilt, and the tensor data is
re-aligned after it (tensor offsets are relative to the data section, so they stay valid).
Written from the GGUF layout (magic, version, counts, key/values, tensor infos, aligned data).
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY, _UINT32 = 8, 9, 4
KEY = "tokenizer.chat_template"


def _skip_value(data: bytes, pos: int, vtype: int) -> int:
    if vtype in _SIZES:
        return pos + _SIZES[vtype]
    if vtype == _STRING:
        (n,) = struct.unpack_from("<Q", data, pos)
        return pos + 8 + n
    if vtype == _ARRAY:
        itype, count = struct.unpack_from("<IQ", data, pos)
        pos += 12
        if itype in _SIZES:
            return pos + _SIZES[itype] * count
        for _ in range(count):
            pos = _skip_value(data, pos, itype)
        return pos
    raise ValueError(f"unknown GGUF type {vtype}")


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def embed_template(source: Path, dest: Path, template: str, head_bytes: int = 64 << 20) -> None:
    with open(source, "rb") as fh:
        data = fh.read(head_bytes)
    assert data[:4] == b"GGUF"
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", data, 4)
    pos = 24
    entries: list[bytes] = []
    alignment = 32
    for _ in range(n_kv):
        start = pos
        (klen,) = struct.unpack_from("<Q", data, pos)
        key = data[pos + 8:pos + 8 + klen].decode()
        pos += 8 + klen
        (vtype,) = struct.unpack_from("<I", data, pos)
        end = _skip_value(data, pos + 4, vtype)
        if key == "general.alignment" and vtype == _UINT32:
            (alignment,) = struct.unpack_from("<I", data, pos + 4)
        if key != KEY:
            entries.append(data[start:end])
        pos = end
    entries.append(_string(KEY) + struct.pack("<I", _STRING) + _string(template))
    infos_start = pos
    for _ in range(n_tensors):
        (nlen,) = struct.unpack_from("<Q", data, pos)
        pos += 8 + nlen
        (n_dims,) = struct.unpack_from("<I", data, pos)
        pos += 4 + 8 * n_dims + 4 + 8
    infos = data[infos_start:pos]
    data_start = (pos + alignment - 1) // alignment * alignment
    header = b"GGUF" + struct.pack("<IQQ", version, n_tensors, len(entries)) + \
        b"".join(entries) + infos
    header += b"\0" * ((-len(header)) % alignment)
    with open(source, "rb") as src, open(dest, "wb") as out:
        out.write(header)
        src.seek(data_start)
        shutil.copyfileobj(src, out, 1 << 22)
