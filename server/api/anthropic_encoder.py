"""Claude's content blocks from core events, without HTTP: the block encoder (indices in order,
one block open at a time, thinking signed), its accumulation into a message, and the SSE stream
of a message (message_start, ping, content_block_*, message_delta, message_stop, or an
in-band error).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..core.signing import ThinkingSigner
from ..core.types import ChoiceDone, Done, Event, TextDelta, ThinkingDelta, ToolCallDelta, Usage
from .anthropic_codec import Options, error_body
from .common import in_band
from .keepalive import HEARTBEAT, with_heartbeats
from .sse import sse_event

if TYPE_CHECKING:
    from ..core.pipeline import Run

#: Seconds without an event after which a stream sends a `ping`.
PING_INTERVAL = 10.0


def _new_id(prefix: str) -> str:
    return f"{prefix}_01{secrets.token_hex(11)}"


def _tool_use_id(call_id: str) -> str:
    """Claude's id style for the core's call ids; any id the client sends back is accepted."""
    return "toolu_" + call_id.removeprefix("call_")


def usage_json(usage: Usage) -> dict[str, Any]:
    """Claude's usage. input_tokens is the whole prompt (the same as count_tokens), and
    cache_read_input_tokens the part of it the prefix cache served (so it is included in
    input_tokens, unlike Claude's explicit prompt caching)."""
    return {"input_tokens": usage.prompt_tokens, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": usage.cached_tokens,
            "output_tokens": usage.completion_tokens}


class Blocks:
    """Claude's content blocks from core events: indices 0, 1, 2... in order, and each block
    stopped before the next starts. `feed`/`finish` yield the stream events that build them;
    the non-streamed response is their accumulation."""

    def __init__(self, options: Options, signer_: ThinkingSigner):
        self.options = options
        self.signer = signer_
        self.index = -1
        self.open: str | None = None  # type of the open block
        self.thinking = ""  # text of the open thinking block
        self.held = ""  # white space that starts a text block only if text follows
        self.answered = False  # a text or tool_use block was started
        self.finish_reason = "stop"
        self.timed_out = False
        self.closed = False
        self.stop_sequence: str | None = None
        self.usage = Usage()

    def feed(self, event: Event) -> Iterator[dict[str, Any]]:
        if isinstance(event, ThinkingDelta):
            if self.open != "thinking":
                yield from self._start({"type": "thinking", "thinking": "", "signature": ""})
            self.thinking += event.text
            if not self.options.omit_thinking:
                yield self._delta({"type": "thinking_delta", "thinking": event.text})
        elif isinstance(event, TextDelta):
            yield from self._lead()
            if self.open != "text":
                if not (self.held + event.text).strip():
                    self.held += event.text
                    return
                yield from self._start({"type": "text", "text": ""})
            text, self.held = self.held + event.text, ""
            yield self._delta({"type": "text_delta", "text": text})
        elif isinstance(event, ToolCallDelta):
            if self.options.single_call and event.index > 0:
                return
            yield from self._lead()
            if event.id is not None:
                self.held = ""
                yield from self._start({"type": "tool_use", "id": _tool_use_id(event.id),
                                        "name": event.name, "input": {}})
            if event.arguments:
                yield self._delta({"type": "input_json_delta", "partial_json": event.arguments})
        elif isinstance(event, ChoiceDone):
            self.finish_reason, self.stop_sequence = event.finish_reason, event.stop_sequence
            self.timed_out = event.timed_out
            self.closed = event.closed
        elif isinstance(event, Done):
            self.usage = event.usage

    def finish(self) -> Iterator[dict[str, Any]]:
        yield from self._lead()
        if not self.answered:  # code that reads content[-1].text keeps working
            yield from self._start({"type": "text", "text": ""})
        yield from self._stop()

    @property
    def stop_reason(self) -> str:
        if self.stop_sequence is not None:
            return "stop_sequence"
        if self.finish_reason == "length":
            limit = self.options.max_tokens
            if self.timed_out or self.closed:  # the time limit, or JSON closed at the budget
                return "max_tokens"
            if limit is not None and self.usage.completion_tokens < limit:
                return "model_context_window_exceeded"
            return "max_tokens"
        return "tool_use" if self.finish_reason == "tool_calls" else "end_turn"

    def _lead(self) -> Iterator[dict[str, Any]]:
        """With thinking on, the answer starts with a thinking block, even an empty one."""
        if self.options.thinking and self.index < 0:
            yield from self._start({"type": "thinking", "thinking": "", "signature": ""})

    def _start(self, block: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield from self._stop()
        self.index += 1
        self.open = block["type"]
        self.answered = self.answered or self.open != "thinking"
        yield {"type": "content_block_start", "index": self.index, "content_block": block}

    def _stop(self) -> Iterator[dict[str, Any]]:
        if self.open is None:
            return
        if self.open == "thinking":
            shown = "" if self.options.omit_thinking else self.thinking
            yield self._delta({"type": "signature_delta", "signature": self.signer.sign(shown)})
            self.thinking = ""
        self.open = None
        yield {"type": "content_block_stop", "index": self.index}

    def _delta(self, delta: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": self.index, "delta": delta}


def accumulate(stream_events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The content blocks a sequence of content_block_* events builds."""
    content: list[dict[str, Any]] = []
    partial_json: dict[int, str] = {}
    for event in stream_events:
        if event["type"] == "content_block_start":
            content.append(dict(event["content_block"]))
            continue
        block = content[event["index"]]
        if event["type"] == "content_block_stop":
            if block["type"] == "tool_use":
                block["input"] = _object(partial_json.get(event["index"], ""))
            continue
        delta = event["delta"]
        if delta["type"] == "text_delta":
            block["text"] += delta["text"]
        elif delta["type"] == "thinking_delta":
            block["thinking"] += delta["thinking"]
        elif delta["type"] == "signature_delta":
            block["signature"] = delta["signature"]
        elif delta["type"] == "input_json_delta":
            partial_json[event["index"]] = partial_json.get(event["index"], "") + delta["partial_json"]
    return content


def _object(text: str) -> dict[str, Any]:
    """Tool input from its JSON; arguments cut off or not an object become {} (as llama.cpp)."""
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _message(message_id: str, model: str, content: list[dict[str, Any]],
             stop_reason: str | None, stop_sequence: str | None,
             usage: dict[str, Any]) -> dict[str, Any]:
    return {"id": message_id, "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": stop_sequence,
            "usage": usage}


def message_json(run: Run, model: str, blocks: Blocks) -> dict[str, Any]:
    def stream_events() -> Iterator[dict[str, Any]]:
        for event in run.events:
            yield from blocks.feed(event)
        yield from blocks.finish()

    try:
        content = accumulate(stream_events())
    finally:
        run.events.close()
    return _message(_new_id("msg"), model, content, blocks.stop_reason, blocks.stop_sequence,
                    usage_json(blocks.usage))


def message_stream(run: Run, model: str, blocks: Blocks,
                   request_id: str) -> Iterator[str]:
    start = usage_json(Usage(prompt_tokens=run.prompt_tokens, completion_tokens=1))
    yield sse_event("message_start", {
        "type": "message_start",
        "message": _message(_new_id("msg"), model, [], None, None, start)})
    ping = sse_event("ping", {"type": "ping"})
    yield ping
    events = with_heartbeats(run.events, PING_INTERVAL)
    try:
        for event in events:
            if event is HEARTBEAT:
                yield ping
                continue
            for out in blocks.feed(event):
                yield sse_event(out["type"], out)
        for out in blocks.finish():
            yield sse_event(out["type"], out)
        yield sse_event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": blocks.stop_reason, "stop_sequence": blocks.stop_sequence},
            "usage": usage_json(blocks.usage)})
        yield sse_event("message_stop", {"type": "message_stop"})
    except Exception as exc:  # after the 200: reported in-band, as Claude does
        yield sse_event("error", error_body(in_band(exc, "Anthropic"), request_id))
    finally:
        events.close()
