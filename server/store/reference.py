"""Model references, normalized as Docker Model Runner does.

`smollm2`, `ai/smollm2`, `ai/smollm2:latest` and `docker.io/ai/smollm2:latest` all name the
same model. Names are lower-cased (tags keep their case), `hf.co/` means `huggingface.co/`, a
name without a registry or namespace gets the `ai/` namespace, and the default tag is `latest`.
References are validated so that no name, tag or digest can escape the store directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.errors import InvalidRequest

DEFAULT_NAMESPACE = "ai"
DEFAULT_TAG = "latest"
_DOCKER_HUB = ("docker.io/", "index.docker.io/", "registry-1.docker.io/")

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_REGISTRY = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]+)?$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_ID_PREFIX = re.compile(r"^(?:sha256:)?[a-f0-9]{12,64}$")


@dataclass(frozen=True)
class Reference:
    """A normalized reference: registry ('' for Docker Hub), repository path, tag or digest."""

    registry: str
    repository: str
    tag: str = DEFAULT_TAG
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    def __str__(self) -> str:
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag}"


def looks_like_id(text: str) -> bool:
    """A model ID or an unambiguous prefix of one (12 to 64 hex digits, `sha256:` optional)."""
    return bool(_ID_PREFIX.match(text.strip().lower()))


def parse(text: str) -> Reference:
    """Parse and normalize a model reference; InvalidRequest says what is wrong with it."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest("model reference is empty", param="model")
    raw = text.strip()
    if raw.startswith("hf.co/"):
        raw = "huggingface.co/" + raw[len("hf.co/"):]
    for prefix in _DOCKER_HUB:
        if raw.lower().startswith(prefix):
            raw = raw[len(prefix):]
            break
    digest = None
    if "@" in raw:
        raw, digest = raw.split("@", 1)
        if not _DIGEST.match(digest):
            raise InvalidRequest(f"invalid model reference {text!r}: bad digest", param="model")
    tag = DEFAULT_TAG
    slash = raw.rfind("/")
    colon = raw.rfind(":")
    if colon > slash:
        raw, tag = raw[:colon], raw[colon + 1:]
        if not _TAG.match(tag):
            raise InvalidRequest(f"invalid model reference {text!r}: bad tag {tag!r}", param="model")
    parts = raw.split("/")
    registry = ""
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry = parts.pop(0).lower()
        if not _REGISTRY.match(registry):
            raise InvalidRequest(f"invalid model reference {text!r}: bad registry", param="model")
    parts = [p.lower() for p in parts]
    if not registry and len(parts) == 1:
        parts.insert(0, DEFAULT_NAMESPACE)
    for part in parts:
        if not _COMPONENT.match(part):
            raise InvalidRequest(
                f"invalid model reference {text!r}: {part!r} must be lower-case letters, digits "
                "and separators (. _ -)", param="model")
    return Reference(registry, "/".join(parts), tag, digest)
