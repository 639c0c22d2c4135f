"""The scheduler: one thread that owns a model's llama context (continuous batching).

Every step it builds one batch holding one token for each generating sequence plus prompt
chunks of newly admitted ones, decodes it once and samples each sequence with its own sampler
chain, as llama.cpp's server does. Each slot remembers the tokens in its part of the KV cache,
so a new request that shares a prefix with a slot's previous request only prefills the rest.

Outputs (tokens, ends, errors) go to a sink: a queue per sequence when the model runs in the
server process, one message per step to the server when it runs in a runner process.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import llama_cpp as L

from ...core.errors import EngineFailure, Overloaded
from ..base import EngineStats, GenerationEnd, GenerationJob, Token
from . import faults
from .sampling import free_sampler, logprobs
from .settings import EngineSettings

log = logging.getLogger(__name__)


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
        self.slot: _Slot | None = None
        self.prefill_pos = 0  # next prompt index to decode
        self.n_past = 0  # tokens in the KV cache for this sequence
        self.pending: int | None = None  # sampled token not yet decoded
        self.generated: list[int] = []
        self.n_generated = 0
        self.cached_tokens: int | None = None
        self.t_admitted = 0.0
        self.t_first = 0.0
        self.deadline = math.inf

    @property
    def prefilling(self) -> bool:
        return self.prefill_pos < len(self.job.prompt)


@dataclass
class _Slot:
    seq_id: int
    cache: list[int] = field(default_factory=list)
    sequence: Sequence | None = None
    last_used: float = 0.0


def _lcp(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Scheduler:
    def __init__(self, ctx: Any, vocab: Any, *, n_vocab: int, n_ctx: int, piece,
                 settings: EngineSettings, kv_tokens: int, embedder, compute, sink: Sink):
        self._ctx, self._vocab, self._n_vocab, self._n_ctx = ctx, vocab, n_vocab, n_ctx
        self._piece = piece
        self._settings = settings
        self._kv_tokens = kv_tokens
        self._embedder = embedder
        self._compute = compute
        self._sink = sink
        self._batch = L.llama_batch_init(settings.n_batch, 0, 1)
        self._slots = [_Slot(i) for i in range(settings.parallel)]
        self._pending: list[Sequence] = []
        self._embed_jobs: list[tuple[list[list[int]], Future]] = []
        self._cv = threading.Condition()
        self._running = True
        self._active = 0
        #: Totals; written by the scheduler thread only, read by stats().
        self._totals = EngineStats()
        self._thread = threading.Thread(target=self._loop, name="llama-scheduler", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ requests from other threads

    def submit(self, seq: Sequence) -> None:
        if self._settings.request_timeout > 0:
            seq.deadline = time.monotonic() + self._settings.request_timeout
        with self._cv:
            if not self._running:
                raise EngineFailure("the model was unloaded")
            if len(self._pending) >= self._settings.max_queue:
                raise Overloaded(f"{len(self._pending)} requests are already waiting for this "
                                 "model; retry later")
            self._pending.append(seq)
            self._active += 1
            self._cv.notify()

    def cancel(self, seq: Sequence) -> None:
        with self._cv:
            seq.cancelled = True
            self._cv.notify()

    def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        future: Future = Future()
        with self._cv:
            if not self._running:
                raise EngineFailure("the model was unloaded")
            self._embed_jobs.append((inputs, future))
            self._active += 1
            self._cv.notify()
        return future.result()

    def busy(self) -> bool:
        with self._cv:
            return self._active > 0

    def stats(self) -> EngineStats:
        with self._cv:
            busy = self._busy_slots()
            return dataclasses.replace(
                self._totals, requests_processing=len(busy),
                requests_deferred=len(self._pending),
                kv_cache_tokens=sum(len(slot.cache) for slot in self._slots),
                kv_cache_size=self._kv_tokens)

    def stop(self) -> None:
        with self._cv:
            self._running = False
            self._cv.notify()
        self._thread.join()
        L.llama_batch_free(self._batch)

    # ---------------------------------------------------------------- the scheduler thread

    def _loop(self) -> None:
        try:
            while True:
                with self._cv:
                    while self._running and not (self._pending or self._embed_jobs
                                                 or self._busy_slots()):
                        self._cv.wait()
                    if not self._running:
                        break
                    embed_jobs, self._embed_jobs = self._embed_jobs, []
                    self._reap_cancelled()
                    self._expire_overdue()
                    self._admit()
                for inputs, future in embed_jobs:
                    self._run_embedding(inputs, future)
                self._step()
                self._sink.flush()
        except Exception as exc:  # never leave a client waiting forever
            log.exception("scheduler failed")
            self._fail_all(EngineFailure(f"the engine failed: {exc}"))
            return
        self._fail_all(EngineFailure("the model was unloaded"))

    def _busy_slots(self) -> list[_Slot]:
        return [s for s in self._slots if s.sequence is not None]

    def _finish(self, seq: Sequence, item: Any) -> None:
        """End a sequence: free its slot and sampler, tell its consumer."""
        if seq.slot is not None:
            seq.slot.sequence = None
            seq.slot.last_used = time.monotonic()
            seq.slot = None
        free_sampler(seq.sampler)
        self._sink.put(seq, item)
        with self._cv:
            self._active -= 1

    def _end(self, seq: Sequence, reason: str) -> None:
        now = time.monotonic()
        first = seq.t_first or now
        self._totals.prompt_seconds += first - seq.t_admitted
        self._totals.predicted_seconds += now - first
        self._totals.predicted_tokens += seq.n_generated
        self._finish(seq, GenerationEnd(reason, seq.n_generated, seq.cached_tokens or 0,
                                        first - seq.t_admitted, now - first))

    def _reap_cancelled(self) -> None:
        for seq in [s for s in self._pending if s.cancelled]:
            self._pending.remove(seq)
            self._finish(seq, GenerationEnd("cancelled", seq.n_generated, 0, 0.0, 0.0))
        for slot in self._busy_slots():
            if slot.sequence.cancelled:
                self._end(slot.sequence, "cancelled")

    def _expire_overdue(self) -> None:
        """Enforce the request timeout. A sequence that has generated text ends as if
        max_tokens ran out, keeping it; one that has not (still waiting for a slot, or its
        prompt still being read) is refused as overloaded, which clients retry later."""
        if self._settings.request_timeout <= 0:
            return
        now = time.monotonic()
        overdue = [s for s in self._pending if s.deadline <= now]
        overdue += [slot.sequence for slot in self._busy_slots()
                    if slot.sequence.deadline <= now]
        for seq in overdue:
            if seq in self._pending:
                self._pending.remove(seq)
            if seq.n_generated:
                log.warning("request timeout (%g s): ending a sequence after %d tokens",
                            self._settings.request_timeout, seq.n_generated)
                self._end(seq, "timeout")
            else:
                self._finish(seq, Overloaded(
                    f"the request timeout ({self._settings.request_timeout:g} s) ran out "
                    "before the first token; the server is busy, retry later"))

    def _admit(self) -> None:
        """Move waiting sequences into free slots, reusing cached prompt prefixes.

        The target is a free slot whose cached tokens are all a prefix of the prompt (nothing
        is lost by reusing it), else the least recently used free slot. If another slot (busy
        or not) shares a longer prefix, its KV cells are copied over (see _copy_prefix), so a
        shared system prompt is prefilled once for everybody.
        """
        mem = L.llama_get_memory(self._ctx)
        while self._pending:
            free = [s for s in self._slots if s.sequence is None]
            if not free:
                return
            seq = self._pending.pop(0)
            prompt = seq.job.prompt
            lcps = {s.seq_id: _lcp(s.cache, prompt) for s in self._slots}
            slot = max(free, key=lambda s: (lcps[s.seq_id] == len(s.cache), lcps[s.seq_id],
                                            -s.last_used))
            source = max(self._slots, key=lambda s: lcps[s.seq_id])
            reuse = max(lcps[slot.seq_id], lcps[source.seq_id])
            keep = min(reuse, len(prompt) - 1)
            if not self._make_room(len(prompt) - keep + 1, spare=(slot, source)):
                self._pending.insert(0, seq)  # wait until a running sequence ends
                return
            if source is not slot and lcps[source.seq_id] > lcps[slot.seq_id]:
                self._copy_prefix(source, slot, reuse)
                slot.cache = prompt[:reuse]
            L.llama_memory_seq_rm(mem, slot.seq_id, keep, -1)
            del slot.cache[keep:]
            slot.sequence, seq.slot = seq, slot
            seq.prefill_pos = seq.n_past = keep
            if seq.cached_tokens is None:  # a preempted sequence keeps its first figure
                seq.cached_tokens = keep
                seq.t_admitted = time.monotonic()

    def _copy_prefix(self, source: _Slot, target: _Slot, length: int) -> None:
        """Give `target` the first `length` cached tokens of `source`. In a unified cache that
        only tags cells; with a cache per slot, llama.cpp copies whole sequences between them
        (the copy happens at the next decode), so copy it all and cut the rest."""
        mem = L.llama_get_memory(self._ctx)
        L.llama_memory_seq_rm(mem, target.seq_id, 0, -1)
        if self._settings.unified:
            L.llama_memory_seq_cp(mem, source.seq_id, target.seq_id, 0, length)
        else:
            L.llama_memory_seq_cp(mem, source.seq_id, target.seq_id, 0, -1)
            L.llama_memory_seq_rm(mem, target.seq_id, length, -1)

    def _own_cells(self, slot: _Slot) -> int:
        """Cached tokens of `slot` that no other slot's cached prefix shares."""
        shared = max((_lcp(slot.cache, o.cache) for o in self._slots if o is not slot), default=0)
        return len(slot.cache) - shared

    def _make_room(self, needed: int, spare: tuple[_Slot, ...]) -> bool:
        """Free KV cells for `needed` more tokens by forgetting idle slots' cached prefixes
        (least recently used first, never those in `spare`). False when only running
        sequences hold the cells; a sequence with the cache to itself is always admitted."""
        if not self._settings.unified:
            return True  # each slot has a context's worth of cells of its own
        mem = L.llama_get_memory(self._ctx)
        # Counting every slot's tokens overcounts cells shared by copied prefixes: this errs
        # on the side of admitting less.
        used = sum(len(s.cache) for s in self._slots)
        idle = sorted((s for s in self._slots if s.sequence is None and s.cache
                       and s not in spare), key=lambda s: s.last_used)
        while used + needed > self._kv_tokens and idle:
            slot = idle.pop(0)
            used -= len(slot.cache)
            L.llama_memory_seq_rm(mem, slot.seq_id, 0, -1)
            slot.cache.clear()
        return used + needed <= self._kv_tokens or not self._busy_slots()

    def _step(self) -> None:
        batch = self._batch
        n_batch = self._settings.n_batch
        outputs: list[tuple[Sequence, int]] = []  # (sequence, batch row) to sample
        added: list[tuple[Sequence, list[int]]] = []
        n = 0

        def put(token: int, pos: int, seq_id: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = pos
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq_id
            batch.logits[n] = logits
            n += 1

        active = self._busy_slots()
        for slot in active:
            seq = slot.sequence
            if seq.pending is not None:
                put(seq.pending, seq.n_past, slot.seq_id, True)
                outputs.append((seq, n - 1))
                added.append((seq, [seq.pending]))
        for slot in active:
            seq = slot.sequence
            if seq.pending is None and seq.prefilling and n < n_batch:
                chunk = seq.job.prompt[seq.prefill_pos: seq.prefill_pos + (n_batch - n)]
                for i, tok in enumerate(chunk):
                    last = seq.prefill_pos + i == len(seq.job.prompt) - 1
                    put(tok, seq.n_past + i, slot.seq_id, last)
                    if last:
                        outputs.append((seq, n - 1))
                added.append((seq, chunk))
        if n == 0:
            return
        batch.n_tokens = n
        faults.before_decode(n)
        with self._compute:
            ret = L.llama_decode(self._ctx, batch)
        if ret != 0:
            self._recover_from_full_cache(ret, added)
            return
        self._totals.decodes += 1
        self._totals.busy_slots += len(active)
        for seq, tokens in added:
            if seq.pending is None:
                self._totals.prompt_tokens += len(tokens)
            seq.slot.cache.extend(tokens)
            seq.n_past += len(tokens)
            if seq.pending is None:
                seq.prefill_pos += len(tokens)
            seq.pending = None
        for seq, row in outputs:
            self._sample(seq, row)

    def _sample(self, seq: Sequence, row: int) -> None:
        token = L.llama_sampler_sample(seq.sampler, self._ctx, row)
        now = time.monotonic()
        if not seq.t_first:
            seq.t_first = now
        if L.llama_vocab_is_eog(self._vocab, token):
            self._end(seq, "stop")
            return
        logprob = logprobs(self._ctx, row, token, seq.job.sampling.logprobs, self._n_vocab,
                           self._piece)
        seq.n_generated += 1
        seq.generated.append(token)
        piece = self._piece(token, special=token in seq.preserve)
        self._sink.put(seq, Token(token, piece, logprob))
        if seq.n_generated >= seq.job.max_new_tokens or seq.n_past + 1 >= self._n_ctx:
            self._end(seq, "length")
        else:
            seq.pending = token

    def _recover_from_full_cache(self, ret: int, added: list[tuple[Sequence, list[int]]]) -> None:
        """The KV cache has no room for this step's batch (llama_decode left it unchanged).

        First forget the least recently used idle slot's cached prefix; failing that, preempt
        the newest running sequence: free its cells and queue it again at the front with the
        tokens it has generated, to be re-prefilled when there is room (nothing is lost).
        """
        if ret != 1:
            raise EngineFailure(f"llama_decode failed with code {ret}")
        mem = L.llama_get_memory(self._ctx)
        # Only an idle cache with cells of its own frees anything: a prefix copied from (or to)
        # another slot shares that slot's cells.
        idle = [s for s in self._slots if s.sequence is None and self._own_cells(s)]
        if idle:
            slot = min(idle, key=lambda s: s.last_used)
            L.llama_memory_seq_rm(mem, slot.seq_id, 0, -1)
            slot.cache.clear()
            return
        running = [s.sequence for s in self._busy_slots()]
        victim = max(running, key=lambda s: s.t_admitted)
        slot = victim.slot
        L.llama_memory_seq_rm(mem, slot.seq_id, 0, -1)
        slot.cache.clear()
        slot.sequence, victim.slot = None, None
        if len(running) == 1:  # alone and still no room: the pool is smaller than its context
            self._end(victim, "length")
            return
        log.info("KV cache full: preempting a sequence (%d tokens) until there is room",
                 len(victim.job.prompt) + len(victim.generated))
        victim.job = dataclasses.replace(victim.job, prompt=victim.job.prompt + victim.generated)
        victim.generated = []
        victim.pending = None
        with self._cv:
            self._pending.insert(0, victim)

    def _run_embedding(self, inputs: list[list[int]], future: Future) -> None:
        try:
            future.set_result(self._embedder.embed_all(inputs))
        except Exception as exc:
            future.set_exception(exc)
        finally:
            with self._cv:
                self._active -= 1

    def _fail_all(self, exc: Exception) -> None:
        with self._cv:
            waiting = list(self._pending)
            self._pending.clear()
            embed_jobs, self._embed_jobs = self._embed_jobs, []
        for seq in waiting + [s.sequence for s in self._busy_slots()]:
            self._finish(seq, exc)
        for _, future in embed_jobs:
            future.set_exception(exc)
        self._sink.flush()
