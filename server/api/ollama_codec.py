"""Ollama's wire format <-> core types, without HTTP: request bodies to core requests, core
events to the objects Ollama streams as NDJSON, core errors to Ollama's messages.

Pure functions and one encoder class, so the translation is testable without a server. The
routes live in ollama.py.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import Any, Literal

from ..config import parse_duration
from ..core.errors import ContextTooLong, DMRError, InvalidRequest, ModelNotFound, NotSupported
from ..core.types import (
    ChatRequest,
    ChoiceDone,
    CompletionRequest,
    Done,
    Event,
    Image,
    Message,
    Sampling,
    TextDelta,
    ThinkingDelta,
    TokenLogprob,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from .validation import check_json_schema

ROLES = ("system", "user", "assistant", "tool")

#: Ollama's DefaultOptions() (api/types.go): clients expect these, not OpenAI's defaults.
DEFAULTS = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0,
            "repeat_last_n": 64, "repeat_penalty": 1.0}

#: Options passed straight to Sampling under the same name.
_SAMPLING_KEYS = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "presence_penalty",
                  "frequency_penalty", "speculative")

#: repeat_last_n -1 means "the whole context"; the penalty window is capped at this.
_MAX_REPEAT_WINDOW = 4096


# ------------------------------------------------------------------------------ requests


def keep_alive(value: Any) -> float | None:
    """Seconds a model stays loaded after the request; negative = forever; None = default."""
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise InvalidRequest(f"keep_alive: {exc}; use seconds or a duration such as \"5m\"",
                             param="keep_alive") from exc
    return -1.0 if seconds < 0 else seconds


def sampling(options: dict[str, Any] | None) -> Sampling:
    """Ollama options -> core sampling. Options that only tune Ollama's own runner (num_gpu,
    num_batch, num_keep, mirostat, ...) are accepted and ignored; num_thread is ignored because
    the engine's threads are fixed at load and never exceed the cores."""
    o = options or {}
    s = Sampling(**DEFAULTS)
    for key in _SAMPLING_KEYS:
        if o.get(key) is not None:
            setattr(s, key, o[key])
    s.top_k = int(s.top_k)
    n = o.get("num_predict")
    s.max_tokens = int(n) if n is not None and n >= 0 else None  # -1 / -2: until done
    if o.get("num_ctx"):
        s.context_limit = int(o["num_ctx"])
    window = o.get("repeat_last_n")
    if window is not None:
        s.repeat_last_n = int(window) if window >= 0 else (s.context_limit or _MAX_REPEAT_WINDOW)
    seed = o.get("seed")
    s.seed = int(seed) if seed is not None and seed >= 0 else None
    stop = o.get("stop")
    s.stop = [stop] if isinstance(stop, str) else [x for x in stop or [] if x]
    explicit = {key for key in (*_SAMPLING_KEYS, "repeat_last_n", "seed") if o.get(key) is not None}
    if n is not None:  # even -1 / -2 ("until done") is the request's own choice
        explicit.add("max_tokens")
    if s.stop:
        explicit.add("stop")
    s.explicit = frozenset(explicit)
    return s


def response_schema(fmt: Any) -> dict[str, Any] | None:
    """`format`: "json" = any JSON object, an object = that JSON Schema, ""/null = free text."""
    if fmt in (None, ""):
        return None
    if fmt == "json":
        return {}
    check_json_schema(fmt, "format")
    return fmt


def _sniff(data: bytes) -> str | None:
    for magic, mime in ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG", "image/png"),
                        (b"GIF8", "image/gif")):
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def images(raw: list[str] | None, param: str) -> list[Image]:
    out = []
    for i, item in enumerate(raw or []):
        try:
            data = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequest(f"{param}[{i}] is not valid base64 image data",
                                 param=f"{param}[{i}]") from exc
        out.append(Image(data=data, media_type=_sniff(data)))
    return out


def _arguments(raw: Any) -> str:
    if raw is None:
        return "{}"
    return raw if isinstance(raw, str) else json.dumps(raw)


def message(raw: dict[str, Any], i: int) -> Message:
    role = raw["role"].lower()
    if role not in ROLES:
        raise InvalidRequest(f"messages[{i}].role must be one of {', '.join(ROLES)}, "
                             f"not {raw['role']!r}", param=f"messages[{i}].role")
    calls = [ToolCall(c.get("id") or "", c["function"]["name"],
                      _arguments(c["function"].get("arguments")))
             for c in raw.get("tool_calls") or []]
    return Message(role=role, content=raw.get("content") or "",
                   images=images(raw.get("images"), f"messages[{i}].images"),
                   tool_calls=calls, tool_call_id=raw.get("tool_call_id"),
                   name=raw.get("tool_name"), reasoning=raw.get("thinking") or None)


def tools(raw: list[dict[str, Any]] | None) -> list[Tool]:
    out = []
    for i, item in enumerate(raw or []):
        fn = item["function"]
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        check_json_schema(params, f"tools[{i}].function.parameters")
        out.append(Tool(fn["name"], fn.get("description") or "", params))
    return out


def _logprobs(body: dict[str, Any], s: Sampling) -> None:
    if body.get("logprobs"):
        s.logprobs = body.get("top_logprobs") or 0


#: Thinking budgets (tokens) for Ollama's think levels; "max" (like true) sets none.
THINK_BUDGETS = {"low": 512, "medium": 2048, "high": 8192}


def _think(req: ChatRequest, value: Any) -> None:
    """think: true/false, or a level ("low".."max"): on, with the level's token budget."""
    if value is None:
        return
    req.thinking.enabled = value if isinstance(value, bool) else True
    if isinstance(value, str):
        req.thinking.budget_tokens = THINK_BUDGETS.get(value)


def chat_request(body: dict[str, Any]) -> ChatRequest:
    """A validated /api/chat body with at least one message -> ChatRequest."""
    s = sampling(body.get("options"))
    _logprobs(body, s)
    req = ChatRequest(
        model=body["model"],
        messages=[message(m, i) for i, m in enumerate(body["messages"])],
        sampling=s,
        tools=tools(body.get("tools")),
        response_schema=response_schema(body.get("format")),
        schema_param="format",
        keep_alive=keep_alive(body.get("keep_alive")),
    )
    _think(req, body.get("think"))
    return req


def generate_request(body: dict[str, Any]) -> ChatRequest | CompletionRequest:
    """A validated /api/generate body with a prompt -> a chat turn, or a raw completion."""
    if body.get("suffix"):
        raise NotSupported(f"{body['model']!r} does not support insert (suffix)", param="suffix")
    if body.get("template"):
        raise InvalidRequest("template overrides are not supported (models use their own chat "
                             "template); send raw: true with a prompt you formatted yourself",
                             param="template")
    if body.get("context"):
        raise InvalidRequest("context (deprecated) is not supported; send the conversation to "
                             "/api/chat instead", param="context")
    s = sampling(body.get("options"))
    _logprobs(body, s)
    schema = response_schema(body.get("format"))
    ttl = keep_alive(body.get("keep_alive"))
    if body.get("raw"):
        if body.get("system"):
            raise InvalidRequest("raw mode does not support template, system, or context",
                                 param="system")
        if body.get("images"):
            raise NotSupported("images need a vision model and are not supported with raw "
                               "prompts", param="images")
        return CompletionRequest(model=body["model"], prompt=body["prompt"], sampling=s,
                                 response_schema=schema, schema_param="format", keep_alive=ttl)
    messages = [Message("system", body["system"])] if body.get("system") else []
    messages.append(Message("user", body["prompt"], images=images(body.get("images"), "images")))
    req = ChatRequest(model=body["model"], messages=messages, sampling=s,
                      response_schema=schema, schema_param="format", keep_alive=ttl)
    _think(req, body.get("think"))
    return req


# ------------------------------------------------------------------------------ responses


def created_at() -> str:
    """RFC 3339 UTC with sub-second digits, as Ollama writes timestamps."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


#: The last second datetime can show (9999-12-31T23:59:59Z).
_LAST_EPOCH = 253402300799


def timestamp(epoch: float) -> str:
    """RFC 3339 UTC; an expiry past year 9999 (keep_alive: 1e300) shows as that year's end."""
    if not math.isfinite(epoch) or epoch > _LAST_EPOCH:
        epoch = _LAST_EPOCH
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def ns(seconds: float) -> int:
    return max(0, round(seconds * 1e9))


def metrics(usage: Usage, started: float) -> dict[str, int]:
    """The final object's counters; durations are measured, in nanoseconds."""
    return {
        "total_duration": ns(time.monotonic() - started),
        "load_duration": ns(usage.load_seconds),
        "prompt_eval_count": usage.prompt_tokens,
        "prompt_eval_duration": ns(usage.prompt_seconds),
        "eval_count": usage.completion_tokens,
        "eval_duration": ns(usage.generation_seconds),
    }


def _logprob(lp: TokenLogprob) -> dict[str, Any]:
    return {"token": lp.token, "logprob": lp.logprob, "bytes": lp.bytes,
            "top_logprobs": [{"token": t, "logprob": v, "bytes": b} for t, b, v in lp.top]}


def _tool_call(index: int, call: dict[str, Any]) -> dict[str, Any]:
    """Ollama sends arguments as an object; the core's calls always parse to one."""
    try:
        arguments = json.loads(call["arguments"] or "{}")
    except ValueError:
        arguments = {}
    if not isinstance(arguments, dict):
        arguments = {"value": arguments}
    return {"id": call["id"],
            "function": {"index": index, "name": call["name"], "arguments": arguments}}


def layer_status(digest: str, total: int, completed: int) -> dict[str, Any]:
    """One pull progress line, as Ollama names layers: `pulling <first 12 hex digits>`."""
    short = digest.split(":", 1)[-1][:12]
    return {"status": f"pulling {short}", "digest": digest, "total": total,
            "completed": completed}


class Encoder:
    """Core events -> /api/chat or /api/generate objects (the last one has done: true)."""

    def __init__(self, kind: Literal["chat", "generate"], model: str, started: float):
        self.kind = kind
        self.model = model
        self.started = started

    def _chunk(self, text: str = "", thinking: str = "", calls: list | None = None,
               logprobs: list | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "created_at": created_at()}
        if self.kind == "chat":
            msg: dict[str, Any] = {"role": "assistant", "content": text}
            if thinking:
                msg["thinking"] = thinking
            if calls:
                msg["tool_calls"] = calls
            out["message"] = msg
        else:
            out["response"] = text
            if thinking:
                out["thinking"] = thinking
        if logprobs:
            out["logprobs"] = logprobs
        out["done"] = False
        return out

    def chunks(self, events: Iterable[Event]) -> Iterator[dict[str, Any]]:
        calls: list[dict[str, Any]] = []
        reason = "stop"
        for event in events:
            if isinstance(event, TextDelta):
                lps = [_logprob(x) for x in event.logprobs] if event.logprobs else None
                yield self._chunk(text=event.text, logprobs=lps)
            elif isinstance(event, ThinkingDelta):
                yield self._chunk(thinking=event.text)
            elif isinstance(event, ToolCallDelta):
                if event.id is not None or event.index >= len(calls):
                    calls.append({"id": event.id or "", "name": event.name or "",
                                  "arguments": ""})
                calls[event.index]["arguments"] += event.arguments
            elif isinstance(event, ChoiceDone):
                reason = "length" if event.finish_reason == "length" else "stop"
                if calls and self.kind == "chat":
                    yield self._chunk(calls=[_tool_call(i, c) for i, c in enumerate(calls)])
                calls = []
            elif isinstance(event, Done):
                final = self._chunk()
                final.update(done=True, done_reason=reason, **metrics(event.usage, self.started))
                yield final

    def collect(self, events: Iterable[Event]) -> dict[str, Any]:
        """The whole answer as one object (stream: false)."""
        text, thinking, calls, logprobs = [], [], [], []
        final: dict[str, Any] = {}
        for chunk in self.chunks(events):
            part = chunk.get("message", chunk)
            text.append(part.get("content", part.get("response", "")))
            thinking.append(part.get("thinking", ""))
            calls += part.get("tool_calls", [])
            logprobs += chunk.get("logprobs", [])
            final = chunk
        thinking_text = "".join(thinking)
        out = self._chunk("".join(text), thinking_text, calls, logprobs)
        out.update({k: v for k, v in final.items() if k not in out or k == "done"})
        return out

    def status(self, reason: Literal["load", "unload"], load_seconds: float = 0.0) -> dict:
        """The answer to an empty prompt (load) or an empty prompt with keep_alive 0 (unload)."""
        out = self._chunk()
        out.update(done=True, done_reason=reason, total_duration=ns(time.monotonic() - self.started),
                   load_duration=ns(load_seconds))
        return out


def error_message(exc: DMRError) -> str:
    """Ollama's wording where clients or users know it; ours otherwise."""
    if isinstance(exc, ModelNotFound):
        return f"model '{exc.name}' not found"
    if isinstance(exc, ContextTooLong):
        return (f"the input length exceeds the context length: the prompt has "
                f"{exc.details['n_prompt_tokens']} tokens but the context size is "
                f"{exc.details['n_ctx']}; shorten the prompt, raise options.num_ctx, or start "
                "the server with a larger --context-size")
    return exc.message
