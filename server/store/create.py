"""Building a new model from parts already in the store (Ollama's /api/create).

A new model reuses the weights of a stored model (`from`) or of an uploaded GGUF blob
(`files`), and adds what the request gives: default request settings (Ollama's `parameters`
and `system`, store/model_defaults.py), a context size (`num_ctx`), a Jinja chat template,
licenses. Nothing is copied: the weights layer is shared, only a new config (and any new small
layers) is written, so a create takes milliseconds whatever the model's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import InvalidRequest
from . import artifact, gguf
from .artifact import Descriptor
from .model_defaults import ModelDefaults
from .store import ModelStore, StoredModel


@dataclass
class Recipe:
    """What a new model is made of; None fields are taken from the base model."""

    name: str
    base: StoredModel | None = None
    weights: str | None = None  # digest of an uploaded GGUF blob
    defaults: ModelDefaults = field(default_factory=ModelDefaults)
    context_size: int | None = None
    template: str | None = None
    licenses: list[str] = field(default_factory=list)


def check_gguf_blob(store: ModelStore, digest: str, where: str) -> Descriptor:
    if not store.has_blob(digest):
        raise InvalidRequest(f"{where}: blob {digest} is not on this server; upload it first "
                             "(POST /api/blobs/<digest>)", param=where)
    path = store.blob_path(digest)
    try:
        gguf.read_header(str(path))
    except Exception as exc:  # GGUFError, or a file too short to hold a header
        raise InvalidRequest(f"{where}: blob {digest} is not a GGUF model file ({exc}); only "
                             "GGUF weights can be imported", param=where) from exc
    return Descriptor(artifact.DMR_GGUF, digest, path.stat().st_size)


def build(store: ModelStore, recipe: Recipe) -> Iterator[str]:
    """Write the new model, yielding Ollama-style status lines as it goes."""
    yield "gathering model components"
    carried = ModelDefaults()
    context_size = recipe.context_size
    kept: list[Descriptor] = []
    if recipe.weights is not None:
        weights = check_gguf_blob(store, recipe.weights, "files")
        yield f"using existing layer {weights.digest}"
    else:
        base = recipe.base
        manifest = store.manifest(base.id)
        weights = manifest.weights()
        carried = ModelDefaults.from_values(base.config.get("defaults") or {}, "defaults")
        context_size = context_size or base.config.get("context_size")
        for layer in manifest.layers:
            if layer.digest == weights.digest:
                continue
            if recipe.template is not None and layer.media_type == artifact.DMR_TEMPLATE:
                continue
            kept.append(layer)
        for layer in [weights, *kept]:
            yield f"using existing layer {layer.digest}"
    new_layers = []
    if recipe.template is not None:
        new_layers.append((artifact.DMR_TEMPLATE, recipe.template))
    for text in recipe.licenses:
        new_layers.append((artifact.DMR_LICENSE, text))
    for media_type, text in new_layers:
        digest, size = store.write_blob(text.encode())
        kept.append(Descriptor(media_type, digest, size))
        yield f"creating new layer {digest}"
    defaults = recipe.defaults.over(carried)
    yield "writing manifest"
    store.add_gguf_blob(weights, [recipe.name], context_size=context_size, extra_layers=kept,
                        defaults=_json(defaults))


def _json(defaults: ModelDefaults) -> dict[str, Any]:
    return defaults.values()
