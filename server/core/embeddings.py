"""Embeddings: inputs checked against the model's context and vocabulary, then vectors,
truncated to `dimensions` and normalized when asked."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from .engine import ModelInfo
from .errors import ContextTooLong, InvalidRequest
from .runtime import Runtime
from .tokens import check_token_ids
from .types import EmbeddingRequest


@dataclass
class Embeddings:
    model: str
    vectors: list[list[float]]
    prompt_tokens: int
    load_seconds: float
    seconds: float


def embed(runtime: Runtime, req: EmbeddingRequest) -> Embeddings:
    if not req.inputs:
        raise InvalidRequest("input must not be empty", param="input")
    started = time.monotonic()
    with runtime.use(req.model, req.engine, req.keep_alive) as lease:
        model = lease.model
        info: ModelInfo = model.info
        if req.dimensions is not None and not 0 < req.dimensions <= info.n_embd:
            raise InvalidRequest(f"dimensions must be between 1 and {info.n_embd}",
                                 param="dimensions")
        lists = []
        for item in req.inputs:
            if isinstance(item, str):
                tokens = model.tokenize(item, add_special=True, parse_special=False)
            else:
                tokens = check_token_ids(item, info, "input")
            if not tokens:
                raise InvalidRequest("input must not contain empty strings", param="input")
            if len(tokens) > info.n_ctx:
                if not req.truncate:
                    raise ContextTooLong(len(tokens), info.n_ctx)
                tokens = tokens[: info.n_ctx]
            lists.append(tokens)
        vectors = model.embed(lists)
    if req.dimensions is not None:
        vectors = [v[: req.dimensions] for v in vectors]
    if req.normalize:
        vectors = [_normalized(v) for v in vectors]
    return Embeddings(lease.stored.name, vectors, sum(len(t) for t in lists), lease.load_seconds,
                      time.monotonic() - started)


def _normalized(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else vector
