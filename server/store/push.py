"""Pushing a stored model to an OCI registry, blob by blob, then its manifest.

Blobs the registry already has are skipped (HEAD first). Uploads run in a worker thread so the
caller can keep yielding progress while requests reads the file.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from ..core.errors import NotSupported
from . import reference
from .artifact import Descriptor, Manifest
from .progress import PUSH, Event, LayerProgress, Notice, Throttle
from .pull import HF_REGISTRY
from .registry import Registry
from .store import ModelStore, StoredModel

_DONE = object()


class Push:
    """A push whose model and destination have been checked; iterate `events()` to run it."""

    def __init__(self, store: ModelStore, model: StoredModel, ref: reference.Reference,
                 client: Registry):
        self.store = store
        self.model = model
        self.ref = ref
        self.client = client

    def events(self) -> Iterator[Event]:
        manifest: Manifest = self.store.manifest(self.model.id)
        total = sum(blob.size for blob in manifest.layers)
        for blob in [*manifest.layers, manifest.config]:
            if self.client.has_blob(blob.digest):
                yield LayerProgress(PUSH, total, blob.digest, blob.size, blob.size)
                continue
            yield from self._upload(blob, total)
        self.client.put_manifest(self.ref.tag, manifest.raw, manifest.media_type)
        yield Notice("success", "Model pushed successfully", PUSH)

    def _upload(self, blob: Descriptor, total: int) -> Iterator[Event]:
        updates: queue.SimpleQueue = queue.SimpleQueue()
        failure: list[BaseException] = []

        def work() -> None:
            try:
                with open(self.store.blob_path(blob.digest), "rb") as fh:
                    self.client.upload_blob(blob.digest, blob.size, fh, updates.put)
            except BaseException as exc:  # handed to the caller's thread below
                failure.append(exc)
            finally:
                updates.put(_DONE)

        threading.Thread(target=work, name="push-upload", daemon=True).start()
        throttle = Throttle(blob.size)
        while (sent := updates.get()) is not _DONE:
            if throttle.due(sent):
                yield LayerProgress(PUSH, total, blob.digest, blob.size, sent)
        if failure:
            raise failure[0]


def prepare_push(store: ModelStore, text: str, bearer_token: str | None = None, *,
                 insecure: bool = False) -> Push:
    """Check the model exists and the destination is a registry tag; `insecure` allows plain
    HTTP to its registry (Ollama's push option), as the `insecure_registries` setting does."""
    model = store.get(text)
    ref = reference.parse(text)
    if ref.digest:
        raise NotSupported("push a tag, not a digest: tag the model first (dmr tag)")
    if ref.registry == HF_REGISTRY:
        raise NotSupported("pushing to Hugging Face is not supported; push to an OCI registry")
    client = Registry(ref.registry, ref.repository, token=bearer_token,
                      insecure=insecure or ref.registry in store.insecure_registries)
    return Push(store, model, ref, client)
