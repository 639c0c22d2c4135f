"""Embeddings: a second context of the same model, many inputs per decode.

The context is created on the first embedding request and lives as long as the model; the
scheduler thread runs it between generation steps, so it shares the core budget.
"""

from __future__ import annotations

from typing import Any

import llama_cpp as L
import numpy as np

from ...core.errors import EngineFailure
from . import faults


class Embedder:
    def __init__(self, new_context, n_ctx: int, n_seq: int, n_embd: int, compute):
        self._new_context = new_context
        self._ctx: Any = None
        self._n_ctx, self._n_seq, self._n_embd = n_ctx, n_seq, n_embd
        self._compute = compute

    def embed_all(self, inputs: list[list[int]]) -> list[list[float]]:
        """Pack inputs into batches (one sequence each), decode each batch once."""
        if self._ctx is None:
            self._ctx = self._new_context(self._n_ctx, self._n_seq, embeddings=True)
        ctx = self._ctx
        mem = L.llama_get_memory(ctx)
        results: list[list[float]] = []
        i = 0
        while i < len(inputs):
            group: list[list[int]] = []
            total = 0
            while i < len(inputs) and len(group) < self._n_seq \
                    and total + len(inputs[i]) <= self._n_ctx:
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
                faults.before_decode(k)
                with self._compute:
                    ret = L.llama_decode(ctx, batch)
                if ret != 0:
                    raise EngineFailure(f"llama_decode failed with {ret} while embedding")
                for s in range(len(group)):
                    ptr = L.llama_get_embeddings_seq(ctx, s)
                    results.append(np.ctypeslib.as_array(ptr, shape=(self._n_embd,)).tolist())
            finally:
                L.llama_batch_free(batch)
        return results

    def free(self) -> None:
        if self._ctx:
            L.llama_free(self._ctx)
            self._ctx = None
