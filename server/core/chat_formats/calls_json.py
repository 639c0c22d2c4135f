"""Body parsers for formats whose tool calls carry JSON (or JSON-like) arguments.

Each takes the text between a block's markers and returns the calls it holds, or None when the
text is not (only) well-formed calls to the request's tools: the scanner then keeps it as text.
"""

from __future__ import annotations

import json
import re
from typing import Any

from . import values
from .base import Call, Toolset


def _all(calls: list[Call | None]) -> list[Call] | None:
    if not calls or any(c is None for c in calls):
        return None
    return [c for c in calls if c is not None]


def _object_call(obj: Any, tools: Toolset, name_key: str = "name",
                 args_keys: tuple[str, ...] = ("arguments", "parameters"),
                 id_key: str | None = "id") -> Call | None:
    if not isinstance(obj, dict):
        return None
    if obj.get("type") == "function" and isinstance(obj.get("function"), dict):
        obj = {**obj["function"], "id": obj.get("id")}
    args = next((obj[k] for k in args_keys if k in obj), {})
    return tools.call(obj.get(name_key), args, obj.get(id_key) if id_key else None)


def json_calls(body: str, tools: Toolset) -> list[Call] | None:
    """One `{"name": ..., "arguments": ...}` object or a list of them (Hermes, Nemotron,
    Granite, Apriel, Mistral Nemo, Firefunction, GigaChat)."""
    try:
        value = values.json_value(body)
    except ValueError:
        return None
    items = value if isinstance(value, list) else [value]
    return _all([_object_call(v, tools) for v in items])


def json_lines(body: str, tools: Toolset) -> list[Call] | None:
    """One JSON call object per line (MiniMax M1)."""
    lines = [line for line in body.strip().splitlines() if line.strip()]
    calls: list[Call | None] = []
    for line in lines:
        try:
            calls.append(_object_call(json.loads(line), tools))
        except ValueError:
            return None
    return _all(calls)


def cohere_actions(body: str, tools: Toolset) -> list[Call] | None:
    """Command R's action list: `[{"tool_call_id": "0", "tool_name": ..., "parameters": ...}]`
    (Command R+ writes it in a ```json block after `Action:`)."""
    try:
        value = values.json_value(body)
    except ValueError:
        return None
    if not isinstance(value, list):
        value = [value]
    return _all([_object_call(v, tools, "tool_name", ("parameters",), "tool_call_id")
                 for v in value])


def name_keyed(body: str, tools: Toolset) -> list[Call] | None:
    """Apertus: `[{"get_weather": {"city": "Paris"}}]`."""
    try:
        value = values.json_value(body)
    except ValueError:
        return None
    items = value if isinstance(value, list) else [value]
    calls: list[Call | None] = []
    for item in items:
        if not isinstance(item, dict) or len(item) != 1:
            return None
        [(name, args)] = item.items()
        calls.append(tools.call(name, args))
    return _all(calls)


def _args_then_end(text: str) -> tuple[Any, str] | None:
    """A JSON object at the start of text, and what follows it."""
    found = values.json_prefix(text)
    if found is None:
        return None
    value, end = found
    return value, text[end:]


def mistral_calls(body: str, tools: Toolset) -> list[Call] | None:
    """After `[TOOL_CALLS]`: `name[ARGS]{...}` or `name[CALL_ID]id[ARGS]{...}`, repeated with
    `[TOOL_CALLS]` between calls; or (Mistral Nemo) a JSON list of call objects."""
    if body.lstrip().startswith("["):
        return json_calls(body, tools)
    calls: list[Call | None] = []
    for part in body.split("[TOOL_CALLS]"):
        if not part.strip():
            continue
        head, sep, rest = part.partition("[ARGS]")
        if not sep:
            return None
        name, _, call_id = head.partition("[CALL_ID]")
        parsed = _args_then_end(rest)
        if parsed is None or parsed[1].strip():
            return None
        calls.append(tools.call(name.strip(), parsed[0], call_id.strip() or None))
    return _all(calls)


KIMI_CALL, KIMI_ARGS, KIMI_END = ("<|tool_call_begin|>", "<|tool_call_argument_begin|>",
                                  "<|tool_call_end|>")
_KIMI_ID = re.compile(r"^\s*(?:functions\.)?(?P<name>.+?)(?::\d+)?\s*$")


def kimi_calls(body: str, tools: Toolset) -> list[Call] | None:
    """Kimi K2: `<|tool_call_begin|>functions.name:0<|tool_call_argument_begin|>{...}
    <|tool_call_end|>`, repeated (the end markers may be missing)."""
    calls: list[Call | None] = []
    for part in body.split(KIMI_CALL):
        part = part.replace(KIMI_END, "")
        if not part.strip():
            continue
        ident, sep, rest = part.partition(KIMI_ARGS)
        m = _KIMI_ID.match(ident)
        parsed = _args_then_end(rest) if sep else None
        if m is None or parsed is None or parsed[1].strip():
            return None
        calls.append(tools.call(m.group("name"), parsed[0], ident.strip()))
    return _all(calls)


DS_CALL, DS_SEP, DS_END = "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>"


def deepseek_calls(body: str, tools: Toolset) -> list[Call] | None:
    """DeepSeek: V3.1 `name<｜tool▁sep｜>{...}`, R1 `function<｜tool▁sep｜>name\\n```json
    {...}```` per `<｜tool▁call▁begin｜>...<｜tool▁call▁end｜>`."""
    calls: list[Call | None] = []
    for part in body.split(DS_CALL):
        part = part.replace(DS_END, "")
        if not part.strip():
            continue
        head, sep, rest = part.partition(DS_SEP)
        if not sep:
            return None
        if head.strip() == "function":
            name, _, rest = rest.partition("\n")
        else:
            name = head
        try:
            args = values.json_value(rest)
        except ValueError:
            return None
        calls.append(tools.call(name.strip(), args))
    return _all(calls)


def name_then_json(body: str, tools: Toolset) -> list[Call] | None:
    """`name>{...}` after `<function=` (Functionary v3.1)."""
    name, sep, rest = body.partition(">")
    if not sep:
        return None
    try:
        args = values.json_value(rest)
    except ValueError:
        return None
    return _all([tools.call(name.strip(), args)])


def python_tag(body: str, tools: Toolset) -> list[Call] | None:
    """After Llama's `<|python_tag|>`: a JSON call, `tool.call(x=...)`, or code for the
    python/ipython tool."""
    calls = json_calls(body, tools)
    if calls:
        return calls
    found = values.python_calls(body)
    if found:
        out = _all([tools.call(name.removesuffix(".call"), args) for name, args in found])
        if out:
            return out
    for name in ("python", "ipython", "code_interpreter"):
        if name in tools:
            return [Call(name, json.dumps({"code": body.strip()}, ensure_ascii=False))]
    return None


def json_sequence(body: str, tools: Toolset) -> list[Call] | None:
    """Whole-answer calls without markers (Llama 3.x: `{"name": ..., "parameters": {...}}`;
    Hermes-style models that forget the tags): one JSON call object, or several in a row
    (separated by white space or `;`)."""
    calls: list[Call | None] = []
    pos, text = 0, body.strip()
    while pos < len(text):
        found = values.json_prefix(text, pos)
        if found is None:
            return None
        value, pos = found
        items = value if isinstance(value, list) else [value]
        calls += [_object_call(v, tools) for v in items]
        while pos < len(text) and (text[pos].isspace() or text[pos] == ";"):
            pos += 1
    return _all(calls)


def python_list(body: str, tools: Toolset) -> list[Call] | None:
    """LFM2: `[get_weather(city="Paris"), ...]`."""
    found = values.python_calls(body)
    if not found:
        return None
    return _all([tools.call(name, args) for name, args in found])


def gemma_calls(body: str, tools: Toolset) -> list[Call] | None:
    """Gemma 4, after `<|tool_call>call:`: `name{key:<|"|>text<|"|>,n:3}`."""
    brace = body.find("{")
    if brace <= 0:
        return None
    try:
        args, end = values.gemma_object(body[brace:])
    except ValueError:
        return None
    if body[brace + end:].strip():
        return None
    return _all([tools.call(body[:brace].strip(), args)])


SOLAR_CALL, SOLAR_NAME, SOLAR_ARGS, SOLAR_END = ("<|tool_call:begin|>", "<|tool_call:name|>",
                                                 "<|tool_call:args|>", "<|tool_call:end|>")


def solar_calls(body: str, tools: Toolset) -> list[Call] | None:
    """Solar Open: `<|tool_call:begin|>id<|tool_call:name|>name<|tool_call:args|>{...}
    <|tool_call:end|>`, repeated."""
    calls: list[Call | None] = []
    for part in body.split(SOLAR_CALL):
        part = part.replace(SOLAR_END, "")
        if not part.strip():
            continue
        ident, _, rest = part.partition(SOLAR_NAME)
        name, sep, args = rest.partition(SOLAR_ARGS)
        if not sep:
            return None
        try:
            calls.append(tools.call(name.strip(), values.json_value(args), ident.strip()))
        except ValueError:
            return None
    return _all(calls)
