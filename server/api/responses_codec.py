"""Core events -> the Responses API's stream events and response object (sans I/O).

One encoder builds both answers: it turns the core's events into OpenAI's stream events, in
OpenAI's order and numbered by `sequence_number` (response.created, response.in_progress, then
per output item: output_item.added, content_part.added, the deltas, their .done events,
output_item.done; finally response.completed, or response.incomplete when max_output_tokens
ran out), and keeps the response object those events describe. The non-streamed answer is that
object after the last event, so it always equals what a client accumulates from the stream.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

from ..core.errors import DMRError
from ..core.types import ChoiceDone, Done, Event, TextDelta, ThinkingDelta, ToolCallDelta, Usage
from .openai_codec import param_of
from .responses_input import Options, new_id, tool_json

#: Final status -> the event that ends the stream.
_FINAL_EVENTS = {"completed": "response.completed", "incomplete": "response.incomplete",
                 "failed": "response.failed"}


def usage_json(usage: Usage) -> dict[str, Any]:
    return {"input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.total_tokens}


def _logprobs_json(event: TextDelta) -> list[dict[str, Any]]:
    return [{"token": lp.token, "logprob": lp.logprob, "bytes": lp.bytes,
             "top_logprobs": [{"token": t, "logprob": v, "bytes": b} for t, b, v in lp.top]}
            for lp in event.logprobs or []]


def new_response(body: dict[str, Any], response_id: str, status: str) -> dict[str, Any]:
    """The response object before any output: the request's settings, echoed as OpenAI does."""
    text = body.get("text") or {}
    reasoning = body.get("reasoning") or {}
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "background": bool(body.get("background")),
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": body["model"],
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "service_tier": "default",
        "store": body.get("store") is not False,
        "temperature": 1.0 if body.get("temperature") is None else body["temperature"],
        "text": {"format": text.get("format") or {"type": "text"},
                 "verbosity": text.get("verbosity") or "medium"},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": [tool_json(t) for t in body.get("tools") or []],
        "top_logprobs": body.get("top_logprobs") or 0,
        "top_p": 1.0 if body.get("top_p") is None else body["top_p"],
        "truncation": body.get("truncation") or "disabled",
        "usage": None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


class ResponseEncoder:
    """Stream events for one response; `response` is the object they have built so far."""

    def __init__(self, response: dict[str, Any], options: Options | None = None):
        self.response = response
        self.options = options or Options()
        self.sequence = 0
        self.item: dict[str, Any] | None = None  # the open output item
        self.held = ""  # white space that starts a message only if text follows
        self.calls = 0  # function calls in the output
        self.skipped: set[int] = set()  # core call indices left out (parallel/max calls)
        self.finish_reason = "stop"
        self.usage = Usage()

    # -------------------------------------------------------------------------- events

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, **fields, "sequence_number": self.sequence}
        self.sequence += 1
        return event

    def _snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(self.response)

    def start(self) -> Iterator[dict[str, Any]]:
        yield self._event("response.created", response=self._snapshot())
        if self.response["status"] == "queued":
            return  # a background job sends in_progress when it starts
        yield from self.in_progress()

    def in_progress(self) -> Iterator[dict[str, Any]]:
        self.response["status"] = "in_progress"
        yield self._event("response.in_progress", response=self._snapshot())

    def feed(self, event: Event) -> Iterator[dict[str, Any]]:
        if isinstance(event, ThinkingDelta):
            if self._open_type() != "reasoning":
                yield from self._add({"id": new_id("rs"), "type": "reasoning", "summary": [],
                                      "content": []}, {"type": "reasoning_text", "text": ""})
            yield from self._reasoning_delta(event.text)
        elif isinstance(event, TextDelta):
            if self._open_type() != "message":
                if not (self.held + event.text).strip():
                    self.held += event.text
                    return
                yield from self._add_message()
            text, self.held = self.held + event.text, ""
            yield from self._text_delta(text, _logprobs_json(event))
        elif isinstance(event, ToolCallDelta):
            yield from self._tool_call(event)
        elif isinstance(event, ChoiceDone):
            self.finish_reason = event.finish_reason
        elif isinstance(event, Done):
            self.usage = event.usage

    def _tool_call(self, event: ToolCallDelta) -> Iterator[dict[str, Any]]:
        if event.id is not None:
            limit = self.options.max_tool_calls
            if (self.calls and not self.options.parallel_tool_calls) or (
                    limit is not None and self.calls >= limit):
                self.skipped.add(event.index)
            else:
                self.held = ""
                self.calls += 1
                yield from self._add({"id": new_id("fc"), "type": "function_call",
                                      "status": "in_progress", "arguments": "",
                                      "call_id": event.id, "name": event.name})
        if event.index in self.skipped or not event.arguments:
            return
        self.item["arguments"] += event.arguments
        yield self._event("response.function_call_arguments.delta", item_id=self.item["id"],
                          output_index=self._index(), delta=event.arguments)

    def finish(self) -> Iterator[dict[str, Any]]:
        """Close the output and end the stream: response.completed, or response.incomplete
        when the answer was cut off by max_output_tokens (or the context)."""
        if not self.response["output"]:  # code that reads output_text keeps working
            yield from self._add_message()
            if self.held:
                yield from self._text_delta(self.held, [])
        incomplete = self.finish_reason == "length"
        yield from self._close("incomplete" if incomplete else "completed")
        self.response["usage"] = usage_json(self.usage)
        if incomplete:
            self.response["incomplete_details"] = {"reason": "max_output_tokens"}
        yield from self.end("incomplete" if incomplete else "completed")

    def fail(self, exc: DMRError, code: str | None) -> Iterator[dict[str, Any]]:
        """An error after the stream started: an `error` event, then response.failed."""
        yield from self._close("incomplete")
        self.response["error"] = {"code": code or "server_error", "message": exc.message}
        yield self._event("error", code=code or "server_error", message=exc.message,
                          param=param_of(exc))
        yield from self.end("failed")

    def cancel(self) -> Iterator[dict[str, Any]]:
        """A cancelled background response: its output so far, and no final event."""
        yield from self._close("incomplete")
        self.response["usage"] = usage_json(self.usage)
        self.response["status"] = "cancelled"

    def end(self, status: str) -> Iterator[dict[str, Any]]:
        self.response["status"] = status
        if status == "completed" and not self.response.get("completed_at"):
            self.response["completed_at"] = int(time.time())
        yield self._event(_FINAL_EVENTS[status], response=self._snapshot())

    # -------------------------------------------------------------------------- items

    def _open_type(self) -> str | None:
        return self.item["type"] if self.item is not None else None

    def _index(self) -> int:
        return len(self.response["output"]) - 1

    def _add_message(self) -> Iterator[dict[str, Any]]:
        yield from self._add({"id": new_id("msg"), "type": "message", "status": "in_progress",
                              "content": [], "role": "assistant"},
                             {"type": "output_text", "annotations": [], "logprobs": [],
                              "text": ""})

    def _add(self, item: dict[str, Any], part: dict[str, Any] | None = None
             ) -> Iterator[dict[str, Any]]:
        yield from self._close("completed")
        self.item = item
        self.response["output"].append(item)
        yield self._event("response.output_item.added", output_index=self._index(),
                          item=copy.deepcopy(item))
        if part is not None:
            item["content"].append(part)
            yield self._event("response.content_part.added", item_id=item["id"],
                              output_index=self._index(), content_index=0,
                              part=copy.deepcopy(part))

    def _text_delta(self, text: str, logprobs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        part = self.item["content"][0]
        part["text"] += text
        part["logprobs"].extend(logprobs)
        yield self._event("response.output_text.delta", item_id=self.item["id"],
                          output_index=self._index(), content_index=0, delta=text,
                          logprobs=logprobs)

    def _reasoning_delta(self, text: str) -> Iterator[dict[str, Any]]:
        self.item["content"][0]["text"] += text
        yield self._event("response.reasoning_text.delta", item_id=self.item["id"],
                          output_index=self._index(), content_index=0, delta=text)

    def _close(self, status: str) -> Iterator[dict[str, Any]]:
        item, self.item = self.item, None
        if item is None:
            return
        where = {"item_id": item["id"], "output_index": self._index()}
        if item["type"] == "function_call":
            yield self._event("response.function_call_arguments.done", **where,
                              name=item["name"], arguments=item["arguments"])
        else:
            part = item["content"][0]
            if item["type"] == "message":
                yield self._event("response.output_text.done", **where, content_index=0,
                                  text=part["text"], logprobs=copy.deepcopy(part["logprobs"]))
            else:
                yield self._event("response.reasoning_text.done", **where, content_index=0,
                                  text=part["text"])
            yield self._event("response.content_part.done", **where, content_index=0,
                              part=copy.deepcopy(part))
        if item["type"] != "reasoning":
            item["status"] = status
        yield self._event("response.output_item.done", output_index=where["output_index"],
                          item=copy.deepcopy(item))

    # -------------------------------------------------------------------------- replay

    def replay(self, stored: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The events of a finished response rebuilt from it (one delta per content part);
        this encoder's `response` must be `stored` as it started (no output, in progress)."""
        yield from self.start()
        for item in stored["output"]:
            item = copy.deepcopy(item)
            status = item.get("status", "completed")
            if item["type"] == "function_call":
                arguments, item["arguments"] = item["arguments"], ""
                yield from self._add(item)
                self.item["status"] = "in_progress"
                if arguments:
                    self.item["arguments"] = arguments
                    yield self._event("response.function_call_arguments.delta",
                                      item_id=item["id"], output_index=self._index(),
                                      delta=arguments)
            else:
                parts, item["content"] = item["content"], []
                part = {**parts[0], "text": ""} if parts else None
                if part is not None and "logprobs" in part:
                    part["logprobs"] = []
                yield from self._add({**item, "status": "in_progress"} if "status" in item
                                     else item, part)
                if parts and parts[0]["text"]:
                    if item["type"] == "message":
                        yield from self._text_delta(parts[0]["text"],
                                                    parts[0].get("logprobs") or [])
                    else:
                        yield from self._reasoning_delta(parts[0]["text"])
            yield from self._close(status)
        for key in ("usage", "incomplete_details", "error", "completed_at"):
            self.response[key] = stored.get(key)
        if stored["status"] in _FINAL_EVENTS:
            if stored["status"] == "failed":
                error = stored.get("error") or {}
                yield self._event("error", code=error.get("code"), message=error.get("message"),
                                  param=None)
            yield from self.end(stored["status"])
        else:
            self.response["status"] = stored["status"]
