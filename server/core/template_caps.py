"""Fit a conversation to what a chat template accepts, and render it.

Templates differ in what they can show: some have no system role (Gemma 2 raises), some demand
strict user/assistant alternation, some cannot render an assistant's tool calls or a tool's
result, some want a call's arguments as a JSON string rather than an object, Mistral's want
9-character call IDs. Rather than keep a list of models, each template is probed once with
tiny conversations (as llama.cpp does) and the answers, `Caps`, decide the fallbacks:

- no system role: the system text goes in front of the first user turn;
- no tool calls / tool results: they are written into the text in the model's own calling
  convention (the chat format's `call_text`) and results become user turns;
- alternation: consecutive turns of one role are merged.

A normal conversation therefore never fails with "roles must alternate" or "system role not
supported"; a template that still refuses one reports why (400).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .errors import InvalidRequest
from .template import render_dicts
from .types import Message, Tool, ToolCall

_SYS, _CALL, _ARG, _RESULT, _TOOL = ("probe-sys-7d1", "probe_fn_7d1", "probe-val-7d1",
                                     "probe-result-7d1", "probe_tool_7d1")


@dataclass(frozen=True)
class Caps:
    system_role: bool = True
    alternation: bool = False
    tool_definitions: bool = False
    tool_calls: bool = False
    tool_results: bool = False
    object_arguments: bool = True
    short_ids: bool = False
    #: Several calls in one assistant turn (Llama 3.x templates refuse them).
    parallel_calls: bool = True


def _try(source: str, messages: list[dict[str, Any]], **kw: Any) -> str | None:
    try:
        return render_dicts(source, messages, **kw)
    except InvalidRequest:
        return None


def _call_probe(call_id: str, arguments: Any) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": call_id, "type": "function",
             "function": {"name": _CALL, "arguments": arguments}}]},
        {"role": "tool", "content": _RESULT, "tool_call_id": call_id, "name": _CALL},
    ]


@lru_cache(maxsize=64)
def probe(source: str | None) -> Caps:
    """What a template can render, found by rendering tiny conversations (cached per source)."""
    if not source:
        return Caps()
    user = [{"role": "user", "content": "hi"}]
    with_system = _try(source, [{"role": "system", "content": _SYS}, *user])
    system_role = with_system is not None and _SYS in with_system
    alternation = _try(source, [*user, {"role": "user", "content": "again"}]) is None
    tool_def = {"type": "function", "function": {
        "name": _TOOL, "description": "probe",
        "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}}
    listed = _try(source, user, tools=[tool_def])
    tool_definitions = listed is not None and _TOOL in listed
    calls = results = False
    object_args, short_ids = True, False
    for call_id, arguments in (("call_7d1probe", {"a": _ARG}), ("a1b2c3d4e", {"a": _ARG}),
                               ("call_7d1probe", json.dumps({"a": _ARG})),
                               ("a1b2c3d4e", json.dumps({"a": _ARG}))):
        out = _try(source, _call_probe(call_id, arguments), tools=[tool_def])
        if out is not None and _CALL in out and _ARG in out:
            calls, results = True, _RESULT in out
            object_args, short_ids = isinstance(arguments, dict), len(call_id) == 9
            break
    parallel = True
    if calls:
        call_id = "a1b2c3d4e" if short_ids else "call_7d1probe"
        arguments = {"a": _ARG} if object_args else json.dumps({"a": _ARG})
        two = _call_probe(call_id, arguments)
        two[1]["tool_calls"] = two[1]["tool_calls"] * 2
        two.append(dict(two[2]))
        parallel = _try(source, two, tools=[tool_def]) is not None
    else:
        out = _try(source, [*user, {"role": "assistant", "content": "ok"},
                            {"role": "tool", "content": _RESULT, "tool_call_id": "x"}])
        results = out is not None and _RESULT in out
    return Caps(system_role, alternation, tool_definitions, calls, results, object_args,
                short_ids, parallel)


def short_id(call_id: str) -> str:
    """A 9-character alphanumeric call ID (Mistral's rule), the same for the same ID."""
    if len(call_id) == 9 and call_id.isalnum():
        return call_id
    return hashlib.sha256(call_id.encode()).hexdigest()[:9]


def loads_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _hermes_call(call: ToolCall) -> str:
    body = json.dumps({"name": call.name, "arguments": loads_or_text(call.arguments)},
                      ensure_ascii=False)
    return f"<tool_call>\n{body}\n</tool_call>"


def _hermes_result(message: Message) -> str:
    return f"<tool_response>\n{message.content}\n</tool_response>"


def fit(messages: list[Message], caps: Caps, *,
        call_text: Callable[[ToolCall], str] = _hermes_call,
        result_text: Callable[[Message], str] = _hermes_result) -> list[Message]:
    """The conversation rewritten into what the template accepts (see the module doc)."""
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    if caps.tool_calls and not caps.parallel_calls:
        messages = _one_call_per_turn(messages)
    out: list[Message] = []
    for m in messages:
        if m.role == "assistant" and m.tool_calls and not caps.tool_calls:
            calls = "\n".join(call_text(c) for c in m.tool_calls)
            m = Message("assistant", f"{m.content}\n{calls}" if m.content else calls,
                        m.images, [], None, m.name, m.reasoning)
        elif m.role == "tool":
            name = m.name or names.get(m.tool_call_id or "")
            if not caps.tool_results:
                m = Message("user", result_text(m), m.images)
            elif not caps.tool_calls:  # calls are in our text convention: so are results
                m = Message("tool", result_text(m), m.images, [], m.tool_call_id, name)
            elif name != m.name:
                m = Message("tool", m.content, m.images, [], m.tool_call_id, name)
        out.append(m)
    if not caps.system_role:
        out = _system_into_user(out)
    if caps.alternation:
        out = _merge_runs(out)
    return out


def _one_call_per_turn(messages: list[Message]) -> list[Message]:
    """Several calls of one turn as consecutive turns of one call, each followed by its
    result (for templates that render a single call per assistant turn)."""
    out: list[Message] = []
    i = 0
    while i < len(messages):
        m = messages[i]
        if m.role != "assistant" or len(m.tool_calls) < 2:
            out.append(m)
            i += 1
            continue
        j = i + 1
        results = []
        while j < len(messages) and messages[j].role == "tool":
            results.append(messages[j])
            j += 1
        for k, call in enumerate(m.tool_calls):
            out.append(Message("assistant", m.content if k == 0 else "", [], [call], None,
                               m.name, m.reasoning if k == 0 else None))
            out += [r for r in results if r.tool_call_id == call.id]
        out += [r for r in results if r.tool_call_id not in {c.id for c in m.tool_calls}]
        i = j
    return out


def _system_into_user(messages: list[Message]) -> list[Message]:
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content)
    rest = [m for m in messages if m.role != "system"]
    if not system:
        return rest
    for i, m in enumerate(rest):
        if m.role == "user":
            rest[i] = Message("user", f"{system}\n\n{m.content}", m.images)
            return rest
    return [Message("user", system), *rest]


def _merge_runs(messages: list[Message]) -> list[Message]:
    out: list[Message] = []
    for m in messages:
        prev = out[-1] if out else None
        if prev is not None and prev.role == m.role and m.role in ("user", "assistant") \
                and not prev.tool_calls and not m.tool_calls:
            out[-1] = Message(m.role, f"{prev.content}\n\n{m.content}", prev.images + m.images,
                              [], None, None, prev.reasoning or m.reasoning)
        else:
            out.append(m)
    return out


def as_dicts(messages: list[Message], caps: Caps) -> list[dict[str, Any]]:
    """Messages as templates read them (OpenAI's shape, with the reasoning under the names
    templates use: reasoning_content, thinking, reasoning)."""
    ident = short_id if caps.short_ids else (lambda x: x)
    out = []
    for m in messages:
        d: dict[str, Any] = {"role": m.role, "content": m.content or ""}
        if m.tool_calls:
            d["tool_calls"] = [
                {"id": ident(c.id), "type": "function",
                 "function": {"name": c.name,
                              "arguments": loads_or_text(c.arguments) if caps.object_arguments
                              else c.arguments}}
                for c in m.tool_calls]
        if m.tool_call_id:
            d["tool_call_id"] = ident(m.tool_call_id)
        if m.name:
            d["name"] = m.name
        if m.reasoning:
            d["reasoning_content"] = d["thinking"] = d["reasoning"] = m.reasoning
        out.append(d)
    return out


def tool_dicts(tools: list[Tool]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": t.parameters}} for t in tools]


def render(source: str | None, messages: list[Message], *, tools: list[Tool] | None = None,
           bos_token: str = "", eos_token: str = "", add_generation_prompt: bool = True,
           extra: dict[str, Any] | None = None,
           call_text: Callable[[ToolCall], str] = _hermes_call,
           result_text: Callable[[Message], str] = _hermes_result) -> str:
    """Render a conversation into the prompt text the model was trained on."""
    caps = probe(source)
    fitted = fit(messages, caps, call_text=call_text, result_text=result_text)
    return render_dicts(source, as_dicts(fitted, caps), tools=tool_dicts(tools or []),
                        bos_token=bos_token, eos_token=eos_token,
                        add_generation_prompt=add_generation_prompt, extra=extra)


@lru_cache(maxsize=64)
def sample(source: str | None) -> str:
    """The template's own rendering of a tool call, a tool result and a generation prompt
    with thinking on: the markers in it name the model's chat format (detect.py)."""
    if not source:
        return ""
    tool_def = {"type": "function", "function": {
        "name": _CALL, "description": "probe",
        "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}}
    parts = []
    for call_id, arguments in (("call_7d1probe", {"a": _ARG}), ("a1b2c3d4e", {"a": _ARG}),
                               ("a1b2c3d4e", json.dumps({"a": _ARG}))):
        out = _try(source, _call_probe(call_id, arguments), tools=[tool_def])
        if out is not None and _CALL in out:
            parts.append(out)
            break
    opened = _try(source, [{"role": "user", "content": "hi"}], extra={"enable_thinking": True})
    parts.append(opened or "")
    return "\n".join(parts)
