"""Claude's Messages API <-> core types, without HTTP: request bodies (with Claude's rules for
thinking, tool results and prefills) to core requests and encoding options, core errors to
Claude's error object and status.

Pure functions, so the translation is testable without a server. The block encoder is in
anthropic_encoder.py, the routes in anthropic.py.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from ..core.errors import ContextTooLong, DMRError, ErrorKind, InvalidRequest
from ..core.signing import ThinkingSigner
from ..core.types import (
    ChatRequest,
    Image,
    Message,
    Sampling,
    Thinking,
    Tool,
    ToolCall,
    ToolChoice,
)
from .validation import check_json_schema, validate

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


def error_status(exc: DMRError) -> int:
    return _ERRORS.get(exc.kind, _ERRORS[ErrorKind.SERVER_ERROR])[0]


def error_body(exc: DMRError, request_id: str) -> dict[str, Any]:
    _, kind = _ERRORS.get(exc.kind, _ERRORS[ErrorKind.SERVER_ERROR])
    message = exc.message
    if isinstance(exc, ContextTooLong):  # Claude's wording
        message = (f"prompt is too long: {exc.details['n_prompt_tokens']} tokens > "
                   f"{exc.details['n_ctx'] - 1} maximum")
    return {"type": "error", "error": {"type": kind, "message": message},
            "request_id": request_id}


# ------------------------------------------------------------------------------------ requests


@dataclass
class Options:
    """How to encode the answer, beyond what the core request says."""

    thinking: bool = False  # the answer starts with a thinking block
    omit_thinking: bool = False  # thinking.display == "omitted": signature only
    single_call: bool = False  # tool_choice.disable_parallel_tool_use
    max_tokens: int | None = None


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
    if body.get("logit_bias"):
        sampling.logit_bias = {int(k): float(v) for k, v in body["logit_bias"].items()}
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
