"""Core requests onto a remote engine's OpenAI API, and its answers back into core events.

The Anthropic and Ollama dialects parse their requests into core types as always; for a model
on a remote engine this module, not the local pipeline, runs them: a ChatRequest becomes an
OpenAI chat completion for the upstream, whose answer (streamed or whole) becomes the same
TextDelta / ThinkingDelta / ToolCallDelta / ChoiceDone / Done events the local pipeline makes,
so each dialect encodes it with its own code. Non-streamed requests ask the upstream for a whole
answer, which a dead replica cannot cut in half (the engine then retries on another one).
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Iterator
from typing import Any

from ..core import pipeline
from ..core.errors import (
    DMRError,
    EngineFailure,
    ErrorKind,
    InvalidRequest,
    ModelNotFound,
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
)
from ..core.tools import new_call_id
from ..core.types import (
    ChatRequest,
    ChoiceDone,
    CompletionRequest,
    Done,
    EmbeddingRequest,
    Event,
    Message,
    Sampling,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    Usage,
)
from ..engines.remote.engine import Forwarded, RemoteEngine
from .remote_proxy import event_payloads, upstream_error_body

_JSON = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


class UpstreamRefused(DMRError):
    """The upstream answered an error status; ours follows it (5xx become 502)."""

    status = 502
    kind = ErrorKind.SERVER_ERROR


# ------------------------------------------------------------------------------ requests


def _image_url(image) -> str:
    if image.url:
        return image.url
    data = base64.b64encode(image.data or b"").decode()
    return f"data:{image.media_type or 'image/png'};base64,{data}"


def message_json(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role}
    if m.images:
        parts: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
        parts += [{"type": "image_url", "image_url": {"url": _image_url(i)}} for i in m.images]
        out["content"] = parts
    else:
        out["content"] = m.content if m.content or not m.tool_calls else None
    if m.tool_calls:
        out["tool_calls"] = [{"id": c.id or new_call_id(), "type": "function",
                              "function": {"name": c.name, "arguments": c.arguments}}
                             for c in m.tool_calls]
    if m.role == "tool":
        out["tool_call_id"] = m.tool_call_id or ""
        if m.name:
            out["name"] = m.name
    if m.reasoning and m.role == "assistant":
        out["reasoning_content"] = m.reasoning
    return out


def sampling_json(s: Sampling) -> dict[str, Any]:
    """OpenAI's parameters, plus the ones vLLM, SGLang and llama.cpp all accept (top_k, min_p)
    when they differ from "off"; the repetition penalty goes by both engines' names."""
    out: dict[str, Any] = {"temperature": s.temperature, "top_p": s.top_p}
    if s.max_tokens is not None:
        out["max_tokens"] = s.max_tokens
    if s.top_k:
        out["top_k"] = s.top_k
    if s.min_p:
        out["min_p"] = s.min_p
    if s.presence_penalty:
        out["presence_penalty"] = s.presence_penalty
    if s.frequency_penalty:
        out["frequency_penalty"] = s.frequency_penalty
    if s.repeat_penalty != 1.0:
        out["repeat_penalty"] = out["repetition_penalty"] = s.repeat_penalty
    if s.seed is not None:
        out["seed"] = s.seed
    if s.stop:
        out["stop"] = list(s.stop)
    if s.logit_bias:
        out["logit_bias"] = {str(k): v for k, v in s.logit_bias.items()}
    return out


def chat_body(req: ChatRequest, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": req.model,
                            "messages": [message_json(m) for m in req.messages],
                            **sampling_json(req.sampling)}
    if req.tools and req.tool_choice.mode != "none":
        body["tools"] = [{"type": "function", "function": {
            "name": t.name, "description": t.description, "parameters": t.parameters}}
            for t in req.tools]
        choice = req.tool_choice
        body["tool_choice"] = ({"type": "function", "function": {"name": choice.name}}
                               if choice.mode == "function" else choice.mode)
    if req.response_schema is not None:
        body["response_format"] = (
            {"type": "json_schema", "json_schema": {"name": "response",
                                                    "schema": req.response_schema}}
            if req.response_schema else {"type": "json_object"})
    if req.thinking.enabled is False:
        body["chat_template_kwargs"] = {"enable_thinking": False}
    if req.n > 1:
        body["n"] = req.n
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _send(engine: RemoteEngine, path: str, body: dict[str, Any], model: str) -> Forwarded:
    def encode(name: str) -> bytes:
        return json.dumps({**body, "model": name}, ensure_ascii=False).encode()

    forwarded = engine.forward("POST", path, body=encode(model), headers=_JSON, model=model,
                               respell=encode)
    if forwarded.status >= 400:
        raw = b"".join(forwarded.chunks())
        raise _error(forwarded.status, raw, forwarded.upstream.url, model)
    return forwarded


def _error(status: int, raw: bytes, url: str, model: str) -> DMRError:
    message = upstream_error_body(status, raw, url)["error"]["message"]
    if status == 404:
        return ModelNotFound(model)
    if status in (400, 422):
        return InvalidRequest(message)
    if status == 408:
        return RequestTimeout(message)
    if status == 413:
        return PayloadTooLarge(message)
    if status in (429, 503):
        return Overloaded(f"upstream {url} is overloaded: {message}")
    hint = "; check the engine's api_key_env" if status in (401, 403) else ""
    return UpstreamRefused(f"upstream {url} answered HTTP {status}: {message}{hint}")


def _json(forwarded: Forwarded) -> dict[str, Any]:
    try:
        data = json.loads(forwarded.body())
    except ValueError:
        raise EngineFailure(f"upstream {forwarded.upstream.url} sent invalid JSON") from None
    if not isinstance(data, dict):
        raise EngineFailure(f"upstream {forwarded.upstream.url} sent a non-object JSON body")
    return data


# ------------------------------------------------------------------------------ answers


def _finish(raw: Any) -> str:
    return raw if raw in ("stop", "length", "tool_calls") else "stop"


def _usage(raw: Any) -> Usage:
    raw = raw if isinstance(raw, dict) else {}
    details = raw.get("prompt_tokens_details") or {}
    return Usage(prompt_tokens=int(raw.get("prompt_tokens") or 0),
                 completion_tokens=int(raw.get("completion_tokens") or 0),
                 cached_tokens=int((details or {}).get("cached_tokens") or 0))


def _stop_sequence(choice: dict[str, Any]) -> str | None:
    reason = choice.get("stop_reason")  # vLLM names the stop string that matched
    return reason if isinstance(reason, str) and reason else None


def _arguments(raw: Any) -> str:
    return raw if isinstance(raw, str) else json.dumps(raw or {})


def whole_chat_events(data: dict[str, Any], usage: Usage) -> Iterator[Event]:
    for choice in data.get("choices") or []:
        i = int(choice.get("index") or 0)
        message = choice.get("message") or {}
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if reasoning:
            yield ThinkingDelta(reasoning, i)
        if message.get("content"):
            yield TextDelta(message["content"], i)
        for k, call in enumerate(message.get("tool_calls") or []):
            fn = call.get("function") or {}
            yield ToolCallDelta(k, call.get("id") or new_call_id(), fn.get("name") or "",
                                _arguments(fn.get("arguments")), i)
        yield ChoiceDone(i, _finish(choice.get("finish_reason")), _stop_sequence(choice))
    yield Done(usage)


def _stream_payloads(forwarded: Forwarded) -> Iterator[dict[str, Any]]:
    for payload in event_payloads(forwarded.chunks()):
        if payload.strip() == "[DONE]":
            return
        try:
            event = json.loads(payload)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        if "error" in event and not event.get("choices"):
            error = event["error"]
            text = error.get("message") if isinstance(error, dict) else str(error)
            raise UpstreamRefused(f"upstream {forwarded.upstream.url} failed: {text}")
        yield event


def _timed(usage: Usage, sent: float, first: float | None) -> Usage:
    """Wall-clock prompt and generation time as seen from here (Ollama reports both)."""
    now = time.monotonic()
    first = first or now
    usage.prompt_seconds, usage.generation_seconds = first - sent, now - first
    return usage


def streamed_chat_events(forwarded: Forwarded, sent: float) -> Iterator[Event]:
    usage = Usage()
    started: set[tuple[int, int]] = set()
    open_choices: set[int] = set()
    first: float | None = None
    for event in _stream_payloads(forwarded):
        if event.get("usage"):
            usage = _usage(event["usage"])
        if first is None and event.get("choices"):
            first = time.monotonic()
        for choice in event.get("choices") or []:
            i = int(choice.get("index") or 0)
            open_choices.add(i)
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                yield ThinkingDelta(reasoning, i)
            if delta.get("content"):
                yield TextDelta(delta["content"], i)
            for call in delta.get("tool_calls") or []:
                k = int(call.get("index") or 0)
                fn = call.get("function") or {}
                if (i, k) not in started:
                    started.add((i, k))
                    yield ToolCallDelta(k, call.get("id") or new_call_id(), fn.get("name") or "",
                                        _arguments(fn.get("arguments") or ""), i)
                elif fn.get("arguments"):
                    yield ToolCallDelta(k, arguments=_arguments(fn["arguments"]), choice=i)
            if choice.get("finish_reason"):
                open_choices.discard(i)
                yield ChoiceDone(i, _finish(choice["finish_reason"]), _stop_sequence(choice))
    for i in sorted(open_choices):  # an upstream that ended without saying why
        yield ChoiceDone(i, "stop")
    yield Done(_timed(usage, sent, first))


def _run(model: str, prompt_tokens: int, events: Iterator[Event],
         forwarded: Forwarded) -> pipeline.Run:
    return pipeline.Run(model, prompt_tokens, pipeline.EventStream(events, forwarded.close))


# ------------------------------------------------------------------------------ entry points


def start_chat(engine: RemoteEngine, req: ChatRequest, stream: bool) -> pipeline.Run:
    """Send the chat to the engine now (errors raise here, before any status line)."""
    sent = time.monotonic()
    forwarded = _send(engine, "chat/completions", chat_body(req, stream), req.model)
    if forwarded.streaming:
        return _run(req.model, 0, streamed_chat_events(forwarded, sent), forwarded)
    data = _json(forwarded)
    forwarded.close()
    usage = _timed(_usage(data.get("usage")), sent, None)
    return _run(req.model, usage.prompt_tokens, whole_chat_events(data, usage), forwarded)


def count_chat_tokens(engine: RemoteEngine, req: ChatRequest) -> int:
    """The upstream's own count: a one-token completion's prompt_tokens (OpenAI-compatible
    servers have no common tokenize route)."""
    req.sampling.max_tokens = 1
    run = start_chat(engine, req, stream=False)
    try:
        usage = next(e.usage for e in run.events if isinstance(e, Done))
    finally:
        run.close()
    return usage.prompt_tokens


def _completion_events(data: dict[str, Any], n: int, echo: str | None) -> Iterator[Event]:
    for choice in data.get("choices") or []:
        i = int(choice.get("index") or 0)
        text = choice.get("text") or ""
        if echo is not None and not text.startswith(echo):
            text = echo + text
        if text:
            yield TextDelta(text, i)
        yield ChoiceDone(i, _finish(choice.get("finish_reason")), _stop_sequence(choice))
    yield Done(_usage(data.get("usage")))


def _streamed_completion_events(forwarded: Forwarded) -> Iterator[Event]:
    usage = Usage()
    open_choices: set[int] = set()
    for event in _stream_payloads(forwarded):
        if event.get("usage"):
            usage = _usage(event["usage"])
        for choice in event.get("choices") or []:
            i = int(choice.get("index") or 0)
            open_choices.add(i)
            if choice.get("text"):
                yield TextDelta(choice["text"], i)
            if choice.get("finish_reason"):
                open_choices.discard(i)
                yield ChoiceDone(i, _finish(choice["finish_reason"]), _stop_sequence(choice))
    for i in sorted(open_choices):
        yield ChoiceDone(i, "stop")
    yield Done(usage)


def start_completion(engine: RemoteEngine, req: CompletionRequest, stream: bool) -> pipeline.Run:
    if req.response_schema is not None:
        raise InvalidRequest("a JSON format on a raw prompt is not supported by remote engines; "
                             "use the chat API", param="format")
    body: dict[str, Any] = {"model": req.model, "prompt": req.prompt,
                            **sampling_json(req.sampling)}
    if req.n > 1:
        body["n"] = req.n
    if req.echo:
        body["echo"] = True
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    forwarded = _send(engine, "completions", body, req.model)
    if forwarded.streaming:
        return _run(req.model, 0, _streamed_completion_events(forwarded), forwarded)
    data = _json(forwarded)
    forwarded.close()
    echo = req.prompt if req.echo and isinstance(req.prompt, str) else None
    return _run(req.model, _usage(data.get("usage")).prompt_tokens,
                _completion_events(data, req.n, echo), forwarded)


def embed(engine: RemoteEngine, req: EmbeddingRequest) -> pipeline.Embeddings:
    """Vectors from the upstream, cut to `dimensions` and normalised here, as locally."""
    if not req.inputs:
        raise InvalidRequest("input must not be empty", param="input")
    started = time.monotonic()
    forwarded = _send(engine, "embeddings", {"model": req.model, "input": req.inputs},
                      req.model)
    try:
        data = _json(forwarded)
    finally:
        forwarded.close()
    rows = sorted(data.get("data") or [], key=lambda d: d.get("index") or 0)
    vectors = [list(map(float, row.get("embedding") or [])) for row in rows]
    if req.dimensions is not None:
        vectors = [v[: req.dimensions] for v in vectors]
    if req.normalize:
        vectors = [_normalized(v) for v in vectors]
    prompt_tokens = int((data.get("usage") or {}).get("prompt_tokens") or 0)
    return pipeline.Embeddings(req.model, vectors, prompt_tokens, 0.0,
                               time.monotonic() - started)


def _normalized(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else vector
