"""The scheduler: one thread that owns a model's llama context (continuous batching).

Every step it builds one batch holding, for each generating sequence, its pending token and
any draft behind it (speculative.py), plus prompt chunks of newly admitted ones; decodes it
once and samples each sequence with its own sampler chain, as llama.cpp's server does. Which
KV cells a new sequence starts from (its slot's, another slot's, the prompt cache's) is the
slot table's business (slots.py).

Outputs (tokens, ends, errors) go to a sink: a queue per sequence when the model runs in the
server process, one message per step to the server when it runs in a runner process.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from concurrent.futures import Future
from typing import Any

import llama_cpp as L

from ...core.engine import EngineStats, GenerationEnd, Token
from ...core.errors import EngineFailure, Overloaded
from . import faults
from .prompt_cache import PromptCache
from .sampling import free_sampler, logprobs
from .sequence import QueueSink, Sequence, Sink
from .settings import EngineSettings
from .slots import Slots
from .speculative import Drafter, SpecStats, StepCost

__all__ = ["QueueSink", "Scheduler", "Sequence", "Sink"]

log = logging.getLogger(__name__)

#: At most this many rows of a step's batch go to drafts (and at most half the batch), so
#: prompts keep being read and the logits buffer stays small.
DRAFT_ROWS = 64


class Scheduler:
    def __init__(self, ctx: Any, vocab: Any, *, n_vocab: int, n_ctx: int, piece,
                 settings: EngineSettings, kv_tokens: int, embedder, compute, sink: Sink,
                 cache: PromptCache | None = None):
        self._ctx, self._vocab, self._n_vocab, self._n_ctx = ctx, vocab, n_vocab, n_ctx
        self._mem = L.llama_get_memory(ctx)
        self._piece = piece
        self._settings = settings
        self._kv_tokens = kv_tokens
        self._embedder = embedder
        self._compute = compute
        self._sink = sink
        self._batch = L.llama_batch_init(settings.n_batch, 0, 1)
        self.slots = Slots(ctx, settings.parallel, unified=settings.unified,
                           kv_tokens=kv_tokens, cache=cache)
        self._pending: list[Sequence] = []
        self._embed_jobs: list[tuple[list[list[int]], Future]] = []
        self._cv = threading.Condition()
        self._running = True
        self._active = 0
        #: Totals; written by the scheduler thread only, read by stats().
        self._totals = EngineStats()
        self.spec = SpecStats()
        self._step_cost = StepCost()
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
        cache = self.slots.cache.snapshot() if self.slots.cache is not None else None
        with self._cv:
            return dataclasses.replace(
                self._totals, requests_processing=len(self.slots.busy()),
                requests_deferred=len(self._pending),
                kv_cache_tokens=self.slots.cached_tokens(), kv_cache_size=self._kv_tokens,
                draft_tokens=self.spec.drafted, draft_accepted=self.spec.accepted,
                **({"prompt_cache_hits": cache.hits + cache.disk_hits,
                    "prompt_cache_restored_tokens": cache.restored_tokens,
                    "prompt_cache_bytes": cache.bytes, "prompt_cache_disk_bytes": cache.disk_bytes}
                   if cache else {}))

    def stop(self) -> None:
        """End the thread; the slots' cells go to the prompt cache (and its disk)."""
        with self._cv:
            self._running = False
            self._cv.notify()
        self._thread.join()
        try:
            self.slots.persist()
        except Exception:  # keeping the cache is a bonus; unloading must not fail
            log.exception("prompt cache: could not persist the slots")
        L.llama_batch_free(self._batch)

    # ---------------------------------------------------------------- the scheduler thread

    def _loop(self) -> None:
        try:
            while True:
                with self._cv:
                    while self._running and not (self._pending or self._embed_jobs
                                                 or self.slots.busy()):
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

    def _finish(self, seq: Sequence, item: Any) -> None:
        """End a sequence: free its slot and sampler, tell its consumer."""
        self.slots.detach(seq)
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
        for slot in self.slots.busy():
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
        overdue += [slot.sequence for slot in self.slots.busy()
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
        """Move waiting sequences into free slots, in order (see Slots.place)."""
        while self._pending:
            if not self.slots.place(self._pending[0]):
                return  # no free slot, or no room until a running sequence ends
            self._pending.pop(0)

    # ---------------------------------------------------------------- one step

    def _step(self) -> None:
        batch = self._batch
        n_batch = self._settings.n_batch
        n = 0

        def put(token: int, pos: int, seq_id: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = pos
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq_id
            batch.logits[n] = logits
            n += 1

        active = [s for s in self.slots.busy() if s.sequence.leader is None]
        generating = [s.sequence for s in active if s.sequence.pending is not None]
        budget = min(DRAFT_ROWS, n_batch // 2 - len(generating))
        decoding: list[tuple[Sequence, int, list[int]]] = []  # (sequence, first row, draft)
        rows = len(generating)
        for seq in generating:
            draft = self._draft(seq, budget, rows)
            budget -= len(draft)
            rows += len(draft)
            decoding.append((seq, n, draft))
            put(seq.pending, seq.n_past, seq.slot.seq_id, True)
            for i, tok in enumerate(draft):
                put(tok, seq.n_past + 1 + i, seq.slot.seq_id, True)
        prefill: list[tuple[Sequence, list[int], int | None]] = []  # (seq, chunk, last row)
        for slot in active:
            seq = slot.sequence
            if seq.pending is None and seq.prefilling and n < n_batch:
                chunk = seq.job.prompt[seq.prefill_pos: seq.prefill_pos + (n_batch - n)]
                last = None
                for i, tok in enumerate(chunk):
                    is_last = seq.prefill_pos + i == len(seq.job.prompt) - 1
                    put(tok, seq.n_past + i, slot.seq_id, is_last)
                    if is_last:
                        last = n - 1
                prefill.append((seq, chunk, last))
        if n == 0:
            return
        batch.n_tokens = n
        faults.before_decode(n)
        with self._compute:
            started = time.perf_counter()
            ret = L.llama_decode(self._ctx, batch)
        if ret != 0:
            self._recover_from_full_cache(ret)
            return
        self._totals.decodes += 1
        self._totals.busy_slots += len(active)
        for seq, chunk, _ in prefill:
            self._totals.prompt_tokens += len(chunk)
            seq.slot.cache.extend(chunk)
            seq.n_past += len(chunk)
            seq.prefill_pos += len(chunk)
        for seq, _, row in prefill:
            if row is not None:
                followers = self.slots.adopt(seq) if seq.followers else []
                for follower in followers:  # n > 1: the same logits, their own samplers
                    self._take(follower, self._sample(follower, row), row)
                self._take(seq, self._sample(seq, row), row)
        for seq, row, draft in decoding:
            self._verify(seq, row, draft)
        if not prefill:  # what a step really costs: the decode, and sampling every row
            self._step_cost.add(n, time.perf_counter() - started)

    def _draft(self, seq: Sequence, budget: int, rows: int) -> list[int]:
        """Prompt lookup tokens to verify behind `seq`'s pending token (see speculative.py)."""
        mode = self._settings.speculative
        choice = seq.speculative
        if choice is False or (choice is None and mode == "off"):
            return []
        limit = min(budget, seq.job.max_new_tokens - seq.n_generated - 1,
                    self._n_ctx - seq.n_past - 2)
        if limit <= 0:
            return []
        if seq.drafter is None:
            seq.drafter = Drafter(seq.job.prompt + seq.generated)
        else:
            seq.drafter.sync(seq.job.prompt, seq.generated)
        return seq.drafter.draft(limit, rows, self._step_cost,
                                 always=choice is True or mode == "on")

    def _verify(self, seq: Sequence, row: int, draft: list[int]) -> None:
        """Sample each decoded row in turn; keep drafted tokens while they equal the sample.
        The last sample (a mismatch, or one past the draft) is the next pending token."""
        slot, base = seq.slot, seq.n_past
        decoded = [seq.pending, *draft]
        seq.pending = None
        accepted = 0
        for i in range(len(decoded)):
            seq.n_past = base + i + 1
            token = self._sample(seq, row + i)
            if self._take(seq, token, row + i) or i == len(draft) or token != draft[i]:
                break
            accepted += 1
        valid = 1 + accepted
        slot.cache.extend(decoded[:valid])
        if valid < len(decoded):
            L.llama_memory_seq_rm(self._mem, slot.seq_id, base + valid, -1)
        if draft:
            seq.drafter.record(len(draft), accepted)
            self.spec.drafted += len(draft)
            self.spec.accepted += accepted
            self.spec.rounds += 1

    def _sample(self, seq: Sequence, row: int) -> int:
        return L.llama_sampler_sample(seq.sampler, self._ctx, row)

    def _take(self, seq: Sequence, token: int, row: int) -> bool:
        """Deliver a sampled token; True when it ended the sequence."""
        if not seq.t_first:
            seq.t_first = time.monotonic()
        if L.llama_vocab_is_eog(self._vocab, token):
            self._end(seq, "stop")
            return True
        logprob = logprobs(self._ctx, row, token, seq.job.sampling.logprobs, self._n_vocab,
                           self._piece)
        seq.n_generated += 1
        seq.generated.append(token)
        piece = self._piece(token, special=token in seq.preserve)
        self._sink.put(seq, Token(token, piece, logprob))
        if seq.n_generated >= seq.job.max_new_tokens or seq.n_past + 1 >= self._n_ctx:
            self._end(seq, "length")
            return True
        seq.pending = token
        return False

    def _recover_from_full_cache(self, ret: int) -> None:
        """The KV cache has no room for this step's batch (llama_decode left it unchanged).

        First forget the least recently used idle slot's cached prefix; failing that, preempt
        the newest running sequence: its cells go to the prompt cache, and it is queued again
        at the front with the tokens it has generated, to be restored (or re-prefilled) when
        there is room (nothing is lost).
        """
        if ret != 1:
            raise EngineFailure(f"llama_decode failed with code {ret}")
        if self.slots.evict_idle():
            return
        running = [s.sequence for s in self.slots.busy()]
        victim = max(running, key=lambda s: s.t_admitted)
        slot = victim.slot
        self.slots.detach(victim)
        self.slots.clear(slot)
        slot.sequence, victim.slot = None, None
        if len(running) == 1:  # alone and still no room: the pool is smaller than its context
            self._end(victim, "length")
            return
        log.info("KV cache full: preempting a sequence (%d tokens) until there is room",
                 len(victim.job.prompt) + len(victim.generated))
        victim.job = dataclasses.replace(victim.job, prompt=victim.job.prompt + victim.generated)
        victim.generated = []
        victim.pending = None
        victim.drafter = None
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
        for seq in waiting + [s.sequence for s in self.slots.busy()]:
            self._finish(seq, exc)
        for _, future in embed_jobs:
            future.set_exception(exc)
        self._sink.flush()
