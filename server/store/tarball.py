"""DMR's model archive: a tar of `blobs/sha256/<hex>` files and a `manifest.json`.

`dmr package` streams one to `POST /models/load`, so a model built on the client's machine
reaches the server's store over HTTP (the server may be remote). Blob names are digests and
every blob is verified against its name while it is written; nothing else in the tar is used.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..core.errors import InvalidRequest
from . import artifact
from .store import ModelStore, StoredModel

_BLOCK = 512


def load(store: ModelStore, stream: BinaryIO) -> StoredModel:
    """Import an archive read from `stream`; returns the (untagged unless known) model."""
    manifest_raw: bytes | None = None
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                if member.name == "manifest.json":
                    fh = archive.extractfile(member)
                    manifest_raw = fh.read(artifact.MAX_MANIFEST_BYTES + 1) if fh else b""
                    continue
                parts = member.name.split("/")
                if len(parts) != 3 or parts[0] != "blobs" or parts[1] != "sha256":
                    continue
                digest = artifact.check_digest(f"sha256:{parts[2]}")
                fh = archive.extractfile(member)
                if fh is None:
                    continue
                with store.partial_blob(digest, member.size) as blob:
                    if blob.done:
                        continue
                    blob.restart()
                    while chunk := fh.read(1 << 20):
                        blob.write(chunk)
                    blob.commit()
    except tarfile.TarError as exc:
        raise InvalidRequest(f"model archive is not a valid tar: {exc}") from exc
    if manifest_raw is None:
        raise InvalidRequest("model archive has no manifest.json")
    return store.add_manifest(manifest_raw, [])


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % _BLOCK)


Blob = tuple[str, "Path | bytes"]


def write(blobs: list[Blob], manifest_raw: bytes) -> Iterator[bytes]:
    """Stream an archive of blobs (digest, file path or bytes) and a manifest, no temp files."""
    for digest, content in blobs:
        size = len(content) if isinstance(content, bytes) else content.stat().st_size
        yield _header(f"blobs/sha256/{artifact.check_digest(digest).split(':', 1)[1]}", size)
        if isinstance(content, bytes):
            yield content
        else:
            with open(content, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    yield chunk
        yield _padding(size)
    yield _header("manifest.json", len(manifest_raw))
    yield manifest_raw + _padding(len(manifest_raw))
    yield b"\0" * (2 * _BLOCK)


def write_bytes(blobs: list[Blob], manifest_raw: bytes) -> bytes:
    """The whole archive in memory (small models, tests)."""
    buf = io.BytesIO()
    for part in write(blobs, manifest_raw):
        buf.write(part)
    return buf.getvalue()
