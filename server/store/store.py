"""The on-disk model store, laid out as Docker Model Runner lays it out.

    <root>/layout.json              {"version": "1.0.0"}
    <root>/models.json              index: [{"id", "tags", "files", "created"}]
    <root>/blobs/sha256/<hex>       content-addressed files (GGUF weights, configs)
    <root>/manifests/sha256/<hex>   OCI manifests; a model's ID is its manifest's digest

Every write goes to a temporary file first and is renamed into place, so a crash never leaves
a half-written blob or index visible. Downloads go to `<hex>.incomplete` (resumable, verified
against the digest before the rename, see blobfile.py). A model becomes visible only when its
manifest is recorded in the index, which happens after all its blobs are in place. Index
updates hold a file lock, so the CLI and the server can share a store.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import Conflict, InvalidRequest, ModelNotFound
from . import artifact, gguf, reference
from .artifact import Descriptor, Manifest
from .blobfile import PartialBlob, remove_stale_partials

MANIFEST_MEDIA_TYPE = artifact.OCI_MANIFEST
CONFIG_MEDIA_TYPE = artifact.DMR_CONFIG
GGUF_MEDIA_TYPE = artifact.DMR_GGUF


@dataclass
class StoredModel:
    id: str  # "sha256:<manifest hex>"
    tags: list[str]
    created: int
    config: dict[str, Any]
    gguf_path: Path
    size: int
    files: list[str] = field(default_factory=list)
    #: Bytes the weights file has according to the manifest (checked before loading).
    gguf_size: int = 0
    #: Optional layers of the artifact, when it has them.
    chat_template_path: Path | None = None
    mmproj_path: Path | None = None

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1][:12]

    @property
    def name(self) -> str:
        """The name clients see: the first tag, else the short ID."""
        return self.tags[0] if self.tags else self.short_id


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _digest_hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
        raise InvalidRequest(f"invalid digest {digest!r}")
    return hexpart


class ModelStore:
    def __init__(self, root: str | os.PathLike, *, insecure_registries: Iterable[str] = ()):
        self.root = Path(root)
        #: Registries pulled from and pushed to over plain HTTP besides loopback ones (the
        #: `insecure_registries` setting); kept here because every pull and push has the store.
        self.insecure_registries = frozenset(insecure_registries)
        self._lock = threading.RLock()
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "manifests" / "sha256").mkdir(parents=True, exist_ok=True)
        if not (self.root / "layout.json").exists():
            _atomic_write(self.root / "layout.json", b'{"version": "1.0.0"}\n')
        if not (self.root / "models.json").exists():
            _atomic_write(self.root / "models.json", b'{"models": []}\n')
        self._config_cache: dict[str, dict[str, Any]] = {}
        remove_stale_partials(self.root / "blobs" / "sha256")

    # ------------------------------------------------------------------ index

    @contextlib.contextmanager
    def _locked_index(self) -> Iterator[list[dict[str, Any]]]:
        """Read-modify-write of models.json under a thread lock and a file lock."""
        with self._lock, open(self.root / ".lock", "a+") as lock_fh:
            fcntl.flock(lock_fh, fcntl.LOCK_EX)
            try:
                entries = self._read_index()
                yield entries
                _atomic_write(self.root / "models.json",
                              json.dumps({"models": entries}, indent=1).encode())
            finally:
                fcntl.flock(lock_fh, fcntl.LOCK_UN)

    def _read_index(self) -> list[dict[str, Any]]:
        with open(self.root / "models.json", encoding="utf-8") as fh:
            return json.load(fh).get("models", [])

    # ------------------------------------------------------------------ blobs

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / _digest_hex(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def partial_blob(self, digest: str, size: int | None = None) -> PartialBlob:
        """A resumable, verified writer for the blob `digest` (use it as a context manager)."""
        return PartialBlob(self.blob_path(digest), digest, size)

    def write_blob(self, data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        if not path.exists():
            _atomic_write(path, data)
        return digest, len(data)

    def import_blob_file(self, source: str | os.PathLike) -> tuple[str, int]:
        """Copy a file into the blob store, hashing as it goes."""
        blobs = self.root / "blobs" / "sha256"
        fd, tmp = tempfile.mkstemp(dir=blobs, prefix=".incoming-")
        h = hashlib.sha256()
        size = 0
        try:
            with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
                while chunk := src.read(1 << 20):
                    h.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            digest = "sha256:" + h.hexdigest()
            os.replace(tmp, self.blob_path(digest))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return digest, size

    # ------------------------------------------------------------------ models

    def add_gguf(self, path: str | os.PathLike, tags: list[str], *,
                 context_size: int | None = None, created: str | None = None) -> StoredModel:
        """Import a local GGUF file as a model (config + manifest + weights) and tag it."""
        gguf.read_header(str(path))  # refuse a non-GGUF file before copying it
        digest, size = self.import_blob_file(path)
        weights = Descriptor(artifact.DMR_GGUF, digest, size)
        return self.add_gguf_blob(weights, tags, context_size=context_size, created=created)

    def add_gguf_blob(self, weights: Descriptor, tags: list[str], *,
                      context_size: int | None = None,
                      extra_layers: list[Descriptor] | None = None,
                      created: str | None = None,
                      defaults: dict[str, Any] | None = None) -> StoredModel:
        """Build DMR's artifact around weights already in the blob store, and tag it."""
        info = gguf.describe(str(self.blob_path(weights.digest)))
        config = artifact.dmr_config(info, weights, context_size=context_size, created=created,
                                     defaults=defaults)
        config_digest, config_size = self.write_blob(json.dumps(config).encode())
        manifest = artifact.build_manifest(
            Descriptor(artifact.DMR_CONFIG, config_digest, config_size),
            [weights, *(extra_layers or [])])
        return self.add_manifest(manifest, tags)

    def add_manifest(self, manifest_bytes: bytes, tags: list[str]) -> StoredModel:
        """Record a manifest whose blobs are already stored, and point `tags` at it."""
        manifest = artifact.parse_manifest(manifest_bytes)
        files = [blob.digest for blob in manifest.blobs]
        missing = [d for d in files if not self.has_blob(d)]
        if missing:
            raise InvalidRequest(f"manifest refers to missing blobs: {missing}")
        model_id = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
        _atomic_write(self.root / "manifests" / "sha256" / _digest_hex(model_id), manifest_bytes)
        canonical = [str(reference.parse(t)) for t in tags]
        with self._locked_index() as entries:
            for entry in entries:
                entry["tags"] = [t for t in entry["tags"] if t not in canonical]
            entry = next((e for e in entries if e["id"] == model_id), None)
            if entry is None:
                entry = {"id": model_id, "tags": [], "files": files, "created": int(time.time())}
                entries.append(entry)
            entry["tags"] += [t for t in canonical if t not in entry["tags"]]
        return self.get(model_id)

    def list(self) -> list[StoredModel]:
        return [self._load(e) for e in self._read_index()]

    def find(self, ref: str) -> StoredModel | None:
        """The model a reference, ID or ID prefix names, or None."""
        entries = self._read_index()
        text = ref.strip()
        if reference.looks_like_id(text):
            hexpart = text.lower().removeprefix("sha256:")
            matches = [e for e in entries if e["id"].split(":", 1)[1].startswith(hexpart)]
            if len(matches) == 1:
                return self._load(matches[0])
        parsed = reference.parse(text)
        if parsed.digest:
            entry = next((e for e in entries if e["id"] == parsed.digest), None)
            return self._load(entry) if entry else None
        wanted = str(parsed)
        entry = next((e for e in entries if wanted in e["tags"]), None)
        return self._load(entry) if entry else None

    def get(self, ref: str) -> StoredModel:
        model = self.find(ref)
        if model is None:
            raise ModelNotFound(ref)
        return model

    def tag(self, ref: str, new_tag: str) -> str:
        model = self.get(ref)
        canonical = str(reference.parse(new_tag))
        with self._locked_index() as entries:
            for entry in entries:
                if canonical in entry["tags"] and entry["id"] != model.id:
                    entry["tags"].remove(canonical)
            for entry in entries:
                if entry["id"] == model.id and canonical not in entry["tags"]:
                    entry["tags"].append(canonical)
        return canonical

    def remove(self, ref: str, *, force: bool = False) -> list[dict[str, str]]:
        """Untag `ref`; delete the model when no tag is left (DMR's semantics and answer)."""
        model = self.get(ref)
        by_tag = not reference.looks_like_id(ref) and "@" not in ref
        result: list[dict[str, str]] = []
        with self._locked_index() as entries:
            entry = next(e for e in entries if e["id"] == model.id)
            if by_tag and len(entry["tags"]) > 1 and not force:
                untag = str(reference.parse(ref))
                entry["tags"].remove(untag)
                return [{"Untagged": untag}]
            if not by_tag and len(entry["tags"]) > 1 and not force:
                raise Conflict(f"unable to delete {model.short_id} (must be forced) due to "
                               "multiple tag references: resource conflict")
            result = [{"Untagged": t} for t in entry["tags"]]
            entries.remove(entry)
            still_used = {d for e in entries for d in e["files"]}
        for digest in entry["files"]:
            if digest not in still_used:
                with contextlib.suppress(FileNotFoundError):
                    self.blob_path(digest).unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.root / "manifests" / "sha256" / _digest_hex(model.id)).unlink()
        result.append({"Deleted": model.id})
        return result

    def purge(self) -> int:
        """Delete every model, blob, manifest and partial download; returns models removed."""
        with self._locked_index() as entries:
            count = len(entries)
            entries.clear()
            for folder in ("blobs", "manifests"):
                for path in (self.root / folder / "sha256").iterdir():
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
        self._config_cache.clear()
        return count

    def manifest(self, model_id: str) -> Manifest:
        path = self.root / "manifests" / "sha256" / _digest_hex(model_id)
        return artifact.parse_manifest(path.read_bytes())

    def disk_usage(self) -> int:
        return sum(p.stat().st_size for p in (self.root / "blobs").rglob("*") if p.is_file())

    def _load(self, entry: dict[str, Any]) -> StoredModel:
        model_id = entry["id"]
        manifest = self.manifest(model_id)
        weights = manifest.weights()
        config = self._config_cache.get(model_id)
        if config is None:
            raw = json.loads(self.blob_path(manifest.config.digest).read_bytes())
            config = artifact.display_config(raw, manifest.is_modelpack)
            if manifest.is_modelpack:  # ModelPack configs say little: read the GGUF itself
                info = gguf.describe(str(self.blob_path(weights.digest)))
                config = {**{k: info[k] for k in ("format", "quantization", "parameters",
                                                   "architecture", "gguf")},
                          "size": artifact.human_size(weights.size), **config}
            self._config_cache[model_id] = config
        template = manifest.layer_of(artifact.DMR_TEMPLATE)
        mmproj = manifest.layer_of(artifact.DMR_MMPROJ)
        return StoredModel(
            id=model_id,
            tags=list(entry["tags"]),
            created=entry.get("created", 0),
            config=config,
            gguf_path=self.blob_path(weights.digest),
            size=sum(layer.size for layer in manifest.layers),
            files=list(entry["files"]),
            gguf_size=weights.size,
            chat_template_path=self.blob_path(template.digest) if template else None,
            mmproj_path=self.blob_path(mmproj.digest) if mmproj else None,
        )


def _human_size(n: int) -> str:
    return artifact.human_size(n)

