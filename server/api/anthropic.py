"""The Anthropic dialect: Claude's Messages API, so the official SDK works against us unchanged.

Routes: POST /v1/messages, /anthropic/v1/messages and /engines[/{engine}]/v1/messages, each
with /count_tokens. Requests are validated (schemas/anthropic_*.json), translated to a core
ChatRequest, and the core's events are encoded back the way Claude encodes them: content blocks
in order (thinking, text, tool_use), one open at a time, each streamed as start, deltas, stop.
Errors use Claude's shape {"type": "error", "error": {"type", "message"}, "request_id"} and
statuses. Auth and version headers (x-api-key, anthropic-version, anthropic-beta) are ignored.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify

from ..core import pipeline
from ..core.errors import ContextTooLong, DMRError, ErrorKind, InvalidRequest
from ..core.signing import ThinkingSigner
from ..core.types import (
    ChatRequest,
    ChoiceDone,
    Done,
    Event,
    Image,
    Message,
    Sampling,
    TextDelta,
    Thinking,
    ThinkingDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
)
from ..state import current
from . import remote
from .common import (
    check_engine_segment,
    claim_unrouted,
    in_band,
    install_error_handlers,
    json_error,
)
from .keepalive import HEARTBEAT, with_heartbeats
from .recorder import record
from .sse import sse_event, streaming_response
from .validation import check_json_schema, json_body, validate

bp = Blueprint("anthropic", __name__)

#: Seconds without an event after which a stream sends a `ping`.
PING_INTERVAL = 10.0

# ------------------------------------------------------------------------------------ errors

_ERRORS = {  # core error kind -> (HTTP status, Claude's error type)
    ErrorKind.INVALID_REQUEST: (400, "invalid_request_error"),
    ErrorKind.EXCEED_CONTEXT_SIZE: (400, "invalid_request_error"),
    ErrorKind.CONFLICT: (400, "invalid_request_error"),
    ErrorKind.ENGINE_NOT_INSTALLED: (400, "invalid_request_error"),
    ErrorKind.AUTHENTICATION: (401, "authentication_error"),
    ErrorKind.PERMISSION: (403, "permission_error"),
    ErrorKind.NOT_FOUND: (404, "not_found_error"),
    ErrorKind.REQUEST_TOO_LARGE: (413, "request_too_large"),
    ErrorKind.REQUEST_TIMEOUT: (408, "invalid_request_error"),
    ErrorKind.MODEL_LOAD_FAILED: (422, "invalid_request_error"),
    ErrorKind.OVERLOADED: (529, "overloaded_error"),
    ErrorKind.RUNNER_CRASHED: (500, "api_error"),
    ErrorKind.RUNNER_CRASH_LOOP: (503, "api_error"),
    ErrorKind.INSUFFICIENT_MEMORY: (507, "api_error"),
    ErrorKind.INSUFFICIENT_STORAGE: (500, "api_error"),
    ErrorKind.SERVER_ERROR: (500, "api_error"),
}


def _request_id() -> str:
    if "anthropic_request_id" not in g:
        g.anthropic_request_id = "req_" + secrets.token_hex(12)
    return g.anthropic_request_id


def error_body(exc: DMRError, request_id: str) -> dict[str, Any]:
    _, kind = _ERRORS.get(exc.kind, _ERRORS[ErrorKind.SERVER_ERROR])
    message = exc.message
    if isinstance(exc, ContextTooLong):  # Claude's wording
        message = (f"prompt is too long: {exc.details['n_prompt_tokens']} tokens > "
                   f"{exc.details['n_ctx'] - 1} maximum")
    return {"type": "error", "error": {"type": kind, "message": message},
            "request_id": request_id}


def error_response(exc: DMRError) -> Response:
    status, _ = _ERRORS.get(exc.kind, _ERRORS[ErrorKind.SERVER_ERROR])
    return json_error(error_body(exc, _request_id()), status, exc)


bp.before_request(check_engine_segment)


@bp.after_request
def _add_request_id(response: Response) -> Response:
    response.headers["request-id"] = _request_id()
    return response


install_error_handlers(bp, error_response, "Anthropic")


# ------------------------------------------------------------------------------------ requests


@dataclass
class Options:
    """How to encode the answer, beyond what the core request says."""

    thinking: bool = False  # the answer starts with a thinking block
    omit_thinking: bool = False  # thinking.display == "omitted": signature only
    single_call: bool = False  # tool_choice.disable_parallel_tool_use
    max_tokens: int | None = None


def signer() -> ThinkingSigner:
    """The signer for this server's model store (its key lives there; see core/signing.py)."""
    extensions = current_app.extensions
    if "anthropic_signer" not in extensions:
        extensions["anthropic_signer"] = ThinkingSigner.for_directory(current().store.root)
    return extensions["anthropic_signer"]


def _invalid(message: str, param: str | None = None) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}" if param else message, param=param)


def _image(source: dict[str, Any], where: str) -> Image:
    if source["type"] == "url":
        return Image(url=source["url"])
    try:
        data = base64.b64decode(source["data"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _invalid("image data is not valid base64", f"{where}.source.data") from exc
    return Image(data=data, media_type=source["media_type"])


def _system_text(system: str | list[dict[str, Any]]) -> str:
    return system if isinstance(system, str) else "\n".join(b["text"] for b in system)


def _tool_result(block: dict[str, Any], names: dict[str, str], where: str) -> Message:
    content = block.get("content", "")
    texts: list[str] = []
    images: list[Image] = []
    for j, part in enumerate([{"type": "text", "text": content}] if isinstance(content, str)
                             else content):
        if part["type"] == "text":
            texts.append(part["text"])
        elif part["type"] == "image":
            images.append(_image(part["source"], f"{where}.content[{j}]"))
        else:
            raise _invalid(f"{part['type']} blocks are not supported by this server",
                           f"{where}.content[{j}]")
    text = "\n".join(texts)
    if block.get("is_error"):
        text = f"Error: {text}"
    tool_id = block["tool_use_id"]
    return Message("tool", text, images, tool_call_id=tool_id, name=names.get(tool_id))


def _turn(i: int, raw: dict[str, Any], names: dict[str, str],
          signer_: ThinkingSigner) -> list[Message]:
    """One Claude message as core messages: tool results become their own `tool` messages
    (first, as they answer the previous turn's calls), the rest one message of its role."""
    role = raw["role"]
    content = raw["content"]
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    texts: list[str] = []
    images: list[Image] = []
    calls: list[ToolCall] = []
    reasoning: list[str] = []
    results: list[Message] = []
    allowed = {"user": {"text", "image", "tool_result"},
               "assistant": {"text", "tool_use", "thinking", "redacted_thinking"},
               "system": {"text"}}[role]
    for j, block in enumerate(blocks):
        where, kind = f"messages[{i}].content[{j}]", block["type"]
        if kind not in allowed:
            known = {"text", "image", "tool_result", "tool_use", "thinking", "redacted_thinking"}
            raise _invalid(f"{kind} blocks may not appear in {role} messages" if kind in known
                           else f"{kind} blocks are not supported by this server", where)
        if kind == "text":
            texts.append(block["text"])
        elif kind == "image":
            images.append(_image(block["source"], where))
        elif kind == "tool_result":
            results.append(_tool_result(block, names, where))
        elif kind == "tool_use":
            names[block["id"]] = block["name"]
            calls.append(ToolCall(block["id"], block["name"], json.dumps(block["input"])))
        elif kind == "thinking":
            if not signer_.verify(block["thinking"], block["signature"]):
                raise _invalid("Invalid `signature` in `thinking` block: it was modified, or it "
                               "was not produced by this server; pass thinking blocks back "
                               "exactly as received", f"{where}.signature")
            reasoning.append(block["thinking"])
        # redacted_thinking: opaque and never produced by this server; nothing to show a model
    out = results
    if texts or images or calls or reasoning or not results:
        out = [*results, Message(role, "\n".join(texts), images, calls,
                                 reasoning="\n".join(reasoning) or None)]
    return out


def _merge(messages: list[Message]) -> list[Message]:
    """Consecutive user (or assistant) turns are one turn, as Claude treats them."""
    out: list[Message] = []
    for m in messages:
        prev = out[-1] if out else None
        if prev is not None and m.role == prev.role and m.role in ("user", "assistant"):
            out[-1] = Message(
                m.role, "\n\n".join(t for t in (prev.content, m.content) if t),
                prev.images + m.images, prev.tool_calls + m.tool_calls,
                reasoning="\n".join(r for r in (prev.reasoning, m.reasoning) if r) or None)
        else:
            out.append(m)
    return out


def _messages(body: dict[str, Any], signer_: ThinkingSigner) -> list[Message]:
    raw = body["messages"]
    out: list[Message] = []
    if body.get("system"):
        out.append(Message("system", _system_text(body["system"])))
    names: dict[str, str] = {}
    for i, m in enumerate(raw):
        final_assistant = i == len(raw) - 1 and m["role"] == "assistant"
        if not m["content"] and not final_assistant:
            raise _invalid("all messages must have non-empty content except for the optional "
                           "final assistant message", f"messages[{i}]")
        out.extend(_turn(i, m, names, signer_))
    last = raw[-1]
    if last["role"] == "assistant" and out[-1].content != out[-1].content.rstrip():
        raise _invalid("final assistant content cannot end with trailing whitespace",
                       "messages")
    return _merge(out)


def _thinking(body: dict[str, Any]) -> tuple[Thinking, bool]:
    """(core thinking settings, display omitted?). Without `thinking`, no thinking is shown,
    as with Claude; natively reasoning models are asked not to think."""
    raw = body.get("thinking") or {"type": "disabled"}
    omitted = raw.get("display") == "omitted"
    if raw["type"] == "enabled":
        return Thinking(True, raw["budget_tokens"]), omitted
    if raw["type"] in ("adaptive", "between_tools"):
        return Thinking(True, None), omitted
    return Thinking(False), False


def _check_thinking(body: dict[str, Any], thinking: Thinking) -> None:
    """Claude's rules for requests with thinking on, so code that runs here runs on Claude.

    Unlike Claude, budgets below 1024 tokens are accepted: small models want small budgets."""
    if not thinking.enabled:
        return
    if thinking.budget_tokens is not None and thinking.budget_tokens >= body["max_tokens"]:
        raise _invalid("`max_tokens` must be greater than `thinking.budget_tokens`",
                       "thinking.budget_tokens")
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        raise _invalid("Thinking may not be enabled when tool_choice forces tool use.",
                       "tool_choice")
    if body.get("temperature", 1) != 1:
        raise _invalid("`temperature` may only be set to 1 when thinking is enabled.",
                       "temperature")
    if "top_k" in body:
        raise _invalid("`top_k` may not be set when thinking is enabled.", "top_k")
    if body.get("top_p", 1) < 0.95:
        raise _invalid("`top_p` must be between 0.95 and 1 when thinking is enabled.", "top_p")
    if body["messages"][-1]["role"] == "assistant":
        raise _invalid("prefilling the assistant response is not supported when thinking is "
                       "enabled", "messages")


def _tools(body: dict[str, Any]) -> list[Tool]:
    """Custom tools; Anthropic-defined ones (dated `type`s such as web_search_20250305) run on
    Anthropic's servers or need their client-side schemas, so they are not offered here."""
    tools = []
    for i, raw in enumerate(body.get("tools") or []):
        if raw.get("type", "custom") != "custom":
            continue
        check_json_schema(raw["input_schema"], f"tools[{i}].input_schema")
        tools.append(Tool(raw["name"], raw.get("description") or "", raw["input_schema"]))
    return tools


def _tool_choice(body: dict[str, Any]) -> ToolChoice:
    raw = body.get("tool_choice") or {"type": "auto"}
    mode = {"auto": "auto", "any": "required", "tool": "function", "none": "none"}[raw["type"]]
    return ToolChoice(mode, raw.get("name"))


def _response_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = (body.get("output_config") or {}).get("format") or body.get("output_format")
    if not fmt:
        return None
    check_json_schema(fmt["schema"], "output_config.format.schema")
    return fmt["schema"]


#: Sampling when the request does not say: llama.cpp server's defaults, which is what Docker
#: Model Runner users get (it passes Claude requests to llama-server as they are). Claude's own
#: default (temperature 1, nothing else) makes small local models ramble.
_SAMPLING_DEFAULTS = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05}


def _chat_request(body: dict[str, Any], engine: str | None, sampling: Sampling,
                  thinking: Thinking, signer_: ThinkingSigner) -> ChatRequest:
    return ChatRequest(
        model=body["model"],
        engine=engine,
        messages=_messages(body, signer_),
        sampling=sampling,
        tools=_tools(body),
        tool_choice=_tool_choice(body),
        response_schema=_response_schema(body),
        schema_param="output_config.format",
        thinking=thinking,
    )


def parse_messages(body: dict[str, Any], engine: str | None,
                   signer_: ThinkingSigner) -> tuple[ChatRequest, Options]:
    validate("anthropic_messages", body)
    thinking, omitted = _thinking(body)
    _check_thinking(body, thinking)
    sampling = Sampling(max_tokens=body["max_tokens"],
                        stop=list(body.get("stop_sequences") or []), **_SAMPLING_DEFAULTS)
    for key in ("temperature", "top_p", "top_k", "speculative"):
        if key in body:
            setattr(sampling, key, body[key])
    sampling.explicit = frozenset({"max_tokens", *(k for k in ("temperature", "top_p", "top_k")
                                                    if k in body),
                                   *(["stop"] if sampling.stop else [])})
    req = _chat_request(body, engine, sampling, thinking, signer_)
    options = Options(thinking=bool(thinking.enabled), omit_thinking=omitted,
                      single_call=bool((body.get("tool_choice") or {})
                                       .get("disable_parallel_tool_use")),
                      max_tokens=body["max_tokens"])
    return req, options


def parse_count_tokens(body: dict[str, Any], engine: str | None,
                       signer_: ThinkingSigner) -> ChatRequest:
    validate("anthropic_count_tokens", body)
    thinking, _ = _thinking(body)
    return _chat_request(body, engine, Sampling(), thinking, signer_)


# ------------------------------------------------------------------------------------ encoding


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


def message_json(run: pipeline.Run, model: str, blocks: Blocks) -> dict[str, Any]:
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


def message_stream(run: pipeline.Run, model: str, blocks: Blocks,
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


# ------------------------------------------------------------------------------------ routes


@bp.post("/messages")
@record("anthropic")
def messages(engine: str | None = None):
    body = json_body()
    signer_ = signer()
    req, options = parse_messages(body, engine, signer_)
    run = remote.start_chat(current().runtime, req, bool(body.get("stream")))
    blocks = Blocks(options, signer_)
    if body.get("stream"):
        return streaming_response(message_stream(run, body["model"], blocks, _request_id()),
                                  "text/event-stream", on_close=run.close)
    return jsonify(message_json(run, body["model"], blocks))


@bp.post("/messages/count_tokens")
@record("anthropic")
def count_tokens(engine: str | None = None):
    req = parse_count_tokens(json_body(), engine, signer())
    return jsonify({"input_tokens": remote.count_chat_tokens(current().runtime, req)})


def register(app) -> None:
    """Mount the dialect where DMR serves it, and where the SDK's base URL leads."""
    # Before OpenAI's claim: /engines/v1/messages/... is ours.
    claim_unrouted(app, r"^/anthropic(/|$)|(^|/)v1/messages(/|$)", error_response,
                   priority=-1)
    for prefix, name in (("/v1", "anthropic_v1"), ("/anthropic/v1", "anthropic"),
                         ("/engines/v1", "anthropic_engines"),
                         ("/engines/<engine>/v1", "anthropic_engine")):
        app.register_blueprint(bp, url_prefix=prefix, name=name)
