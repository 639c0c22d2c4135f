"""What the scheduler moves around: sequences, the slots they run in, and where outputs go.

Plain bookkeeping, no llama.cpp calls: the scheduler (scheduler.py) decodes, the slot table
(slots.py) decides which KV cells a sequence starts from.
"""

from __future__ import annotations

import math
import queue
from dataclasses import dataclass, field
from typing import Any, Protocol

from ...core.engine import GenerationJob


class Sink(Protocol):
    """Where a sequence's outputs go: Token, then GenerationEnd, or an exception."""

    def put(self, seq: Sequence, item: Any) -> None: ...

    def flush(self) -> None:
        """Called after every scheduler step: deliver what was put."""


class QueueSink:
    """In process: each sequence's consumer reads its own queue."""

    def put(self, seq: Sequence, item: Any) -> None:
        seq.queue.put(item)

    def flush(self) -> None:
        pass


class Sequence:
    """One generating sequence: its prompt, sampler and progress."""

    def __init__(self, job: GenerationJob, sampler: Any, key: Any = None):
        self.job = job
        self.sampler = sampler
        self.key = key
        self.preserve = frozenset(job.preserve)
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.cancelled = False
        self.slot: Slot | None = None
        self.prefill_pos = 0  # next prompt index to decode
        self.n_past = 0  # tokens in the KV cache for this sequence
        self.pending: int | None = None  # sampled token not yet decoded
        self.generated: list[int] = []
        self.n_generated = 0
        self.cached_tokens: int | None = None
        self.t_admitted = 0.0
        self.t_first = 0.0
        self.deadline = math.inf
        #: Another sequence prefilling the same prompt (a choice of the same request, n > 1):
        #: this one waits, then takes a copy of its cells and samples from its logits.
        self.leader: Sequence | None = None
        self.followers: list[Sequence] = []
        #: Prompt lookup state (speculative.py), made on the first draft.
        self.drafter: Any = None

    @property
    def prefilling(self) -> bool:
        return self.prefill_pos < len(self.job.prompt)

    @property
    def speculative(self) -> bool | None:
        """The request's choice: False opts out, None leaves it to the server."""
        return getattr(self.job.sampling, "speculative", None)


@dataclass
class Slot:
    """One llama.cpp sequence id and the tokens its KV cells hold."""

    seq_id: int
    cache: list[int] = field(default_factory=list)
    sequence: Sequence | None = None
    last_used: float = 0.0


def lcp(a: list[int], b: list[int]) -> int:
    """Length of the common prefix of two token lists."""
    n = min(len(a), len(b))
    if n and a[n - 1] == b[n - 1] and a[:n] == b[:n]:
        return n  # the common case for a cache hit: one C-speed comparison
    lo, hi = 0, n
    while lo < hi:  # binary search on slice equality: log(n) comparisons at C speed
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo
