"""One blob being written into the store: resumable, locked, verified, renamed into place.

Bytes go to `<hex>.incomplete` next to the final blob. An interrupted download leaves that file
behind so the next attempt can continue with an HTTP range request; the blob itself appears only
after its bytes hash to the expected digest, through an atomic rename. A file lock makes two
pulls of the same blob (threads or processes) take turns instead of interleaving writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from pathlib import Path

from .errors import DigestMismatch

#: Partial downloads untouched for this long are deleted (DMR keeps them 7 days too).
STALE_SECONDS = 7 * 24 * 3600


class PartialBlob:
    """Context manager: `with PartialBlob(path, digest, size) as blob:` then write/commit.

    `blob.done` is true when the blob already exists (nothing to write); `blob.offset` is how
    many bytes a previous attempt left, i.e. where a range request should start.
    """

    def __init__(self, final: Path, digest: str, size: int | None = None):
        self.final = final
        self.digest = digest
        self.size = size
        self.partial = final.with_name(final.name + ".incomplete")
        self.done = False
        self._fd = -1
        self._hash = hashlib.sha256()
        self.offset = 0

    def __enter__(self) -> PartialBlob:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.partial, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        if self.final.exists():
            self.done = True
            with contextlib.suppress(FileNotFoundError):
                if os.fstat(self._fd).st_ino == os.stat(self.partial).st_ino:
                    os.unlink(self.partial)
            return self
        length = os.lseek(self._fd, 0, os.SEEK_END)
        if self.size is not None and length > self.size:
            self.restart()
        else:
            self._rehash(length)
        return self

    def __exit__(self, *exc) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # also releases the lock
            self._fd = -1

    def _rehash(self, length: int) -> None:
        """Hash what a previous attempt wrote, so the digest check covers the whole file."""
        self._hash = hashlib.sha256()
        os.lseek(self._fd, 0, os.SEEK_SET)
        remaining = length
        while remaining:
            chunk = os.read(self._fd, min(remaining, 1 << 20))
            if not chunk:
                break
            self._hash.update(chunk)
            remaining -= len(chunk)
        self.offset = length - remaining
        os.ftruncate(self._fd, self.offset)
        os.lseek(self._fd, self.offset, os.SEEK_SET)

    def restart(self) -> None:
        """Throw away the partial bytes (the server ignored our range, or they were wrong)."""
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        self._hash = hashlib.sha256()
        self.offset = 0

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._hash.update(data)
        self.offset += len(data)

    def commit(self) -> None:
        """Verify size and digest, then rename into place; a bad blob is deleted, not kept."""
        actual = "sha256:" + self._hash.hexdigest()
        if self.size is not None and self.offset != self.size:
            if self.offset > self.size:
                self._discard()
            raise DigestMismatch(f"blob {self.digest}: got {self.offset} bytes, expected "
                                 f"{self.size}")
        if actual != self.digest:
            self._discard()
            raise DigestMismatch(f"blob {self.digest}: content hashes to {actual}; the download "
                                 "was corrupted or tampered with and has been discarded")
        os.fsync(self._fd)
        os.replace(self.partial, self.final)
        self.done = True

    def _discard(self) -> None:
        self.restart()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.partial)


def remove_stale_partials(directory: Path, max_age: float = STALE_SECONDS) -> int:
    """Delete `.incomplete` files nobody has touched for `max_age` seconds."""
    removed = 0
    cutoff = time.time() - max_age
    for path in directory.glob("*.incomplete"):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed


def partial_size(final: Path) -> int:
    """Bytes a previous attempt left for this blob (0 when none)."""
    try:
        return (final.with_name(final.name + ".incomplete")).stat().st_size
    except FileNotFoundError:
        return 0
