"""Dialect-free request and event types.

Dialects (server/api/*) build these from their wire formats and encode the events back;
engines (server/engines/*) never see a wire format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]


@dataclass
class Image:
    """An image in a message: raw bytes with their MIME type, or a URL we do not fetch."""

    data: bytes | None = None
    media_type: str | None = None
    url: str | None = None


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI carries it


@dataclass
class Message:
    role: Role
    content: str = ""
    images: list[Image] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None
    reasoning: str | None = None


@dataclass
class Tool:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass
class ToolChoice:
    """auto: the model may call a tool; none: it may not; required: it must call one;
    function: it must call `name`."""

    mode: Literal["auto", "none", "required", "function"] = "auto"
    name: str | None = None


@dataclass
class Sampling:
    """Sampling parameters. Defaults are OpenAI's (temperature 1, top_p 1, no top_k)."""

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)
    stop: list[str] = field(default_factory=list)
    #: Number of most likely alternatives to report per token; None = no logprobs at all.
    logprobs: int | None = None
    #: Tokens one request may occupy (prompt + generated) when lower than the loaded context;
    #: None = the loaded context (Ollama's options.num_ctx).
    context_limit: int | None = None
    #: The fields the request itself set (a model's defaults never replace them); None when
    #: the dialect does not say, then fields still at their default values count as unset.
    explicit: frozenset[str] | None = None
    #: Speculative (prompt lookup) decoding: False opts out, True drafts whenever it can,
    #: None leaves it to the server's `speculative` setting.
    speculative: bool | None = None


@dataclass
class Thinking:
    """Reasoning control: `enabled` None keeps the model's default; budget caps its tokens."""

    enabled: bool | None = None
    budget_tokens: int | None = None


@dataclass
class ChatRequest:
    model: str
    messages: list[Message]
    sampling: Sampling = field(default_factory=Sampling)
    engine: str | None = None
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    #: A JSON Schema the answer must satisfy (grammar-constrained); {} = any JSON object.
    response_schema: dict[str, Any] | None = None
    #: The request field that carried it, named in errors about it.
    schema_param: str = "response_format"
    #: A raw GBNF grammar the answer must follow (llama-server's `grammar` field).
    grammar: str | None = None
    n: int = 1
    thinking: Thinking = field(default_factory=Thinking)
    keep_alive: float | None = None
    #: A trailing assistant message is the start of the answer (continued); False treats it
    #: as a finished turn (llama-server's --no-prefill-assistant).
    prefill_assistant: bool = True


@dataclass
class CompletionRequest:
    """Raw text completion: no chat template."""

    model: str
    prompt: str | list[int]
    sampling: Sampling = field(default_factory=Sampling)
    engine: str | None = None
    n: int = 1
    echo: bool = False
    response_schema: dict[str, Any] | None = None
    schema_param: str = "response_format"
    grammar: str | None = None
    keep_alive: float | None = None


@dataclass
class EmbeddingRequest:
    model: str
    inputs: list[str | list[int]]
    engine: str | None = None
    truncate: bool = True
    normalize: bool = True
    dimensions: int | None = None
    keep_alive: float | None = None


# ---------------------------------------------------------------------------------------------
# Events produced by the pipeline, in order, for each choice.


@dataclass
class TokenLogprob:
    token: str
    bytes: list[int]
    logprob: float
    top: list[tuple[str, list[int], float]] = field(default_factory=list)


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Prompt tokens whose KV state was reused from the prefix cache.
    cached_tokens: int = 0
    #: Generated tokens that were thinking (part of completion_tokens).
    reasoning_tokens: int = 0
    #: Wall-clock seconds: model load (0 when already loaded), prompt processing, generation.
    load_seconds: float = 0.0
    prompt_seconds: float = 0.0
    generation_seconds: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add_tokens(self, other: Usage) -> None:
        """Count `other`'s tokens into these (one answer for several prompts)."""
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens


@dataclass
class TextDelta:
    text: str
    choice: int = 0
    logprobs: list[TokenLogprob] | None = None


@dataclass
class ThinkingDelta:
    text: str
    choice: int = 0


@dataclass
class ToolCallDelta:
    """Part of tool call `index`: the first delta of a call has id and name."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    choice: int = 0


FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass
class ChoiceDone:
    choice: int
    finish_reason: FinishReason
    #: The stop sequence that ended the text, when one did.
    stop_sequence: str | None = None
    #: The server's request timeout ended it (finish_reason is then "length").
    timed_out: bool = False
    #: The token budget ran out in structured output, and the server closed the JSON (so it
    #: still parses and validates); finish_reason is "length".
    closed: bool = False


@dataclass
class Done:
    """The last event of a run: usage summed over every choice."""

    usage: Usage


Event = TextDelta | ThinkingDelta | ToolCallDelta | ChoiceDone | Done
