"""Grammars and sampler chains: how each sequence picks its next token.

Every sequence gets its own llama.cpp sampler chain (logit bias, penalties, grammar, then
greedy or top-k/top-p/min-p/temperature with a seeded distribution), as llama-server does.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

import llama_cpp as L
import numpy as np
from llama_cpp.llama_grammar import json_schema_to_gbnf

from ...core.errors import InvalidRequest
from ...core.types import Sampling

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


def _json_strings(grammar: str) -> str:
    """llama-cpp-python's converter lets JSON strings hold raw control characters (a newline
    inside a string), which no JSON parser accepts; forbid them as llama.cpp's own one does."""
    return grammar.replace(r'char ::= [^"\\] |', r'char ::= [^"\\\x7F\x00-\x1F] |', 1)


def schema_grammar(schema: dict[str, Any]) -> str:
    """The GBNF grammar for a JSON Schema; InvalidRequest when it cannot be converted."""
    try:
        return _json_strings(json_schema_to_gbnf(json.dumps(_enumerate_small_ranges(schema))))
    except Exception as exc:  # the converter raises plain exceptions on bad schemas
        raise InvalidRequest(f"unsupported JSON schema: {exc}", param="response_format") from exc


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
        compiled = L.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not compiled:
            L.llama_sampler_free(chain)
            raise InvalidRequest("the JSON schema could not be turned into a grammar",
                                 param="response_format")
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
