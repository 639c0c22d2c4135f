"""Responses API requests -> the core's ChatRequest (sans I/O).

A Responses request is a list of items (messages, function calls and their outputs, reasoning)
on top of the items of the earlier responses its `previous_response_id` chain names. Here the
whole conversation becomes core messages: instructions a system message, a function call part
of the assistant turn it belongs to, a function call output a tool message, reasoning the
`reasoning` of the assistant turn that follows it. Input items are also normalised (typed,
given ids) the way the API lists them back through `GET /responses/{id}/input_items`.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from dataclasses import dataclass
from typing import Any

from ..core.errors import InvalidRequest, NotSupported
from ..core.types import ChatRequest, Image, Message, Sampling, Thinking, Tool, ToolCall, ToolChoice
from .validation import check_json_schema

#: Thinking budgets (tokens) for `reasoning.effort`; the budget always stays within
#: max_output_tokens (see core/reasoning.py).
EFFORT_BUDGETS = {"minimal": 64, "low": 256, "medium": 1024, "high": 4096, "xhigh": 8192}

#: Input item ids by type, as OpenAI prefixes them.
_ID_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco",
              "reasoning": "rs"}


def new_id(prefix: str) -> str:
    """`<prefix>_` + 48 hex digits, the first 8 the creation time (as OpenAI's ids)."""
    return f"{prefix}_{int(time.time()):08x}{secrets.token_hex(20)}"


@dataclass
class Options:
    """How the answer is encoded, beyond what the core request says."""

    parallel_tool_calls: bool = True
    max_tool_calls: int | None = None
    truncation: str = "disabled"
    logprobs: bool = False


# ------------------------------------------------------------------------------ items


def normalize_input(raw: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Input items as stored and listed: typed, with ids, message content as parts."""
    if isinstance(raw, str):
        raw = [{"type": "message", "role": "user", "content": raw}]
    items = []
    for item in raw:
        kind = item.get("type") or "message"
        out = {k: v for k, v in item.items() if v is not None}
        out["type"] = kind
        if kind == "message":
            content = item["content"]
            if isinstance(content, str):
                part = "output_text" if item["role"] == "assistant" else "input_text"
                content = [{"type": part, "text": content}]
            out["content"] = content
            out.setdefault("status", "completed")
        if kind in _ID_PREFIX:
            out["id"] = item.get("id") or new_id(_ID_PREFIX[kind])
        items.append(out)
    return items


def resolve_references(items: list[dict[str, Any]],
                       history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`item_reference`s replaced by the items of the conversation they name."""
    by_id = {item["id"]: item for item in history if item.get("id")}
    out = []
    for i, item in enumerate(items):
        if item["type"] == "item_reference":
            if item["id"] not in by_id:
                raise InvalidRequest(f"input[{i}]: no item with id {item['id']!r} in this "
                                     "conversation (item_reference)", param=f"input[{i}].id")
            item = by_id[item["id"]]
        out.append(item)
    return out


def _image(part: dict[str, Any], where: str) -> Image:
    if part.get("file_id"):
        raise NotSupported(f"{where}: file_id images are not supported (this server has no "
                           "Files API); send the image as a data: URL in image_url", param=where)
    url = part.get("image_url")
    if not url:
        raise InvalidRequest(f"{where}: input_image needs image_url", param=where)
    if not url.startswith("data:"):
        return Image(url=url)
    header, _, payload = url.partition(",")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"{where}: image_url data URL is not valid base64",
                             param=where) from exc
    return Image(data=data, media_type=header[5:].split(";")[0] or None)


def _parts(content: str | list[dict[str, Any]], where: str) -> tuple[str, list[Image]]:
    if isinstance(content, str):
        return content, []
    texts, images = [], []
    for j, part in enumerate(content):
        kind = part["type"]
        if kind in ("input_text", "output_text"):
            texts.append(part["text"])
        elif kind == "refusal":
            texts.append(part["refusal"])
        elif kind == "input_image":
            images.append(_image(part, f"{where}[{j}]"))
        else:
            raise NotSupported(f"{where}[{j}]: {kind} is not supported; send the file's text "
                               "as input_text", param=f"{where}[{j}]")
    return "\n".join(texts), images


def _reasoning_text(item: dict[str, Any]) -> str:
    parts = item.get("content") or item.get("summary") or []
    return "\n".join(p["text"] for p in parts)


def to_messages(items: list[dict[str, Any]], instructions: str | None,
                require_input: bool = True) -> list[Message]:
    """Core messages for a conversation's items (the chain's and this request's)."""
    messages = [Message("system", instructions)] if instructions else []
    reasoning: str | None = None
    names: dict[str, str] = {}  # call_id -> function name
    for i, item in enumerate(items):
        kind = item.get("type") or "message"
        if kind == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            text, images = _parts(item["content"], f"input[{i}].content")
            message = Message(role, text, images)
            if role == "assistant":
                message.reasoning, reasoning = reasoning, None
            messages.append(message)
        elif kind == "function_call":
            names[item["call_id"]] = item["name"]
            call = ToolCall(item["call_id"], item["name"], item["arguments"])
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant" and reasoning is None:
                last.tool_calls.append(call)  # the same turn as the text or calls before it
            else:
                messages.append(Message("assistant", "", tool_calls=[call], reasoning=reasoning))
                reasoning = None
        elif kind == "function_call_output":
            text, images = _parts(item["output"], f"input[{i}].output")
            messages.append(Message("tool", text, images, tool_call_id=item["call_id"],
                                    name=names.get(item["call_id"])))
        elif kind == "reasoning":
            reasoning = _reasoning_text(item) or None
    if not messages or (require_input and all(m.role == "system" for m in messages)):
        raise InvalidRequest("input must contain at least one message or item", param="input")
    return messages


# ------------------------------------------------------------------------------ settings


def tools_of(body: dict[str, Any]) -> list[Tool]:
    tools = []
    for i, raw in enumerate(body.get("tools") or []):
        if raw["type"] != "function":
            raise NotSupported(f"tools[{i}].type: {raw['type']!r} tools are not supported by "
                               "this server; only 'function' tools are", param=f"tools[{i}].type")
        params = raw.get("parameters") or {"type": "object", "properties": {}}
        check_json_schema(params, f"tools[{i}].parameters")
        tools.append(Tool(raw["name"], raw.get("description") or "", params))
    return tools


def tool_choice_of(raw: Any, tools: list[Tool]) -> tuple[ToolChoice, list[Tool]]:
    """The core's tool choice, and the tools it leaves the model (allowed_tools narrows)."""
    if raw is None or raw in ("auto", "none", "required"):
        return ToolChoice(raw or "auto"), tools
    if raw["type"] == "function":
        return ToolChoice("function", raw["name"]), tools
    if raw["type"] == "allowed_tools":
        allowed = {t.get("name") for t in raw["tools"] if t["type"] == "function"}
        kept = [t for t in tools if t.name in allowed]
        if not kept:
            raise InvalidRequest("tool_choice.tools names none of the function tools in tools",
                                 param="tool_choice.tools")
        return ToolChoice(raw["mode"]), kept
    raise NotSupported(f"tool_choice.type: {raw['type']!r} is not supported by this server "
                       "(only function tools are)", param="tool_choice.type")


def response_schema_of(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = (body.get("text") or {}).get("format") or {"type": "text"}
    if fmt["type"] == "text":
        return None
    if fmt["type"] == "json_object":
        return {}
    check_json_schema(fmt["schema"], "text.format.schema")
    return fmt["schema"]


def thinking_of(body: dict[str, Any]) -> Thinking:
    effort = (body.get("reasoning") or {}).get("effort")
    if effort is None:
        return Thinking()
    if effort == "none":
        return Thinking(False)
    return Thinking(True, EFFORT_BUDGETS[effort])


def sampling_of(body: dict[str, Any]) -> Sampling:
    sampling = Sampling(max_tokens=body.get("max_output_tokens"))
    explicit = {"max_tokens"} if body.get("max_output_tokens") is not None else set()
    for key in ("temperature", "top_p", "seed"):
        if body.get(key) is not None:
            setattr(sampling, key, body[key])
            explicit.add(key)
    if "message.output_text.logprobs" in (body.get("include") or []):
        sampling.logprobs = body.get("top_logprobs") or 0
    # What the request set; a model's defaults fill in the rest (core/defaults.py).
    sampling.explicit = frozenset(explicit)
    return sampling


def check_unsupported(body: dict[str, Any]) -> None:
    if body.get("conversation") is not None:
        raise NotSupported("conversation is not supported by this server; chain responses "
                           "with previous_response_id", param="conversation")


def build(body: dict[str, Any], engine: str | None, items: list[dict[str, Any]],
          require_input: bool = True) -> tuple[ChatRequest, Options]:
    """The core request for a validated body whose conversation is `items`."""
    check_unsupported(body)
    tools = tools_of(body)
    choice, tools = tool_choice_of(body.get("tool_choice"), tools)
    sampling = sampling_of(body)
    req = ChatRequest(model=body["model"], engine=engine,
                      messages=to_messages(items, body.get("instructions"), require_input),
                      sampling=sampling, tools=tools, tool_choice=choice,
                      response_schema=response_schema_of(body), thinking=thinking_of(body))
    parallel = body.get("parallel_tool_calls")
    options = Options(parallel_tool_calls=parallel is not False,
                      max_tool_calls=body.get("max_tool_calls"),
                      truncation=body.get("truncation") or "disabled",
                      logprobs=sampling.logprobs is not None)
    return req, options


def tool_json(tool: dict[str, Any]) -> dict[str, Any]:
    """A function tool as the response object echoes it."""
    return {"type": "function", "name": tool["name"], "description": tool.get("description"),
            "parameters": tool.get("parameters"), "strict": tool.get("strict", True)}

