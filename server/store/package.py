"""Build DMR's artifact for a local GGUF file without a store (what `dmr package` sends).

The result is the manifest bytes (its sha256 is the model ID) and the blobs it refers to, ready
for `tarball.write`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from . import artifact, gguf
from .artifact import Descriptor


@dataclass
class Package:
    manifest: bytes
    blobs: list[tuple[str, Path | bytes]]

    @property
    def model_id(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def package_gguf(path: str | Path, *, context_size: int | None = None,
                 license_paths: list[str | Path] = (), chat_template: str | Path | None = None
                 ) -> Package:
    """Weights layer, optional license and template layers, and the config describing them."""
    path = Path(path)
    info = gguf.describe(str(path))  # GGUFError for a file that is not GGUF
    weights = Descriptor(artifact.DMR_GGUF, _file_digest(path), path.stat().st_size)
    blobs: list[tuple[str, Path | bytes]] = [(weights.digest, path)]
    layers = [weights]
    extras = [(artifact.DMR_LICENSE, Path(p)) for p in license_paths]
    if chat_template:
        extras.append((artifact.DMR_TEMPLATE, Path(chat_template)))
    for media_type, extra in extras:
        layer = Descriptor(media_type, _file_digest(extra), extra.stat().st_size)
        layers.append(layer)
        blobs.append((layer.digest, extra))
    config = json.dumps(artifact.dmr_config(info, weights, context_size=context_size)).encode()
    config_desc = Descriptor(artifact.DMR_CONFIG, "sha256:" + hashlib.sha256(config).hexdigest(),
                             len(config))
    blobs.append((config_desc.digest, config))
    return Package(artifact.build_manifest(config_desc, layers), blobs)
