"""Pulling a model into the store from an OCI registry or from Hugging Face.

`prepare_pull` does everything that can fail with a clean HTTP status before any progress is
streamed (bad reference 400, unknown model 404, no access 401, not a model 422); `events()`
then downloads and yields progress. Blobs are fetched one by one into resumable, verified
`.incomplete` files; a dropped connection is retried from where it stopped with a range
request, and an interrupted pull leaves the partial file for the next attempt. The model is
recorded (and so visible) only after every blob is in place.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator

import requests

from . import artifact, huggingface, reference
from .artifact import Descriptor, Manifest, human_size
from .blobfile import partial_size
from .errors import InsufficientStorage, RegistryError, RegistryUnreachable
from .progress import PULL, Event, LayerProgress, Notice, Throttle
from .registry import Registry
from .store import ModelStore

log = logging.getLogger(__name__)

HF_REGISTRY = "huggingface.co"
#: Attempts per blob when the connection drops; each resumes where the last one stopped.
ATTEMPTS = 4
_CHUNK = 1 << 20


Opener = Callable[[int], tuple[requests.Response, int]]


def check_space(store: ModelStore, blobs: list[tuple[str | None, int]]) -> None:
    """Refuse a pull that cannot fit before anything is downloaded. `blobs` are (digest or
    None when unknown, size); stored or partly downloaded blobs only need what is missing."""
    needed = sum(size - (partial_size(store.blob_path(digest)) if digest else 0)
                 for digest, size in blobs if not (digest and store.has_blob(digest)))
    free = shutil.disk_usage(store.root).free
    if needed > free:
        raise InsufficientStorage(
            f"not enough disk space for this model in {store.root}: it needs "
            f"{human_size(needed)} more and {human_size(free)} is free")


@contextlib.contextmanager
def disk_full_is_clear(store: ModelStore) -> Iterator[None]:
    """A disk that fills up during a pull (another process wrote to it) says so plainly."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise InsufficientStorage(
            f"the disk holding {store.root} is full; what was downloaded is kept: free some "
            "space and pull again to continue where it stopped") from exc


def download(store: ModelStore, blob: Descriptor, opener: Opener, total: int
             ) -> Iterator[Event]:
    """Fetch one blob into the store (resuming a partial file), yielding progress."""
    with store.partial_blob(blob.digest, blob.size) as partial:
        if partial.done:
            yield LayerProgress(PULL, total, blob.digest, blob.size, blob.size)
            return
        if partial.offset:
            log.info("resuming %s at byte %d", blob.digest, partial.offset)
        throttle = Throttle(blob.size)
        failures = 0
        while partial.offset < blob.size:
            try:
                response, start = opener(partial.offset)
                if start != partial.offset:  # the server ignored our range: start over
                    partial.restart()
                with response:
                    for chunk in response.iter_content(_CHUNK):
                        partial.write(chunk)
                        if throttle.due(partial.offset):
                            yield LayerProgress(PULL, total, blob.digest, blob.size,
                                                partial.offset)
                        if partial.offset > blob.size:
                            break
                if partial.offset < blob.size:
                    raise requests.ConnectionError("connection closed early")
            except (requests.RequestException, RegistryUnreachable) as exc:
                failures += 1
                if failures >= ATTEMPTS:
                    raise RegistryError(f"download of {blob.digest} failed after {failures} "
                                        f"attempts ({partial.offset} of {blob.size} bytes kept "
                                        f"for the next pull): {exc}") from exc
                log.warning("download of %s interrupted at %d bytes (%s); resuming",
                            blob.digest, partial.offset, exc)
                time.sleep(0.2 * failures)
        partial.commit()


class Pull:
    """A pull whose preconditions have been checked; iterate `events()` to run it."""

    def __init__(self, store: ModelStore, ref: reference.Reference):
        self.store = store
        self.ref = ref

    @property
    def tags(self) -> list[str]:
        return [] if self.ref.digest else [str(self.ref)]

    def events(self) -> Iterator[Event]:
        raise NotImplementedError

    def _cached(self, model_id: str) -> Iterator[Event]:
        model = self.store.get(model_id)
        for tag in self.tags:
            self.store.tag(model.id, tag)
        yield Notice("success", f"Using cached model: {model.config.get('size', '')}".rstrip())


class CachedPull(Pull):
    """The model is already in the store: nothing to download (DMR says so)."""

    def __init__(self, store: ModelStore, ref: reference.Reference, model_id: str,
                 warning: str | None = None):
        super().__init__(store, ref)
        self.model_id = model_id
        self.warning = warning

    def events(self) -> Iterator[Event]:
        if self.warning:
            yield Notice("warning", self.warning)
        yield from self._cached(self.model_id)


class RegistryPull(Pull):
    def __init__(self, store: ModelStore, ref: reference.Reference, client: Registry,
                 manifest: Manifest, model_id: str):
        super().__init__(store, ref)
        self.client = client
        self.manifest = manifest
        self.model_id = model_id

    def events(self) -> Iterator[Event]:
        if self.store.find(self.model_id) is not None:
            yield from self._cached(self.model_id)
            return
        with disk_full_is_clear(self.store):
            yield from self._download()

    def _download(self) -> Iterator[Event]:
        config = self.manifest.config
        if not self.store.has_blob(config.digest):
            data = self.client.blob_bytes(config.digest)
            self.store.write_blob(data)
        total = sum(layer.size for layer in self.manifest.layers)
        for layer in self.manifest.layers:
            yield from download(self.store, layer,
                                lambda offset, d=layer.digest: self.client.open_blob(d, offset),
                                total)
        self.store.add_manifest(self.manifest.raw, self.tags)
        yield Notice("success", "Model pulled successfully")


class HuggingFacePull(Pull):
    def __init__(self, store: ModelStore, ref: reference.Reference, hub: huggingface.HuggingFace,
                 files: list[huggingface.HFFile]):
        super().__init__(store, ref)
        self.hub = hub
        self.files = files

    def events(self) -> Iterator[Event]:
        with disk_full_is_clear(self.store):
            yield from self._download()

    def _download(self) -> Iterator[Event]:
        total = sum(f.size for f in self.files)
        layers = []
        for file, media_type in zip(self.files, (artifact.DMR_GGUF, artifact.DMR_MMPROJ),
                                    strict=False):
            if file.digest is None:
                digest = yield from self._download_unhashed(file, total)
            else:
                digest = file.digest
                yield from download(self.store, Descriptor(media_type, digest, file.size),
                                    lambda offset, p=file.path: self.hub.open(p, offset), total)
            layers.append(Descriptor(media_type, digest, file.size))
        self.store.add_gguf_blob(layers[0], self.tags, extra_layers=layers[1:])
        yield Notice("success", "Model pulled successfully")

    def _download_unhashed(self, file: huggingface.HFFile, total: int):
        """A file outside LFS has no published hash: hash it while copying (not resumable)."""
        with tempfile.TemporaryDirectory(dir=self.store.root) as tmp:
            path = os.path.join(tmp, "download")
            response, _ = self.hub.open(file.path)
            done = 0
            with response, open(path, "wb") as fh:
                for chunk in response.iter_content(_CHUNK):
                    fh.write(chunk)
                    done += len(chunk)
                    yield LayerProgress(PULL, total, file.path, file.size, done)
            digest, _ = self.store.import_blob_file(path)
        return digest


def prepare_pull(store: ModelStore, text: str, bearer_token: str | None = None) -> Pull:
    """Check a pull can start (reference, model existence, access, media types)."""
    ref = reference.parse(text)
    if ref.registry == HF_REGISTRY:
        return _prepare_hf(store, ref, bearer_token)
    client = Registry(ref.registry, ref.repository, token=bearer_token,
                      insecure=ref.registry in store.insecure_registries)
    try:
        raw, media_type, digest = client.manifest(ref.digest or ref.tag)
    except RegistryUnreachable as exc:
        cached = store.find(str(ref))
        if cached is None:
            raise
        return CachedPull(store, ref, cached.id, warning=f"{exc.message}; using the local copy")
    manifest = artifact.parse_manifest(raw, media_type)
    if store.find(digest) is None:
        check_space(store, [(b.digest, b.size) for b in [manifest.config, *manifest.layers]])
    return RegistryPull(store, ref, client, manifest, digest)


def _prepare_hf(store: ModelStore, ref: reference.Reference, token: str | None) -> Pull:
    if ref.digest:
        raise RegistryError("Hugging Face models are pulled by tag (quantization), not digest")
    cached = store.find(str(ref))
    if cached is not None:
        return CachedPull(store, ref, cached.id)
    hub = huggingface.HuggingFace(ref.repository, token=token)
    weights, mmproj = huggingface.choose(hub.files(), ref.tag)
    check_space(store, [(f.digest, f.size) for f in (weights, mmproj) if f is not None])
    return HuggingFacePull(store, ref, hub, [weights] + ([mmproj] if mmproj else []))
