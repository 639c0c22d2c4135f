"""Stored Responses (the OpenAI Responses API's `store: true`), on disk and bounded.

DMR keeps responses in memory for an hour, so a restart breaks every `previous_response_id`
chain; vLLM's store grows without bound. Here each stored response is one JSON file under
`<models dir>/responses/`, written atomically (a temporary file in the same directory, then a
rename), so a crash leaves either the old record or the new one. Only an index (id -> write
time, size) lives in memory, rebuilt at start from the directory listing, so memory stays flat
however many responses are kept. The store is bounded by a count, a total size and a time to
live; past a bound the oldest records go first. Records are opaque JSON objects: what they hold
is the Responses dialect's business (server/api/responses*.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DIR_NAME = "responses"
_SUFFIX = ".json"
_TMP_PREFIX = ".tmp-"
#: Ids the store accepts: what the dialect generates, and nothing that could name another path.
_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


@dataclass(frozen=True)
class Limits:
    """Bounds of the store; 0 (or less) switches a bound off."""

    max_count: int = 10_000
    max_bytes: int = 256 * 1024 * 1024
    ttl_seconds: float = 30 * 24 * 3600.0


class ResponseStore:
    """Thread-safe, persistent, bounded id -> JSON object store."""

    def __init__(self, models_dir: Path, limits: Limits | None = None):
        self.dir = Path(models_dir) / DIR_NAME
        self.limits = limits or Limits()
        self._lock = threading.Lock()
        #: id -> (written at, size in bytes), oldest first.
        self._index: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._bytes = 0
        self._load()

    # -------------------------------------------------------------------------- public

    def put(self, record_id: str, record: dict[str, Any]) -> bool:
        """Write (or overwrite) a record; False when it alone is larger than the size bound."""
        _check_id(record_id)
        data = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
        if 0 < self.limits.max_bytes < len(data):
            log.warning("response %s (%d bytes) is larger than the store's size limit (%d); "
                        "not stored", record_id, len(data), self.limits.max_bytes)
            return False
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=_TMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._path(record_id))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        with self._lock:
            self._forget(record_id)
            self._index[record_id] = (time.time(), len(data))
            self._bytes += len(data)
            self._evict(time.time())
        return True

    def get(self, record_id: str) -> dict[str, Any] | None:
        """The record, or None when it was never stored, was deleted, expired or was evicted."""
        if not _ID.match(record_id):
            return None
        with self._lock:
            entry = self._index.get(record_id)
            if entry is None:
                return None
            if self._expired(entry[0], time.time()):
                self._drop(record_id)
                return None
        try:
            with open(self._path(record_id), "rb") as fh:
                value = json.loads(fh.read())
        except FileNotFoundError:
            return None
        except ValueError:
            log.warning("stored response %s is not valid JSON; dropping it", record_id)
            self.delete(record_id)
            return None
        return value if isinstance(value, dict) else None

    def delete(self, record_id: str) -> bool:
        if not _ID.match(record_id):
            return False
        with self._lock:
            if record_id not in self._index:
                return False
            self._drop(record_id)
            return True

    def __contains__(self, record_id: str) -> bool:
        with self._lock:
            entry = self._index.get(record_id)
            return entry is not None and not self._expired(entry[0], time.time())

    def stats(self) -> tuple[int, int]:
        """(records kept, their bytes on disk)."""
        with self._lock:
            return len(self._index), self._bytes

    def oldest(self) -> str | None:
        with self._lock:
            return next(iter(self._index), None)

    # -------------------------------------------------------------------------- internals

    def _path(self, record_id: str) -> Path:
        return self.dir / f"{record_id}{_SUFFIX}"

    def _load(self) -> None:
        """Rebuild the index from the directory: ordered by write time, leftovers of
        interrupted writes removed, bounds applied (settings may have shrunk)."""
        if not self.dir.is_dir():
            return
        entries = []
        with os.scandir(self.dir) as it:
            for entry in it:
                if entry.name.startswith(_TMP_PREFIX):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                    continue
                record_id = entry.name[: -len(_SUFFIX)]
                if not entry.name.endswith(_SUFFIX) or not _ID.match(record_id):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    st = entry.stat()
                    entries.append((st.st_mtime_ns, record_id, st.st_size))
        for mtime_ns, record_id, size in sorted(entries):
            self._index[record_id] = (mtime_ns / 1e9, size)
            self._bytes += size
        with self._lock:
            self._evict(time.time())

    def _expired(self, written: float, now: float) -> bool:
        return self.limits.ttl_seconds > 0 and now - written > self.limits.ttl_seconds

    def _evict(self, now: float) -> None:
        """Drop expired records and, oldest first, those beyond the count and size bounds."""
        limits = self.limits
        while self._index:
            oldest, (written, _) = next(iter(self._index.items()))
            over_count = 0 < limits.max_count < len(self._index)
            over_bytes = 0 < limits.max_bytes < self._bytes
            if not (over_count or over_bytes or self._expired(written, now)):
                break
            self._drop(oldest)

    def _forget(self, record_id: str) -> None:
        entry = self._index.pop(record_id, None)
        if entry is not None:
            self._bytes -= entry[1]

    def _drop(self, record_id: str) -> None:
        self._forget(record_id)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(record_id))


def _check_id(record_id: str) -> None:
    if not _ID.match(record_id):
        raise ValueError(f"invalid record id: {record_id!r}")
