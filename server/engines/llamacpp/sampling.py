"""Grammars and sampler chains: how each sequence picks its next token.

Every sequence gets its own llama.cpp sampler chain (logit bias, penalties, grammar, then
greedy or top-k/top-p/min-p/temperature with a seeded distribution), as llama-server does.
With a grammar, a DRY sampler before it breaks repetition loops. JSON Schema -> GBNF is
grammar.py.
"""

from __future__ import annotations

import ctypes
import random
from typing import Any

import llama_cpp as L
import numpy as np

from ...core.errors import Field, InvalidRequest
from ...core.types import Sampling

#: DRY ("don't repeat yourself") in grammar mode: a token that would extend a sequence already
#: written is penalised, more the longer the repeat. Small models under a JSON grammar
#: otherwise fall into `"loyalty", "loyalty", ...` until the budget ends.
DRY_MULTIPLIER = 0.8
DRY_BASE = 1.75
DRY_ALLOWED_LENGTH = 2
DRY_BREAKERS = [b"\n"]
#: Tokens DRY looks back over.
DRY_WINDOW = 1024


def check_grammar(vocab: Any, grammar: str) -> None:
    """InvalidRequest when llama.cpp cannot parse a GBNF grammar (it returns no sampler)."""
    compiled = L.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    if not compiled:
        raise InvalidRequest("grammar: llama.cpp could not parse this GBNF grammar (see "
                             "llama.cpp's grammars/README.md; the start rule must be `root`)",
                             field=Field.GRAMMAR)
    L.llama_sampler_free(compiled)


def _dry(vocab: Any) -> Any:
    breakers = (ctypes.c_char_p * len(DRY_BREAKERS))(*DRY_BREAKERS)
    return L.llama_sampler_init_dry(vocab, DRY_MULTIPLIER, DRY_BASE, DRY_ALLOWED_LENGTH,
                                    DRY_WINDOW, breakers, len(DRY_BREAKERS))


def make_sampler(vocab: Any, n_vocab: int, s: Sampling, grammar: str | None) -> Any:
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    add = lambda smpl: L.llama_sampler_chain_add(chain, smpl)  # noqa: E731
    if s.logit_bias:
        biases = (L.llama_logit_bias * len(s.logit_bias))()
        for i, (tok, bias) in enumerate(s.logit_bias.items()):
            biases[i].token, biases[i].bias = tok, bias
        add(L.llama_sampler_init_logit_bias(n_vocab, len(s.logit_bias), biases))
    if s.repeat_penalty != 1.0 or s.presence_penalty or s.frequency_penalty:
        add(L.llama_sampler_init_penalties(n_vocab, s.repeat_last_n, s.repeat_penalty,
                                           s.frequency_penalty, s.presence_penalty))
    if grammar is not None:
        add(_dry(vocab))
        compiled = L.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not compiled:
            L.llama_sampler_free(chain)
            raise InvalidRequest("the JSON schema could not be turned into a grammar",
                                 field=Field.RESPONSE_SCHEMA)
        add(compiled)
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


def free_sampler(chain: Any) -> None:
    L.llama_sampler_free(chain)


def logprobs(ctx: Any, row: int, token: int, k: int | None, n_vocab: int, piece):
    """(logprob of `token`, top-k alternatives as (piece, logprob)) from a logits row."""
    if k is None:
        return None
    ptr = L.llama_get_logits_ith(ctx, row)
    logits = np.ctypeslib.as_array(ptr, shape=(n_vocab,)).astype(np.float64)
    m = logits.max()
    logz = m + np.log(np.exp(logits - m).sum())
    top = []
    if k > 0:
        ids = np.argpartition(-logits, k)[:k]
        ids = ids[np.argsort(-logits[ids])]
        top = [(piece(int(i)), float(logits[i] - logz)) for i in ids]
    return float(logits[token] - logz), top
