"""Streamed answers rebuilt into one whole answer, in the dialect's non-stream shape, from the
bytes that went over the wire (for the request recorder).

A stream is read as it passes (`StreamReader.feed`), so only the answer accumulated so far is
held, never the stream. Each dialect's rebuilder turns the stream's items into what the same
request with `stream: false` returns: OpenAI `chat.completion` / `text_completion`,
Anthropic `message`, Ollama's final object, Responses' `response`. An error reported in the
stream (after the 200) becomes the record's error.
"""

from __future__ import annotations

import json
from typing import Any

from .anthropic_encoder import accumulate


class Rebuilder:
    """Items of one stream in, one answer out. `item(event, data)` gets each SSE event (or
    NDJSON line, with event None) whose data is JSON."""

    def __init__(self) -> None:
        self.error: Any = None

    def item(self, event: str | None, data: Any) -> None:
        raise NotImplementedError

    def answer(self) -> Any:
        raise NotImplementedError


class OpenAIRebuilder(Rebuilder):
    """`chat.completion.chunk`s into a `chat.completion`; `text_completion` chunks into one."""

    def __init__(self) -> None:
        super().__init__()
        self.head: dict[str, Any] | None = None
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: Any = None

    def item(self, event: str | None, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if "error" in data:
            self.error = data
            return
        if self.head is None:
            self.head = {k: v for k, v in data.items() if k not in ("choices", "usage")}
        if data.get("usage"):
            self.usage = data["usage"]
        for choice in data.get("choices") or []:
            self._choice(choice)

    def _choice(self, chunk: dict[str, Any]) -> None:
        i = chunk.get("index", 0)
        c = self.choices.setdefault(i, {"index": i, "text": "", "content": "", "reasoning": "",
                                        "calls": {}, "logprobs": None, "finish_reason": None})
        if chunk.get("finish_reason"):
            c["finish_reason"] = chunk["finish_reason"]
        if "text" in chunk:  # legacy completions
            c["text"] += chunk["text"] or ""
            return
        delta = chunk.get("delta") or {}
        c["content"] += delta.get("content") or ""
        c["reasoning"] += delta.get("reasoning_content") or ""
        for call in delta.get("tool_calls") or []:
            slot = c["calls"].setdefault(call.get("index", 0), {
                "id": "", "type": "function", "function": {"name": "", "arguments": ""}})
            slot["id"] = call.get("id") or slot["id"]
            fn = call.get("function") or {}
            slot["function"]["name"] = fn.get("name") or slot["function"]["name"]
            slot["function"]["arguments"] += fn.get("arguments") or ""
        content = (chunk.get("logprobs") or {}).get("content")
        if content:
            c["logprobs"] = {"content": (c["logprobs"] or {"content": []})["content"] + content}

    def answer(self) -> Any:
        if self.head is None:
            return None
        completion = self.head.get("object") == "text_completion"
        out = dict(self.head)
        out["object"] = "text_completion" if completion else "chat.completion"
        choices = []
        for i in sorted(self.choices):
            c = self.choices[i]
            if completion:
                choices.append({"text": c["text"], "index": i, "logprobs": None,
                                "finish_reason": c["finish_reason"]})
                continue
            calls = [c["calls"][k] for k in sorted(c["calls"])]
            message: dict[str, Any] = {"role": "assistant",
                                       "content": c["content"] if c["content"] or not calls
                                       else None}
            if c["reasoning"]:
                message["reasoning_content"] = c["reasoning"]
            if calls:
                message["tool_calls"] = calls
            choices.append({"index": i, "message": message, "logprobs": c["logprobs"],
                            "finish_reason": c["finish_reason"]})
        out["choices"] = choices
        if self.usage is not None:
            out["usage"] = self.usage
        return out


class AnthropicRebuilder(Rebuilder):
    """`message_start`, content block events and `message_delta` into one `message`, with
    every block (thinking with its signature, text, tool_use with its parsed input)."""

    def __init__(self) -> None:
        super().__init__()
        self.message: dict[str, Any] | None = None
        self.events: list[dict[str, Any]] = []  # content block events; text is small

    def item(self, event: str | None, data: Any) -> None:
        if not isinstance(data, dict):
            return
        kind = data.get("type")
        if kind == "error" or event == "error":
            self.error = data
        elif kind == "message_start":
            self.message = dict(data.get("message") or {})
        elif kind in ("content_block_start", "content_block_delta", "content_block_stop"):
            self.events.append(data)
        elif kind == "message_delta" and self.message is not None:
            self.message.update(data.get("delta") or {})
            if data.get("usage"):
                self.message["usage"] = {**(self.message.get("usage") or {}), **data["usage"]}

    def answer(self) -> Any:
        if self.message is None:
            return None
        try:
            content = accumulate(self.events)
        except (KeyError, IndexError, TypeError):  # a stream cut off mid-block
            content = []
        return {**self.message, "content": content}


class OllamaRebuilder(Rebuilder):
    """NDJSON chunks of /api/chat or /api/generate into the final object `stream: false`
    returns: text and thinking joined, tool calls collected, the last line's statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.final: dict[str, Any] | None = None
        self.text: list[str] = []
        self.thinking: list[str] = []
        self.calls: list[Any] = []
        self.chat = False

    def item(self, event: str | None, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if "error" in data:
            self.error = data
            return
        part = data.get("message")
        if isinstance(part, dict):
            self.chat = True
            self.text.append(part.get("content") or "")
            self.calls += part.get("tool_calls") or []
        else:
            part = data
            self.text.append(data.get("response") or "")
        self.thinking.append(part.get("thinking") or "")
        self.final = data

    def answer(self) -> Any:
        if self.final is None:
            return None
        out = dict(self.final)
        thinking = "".join(self.thinking)
        if self.chat:
            message = {**(out.get("message") or {}), "role": "assistant",
                       "content": "".join(self.text)}
            if thinking:
                message["thinking"] = thinking
            if self.calls:
                message["tool_calls"] = self.calls
            out["message"] = message
        else:
            out["response"] = "".join(self.text)
            if thinking:
                out["thinking"] = thinking
        return out


class ResponsesRebuilder(Rebuilder):
    """The Responses API: its last event that carries the whole `response` object
    (`response.completed`, `.incomplete` or `.failed`) is the answer."""

    def __init__(self) -> None:
        super().__init__()
        self.response: Any = None

    def item(self, event: str | None, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if data.get("type") == "error" or event == "error":
            self.error = data
        elif isinstance(data.get("response"), dict):
            self.response = data["response"]

    def answer(self) -> Any:
        return self.response


REBUILDERS: dict[str, type[Rebuilder]] = {
    "openai": OpenAIRebuilder,
    "anthropic": AnthropicRebuilder,
    "ollama": OllamaRebuilder,
    "responses": ResponsesRebuilder,
}


class StreamReader:
    """Splits a stream's bytes into items as they pass: SSE (`event:` / `data:` lines, blank
    line ends an event; comments ignored) or NDJSON (one JSON value per line)."""

    #: A line longer than this is not kept whole (no dialect sends one).
    MAX_LINE = 1 << 20

    def __init__(self, rebuilder: Rebuilder, sse: bool):
        self.rebuilder = rebuilder
        self.sse = sse
        self.buffer = b""
        self.event: str | None = None
        self.data: list[str] = []

    def feed(self, chunk: bytes | str) -> None:
        self.buffer += chunk.encode() if isinstance(chunk, str) else chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        if len(self.buffer) > self.MAX_LINE:
            self.buffer = b""
        for raw in lines:
            self._line(raw.decode("utf-8", errors="replace").rstrip("\r"))

    def close(self) -> None:
        if self.buffer:
            self._line(self.buffer.decode("utf-8", errors="replace"))
            self.buffer = b""
        self._line("")

    def _line(self, line: str) -> None:
        if not self.sse:
            if line.strip():
                self._emit(None, line)
            return
        if not line:
            if self.data:
                self._emit(self.event, "\n".join(self.data))
            self.event, self.data = None, []
        elif line.startswith("event:"):
            self.event = line[6:].strip()
        elif line.startswith("data:"):
            self.data.append(line[5:].removeprefix(" "))

    def _emit(self, event: str | None, text: str) -> None:
        if text.strip() == "[DONE]":
            return
        try:
            data = json.loads(text)
        except ValueError:
            return
        self.rebuilder.item(event, data)
