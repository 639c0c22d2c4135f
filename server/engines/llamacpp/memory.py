"""How much RAM a model will take once loaded, from its GGUF header and the settings, before
anything is loaded: the runtime (core/runtime.py) compares it with the memory budget.

    weights      the tensor data (memory-mapped: the file's size, paged in as it is used)
    kv cache     layers x cells x (K + V width) x 2 bytes (f16); cells are context x slots
                 with a cache per slot (each padded to 256), or the pool of a unified one
    compute      llama.cpp's graph buffer for one micro-batch: the logits of n_ubatch rows
                 dominate it for small models; plus the logits kept for sampling and drafts
    embeddings   the second context made on the first embedding request (its own KV cache
                 and a graph for a whole context at once)
    prompt cache up to prompt_cache_mib of saved KV states (prompt_cache.py)
    runtime      the runner process itself: Python, NumPy, llama.cpp's code

Measured for SmolLM2-135M with 8 slots x 4,096 tokens (docs/benchmarks.md): the runner's
RSS after a request is within a few percent of the estimate without the prompt cache (which
grows only as prompts are cached) and without embeddings until they are used.
"""

from __future__ import annotations

import os

from ...core.engine import MemoryEstimate
from ...store import gguf
from .settings import EngineSettings

MIB = 1 << 20
#: Python, NumPy and llama.cpp's libraries in a runner process (measured: ~40 MiB).
RUNTIME_BYTES = 48 * MIB
#: Logit rows a step may request beyond one per slot: speculative drafts (scheduler.py).
DRAFT_ROWS = 64
KV_BYTES = 2  # f16 K and V


def _pad(n: int, to: int = 256) -> int:
    return (n + to - 1) // to * to


def estimate(path: str, settings: EngineSettings) -> MemoryEstimate:
    """The RAM `path` will take with `settings`; a header that cannot be read gives the
    file size plus the runtime (the load will then say what is wrong)."""
    size = os.path.getsize(path)
    lengths: dict[str, int] = {}
    try:
        meta, _ = gguf.read_header(path, lengths)
    except (gguf.GGUFError, OSError):
        return MemoryEstimate({"weights": size, "runtime": RUNTIME_BYTES})
    arch = meta.get("general.architecture", "")

    def hp(key: str, default: int = 0) -> int:
        value = meta.get(f"{arch}.{key}", default)
        if isinstance(value, list):  # per-layer values: the widest layer
            value = max(value) if value else default
        return int(value or default)

    n_layer = hp("block_count", 1)
    n_embd = hp("embedding_length", 1)
    n_head = max(1, hp("attention.head_count", 1))
    n_head_kv = hp("attention.head_count_kv", n_head) or n_head
    head_k = hp("attention.key_length", n_embd // n_head)
    head_v = hp("attention.value_length", n_embd // n_head)
    n_ff = hp("feed_forward_length", 4 * n_embd)
    n_vocab = hp("vocab_size", 0) or lengths.get("tokenizer.ggml.tokens", 32000)
    n_ctx = settings.context_size or hp("context_length", 4096)
    per_cell = n_layer * n_head_kv * (head_k + head_v) * KV_BYTES
    if settings.unified:
        cells = _pad(max(settings.kv_tokens, n_ctx) if settings.kv_tokens
                     else n_ctx * settings.parallel)
    else:
        cells = _pad(n_ctx) * settings.parallel
    n_ubatch = settings.n_batch
    graph = n_ubatch * (n_vocab + 4 * n_embd + 3 * n_ff) * 4
    logits = (settings.parallel + DRAFT_ROWS) * n_vocab * 4
    embed_ctx = _pad(n_ctx)
    embeddings = embed_ctx * per_cell + embed_ctx * 5 * n_embd * 4
    parts = {
        "weights": size,
        "kv_cache": cells * per_cell,
        "compute": graph + logits,
        "embeddings": embeddings,
        "prompt_cache": max(0, settings.prompt_cache_mib) * MIB,
        "runtime": RUNTIME_BYTES,
    }
    return MemoryEstimate(parts)
