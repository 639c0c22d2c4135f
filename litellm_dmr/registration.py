"""Register the handler with LiteLLM and take `docker_model_runner/` over from the built-in.

LiteLLM >= 1.80.5 ships a chat-only `docker_model_runner` provider that ignores the engine in
the model name and builds URLs DMR does not serve. `custom_provider_map` is LiteLLM's plugin
API, but for names in `openai_compatible_providers` LiteLLM's chat and image dispatch picks the
built-in before looking at custom providers. So registration checks that nothing else in
LiteLLM routes the name to the built-in, removes it from that list, checks again, and declares
OpenAI params for it (`params`). Any surprise raises `OverrideError`: silently falling back to
the built-in would send requests to wrong URLs. The `dmr/` alias has no built-in and needs
none of this.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import threading
from importlib import metadata
from types import ModuleType
from typing import Any

import litellm

from .params import accept_openai_params
from .payload import ALIAS, PROVIDER

log = logging.getLogger("litellm_dmr")

#: The LiteLLM version this override was tested against. The structure it relies on is checked
#: on whatever version is installed, so a change raises rather than misroutes.
TESTED_LITELLM = "1.106.2"

#: A dedicated dispatch branch for the name (upstream LiteLLM `main` has
#: `_complete_docker_model_runner`) would win over custom providers whatever we do.
_DEDICATED_BRANCH = re.compile(
    r"docker_model_runner|DOCKER_MODEL_RUNNER", re.IGNORECASE)

#: Set to 0 to leave `docker_model_runner/` to LiteLLM's built-in and register only `dmr/`.
ENV_OVERRIDE = "LITELLM_DMR_OVERRIDE_BUILTIN"

_lock = threading.RLock()


class OverrideError(RuntimeError):
    """LiteLLM's structure changed so that `docker_model_runner/` would not reach this plugin."""


def litellm_version() -> str:
    try:
        return metadata.version("litellm")
    except metadata.PackageNotFoundError:  # pragma: no cover - litellm imported but not installed
        return "unknown"


def _fail(what: str) -> OverrideError:
    return OverrideError(
        f"litellm_dmr cannot take over the 'docker_model_runner/' prefix on LiteLLM "
        f"{litellm_version()} (tested with {TESTED_LITELLM}): {what}. Calls would go to "
        f"LiteLLM's built-in provider instead. Either install the tested LiteLLM "
        f"(pip install 'litellm=={TESTED_LITELLM}'), or set {ENV_OVERRIDE}=0 to register "
        f"only the 'dmr/' prefix, which needs no override, and use that."
    )


def override_enabled() -> bool:
    """False when ${ENV_OVERRIDE} is 0/false/no/off."""
    return os.environ.get(ENV_OVERRIDE, "1").strip().lower() not in ("0", "false", "no", "off")


def builtin_present() -> bool:
    """Whether this LiteLLM ships its own `docker_model_runner` provider."""
    providers = getattr(getattr(litellm, "types", None), "utils", None)
    enum = getattr(providers, "LlmProviders", None) or getattr(litellm, "LlmProviders", None)
    if enum is None:
        raise _fail("litellm.types.utils.LlmProviders is missing")
    return any(getattr(p, "value", None) == PROVIDER for p in enum)


def _compatible_lists() -> list[list[str]]:
    """Every object LiteLLM's dispatch may read as `openai_compatible_providers`."""
    found: list[list[str]] = []
    for owner in (litellm, getattr(litellm, "constants", None)):
        value = getattr(owner, "openai_compatible_providers", None) if owner else None
        if value is None:
            continue
        if not isinstance(value, list):
            raise _fail(f"openai_compatible_providers is a {type(value).__name__}, not a list")
        if not any(value is f for f in found):
            found.append(value)
    if not found:
        raise _fail("litellm.openai_compatible_providers is missing")
    return found


def _module_source(name: str) -> str | None:
    try:
        module: ModuleType = __import__(name, fromlist=["_"])
        return inspect.getsource(module)
    except (ImportError, OSError, TypeError):
        return None


def _check_no_dedicated_branch() -> None:
    """Fail if LiteLLM's dispatchers name the provider (a branch we cannot pre-empt)."""
    for name in ("litellm.main", "litellm.images.main"):
        source = _module_source(name)
        if source is None:
            raise _fail(f"cannot read the source of {name} to check its dispatch")
        match = _DEDICATED_BRANCH.search(source)
        if match:
            line = source.count("\n", 0, match.start()) + 1
            raise _fail(f"{name} line {line} routes '{match.group(0)}' itself")


def _json_registry_has(provider: str) -> bool:
    try:
        from litellm.llms.openai_like.json_loader import JSONProviderRegistry
    except ImportError:
        return False
    JSONProviderRegistry.load()
    return bool(JSONProviderRegistry.exists(provider))


def preflight() -> None:
    """The checks that do not depend on our change: a LiteLLM that cannot be overridden is
    reported before anything is modified."""
    if not builtin_present():
        return
    _compatible_lists()
    if _json_registry_has(PROVIDER):
        raise _fail("it is defined in LiteLLM's JSON provider registry")
    _check_no_dedicated_branch()


def disable_builtin() -> None:
    """Take the built-in out of the OpenAI-compatible dispatch and verify the result."""
    if not builtin_present():
        return
    for providers in _compatible_lists():
        while PROVIDER in providers:
            providers.remove(PROVIDER)
    verify_override()
    accept_openai_params(PROVIDER)


def verify_override() -> None:
    """Raise OverrideError unless `docker_model_runner` can only reach the custom handler."""
    if any(PROVIDER in providers for providers in _compatible_lists()):
        raise _fail("it is still listed in openai_compatible_providers")
    if _json_registry_has(PROVIDER):
        raise _fail("it is defined in LiteLLM's JSON provider registry")
    if PROVIDER not in getattr(litellm, "_custom_providers", []):
        raise _fail("it is not in litellm._custom_providers after custom_llm_setup()")
    _check_no_dedicated_branch()


def _install(handler: Any, provider: str) -> None:
    entries = litellm.custom_provider_map
    for entry in entries:
        if entry.get("provider") == provider:
            current = entry.get("custom_handler")
            if current is not handler and type(current).__name__ != type(handler).__name__:
                log.warning("litellm_dmr: %r is already mapped to %r; leaving it",
                            provider, current)
            return
    entries.append({"provider": provider, "custom_handler": handler})


def register(handler: Any) -> None:
    """Map `dmr` and `docker_model_runner` to `handler`; idempotent and thread-safe.

    Raises OverrideError if `docker_model_runner` cannot be taken over, before mapping it
    (`dmr` is registered first); with ${ENV_OVERRIDE}=0 only `dmr` is registered.
    """
    with _lock:
        if not isinstance(litellm.custom_provider_map, list):
            litellm.custom_provider_map = list(litellm.custom_provider_map or [])
        _install(handler, ALIAS)
        if not override_enabled():
            litellm.utils.custom_llm_setup()
            return
        preflight()
        _install(handler, PROVIDER)
        litellm.utils.custom_llm_setup()
        disable_builtin()
