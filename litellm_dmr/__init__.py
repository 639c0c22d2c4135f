"""LiteLLM provider for Docker Model Runner: `docker_model_runner/[<engine>/]<model>` and `dmr/...`.

Importing the package registers the provider (see `registration`); `handler` is the instance
to name in a LiteLLM proxy config's `custom_provider_map`.
"""

from __future__ import annotations

from .naming import DEFAULT_API_BASE, DEFAULT_ENGINE, KNOWN_ENGINES
from .payload import ALIAS, PROVIDER
from .provider import DockerModelRunnerLLM
from .registration import OverrideError
from .registration import register as _register

handler = DockerModelRunnerLLM()


def register() -> DockerModelRunnerLLM:
    """Register `handler` for `docker_model_runner/` and `dmr/` (idempotent); returns it."""
    _register(handler)
    return handler


register()

__all__ = ["ALIAS", "DEFAULT_API_BASE", "DEFAULT_ENGINE", "KNOWN_ENGINES", "PROVIDER",
           "DockerModelRunnerLLM", "OverrideError", "handler", "register"]
