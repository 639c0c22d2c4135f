"""What the core asks of an engine: token-level generation, embeddings, tokenization.

The port belongs to its consumer: the core defines it here, beside its types, and the engines
(server/engines/) implement it, so imports point down only (engines import this floor module,
never the core's orchestration). Engines know nothing of HTTP dialects or chat templates; the
core knows nothing of llama.cpp.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from .types import Sampling


@dataclass
class ModelInfo:
    """What the core needs to know about a loaded model."""

    architecture: str
    chat_template: str | None
    bos_token: str
    eos_token: str
    add_bos: bool
    #: Tokens one request may occupy (prompt + generated).
    n_ctx: int
    n_ctx_train: int
    n_embd: int
    n_params: int
    size_bytes: int
    n_vocab: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    has_vision: bool = False


@dataclass
class GenerationJob:
    prompt: list[int]
    sampling: Sampling
    max_new_tokens: int
    #: JSON Schema the output must satisfy (the engine turns it into a grammar), or None.
    json_schema: dict[str, Any] | None = None
    #: A GBNF grammar (root rule `root`) the output must match; wins over json_schema.
    grammar: str | None = None
    #: Control tokens that come out as their text (a chat format's markers, such as gpt-oss's
    #: <|channel|>); other control tokens come out empty, as llama-server's preserved tokens.
    preserve: tuple[int, ...] = ()


@dataclass
class PreparedJob:
    """A validated job: the grammar its JSON Schema compiled to, ready to generate."""

    job: GenerationJob
    grammar: str | None = None


@dataclass
class Token:
    id: int
    piece: bytes
    #: (logprob, [(piece, logprob), ...] top alternatives) when logprobs were asked for.
    logprob: tuple[float, list[tuple[bytes, float]]] | None = None


@dataclass
class GenerationEnd:
    #: "stop" (end-of-generation token), "length" (max tokens or context full), "timeout"
    #: (the request timeout ran out; answered like "length"), "cancelled"
    reason: str
    n_generated: int
    cached_tokens: int
    prompt_seconds: float
    generation_seconds: float


@dataclass
class EngineStats:
    """Counters and gauges of one loaded model, for /metrics (totals since it loaded)."""

    prompt_tokens: int = 0  # prompt tokens decoded (cached prefixes not counted)
    prompt_seconds: float = 0.0  # admission to first token, summed over requests
    predicted_tokens: int = 0
    predicted_seconds: float = 0.0  # first token to the end, summed over requests
    decodes: int = 0  # decode calls (each one batch)
    busy_slots: int = 0  # generating sequences, summed over decode calls
    requests_processing: int = 0  # now: sequences in a slot
    requests_deferred: int = 0  # now: waiting for a slot
    kv_cache_tokens: int = 0  # now: tokens held in the KV cache
    kv_cache_size: int = 0  # the KV cache's cells
    prompt_cache_hits: int = 0  # prompts that started from a state the slots had dropped
    prompt_cache_restored_tokens: int = 0
    prompt_cache_bytes: int = 0  # now: host RAM holding such states
    prompt_cache_disk_bytes: int = 0  # now: their files on disk
    draft_tokens: int = 0  # speculative tokens verified
    draft_accepted: int = 0  # of which kept


@dataclass
class MemoryEstimate:
    """The RAM a model takes once loaded, by part, in bytes (engines estimate it from the
    model file's header and their settings, before loading)."""

    parts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        detail = ", ".join(f"{name.replace('_', ' ')} {format_bytes(n)}"
                           for name, n in self.parts.items() if n)
        return f"{format_bytes(self.total)} ({detail})"


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit in ("B", "KiB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class TokenStream(Protocol):
    """Tokens of one sequence, then a GenerationEnd.

    cancel() asks the engine to stop: iteration then ends soon with a GenerationEnd whose
    reason is "cancelled". close() cancels and abandons the stream (client gone).
    """

    def __iter__(self) -> Iterator[Token | GenerationEnd]: ...

    def cancel(self) -> None: ...

    def close(self) -> None: ...


class LoadedModel(Protocol):
    info: ModelInfo

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]: ...

    def detokenize(self, tokens: list[int]) -> str: ...

    def prepare(self, job: GenerationJob) -> Any:
        """Validate a job (e.g. compile its grammar) before anything is sent to the client."""

    def generate(self, prepared: Any) -> TokenStream: ...

    def embed(self, inputs: list[list[int]]) -> list[list[float]]: ...

    def busy(self) -> bool: ...

    def stats(self) -> EngineStats: ...

    def alive(self) -> bool:
        """False once the model's runner process has died (see `failure`)."""

    def unload(self) -> None: ...


class Engine(Protocol):
    """Loads model files into `LoadedModel`s (runtime.py holds them). `estimate` (the RAM a
    load would take, a `MemoryEstimate`) and `status` (a line for /engines/status) are
    optional: the runtime and the routes look them up with getattr."""

    name: str

    def load(self, path: str, *, name: str | None = None, context_size: int | None = None,
             **options: Any) -> LoadedModel: ...
