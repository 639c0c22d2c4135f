"""A loaded GGUF model: its facts, tokenizer and contexts, with a scheduler thread.

This is what runs inside a runner process (engines/runner/child.py), or in the server process
itself with `runner: inprocess`. It implements the `LoadedModel` interface of core/engine.py.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Iterator
from typing import Any

import llama_cpp as L

from ...core.engine import EngineStats, GenerationEnd, GenerationJob, ModelInfo, PreparedJob, Token
from ...core.errors import ContextTooLong, EngineFailure
from ..compute import ThreadBudget
from . import faults
from .backend import load_model_file
from .embedding import Embedder
from .grammar import schema_grammar
from .prompt_cache import open_cache
from .sampling import check_grammar, free_sampler, make_sampler
from .scheduler import QueueSink, Scheduler, Sequence, Sink
from .settings import EngineSettings

log = logging.getLogger(__name__)

_ROPE_SCALING = {"none": L.LLAMA_ROPE_SCALING_TYPE_NONE,
                 "linear": L.LLAMA_ROPE_SCALING_TYPE_LINEAR,
                 "yarn": L.LLAMA_ROPE_SCALING_TYPE_YARN}


class _Stream:
    """Iterator over one in-process sequence's tokens; closing it cancels the sequence."""

    def __init__(self, scheduler: Scheduler, seq: Sequence):
        self._scheduler = scheduler
        self._seq = seq
        self._done = False

    def __iter__(self) -> Iterator[Token | GenerationEnd]:
        try:
            while True:
                item = self._seq.queue.get()
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
            self._scheduler.cancel(self._seq)

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._scheduler.cancel(self._seq)


class LlamaCppModel:
    """A loaded GGUF model with its scheduler thread."""

    def __init__(self, path: str, settings: EngineSettings, *, compute=None,
                 sink: Sink | None = None, on_probe=None):
        self._settings = settings
        self._model = load_model_file(path, extra_buffers=settings.use_extra_buffers,
                                      settings=settings)
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
        if settings.probe:
            if on_probe is not None:
                on_probe()
            self._probe_on_own_thread()
        compute = compute if compute is not None else ThreadBudget()
        self._sink = sink or QueueSink()
        self._embedder = Embedder(self._new_context, n_ctx, settings.parallel, self.info.n_embd,
                                  compute)
        self._scheduler = Scheduler(self._ctx, self._vocab, n_vocab=self.n_vocab, n_ctx=n_ctx,
                                    piece=self._piece, settings=settings,
                                    kv_tokens=self._kv_tokens, embedder=self._embedder,
                                    compute=compute, sink=self._sink,
                                    cache=open_cache(settings.prompt_cache_mib,
                                                     settings.prompt_cache_disk_mib,
                                                     settings.prompt_cache_dir))

    # ---------------------------------------------------------------- model facts, tokenizer

    def _meta(self) -> dict[str, str]:
        buf = ctypes.create_string_buffer(1 << 16)
        out = {}
        for i in range(L.llama_model_meta_count(self._model)):
            L.llama_model_meta_key_by_index(self._model, i, buf, len(buf))
            key = buf.value.decode(errors="replace")
            if key.startswith("tokenizer.ggml.") and key.endswith(
                    ("tokens", "merges", "scores", "token_type")):
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
            n = L.llama_tokenize(self._vocab, data, len(data), arr, n_max, add_special,
                                 parse_special)
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
        params.n_threads_batch = self._settings.threads_batch or self._settings.threads
        if self._settings.rope_scaling is not None:
            params.rope_scaling_type = _ROPE_SCALING[self._settings.rope_scaling]
        if self._settings.rope_freq_base:
            params.rope_freq_base = self._settings.rope_freq_base
        if self._settings.rope_freq_scale:
            params.rope_freq_scale = self._settings.rope_freq_scale
        params.kv_unified = unified
        params.no_perf = True
        if embeddings:
            params.embeddings = True
            params.pooling_type = L.LLAMA_POOLING_TYPE_MEAN
        ctx = L.llama_init_from_model(self._model, params)
        if not ctx:
            raise EngineFailure("llama.cpp could not create a context (out of memory?)")
        return ctx

    def _probe_on_own_thread(self) -> None:
        """Run the probe on a thread that ends with it. OpenMP (llama.cpp's CPU threads) keeps
        a team of worker threads per thread that ever computed; with two teams there are more
        of its threads than cores, and libgomp then stops spinning at barriers and sleeps at
        each of the graph's ~30 barriers per token instead: measured, single-stream decode
        fell to 0.6x. A team goes when its thread exits; the scheduler's is then the only one."""
        failure: list[BaseException] = []

        def run() -> None:
            try:
                self._probe()
            except BaseException as exc:  # re-raised on the loading thread
                failure.append(exc)

        thread = threading.Thread(target=run, name="llama-probe")
        thread.start()
        thread.join()
        if failure:
            raise failure[0]

    def _probe(self) -> None:
        """Decode a multi-token batch over several sequences, as real traffic will: llama.cpp
        kernels that crash on this CPU (AMX) crash here, before any request is in flight."""
        n_seq = min(2, self._settings.parallel)
        tokens = self.tokenize("The quick brown fox jumps", add_special=True,
                               parse_special=False)[:4] or [0]
        batch = L.llama_batch_init(len(tokens) * n_seq, 0, 1)
        try:
            k = 0
            for seq_id in range(n_seq):
                for pos, tok in enumerate(tokens):
                    batch.token[k], batch.pos[k], batch.n_seq_id[k] = tok, pos, 1
                    batch.seq_id[k][0] = seq_id
                    batch.logits[k] = pos == len(tokens) - 1
                    k += 1
            batch.n_tokens = k
            faults.before_decode(k)
            ret = L.llama_decode(self._ctx, batch)
            if ret != 0:
                raise EngineFailure(f"the probe decode failed with code {ret}")
        finally:
            L.llama_batch_free(batch)
            L.llama_memory_clear(L.llama_get_memory(self._ctx), True)

    # ---------------------------------------------------------------- the LoadedModel interface

    def prepare(self, job: GenerationJob) -> PreparedJob:
        grammar = schema_grammar(job.json_schema) if job.json_schema is not None else None
        if job.grammar is not None:
            if grammar is not None:
                from ...core.errors import Field, InvalidRequest

                raise InvalidRequest("give either a grammar or a JSON schema, not both",
                                     field=Field.GRAMMAR)
            check_grammar(self._vocab, job.grammar)
            grammar = job.grammar
        if len(job.prompt) >= self.info.n_ctx:
            raise ContextTooLong(len(job.prompt), self.info.n_ctx)
        return PreparedJob(job, grammar)

    def start(self, prepared: PreparedJob, key: Any = None, before_submit=None) -> Sequence:
        """Queue a sequence for the scheduler; its outputs go to the sink."""
        sampler = make_sampler(self._vocab, self.n_vocab, prepared.job.sampling,
                               prepared.grammar)
        seq = Sequence(prepared.job, sampler, key)
        try:
            if before_submit is not None:
                before_submit(seq)
            self._scheduler.submit(seq)
        except BaseException:
            free_sampler(sampler)
            raise
        return seq

    def generate(self, prepared: PreparedJob) -> _Stream:
        return _Stream(self._scheduler, self.start(prepared))

    def cancel(self, seq: Sequence) -> None:
        self._scheduler.cancel(seq)

    def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        for tokens in inputs:
            if len(tokens) > self.info.n_ctx:
                raise ContextTooLong(len(tokens), self.info.n_ctx)
        return self._scheduler.embed(inputs)

    def busy(self) -> bool:
        return self._scheduler.busy()

    def stats(self) -> EngineStats:
        return self._scheduler.stats()

    def alive(self) -> bool:
        return True

    def describe(self) -> str:
        decision = getattr(self, "decision", None)
        return "in process" + (f", {decision.describe()}" if decision else "")

    def unload(self) -> None:
        self._scheduler.stop()
        self._embedder.free()
        L.llama_free(self._ctx)
        L.llama_model_free(self._model)
