"""OpenAI's wire format <-> core types, without HTTP: chat and embedding request bodies to core
requests, core events to chat completions (whole, or the chunks of an SSE stream), core errors
to OpenAI's error object.

Pure functions, so the translation is testable without a server. The legacy /completions
format is in openai_legacy_codec.py, the routes in openai.py.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import struct
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..core.errors import DMRError, ErrorKind, Field, InvalidRequest
from ..core.types import (
    ChatRequest,
    ChoiceDone,
    Done,
    EmbeddingRequest,
    Image,
    Message,
    Sampling,
    TextDelta,
    ThinkingDelta,
    TokenLogprob,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
)
from .common import in_band
from .sse import sse_data
from .validation import check_json_schema, validate

if TYPE_CHECKING:
    from ..core.pipeline import Embeddings, Run

# ------------------------------------------------------------------------------------ errors

SYSTEM_FINGERPRINT = "litellm-dmr"

# ------------------------------------------------------------------------------------ errors

#: Every core error kind as OpenAI's error type (and, where OpenAI has one, its code).
_ERROR_TYPES = {
    ErrorKind.INVALID_REQUEST: "invalid_request_error",
    ErrorKind.EXCEED_CONTEXT_SIZE: "exceed_context_size_error",
    ErrorKind.AUTHENTICATION: "authentication_error",
    ErrorKind.PERMISSION: "permission_error",
    ErrorKind.NOT_FOUND: "not_found_error",
    ErrorKind.CONFLICT: "invalid_request_error",
    ErrorKind.ENGINE_NOT_INSTALLED: "invalid_request_error",
    ErrorKind.REQUEST_TOO_LARGE: "invalid_request_error",
    ErrorKind.OVERLOADED: "unavailable_error",
    ErrorKind.REQUEST_TIMEOUT: "invalid_request_error",
    ErrorKind.MODEL_LOAD_FAILED: "invalid_request_error",
    ErrorKind.RUNNER_CRASHED: "server_error",
    ErrorKind.RUNNER_CRASH_LOOP: "server_error",
    ErrorKind.INSUFFICIENT_MEMORY: "server_error",
    ErrorKind.INSUFFICIENT_STORAGE: "server_error",
    ErrorKind.SERVER_ERROR: "server_error",
}
_ERROR_CODES = {
    ErrorKind.EXCEED_CONTEXT_SIZE: "context_length_exceeded",
    ErrorKind.REQUEST_TIMEOUT: "request_timeout",
    ErrorKind.MODEL_LOAD_FAILED: "model_load_failed",
    ErrorKind.RUNNER_CRASHED: "runner_crashed",
    ErrorKind.RUNNER_CRASH_LOOP: "runner_crash_loop",
    ErrorKind.INSUFFICIENT_MEMORY: "insufficient_memory",
}


#: The core's neutral request fields as OpenAI's `param`.
_PARAMS = {Field.MODEL: "model", Field.GRAMMAR: "grammar",
           Field.RESPONSE_SCHEMA: "response_format"}


def param_of(exc: DMRError) -> str | None:
    """The request field an error is about, as OpenAI names it."""
    return exc.param if exc.param is not None else _PARAMS.get(exc.field)


def error_body(exc: DMRError) -> dict[str, Any]:
    param = param_of(exc)
    code = _ERROR_CODES.get(exc.kind)
    if exc.kind == ErrorKind.NOT_FOUND and param == "model":
        code = "model_not_found"
    error = {"message": exc.message, "type": _ERROR_TYPES.get(exc.kind, "server_error"),
             "param": param, "code": code}
    error.update(exc.details)
    return {"error": error}


# ------------------------------------------------------------------------------------ requests


_SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "presence_penalty",
                  "frequency_penalty", "repeat_penalty", "seed", "speculative")


def sampling_from(body: dict[str, Any], max_tokens: int | None) -> Sampling:
    s = Sampling(max_tokens=max_tokens)
    for key in _SAMPLING_KEYS:
        if body.get(key) is not None:
            setattr(s, key, body[key])
    stop = body.get("stop")
    s.stop = [stop] if isinstance(stop, str) else list(stop or [])
    s.logit_bias = {int(k): float(v) for k, v in (body.get("logit_bias") or {}).items()}
    explicit = {key for key in _SAMPLING_KEYS if body.get(key) is not None}
    if max_tokens is not None:
        explicit.add("max_tokens")
    if s.stop:
        explicit.add("stop")
    s.explicit = frozenset(explicit)
    return s


def _data_uri_image(url: str) -> Image:
    if not url.startswith("data:"):
        return Image(url=url)
    header, _, payload = url.partition(",")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest("image_url data URI is not valid base64", param="messages") from exc
    return Image(data=data, media_type=header[5:].split(";")[0] or None)


def _message(raw: dict[str, Any]) -> Message:
    role = {"developer": "system", "function": "tool"}.get(raw["role"], raw["role"])
    content = raw.get("content")
    texts: list[str] = []
    images: list[Image] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for part in content:
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                url = part["image_url"]
                images.append(_data_uri_image(url if isinstance(url, str) else url["url"]))
    calls = []
    for call in raw.get("tool_calls") or []:
        args = call["function"].get("arguments", "{}")
        calls.append(ToolCall(call.get("id") or "", call["function"]["name"],
                              args if isinstance(args, str) else json.dumps(args)))
    return Message(role=role, content="\n".join(texts), images=images, tool_calls=calls,
                   tool_call_id=raw.get("tool_call_id"), name=raw.get("name"),
                   reasoning=raw.get("reasoning_content"))


def _tool_choice(raw: Any) -> ToolChoice:
    if raw is None or raw == "auto":
        return ToolChoice("auto")
    if isinstance(raw, str):
        return ToolChoice(raw)
    return ToolChoice("function", raw["function"]["name"])


def schema_from(body: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """(the JSON Schema the answer must satisfy, the field that gave it): response_format,
    or llama-server's top-level json_schema."""
    raw = body.get("response_format")
    if body.get("json_schema") is not None:
        if raw and raw["type"] != "text":
            raise InvalidRequest("give response_format or json_schema, not both",
                                 param="json_schema")
        check_json_schema(body["json_schema"], "json_schema")
        return body["json_schema"], "json_schema"
    if not raw or raw["type"] == "text":
        return None, "response_format"
    if raw["type"] == "json_object":
        schema = raw.get("schema") or {}
    else:
        schema = raw["json_schema"].get("schema") or {}
    check_json_schema(schema, "response_format")
    return schema, "response_format"


def parse_chat(body: dict[str, Any], engine: str | None) -> ChatRequest:
    validate("openai_chat", body)
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    sampling = sampling_from(body, max_tokens)
    if body.get("top_logprobs") is not None and not body.get("logprobs"):
        raise InvalidRequest("top_logprobs requires logprobs to be true", param="top_logprobs")
    if body.get("logprobs"):
        sampling.logprobs = body.get("top_logprobs") or 0
    tools = []
    for i, raw in enumerate(body.get("tools") or []):
        fn = raw["function"]
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        check_json_schema(params, f"tools[{i}].function.parameters")
        tools.append(Tool(fn["name"], fn.get("description") or "", params))
    schema, schema_param = schema_from(body)
    req = ChatRequest(
        model=body["model"],
        engine=engine,
        messages=[_message(m) for m in body["messages"]],
        sampling=sampling,
        tools=tools,
        tool_choice=_tool_choice(body.get("tool_choice")),
        response_schema=schema,
        schema_param=schema_param,
        grammar=body.get("grammar"),
        n=body.get("n") or 1,
    )
    effort = body.get("reasoning_effort")
    if effort == "none":
        req.thinking.enabled = False
    elif effort:  # any effort turns thinking on, for every model (core/reasoning.py)
        req.thinking.enabled = True
    return req


def parse_embedding(body: dict[str, Any], engine: str | None) -> EmbeddingRequest:
    validate("openai_embedding", body)
    raw = body["input"]
    inputs = [raw] if isinstance(raw, str) or isinstance(raw[0], int) else list(raw)
    return EmbeddingRequest(model=body["model"], inputs=inputs, engine=engine,
                            dimensions=body.get("dimensions"))


def embedding_json(result: Embeddings, model: str, as_base64: bool) -> dict[str, Any]:
    data = []
    for i, vector in enumerate(result.vectors):
        value: Any = vector
        if as_base64:
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": value})
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": result.prompt_tokens,
                      "total_tokens": result.prompt_tokens}}


# ------------------------------------------------------------------------------------ encoding


def logprob_json(lp: TokenLogprob) -> dict[str, Any]:
    return {"token": lp.token, "logprob": lp.logprob, "bytes": lp.bytes,
            "top_logprobs": [{"token": t, "logprob": v, "bytes": b} for t, b, v in lp.top]}


def usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def chat_response(run: Run, model: str) -> dict[str, Any]:
    choices: dict[int, dict[str, Any]] = {}
    usage = Usage()

    def choice(i: int) -> dict[str, Any]:
        return choices.setdefault(i, {"index": i, "content": "", "reasoning": "", "calls": [],
                                      "logprobs": None, "finish_reason": None})

    for event in run.events:
        if isinstance(event, TextDelta):
            c = choice(event.choice)
            c["content"] += event.text
            if event.logprobs:
                c["logprobs"] = (c["logprobs"] or []) + [logprob_json(x) for x in event.logprobs]
        elif isinstance(event, ThinkingDelta):
            choice(event.choice)["reasoning"] += event.text
        elif isinstance(event, ToolCallDelta):
            calls = choice(event.choice)["calls"]
            if event.id is not None:
                calls.append({"id": event.id, "type": "function",
                              "function": {"name": event.name, "arguments": ""}})
            calls[event.index]["function"]["arguments"] += event.arguments
        elif isinstance(event, ChoiceDone):
            choice(event.choice)["finish_reason"] = event.finish_reason
        elif isinstance(event, Done):
            usage = event.usage
    out = []
    for i in sorted(choices):
        c = choices[i]
        message: dict[str, Any] = {"role": "assistant",
                                   "content": c["content"] if c["content"] or not c["calls"] else None}
        if c["reasoning"]:
            message["reasoning_content"] = c["reasoning"]
        if c["calls"]:
            message["tool_calls"] = c["calls"]
        out.append({"index": i, "message": message,
                    "logprobs": {"content": c["logprobs"]} if c["logprobs"] is not None else None,
                    "finish_reason": c["finish_reason"]})
    return {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": out,
        "usage": usage_json(usage),
    }


def chat_stream(run: Run, model: str, include_usage: bool) -> Iterator[str]:
    head = {"id": new_id("chatcmpl"), "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model, "system_fingerprint": SYSTEM_FINGERPRINT}
    started: set[int] = set()

    def chunk(i: int, delta: dict[str, Any], finish: str | None = None,
              logprobs: Any = None) -> str:
        body = {**head, "choices": [{"index": i, "delta": delta, "logprobs": logprobs,
                                     "finish_reason": finish}]}
        if include_usage:
            body["usage"] = None
        return sse_data(body)

    def ensure_started(i: int) -> Iterator[str]:
        if i not in started:
            started.add(i)
            yield chunk(i, {"role": "assistant", "content": ""})

    events = run.events
    try:
        for event in events:
            if isinstance(event, Done):
                if include_usage:
                    yield sse_data({**head, "choices": [], "usage": usage_json(event.usage)})
                continue
            yield from ensure_started(event.choice)
            if isinstance(event, TextDelta):
                logprobs = ({"content": [logprob_json(x) for x in event.logprobs]}
                            if event.logprobs else None)
                yield chunk(event.choice, {"content": event.text}, logprobs=logprobs)
            elif isinstance(event, ThinkingDelta):
                yield chunk(event.choice, {"reasoning_content": event.text})
            elif isinstance(event, ToolCallDelta):
                call: dict[str, Any] = {"index": event.index,
                                        "function": {"arguments": event.arguments}}
                if event.id is not None:
                    call.update(id=event.id, type="function")
                    call["function"]["name"] = event.name
                yield chunk(event.choice, {"tool_calls": [call]})
            elif isinstance(event, ChoiceDone):
                yield chunk(event.choice, {}, finish=event.finish_reason)
        yield "data: [DONE]\n\n"
    except Exception as exc:  # after the 200: report in-band, as OpenAI does
        yield sse_data(error_body(in_band(exc, "OpenAI")))
    finally:
        events.close()
