"""The memory budget: models are loaded only when their estimated RAM fits.

Before a load, the engine estimates what the model will take (engines/llamacpp/memory.py:
weights, KV cache, compute buffers, prompt cache, the runner itself). If the loaded models'
estimates plus this one exceed the budget, idle models are unloaded, least recently used
first, until it fits. If it still does not fit, the request is refused before anything is
loaded, instead of the OOM killer ending a runner (or the server) halfway through:

- 507 (InsufficientMemory) when the model needs more than the whole budget: waiting will
  not help, a smaller context, fewer slots or a bigger budget will;
- 503 (MemoryBusy, with Retry-After) when it would fit once models now in use are idle.

The budget is `memory_budget` (bytes), or by default 90% of the RAM available
(MemAvailable) when the server starts.
"""

from __future__ import annotations

import logging
from typing import Any

from .engine import format_bytes
from .errors import DMRError, ErrorKind, Field, Overloaded

log = logging.getLogger(__name__)

#: Share of the available RAM the automatic budget takes.
AUTO_SHARE = 0.9


class InsufficientMemory(DMRError):
    status = 507
    kind = ErrorKind.INSUFFICIENT_MEMORY

    def __init__(self, model: str, need: int, budget: int, detail: str):
        super().__init__(
            f"{model} needs an estimated {detail}, more than the whole memory budget of "
            f"{format_bytes(budget)}; load it with a smaller context size or fewer slots "
            "(`dmr configure --context-size`), or raise memory_budget (DMR_MEMORY_BUDGET)",
            field=Field.MODEL, need_bytes=need, budget_bytes=budget)


class MemoryBusy(Overloaded):
    def __init__(self, model: str, need: int, budget: int, held: int, holders: list[str]):
        super().__init__(
            f"{model} needs an estimated {format_bytes(need)} but only "
            f"{format_bytes(max(0, budget - held))} of the memory budget of "
            f"{format_bytes(budget)} is free: {', '.join(holders)} "
            f"{'is' if len(holders) == 1 else 'are'} in use and hold the rest; retry when "
            "they are idle", retry_after=5)
        self.details.update(need_bytes=need, budget_bytes=budget, held_bytes=held)


def resolve_budget(setting: int, available: int) -> int:
    """Bytes the loaded models may take; 0 = no limit."""
    if setting >= 0:
        return setting
    return int(available * AUTO_SHARE)


def estimate_of(entry: Any) -> int:
    memory = getattr(entry, "memory", None)
    return memory.total if memory is not None else 0


def plan(model: str, need: int, detail: str, budget: int, loaded: list[Any],
         reserved: int, idle: Any) -> list[Any]:
    """The loaded entries to unload (idle ones, least recently used first) so that `need`
    fits; raises InsufficientMemory or MemoryBusy when it cannot fit."""
    if budget <= 0:
        return []
    if need > budget:
        raise InsufficientMemory(model, need, budget, detail)
    held = sum(estimate_of(e) for e in loaded) + reserved
    victims: list[Any] = []
    for entry in sorted((e for e in loaded if idle(e)), key=lambda e: e.last_used):
        if held + need <= budget:
            break
        victims.append(entry)
        held -= estimate_of(entry)
    if held + need > budget:
        holders = [e.stored.name for e in loaded if e not in victims and estimate_of(e)]
        raise MemoryBusy(model, need, budget, held, holders or ["a model being loaded"])
    return victims
