"""Model artifacts as OCI manifests: DMR's layout and CNCF ModelPack, read and built.

DMR packages a model as an OCI image manifest whose config is
`application/vnd.docker.ai.model.config.v0.1+json` (format, quantization, parameters, GGUF
metadata, optional context_size) and whose layers are the GGUF weights plus optional license,
chat template and multimodal projector files. ModelPack artifacts use
`application/vnd.cncf.model.config.v1+json` and `application/vnd.cncf.model.weight.*` layers.
Whatever comes from outside is checked here before any of it touches the disk: digests must be
well formed (they become file names) and the artifact must carry GGUF weights.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import InvalidRequest
from .errors import UnsupportedMediaType

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)

DMR_CONFIG = "application/vnd.docker.ai.model.config.v0.1+json"
DMR_CONFIG_V02 = "application/vnd.docker.ai.model.config.v0.2+json"
DMR_GGUF = "application/vnd.docker.ai.gguf.v3"
DMR_LICENSE = "application/vnd.docker.ai.license"
DMR_TEMPLATE = "application/vnd.docker.ai.chat.template.jinja"
DMR_MMPROJ = "application/vnd.docker.ai.mmproj"

MODELPACK_CONFIG = "application/vnd.cncf.model.config.v1+json"
MODELPACK_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
MODELPACK_WEIGHT_PREFIX = "application/vnd.cncf.model.weight."
MODELPACK_GGUF = "application/vnd.cncf.model.weight.v1.gguf"
MODELPACK_RAW = "application/vnd.cncf.model.weight.v1.raw"
FILEPATH_ANNOTATION = "org.cncf.model.filepath"

CONFIG_TYPES = (DMR_CONFIG, DMR_CONFIG_V02, MODELPACK_CONFIG)
#: A manifest is small; anything bigger is not one of ours.
MAX_MANIFEST_BYTES = 4 << 20
MAX_CONFIG_BYTES = 16 << 20

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest,
                               "size": self.size}
        if self.annotations:
            out["annotations"] = self.annotations
        return out


@dataclass(frozen=True)
class Manifest:
    raw: bytes
    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str = OCI_MANIFEST

    @property
    def blobs(self) -> list[Descriptor]:
        return [self.config, *self.layers]

    @property
    def is_modelpack(self) -> bool:
        return self.config.media_type == MODELPACK_CONFIG

    def weights(self) -> Descriptor:
        """The GGUF weights layer (the first one, for split files)."""
        for layer in self.layers:
            if is_gguf_layer(layer, self.is_modelpack):
                return layer
        raise UnsupportedMediaType("model has no GGUF weights layer: only GGUF models can run "
                                   "on the llama.cpp engine")

    def layer_of(self, media_type: str) -> Descriptor | None:
        return next((layer for layer in self.layers if layer.media_type == media_type), None)


def is_gguf_layer(layer: Descriptor, modelpack: bool) -> bool:
    if layer.media_type in (DMR_GGUF, MODELPACK_GGUF):
        return True
    if modelpack and layer.media_type.startswith(MODELPACK_WEIGHT_PREFIX):
        path = layer.annotations.get(FILEPATH_ANNOTATION, "")
        return layer.media_type == MODELPACK_RAW and path.lower().endswith(".gguf")
    return False


def check_digest(digest: Any) -> str:
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise InvalidRequest(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return digest


def _descriptor(data: Any, where: str) -> Descriptor:
    if not isinstance(data, dict):
        raise InvalidRequest(f"manifest {where} is not an object")
    size = data.get("size")
    if not isinstance(size, int) or size < 0:
        raise InvalidRequest(f"manifest {where} has no valid size")
    annotations = data.get("annotations") or {}
    if not isinstance(annotations, dict):
        annotations = {}
    return Descriptor(str(data.get("mediaType", "")), check_digest(data.get("digest")), size,
                      {str(k): str(v) for k, v in annotations.items()})


def parse_manifest(raw: bytes, media_type: str | None = None) -> Manifest:
    """Parse an image manifest and check it describes a model we can store and run."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise InvalidRequest("manifest too large")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InvalidRequest(f"manifest is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("manifest is not a JSON object")
    kind = data.get("mediaType") or media_type or OCI_MANIFEST
    if kind in INDEX_TYPES:
        raise InvalidRequest("expected an image manifest, got an index")
    if kind not in MANIFEST_TYPES:
        raise UnsupportedMediaType(f"unsupported manifest media type {kind!r}")
    config = _descriptor(data.get("config"), "config")
    layers = data.get("layers")
    if not isinstance(layers, list) or not layers:
        raise InvalidRequest("manifest has no layers")
    manifest = Manifest(raw, config,
                        tuple(_descriptor(x, f"layer {i}") for i, x in enumerate(layers)), kind)
    if config.media_type not in CONFIG_TYPES:
        raise UnsupportedMediaType(
            f"config media type {config.media_type!r} is not a model: expected "
            f"{DMR_CONFIG} or {MODELPACK_CONFIG}")
    manifest.weights()
    return manifest


def is_index(raw: bytes) -> bool:
    try:
        data = json.loads(raw)
    except ValueError:
        return False
    return isinstance(data, dict) and (data.get("mediaType") in INDEX_TYPES
                                       or "manifests" in data)


def pick_from_index(raw: bytes) -> str:
    """The digest of the manifest to use from an image index (models have one platform)."""
    try:
        data = json.loads(raw)
        entries = data["manifests"]
        return check_digest(entries[0]["digest"])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise InvalidRequest("image index lists no manifest") from exc


def display_config(config_json: dict[str, Any], modelpack: bool) -> dict[str, Any]:
    """DMR's `config` object (format, quantization, parameters, ...) from a config blob."""
    if not modelpack:
        return dict(config_json.get("config") or {})
    cfg = config_json.get("config") or {}
    out = {
        "format": cfg.get("format", "gguf"),
        "quantization": cfg.get("quantization", ""),
        "parameters": cfg.get("paramSize", ""),
        "architecture": cfg.get("architecture", ""),
    }
    return {k: v for k, v in out.items() if v}


def dmr_config(info: dict[str, Any], weights: Descriptor, *,
               context_size: int | None = None, created: str | None = None,
               defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config blob DMR writes for a GGUF model (`gguf.describe` gives `info`).

    The model's ID is the digest of a manifest that names this blob, so a fixed `created`
    gives the same ID on every machine. `defaults` (ours, not DMR's: the default request
    settings of store/model_defaults.py) go in with the rest, so they travel with the model."""
    return {
        "config": {
            "format": "gguf",
            "quantization": info["quantization"],
            "parameters": info["parameters"],
            "architecture": info["architecture"],
            "size": human_size(weights.size),
            "gguf": info["gguf"],
            **({"context_size": context_size} if context_size else {}),
            **({"defaults": defaults} if defaults else {}),
        },
        "descriptor": {"created": created
                       or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "rootfs": {"type": "rootfs", "diff_ids": [weights.digest]},
    }


def build_manifest(config: Descriptor, layers: list[Descriptor]) -> bytes:
    """Serialize a DMR model manifest (the model ID is the sha256 of these bytes)."""
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }, separators=(",", ":")).encode()


def human_size(n: int) -> str:
    """Sizes as DMR prints them in configs and listings."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"
