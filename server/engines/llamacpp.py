"""The llama.cpp engine: one model in process through llama-cpp-python's low-level API.

One scheduler thread owns the llama context. Every step it builds one batch holding one token
for each generating sequence plus prompt chunks of newly admitted ones, decodes it once and
samples each sequence with its own sampler chain (continuous batching, as llama.cpp's server
does). Each slot remembers the tokens in its part of the KV cache, so a new request that shares
a prefix with a slot's previous request only prefills the rest. HTTP threads talk to the
scheduler through queues; nothing else touches the context.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import logging
import math
import queue
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import llama_cpp as L
import numpy as np
from llama_cpp.llama_grammar import json_schema_to_gbnf

from ..core.errors import (
    ContextTooLong,
    EngineFailure,
    InvalidRequest,
    ModelLoadFailed,
    Overloaded,
)
from .base import EngineStats, GenerationEnd, GenerationJob, ModelInfo, Token

log = logging.getLogger(__name__)

#: Serializes compute across every model in the process: two contexts decoding at once would
#: put 2 x threads on the cores, and oversubscribed llama.cpp threads collapse ~50x.
COMPUTE_LOCK = threading.Lock()

_backend_ready = False
_backend_lock = threading.Lock()


#: Per thread: llama.cpp's error lines while a model loads, to say why a load failed.
_load_errors = threading.local()


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _quiet_log(level, text, user_data):  # pragma: no cover - called from C
    if level == 4 and text:  # GGML_LOG_LEVEL_ERROR
        line = text.decode(errors="replace").rstrip()
        log.error("llama.cpp: %s", line)
        lines = getattr(_load_errors, "lines", None)
        if lines is not None:
            lines.append(line)


def _first_cause(lines: list[str]) -> str:
    """The line that says what is wrong, not the "failed to load" lines around it."""
    for line in lines:
        cause = line.split("error loading model: ", 1)[1] if "error loading model: " in line \
            else line.split(": ", 1)[-1]
        if "failed to" not in cause:
            return cause
    return ""


def _load_model_file(path: str) -> Any:
    """llama_model_load_from_file, with llama.cpp's own words when it refuses the file."""
    _load_errors.lines = []
    try:
        model = L.llama_model_load_from_file(path.encode(), L.llama_model_default_params())
        reasons = _load_errors.lines
    finally:
        _load_errors.lines = None
    if not model:
        detail = _first_cause(reasons)
        raise ModelLoadFailed(path, "llama.cpp rejected its file"
                              + (f" ({detail})" if detail else ""))
    return model


def _init_backend() -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            L.llama_backend_init()
            L.llama_log_set(_quiet_log, ctypes.c_void_p())
            _backend_ready = True


@dataclass
class EngineSettings:
    context_size: int  # per sequence; 0 = the model's training context
    parallel: int
    threads: int
    n_batch: int = 512
    #: Sequences waiting for a slot before new ones are refused as overloaded.
    max_queue: int = 64
    #: KV cells shared by all slots; 0 = context_size x parallel (every slot full at once).
    kv_tokens: int = 0
    #: Seconds a sequence may wait plus generate; 0 = no limit.
    request_timeout: float = 0.0
    #: One KV cache shared by all slots (prefix copies are free, but every sequence's
    #: attention spans every slot's cells) instead of one per slot. A kv_tokens pool implies it.
    kv_unified: bool = False

    @property
    def unified(self) -> bool:
        return self.kv_unified or self.kv_tokens > 0


@dataclass
class _Prepared:
    job: GenerationJob
    grammar: str | None


class _Sequence:
    """One generating sequence: its prompt, sampler, progress and output queue."""

    def __init__(self, prepared: _Prepared, sampler: Any):
        self.job = prepared.job
        self.sampler = sampler
        self.out: queue.SimpleQueue = queue.SimpleQueue()
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
    sequence: _Sequence | None = None
    last_used: float = 0.0


class _Stream:
    """Iterator over one sequence's tokens; closing it cancels the sequence."""

    def __init__(self, model: LlamaCppModel, seq: _Sequence):
        self._model = model
        self._seq = seq
        self._done = False

    def __iter__(self) -> Iterator[Token | GenerationEnd]:
        try:
            while True:
                item = self._seq.out.get()
                if isinstance(item, BaseException):
                    self._done = True
                    raise item
                yield item
                if isinstance(item, GenerationEnd):
                    self._done = True
                    return
        finally:
            self.close()

    def cancel(self) -> None:
        if not self._done:
            self._model._cancel(self._seq)

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._model._cancel(self._seq)


#: Bounded integers with at most this many values are written into the grammar as an enum.
_ENUM_LIMIT = 256


def _enumerate_small_ranges(schema: Any) -> Any:
    """llama-cpp-python's schema-to-grammar converter ignores minimum/maximum; an integer whose
    bounds allow few values becomes an enum of them, so its output validates (ages, ratings,
    percentages). Wider ranges stay as they are."""
    if isinstance(schema, list):
        return [_enumerate_small_ranges(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _enumerate_small_ranges(value) for key, value in schema.items()}
    if out.get("type") != "integer":
        return out
    lo, hi = out.get("minimum"), out.get("maximum")
    if isinstance(out.get("exclusiveMinimum"), int | float):
        lo = math.floor(out["exclusiveMinimum"]) + 1
    if isinstance(out.get("exclusiveMaximum"), int | float):
        hi = math.ceil(out["exclusiveMaximum"]) - 1
    if isinstance(lo, int | float) and isinstance(hi, int | float):
        lo, hi = math.ceil(lo), math.floor(hi)
        if 0 <= hi - lo < _ENUM_LIMIT:
            return {"enum": list(range(lo, hi + 1))}
    return out


def _lcp(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class LlamaCppModel:
    """A loaded GGUF model with its scheduler thread."""

    def __init__(self, path: str, settings: EngineSettings):
        _init_backend()
        self._settings = settings
        self._model = _load_model_file(path)
        self._vocab = L.llama_model_get_vocab(self._model)
        self._pieces: dict[int, bytes] = {}
        self.n_vocab = L.llama_vocab_n_tokens(self._vocab)
        n_ctx_train = L.llama_model_n_ctx_train(self._model)
        n_ctx = settings.context_size or n_ctx_train
        self.info = self._read_info(n_ctx, n_ctx_train)
        self._kv_tokens = (max(settings.kv_tokens, n_ctx) if settings.kv_tokens
                           else n_ctx * settings.parallel)
        self._ctx = self._new_context(self._kv_tokens, settings.parallel, embeddings=False,
                                      unified=settings.unified)
        self._embed_ctx = None
        self._batch = L.llama_batch_init(settings.n_batch, 0, 1)
        self._slots = [_Slot(i) for i in range(settings.parallel)]
        self._pending: list[_Sequence] = []
        self._embed_jobs: list[tuple[list[list[int]], Future]] = []
        self._cv = threading.Condition()
        self._running = True
        self._active = 0
        #: Totals; written by the scheduler thread only, read by stats().
        self._totals = EngineStats()
        self._thread = threading.Thread(target=self._loop, name="llama-scheduler", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- model facts, tokenizer

    def _meta(self) -> dict[str, str]:
        buf = ctypes.create_string_buffer(1 << 16)
        out = {}
        for i in range(L.llama_model_meta_count(self._model)):
            L.llama_model_meta_key_by_index(self._model, i, buf, len(buf))
            key = buf.value.decode(errors="replace")
            if key.startswith("tokenizer.ggml.") and key.endswith(("tokens", "merges", "scores", "token_type")):
                continue
            L.llama_model_meta_val_str_by_index(self._model, i, buf, len(buf))
            out[key] = buf.value.decode(errors="replace")
        return out

    def _read_info(self, n_ctx: int, n_ctx_train: int) -> ModelInfo:
        meta = self._meta()
        template = L.llama_model_chat_template(self._model, None)
        bos = L.llama_vocab_bos(self._vocab)
        eos = L.llama_vocab_eos(self._vocab)
        return ModelInfo(
            architecture=meta.get("general.architecture", "unknown"),
            chat_template=template.decode() if template else None,
            bos_token=self._piece(bos, special=True).decode(errors="replace") if bos >= 0 else "",
            eos_token=self._piece(eos, special=True).decode(errors="replace") if eos >= 0 else "",
            add_bos=bool(L.llama_vocab_get_add_bos(self._vocab)),
            n_ctx=n_ctx,
            n_ctx_train=n_ctx_train,
            n_embd=L.llama_model_n_embd(self._model),
            n_params=L.llama_model_n_params(self._model),
            size_bytes=L.llama_model_size(self._model),
            n_vocab=self.n_vocab,
            metadata=meta,
        )

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode()
        n_max = len(data) + 8
        arr = (L.llama_token * n_max)()
        n = L.llama_tokenize(self._vocab, data, len(data), arr, n_max, add_special, parse_special)
        if n < 0:
            n_max = -n
            arr = (L.llama_token * n_max)()
            n = L.llama_tokenize(self._vocab, data, len(data), arr, n_max, add_special, parse_special)
        return list(arr[:n])

    def _piece(self, token: int, special: bool = False) -> bytes:
        """A token's bytes. Called for every generated token (and logprob alternative), so
        ordinary pieces are memoised: they never change for a vocabulary."""
        if not special:
            piece = self._pieces.get(token)
            if piece is None:
                piece = self._pieces[token] = self._token_to_piece(token, False)
            return piece
        return self._token_to_piece(token, True)

    def _token_to_piece(self, token: int, special: bool) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = L.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = L.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def detokenize(self, tokens: list[int]) -> str:
        return b"".join(self._piece(t) for t in tokens).decode(errors="replace")

    def _new_context(self, n_ctx: int, n_seq: int, embeddings: bool, unified: bool = True):
        params = L.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_ctx if embeddings else self._settings.n_batch
        params.n_ubatch = params.n_batch
        params.n_seq_max = n_seq
        params.n_threads = self._settings.threads
        params.n_threads_batch = self._settings.threads
        params.kv_unified = unified
        params.no_perf = True
        if embeddings:
            params.embeddings = True
            params.pooling_type = L.LLAMA_POOLING_TYPE_MEAN
        ctx = L.llama_init_from_model(self._model, params)
        if not ctx:
            raise EngineFailure("llama.cpp could not create a context (out of memory?)")
        return ctx

    # ---------------------------------------------------------------- requests from HTTP threads

    def prepare(self, job: GenerationJob) -> _Prepared:
        grammar = job.grammar
        if grammar is None and job.json_schema is not None:
            try:
                grammar = json_schema_to_gbnf(json.dumps(_enumerate_small_ranges(job.json_schema)))
            except Exception as exc:  # the converter raises plain exceptions on bad schemas
                raise InvalidRequest(f"unsupported JSON schema: {exc}", param="response_format") from exc
        if len(job.prompt) >= self.info.n_ctx:
            raise ContextTooLong(len(job.prompt), self.info.n_ctx)
        return _Prepared(job, grammar)

    def _make_sampler(self, prepared: _Prepared):
        s = prepared.job.sampling
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        add = lambda smpl: L.llama_sampler_chain_add(chain, smpl)  # noqa: E731
        if s.logit_bias:
            biases = (L.llama_logit_bias * len(s.logit_bias))()
            for i, (tok, bias) in enumerate(s.logit_bias.items()):
                biases[i].token, biases[i].bias = tok, bias
            add(L.llama_sampler_init_logit_bias(self.n_vocab, len(s.logit_bias), biases))
        if s.repeat_penalty != 1.0 or s.presence_penalty or s.frequency_penalty:
            add(L.llama_sampler_init_penalties(self.n_vocab, s.repeat_last_n, s.repeat_penalty,
                                               s.frequency_penalty, s.presence_penalty))
        if prepared.grammar is not None:
            grammar = L.llama_sampler_init_grammar(self._vocab, prepared.grammar.encode(), b"root")
            if not grammar:
                L.llama_sampler_free(chain)
                raise InvalidRequest("the JSON schema could not be turned into a grammar",
                                     param="response_format")
            add(grammar)
        if s.temperature <= 0:
            add(L.llama_sampler_init_greedy())
        else:
            if s.top_k > 0:
                add(L.llama_sampler_init_top_k(s.top_k))
            if s.top_p < 1.0:
                add(L.llama_sampler_init_top_p(s.top_p, 1))
            if s.min_p > 0:
                add(L.llama_sampler_init_min_p(s.min_p, 1))
            add(L.llama_sampler_init_temp(s.temperature))
            seed = s.seed if s.seed is not None else random.getrandbits(32)
            add(L.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain

    def generate(self, prepared: _Prepared) -> _Stream:
        with self._cv:
            if len(self._pending) >= self._settings.max_queue:
                raise Overloaded(f"{len(self._pending)} requests are already waiting for this "
                                 "model; retry later")
        seq = _Sequence(prepared, self._make_sampler(prepared))
        if self._settings.request_timeout > 0:
            seq.deadline = time.monotonic() + self._settings.request_timeout
        with self._cv:
            if not self._running:
                L.llama_sampler_free(seq.sampler)
                raise EngineFailure("the model was unloaded")
            self._pending.append(seq)
            self._active += 1
            self._cv.notify()
        return _Stream(self, seq)

    def _cancel(self, seq: _Sequence) -> None:
        with self._cv:
            seq.cancelled = True
            self._cv.notify()

    def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        for tokens in inputs:
            if len(tokens) > self.info.n_ctx:
                raise ContextTooLong(len(tokens), self.info.n_ctx)
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

    def unload(self) -> None:
        with self._cv:
            self._running = False
            self._cv.notify()
        self._thread.join()
        L.llama_batch_free(self._batch)
        if self._embed_ctx:
            L.llama_free(self._embed_ctx)
        L.llama_free(self._ctx)
        L.llama_model_free(self._model)

    # ---------------------------------------------------------------- the scheduler thread

    def _loop(self) -> None:
        try:
            while True:
                with self._cv:
                    while self._running and not (self._pending or self._embed_jobs or self._busy_slots()):
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
        except Exception as exc:  # never leave a client waiting forever
            log.exception("scheduler failed")
            self._fail_all(EngineFailure(f"the engine failed: {exc}"))
            return
        self._fail_all(EngineFailure("the model was unloaded"))

    def _busy_slots(self) -> list[_Slot]:
        return [s for s in self._slots if s.sequence is not None]

    def _finish(self, seq: _Sequence, item: Any) -> None:
        """End a sequence: free its slot and sampler, tell its consumer."""
        if seq.slot is not None:
            seq.slot.sequence = None
            seq.slot.last_used = time.monotonic()
            seq.slot = None
        L.llama_sampler_free(seq.sampler)
        seq.out.put(item)
        with self._cv:
            self._active -= 1

    def _end(self, seq: _Sequence, reason: str) -> None:
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
        outputs: list[tuple[_Sequence, int]] = []  # (sequence, batch row) to sample
        added: list[tuple[_Sequence, list[int]]] = []
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
        with COMPUTE_LOCK:
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

    def _sample(self, seq: _Sequence, row: int) -> None:
        token = L.llama_sampler_sample(seq.sampler, self._ctx, row)
        now = time.monotonic()
        if not seq.t_first:
            seq.t_first = now
        if L.llama_vocab_is_eog(self._vocab, token):
            self._end(seq, "stop")
            return
        logprob = self._logprobs(row, token, seq.job.sampling.logprobs)
        seq.n_generated += 1
        seq.generated.append(token)
        # Control tokens come out as their text: chat formats are made of them (gpt-oss's
        # <|channel|>, Kimi's and DeepSeek's tool-call markers); the core parses them.
        seq.out.put(Token(token, self._piece(token, special=True), logprob))
        if seq.n_generated >= seq.job.max_new_tokens or seq.n_past + 1 >= self.info.n_ctx:
            self._end(seq, "length")
        else:
            seq.pending = token

    def _logprobs(self, row: int, token: int, k: int | None):
        if k is None:
            return None
        ptr = L.llama_get_logits_ith(self._ctx, row)
        logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float64)
        m = logits.max()
        logz = m + np.log(np.exp(logits - m).sum())
        top = []
        if k > 0:
            ids = np.argpartition(-logits, k)[:k]
            ids = ids[np.argsort(-logits[ids])]
            top = [(self._piece(int(i)), float(logits[i] - logz)) for i in ids]
        return float(logits[token] - logz), top

    def _recover_from_full_cache(self, ret: int, added: list[tuple[_Sequence, list[int]]]) -> None:
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
            if self._embed_ctx is None:
                self._embed_ctx = self._new_context(self.info.n_ctx, self._settings.parallel,
                                                    embeddings=True)
            future.set_result(self._embed_all(inputs))
        except Exception as exc:
            future.set_exception(exc)
        finally:
            with self._cv:
                self._active -= 1

    def _embed_all(self, inputs: list[list[int]]) -> list[list[float]]:
        """Pack inputs into batches (one sequence each), decode each batch once."""
        ctx = self._embed_ctx
        mem = L.llama_get_memory(ctx)
        n_max, n_seq = self.info.n_ctx, self._settings.parallel
        results: list[list[float]] = []
        i = 0
        while i < len(inputs):
            group: list[list[int]] = []
            total = 0
            while i < len(inputs) and len(group) < n_seq and total + len(inputs[i]) <= n_max:
                group.append(inputs[i])
                total += len(inputs[i])
                i += 1
            batch = L.llama_batch_init(total, 0, 1)
            try:
                k = 0
                for s, tokens in enumerate(group):
                    for pos, tok in enumerate(tokens):
                        batch.token[k], batch.pos[k], batch.n_seq_id[k] = tok, pos, 1
                        batch.seq_id[k][0] = s
                        batch.logits[k] = True
                        k += 1
                batch.n_tokens = k
                L.llama_memory_clear(mem, True)
                with COMPUTE_LOCK:
                    ret = L.llama_decode(ctx, batch)
                if ret != 0:
                    raise EngineFailure(f"llama_decode failed with {ret} while embedding")
                for s in range(len(group)):
                    ptr = L.llama_get_embeddings_seq(ctx, s)
                    results.append(np.ctypeslib.as_array(ptr, shape=(self.info.n_embd,)).tolist())
            finally:
                L.llama_batch_free(batch)
        return results

    def _fail_all(self, exc: Exception) -> None:
        with self._cv:
            waiting = list(self._pending)
            self._pending.clear()
            embed_jobs, self._embed_jobs = self._embed_jobs, []
        for seq in waiting + [s.sequence for s in self._busy_slots()]:
            self._finish(seq, exc)
        for _, future in embed_jobs:
            future.set_exception(exc)


class LlamaCppEngine:
    """Loads GGUF files as LlamaCppModel instances."""

    name = "llama.cpp"

    def __init__(self, settings: EngineSettings):
        self.settings = settings

    def load(self, path: str, context_size: int | None = None,
             **overrides: int) -> LlamaCppModel:
        """`overrides` (parallel, threads, n_batch) come from a model's configured flags."""
        settings = dataclasses.replace(self.settings, **overrides)
        if context_size:
            settings = dataclasses.replace(settings, context_size=context_size)
        return LlamaCppModel(path, settings)
