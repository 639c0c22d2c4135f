"""Zero cost for models served by DMR, so `completion_cost()` and proxy spend tracking work.

LiteLLM prices a response by looking up `<provider>/<model>` in `litellm.model_cost`, has no
wildcard entries, and raises `ModelNotMappedError` for unknown local models. So each model is
registered at zero the first time the plugin serves it (cheap, once per name). The cache-cost
fields are given too: without them `register_model` logs a warning for every new model.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import litellm

_registered: set[str] = set()
_lock = threading.Lock()


def zero_cost_entry(provider: str, mode: str) -> dict[str, object]:
    return {
        "input_cost_per_token": 0.0,
        "output_cost_per_token": 0.0,
        "cache_creation_input_token_cost": 0.0,
        "cache_read_input_token_cost": 0.0,
        "litellm_provider": provider,
        "mode": mode,
    }


def ensure_zero_cost(provider: str, models: Iterable[str | None], mode: str = "chat") -> None:
    """Register `<provider>/<model>` at zero cost for each model name not registered yet.

    An entry already in the cost map (e.g. a proxy `model_info` price) is left alone.
    """
    keys = {f"{provider}/{m}" for m in models if m}
    with _lock:
        new = {k for k in keys - _registered if k not in litellm.model_cost}
        _registered.update(keys)
        if new:
            litellm.register_model({k: zero_cost_entry(provider, mode) for k in sorted(new)})
