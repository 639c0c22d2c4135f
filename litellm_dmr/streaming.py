"""OpenAI SSE chunks -> LiteLLM `GenericStreamingChunk`s.

LiteLLM keeps a custom provider's usage and tool calls only when it yields
GenericStreamingChunk dicts (ModelResponseStream objects get their usage replaced by an
estimate). The finish chunk is held back until the stream ends so that the trailing
`include_usage` chunk's counts ride on it: LiteLLM stops reading after a finished chunk.
"""

from __future__ import annotations

from typing import Any

from litellm.types.utils import GenericStreamingChunk

_USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


def _chunk(text: str = "", *, tool_use: dict[str, Any] | None = None, index: int = 0,
           finish_reason: str | None = None, usage: dict[str, int] | None = None
           ) -> GenericStreamingChunk:
    return GenericStreamingChunk(
        text=text,
        tool_use=tool_use,  # type: ignore[typeddict-item]
        is_finished=finish_reason is not None,
        finish_reason=finish_reason or "",
        usage=usage,  # type: ignore[typeddict-item]
        index=index,
    )


def _usage(raw: Any) -> dict[str, int] | None:
    if not isinstance(raw, dict):
        return None
    usage = {k: int(raw.get(k) or 0) for k in _USAGE_KEYS}
    if not usage["total_tokens"]:
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return usage


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    return {
        "id": call.get("id"),
        "type": "function",
        "function": {"name": fn.get("name"), "arguments": fn.get("arguments") or ""},
        "index": int(call.get("index") or 0),
    }


class ChunkConverter:
    """Stateful converter for one stream; `text_completion` reads `choices[].text`."""

    def __init__(self, text_completion: bool = False) -> None:
        self.text_completion = text_completion
        self.finish_reason: str | None = None
        self.usage: dict[str, int] | None = None
        self.first = True

    def feed(self, event: dict[str, Any]) -> list[GenericStreamingChunk]:
        """Chunks for one server event (possibly none: role-only deltas, usage-only events)."""
        self.first = False
        usage = _usage(event.get("usage"))
        if usage is not None:
            self.usage = usage
        out: list[GenericStreamingChunk] = []
        for choice in event.get("choices") or []:
            index = int(choice.get("index") or 0)
            if self.text_completion:
                text = choice.get("text") or ""
                calls: list[dict[str, Any]] = []
            else:
                delta = choice.get("delta") or {}
                text = delta.get("content") or ""
                calls = delta.get("tool_calls") or []
            for i, call in enumerate(calls):
                out.append(_chunk(text if i == 0 else "", tool_use=_tool_use(call), index=index))
            if text and not calls:
                out.append(_chunk(text, index=index))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def finish(self) -> GenericStreamingChunk:
        """The closing chunk: finish reason plus the server's usage counts."""
        return _chunk(finish_reason=self.finish_reason or "stop", usage=self.usage)
