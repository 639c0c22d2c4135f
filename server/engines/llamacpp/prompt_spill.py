"""The prompt cache on disk: KV states that outlive the runner process (a restart, an idle
unload), bounded in bytes, safe against torn writes.

One file per cached prompt, named after a hash of its tokens:

    magic "DMRKV\\x00\\x01\\x00" | n_tokens u32 | n_data u64 | tokens (int32 x n) | data | crc32

A file is written to a temporary name, flushed to disk and renamed into place, so a reader
sees a whole file or none. Every read checks the magic, the sizes against the file's length
and the checksum; llama.cpp then checks the state's own layout (layers, types, streams) when
it is restored. A file that fails any check is deleted. Least recently used files go first
when the directory is over its bound; leftovers of interrupted writes are removed on open.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import threading
import time
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MAGIC = b"DMRKV\x00\x01\x00"
_HEAD = struct.Struct("<8sIQ")
_CRC = struct.Struct("<I")
SUFFIX = ".kv"
_TMP = ".tmp-"


@dataclass
class DiskEntry:
    tokens: list[int]
    path: Path
    size: int  # bytes of KV state (the file is a little larger)
    used: float  # wall-clock time of the last write or restore (the file's mtime)

    @property
    def file_bytes(self) -> int:
        return _HEAD.size + 4 * len(self.tokens) + self.size + _CRC.size


def name_of(tokens: list[int]) -> str:
    return hashlib.sha256(array("i", tokens).tobytes()).hexdigest()[:40] + SUFFIX


class SpillDir:
    """A directory of cached prompt states, at most `max_bytes` of files. Written from the
    prompt cache's spill thread and read from the scheduler's: one lock guards the index."""

    def __init__(self, directory: str | os.PathLike, max_bytes: int):
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.entries: dict[str, DiskEntry] = {}
        self._scan()
        self.trim()

    # ------------------------------------------------------------------ index

    def _scan(self) -> None:
        for path in self.dir.iterdir():
            if _TMP in path.name:  # an interrupted write
                _unlink(path)
            elif path.suffix == SUFFIX:
                entry = self._read_index(path)
                if entry is None:
                    log.warning("prompt cache: removing %s (not a whole cache file)", path.name)
                    _unlink(path)
                else:
                    self.entries[path.name] = entry

    @staticmethod
    def _read_index(path: Path) -> DiskEntry | None:
        """The tokens and sizes of a cache file, or None when its header does not add up."""
        try:
            with open(path, "rb") as fh:
                head = fh.read(_HEAD.size)
                if len(head) != _HEAD.size:
                    return None
                magic, n_tokens, n_data = _HEAD.unpack(head)
                if magic != MAGIC:
                    return None
                length = os.fstat(fh.fileno()).st_size
                if length != _HEAD.size + 4 * n_tokens + n_data + _CRC.size:
                    return None
                tokens = array("i")
                tokens.frombytes(fh.read(4 * n_tokens))
                mtime = os.fstat(fh.fileno()).st_mtime
        except (OSError, ValueError):
            return None
        if len(tokens) != n_tokens or path.name != name_of(tokens.tolist()):
            return None
        return DiskEntry(tokens.tolist(), path, n_data, mtime)

    def total(self) -> int:
        with self._lock:
            return sum(e.file_bytes for e in self.entries.values())

    def names(self) -> set[str]:
        with self._lock:
            return set(self.entries)

    # ------------------------------------------------------------------ write, read, drop

    def write(self, tokens: list[int], data: bytes | bytearray) -> DiskEntry | None:
        """Store one state (replacing the same tokens' file); None when it cannot be written
        or is larger than the whole bound."""
        name = name_of(tokens)
        entry = DiskEntry(list(tokens), self.dir / name, len(data), time.time())
        if entry.file_bytes > self.max_bytes:
            return None
        raw_tokens = array("i", tokens).tobytes()
        crc = zlib.crc32(data, zlib.crc32(raw_tokens))
        tmp = self.dir / f"{name}{_TMP}{os.getpid()}"
        try:
            with open(tmp, "wb") as fh:
                fh.write(_HEAD.pack(MAGIC, len(tokens), len(data)))
                fh.write(raw_tokens)
                fh.write(data)
                fh.write(_CRC.pack(crc))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, entry.path)
        except OSError as exc:
            log.warning("prompt cache: could not write %s: %s", name, exc)
            _unlink(tmp)
            return None
        with self._lock:
            self.entries[name] = entry
            self._drop_prefixes_of(entry)
            self.trim()
            return entry if name in self.entries else None

    def read(self, entry: DiskEntry) -> bytearray | None:
        """The state of `entry`, checked; None (and the file removed) when it is damaged."""
        try:
            with open(entry.path, "rb") as fh:
                blob = bytearray(os.fstat(fh.fileno()).st_size)
                n = fh.readinto(blob)
        except OSError:
            self.remove(entry)
            return None
        start = _HEAD.size + 4 * len(entry.tokens)
        ok = n == entry.file_bytes == len(blob) and blob[:8] == MAGIC
        if ok:
            (crc,) = _CRC.unpack_from(blob, n - _CRC.size)
            view = memoryview(blob)
            ok = zlib.crc32(view[_HEAD.size:n - _CRC.size]) == crc
            view.release()
        if not ok:
            log.warning("prompt cache: %s is damaged; removed", entry.path.name)
            self.remove(entry)
            return None
        del blob[n - _CRC.size:]
        del blob[:start]
        self.touch(entry)
        return blob

    def touch(self, entry: DiskEntry) -> None:
        entry.used = time.time()
        try:
            os.utime(entry.path, (entry.used, entry.used))
        except OSError:
            pass

    def remove(self, entry: DiskEntry) -> None:
        with self._lock:
            self.entries.pop(entry.path.name, None)
        _unlink(entry.path)

    def _drop_prefixes_of(self, entry: DiskEntry) -> None:
        """A file whose tokens are a prefix of a newer one's holds nothing the newer lacks."""
        n = len(entry.tokens)
        with self._lock:
            others = list(self.entries.values())
        for other in others:
            k = len(other.tokens)
            if other is not entry and k <= n and other.tokens == entry.tokens[:k]:
                self.remove(other)

    def trim(self) -> None:
        """Remove least recently used files until the directory fits its bound."""
        with self._lock:
            total = self.total()
            for entry in sorted(self.entries.values(), key=lambda e: e.used):
                if total <= self.max_bytes:
                    break
                total -= entry.file_bytes
                self.remove(entry)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("prompt cache: could not remove %s: %s", path, exc)


def prune_siblings(directory: str | os.PathLike, max_bytes: int,
                   max_age: float = 30 * 86400) -> None:
    """Bound the prompt caches of other models and layouts beside `directory` (a deleted
    model's, a model loaded with other slots or context): whole directories go, those
    untouched longest first, until all of them together fit `max_bytes`; any untouched for
    `max_age` seconds goes anyway. `directory` itself is never touched here."""
    own = Path(directory)
    root = own.parent
    if not root.is_dir():
        return
    dirs = []
    for path in root.iterdir():
        if not path.is_dir() or path == own:
            continue
        files = [f for f in path.iterdir() if f.is_file()]
        size = sum(f.stat().st_size for f in files)
        newest = max((f.stat().st_mtime for f in files), default=path.stat().st_mtime)
        dirs.append((newest, size, path))
    total = sum(size for _, size, _ in dirs)
    now = time.time()
    for newest, size, path in sorted(dirs):
        if total <= max_bytes and now - newest < max_age:
            break
        for f in path.iterdir():
            _unlink(f)
        try:
            path.rmdir()
        except OSError:
            pass
        total -= size
