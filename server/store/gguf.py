"""Read a GGUF file's header: metadata key/values and the tensor count of parameters.

Used by the store to describe a model (architecture, parameters, quantization, context length)
without loading it into llama.cpp.

The constants (value types, file types) come from `gguf`, llama.cpp's own Python package, so
new quantizations are named as llama.cpp names them. Its reader (`gguf.GGUFReader`) does not
serve here: it parses every token string and tensor into numpy views, 4.5 s for SmolLM2-135M's
header against 0.09 s for this reader, which skips long arrays (vocabularies, merges) unread and
is called on every pull, listing and memory estimate.
"""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO


def _gguf_constants() -> ModuleType:
    """`gguf.constants` (standard library only) without the `gguf` package's `__init__`,
    which imports numpy and the reader: 0.4 s at every server start, for two enums."""
    if "gguf.constants" in sys.modules:
        return sys.modules["gguf.constants"]
    spec = importlib.util.find_spec("gguf")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the gguf package (llama.cpp's) is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "constants.py"
    module_spec = importlib.util.spec_from_file_location("_dmr_gguf_constants", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


_constants = _gguf_constants()
GGUFValueType, LlamaFileType = _constants.GGUFValueType, _constants.LlamaFileType

#: Names llama.cpp's enum spells otherwise that we have shown since before it had them.
_SHOWN = {LlamaFileType.MOSTLY_MXFP4_MOE: "MXFP4"}
#: llama_ftype values -> the names users know (general.file_type).
FILE_TYPES = {
    t.value: _SHOWN.get(t, t.name.removeprefix("MOSTLY_").removeprefix("ALL_"))
    for t in LlamaFileType if t is not LlamaFileType.GUESSED
}

_SCALARS = {GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H",
            GGUFValueType.INT16: "<h", GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i",
            GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?", GGUFValueType.UINT64: "<Q",
            GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d"}
_STRING, _ARRAY = GGUFValueType.STRING, GGUFValueType.ARRAY
#: Arrays longer than this (token lists, merges) are skipped, not kept.
_MAX_ARRAY = 64


class GGUFError(ValueError):
    pass


def _read(fh: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = fh.read(size)
    if len(data) != size:
        raise GGUFError("truncated GGUF header")
    return struct.unpack(fmt, data)[0]


def _string(fh: BinaryIO) -> str:
    n = _read(fh, "<Q")
    if n > 1 << 26:
        raise GGUFError("implausible string length in GGUF header")
    data = fh.read(n)
    if len(data) != n:
        raise GGUFError("truncated GGUF header")
    return data.decode("utf-8", errors="replace")


class _Skipped:
    """A long array that was not read (token lists, merges): only its length is kept."""

    def __init__(self, count: int):
        self.count = count


def _value(fh: BinaryIO, vtype: int) -> Any:
    if vtype in _SCALARS:
        return _read(fh, _SCALARS[vtype])
    if vtype == _STRING:
        return _string(fh)
    if vtype == _ARRAY:
        itype, count = _read(fh, "<I"), _read(fh, "<Q")
        if count <= _MAX_ARRAY:
            return [_value(fh, itype) for _ in range(count)]
        if itype in _SCALARS:
            fh.seek(struct.calcsize(_SCALARS[itype]) * count, 1)
        else:
            for _ in range(count):
                _value(fh, itype)
        return _Skipped(count)
    raise GGUFError(f"unknown GGUF value type {vtype}")


def read_header(path: str, lengths: dict[str, int] | None = None) -> tuple[dict[str, Any], int]:
    """Return (metadata, parameter count). Raises GGUFError for a file that is not GGUF.
    `lengths`, when given, receives the length of each array too long to be kept."""
    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise GGUFError(f"{path} is not a GGUF file")
        version = _read(fh, "<I")
        if version not in (2, 3):
            raise GGUFError(f"unsupported GGUF version {version}")
        n_tensors, n_kv = _read(fh, "<Q"), _read(fh, "<Q")
        meta: dict[str, Any] = {}
        for _ in range(n_kv):
            key = _string(fh)
            value = _value(fh, _read(fh, "<I"))
            if isinstance(value, _Skipped):
                if lengths is not None:
                    lengths[key] = value.count
            elif value is not None:
                meta[key] = value
        params = 0
        for _ in range(n_tensors):
            _string(fh)
            n_dims = _read(fh, "<I")
            count = 1
            for _ in range(n_dims):
                count *= _read(fh, "<Q")
            params += count
            _read(fh, "<I")
            _read(fh, "<Q")
    return meta, params


def describe(path: str) -> dict[str, Any]:
    """The store's summary of a GGUF model (DMR's config fields)."""
    meta, params = read_header(path)
    arch = meta.get("general.architecture", "")
    ftype = meta.get("general.file_type")
    return {
        "format": "gguf",
        "architecture": arch,
        "parameters": _human_params(params),
        "quantization": FILE_TYPES.get(ftype, str(ftype) if ftype is not None else ""),
        "context_length": meta.get(f"{arch}.context_length"),
        "gguf": {k: (str(v) if not isinstance(v, list) else v) for k, v in meta.items()
                 if not k.startswith("tokenizer.") and k != "tokenizer.chat_template"},
        "n_params": params,
    }


def _human_params(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)
