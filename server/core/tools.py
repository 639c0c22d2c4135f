"""Tool calling: how tools reach the prompt, how forced calls are constrained, and how calls
are parsed out of the model's text.

The calling convention is Hermes/Qwen's, which many GGUF chat models were trained on:

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

A forced call (`required`, or a named function) is grammar-constrained: the prompt is prefilled
with the start of the call and the model may only write JSON that matches the tool's schema, so
the arguments always parse and validate.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from dataclasses import dataclass
from typing import Any

from .errors import InvalidRequest
from .types import Message, Tool, ToolCall, ToolChoice

OPEN, CLOSE = "<tool_call>", "</tool_call>"


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def system_prompt_section(tools: list[Tool]) -> str:
    """Tool instructions for models whose chat template has no tool support of its own."""
    listing = "\n".join(
        json.dumps({"name": t.name, "description": t.description, "parameters": t.parameters})
        for t in tools
    )
    return (
        "You can call the following tools. Each is described as JSON:\n"
        f"{listing}\n\n"
        "To call a tool, reply with only this, and nothing else:\n"
        f'{OPEN}\n{{"name": "<tool name>", "arguments": {{<arguments as JSON>}}}}\n{CLOSE}'
    )


def inject_into_system(messages: list[Message], section: str) -> list[Message]:
    if messages and messages[0].role == "system":
        first = messages[0]
        merged = Message("system", f"{first.content}\n\n{section}" if first.content else section)
        return [merged, *messages[1:]]
    return [Message("system", section), *messages]


def inline_tool_markup(message: Message) -> Message:
    """For templates without tool support: write an assistant's earlier calls, and a tool's
    result, into the text in the calling convention, so the model sees its own history."""
    if message.role == "assistant" and message.tool_calls:
        calls = "\n".join(
            f"{OPEN}\n{json.dumps({'name': c.name, 'arguments': _loads(c.arguments)})}\n{CLOSE}"
            for c in message.tool_calls)
        content = f"{message.content}\n{calls}" if message.content else calls
        return dataclasses.replace(message, content=content, tool_calls=[])
    if message.role == "tool":
        return dataclasses.replace(message,
                                   content=f"<tool_response>\n{message.content}\n</tool_response>")
    return message


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass
class ForcedCall:
    """A grammar-constrained call: the prompt prefill and the schema of what follows it."""

    prefill: str
    schema: dict[str, Any]
    #: Set when the tool is known in advance: the output is then its arguments only.
    name: str | None


def forced_call(tools: list[Tool], choice: ToolChoice) -> ForcedCall | None:
    if choice.mode == "function":
        tool = next((t for t in tools if t.name == choice.name), None)
        if tool is None:
            raise InvalidRequest(f"tool_choice names {choice.name!r}, which is not in tools",
                                 param="tool_choice")
        return _for_tool(tool)
    if choice.mode == "required":
        if not tools:
            raise InvalidRequest("tool_choice is 'required' but no tools were given",
                                 param="tool_choice")
        if len(tools) == 1:
            return _for_tool(tools[0])
        schema = {"anyOf": [
            {"type": "object",
             "properties": {"name": {"const": t.name}, "arguments": _object_schema(t.parameters)},
             "required": ["name", "arguments"]}
            for t in tools
        ]}
        return ForcedCall(prefill=f"{OPEN}\n", schema=schema, name=None)
    return None


def _for_tool(tool: Tool) -> ForcedCall:
    prefill = f'{OPEN}\n{{"name": {json.dumps(tool.name)}, "arguments": '
    return ForcedCall(prefill=prefill, schema=_object_schema(tool.parameters), name=tool.name)


def _object_schema(parameters: dict[str, Any]) -> dict[str, Any]:
    schema = dict(parameters or {})
    schema.setdefault("type", "object")
    return schema


def parse_forced(call: ForcedCall, text: str) -> ToolCall | None:
    """The tool call a constrained output encodes, or None when it was cut off."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if call.name is not None:
        return ToolCall(new_call_id(), call.name, json.dumps(value))
    if isinstance(value, dict) and "name" in value:
        return ToolCall(new_call_id(), value["name"], json.dumps(value.get("arguments", {})))
    return None


def _as_call(payload: str, names: set[str]) -> ToolCall | None:
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("name") not in names:
        return None
    args = value.get("arguments", value.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    return ToolCall(new_call_id(), value["name"], json.dumps(args))


def _partial_suffix(text: str, tag: str) -> int:
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0


class ToolCallParser:
    """Separates text from `<tool_call>` blocks (or a bare JSON call) in streamed output.

    `feed` and `flush` return a list of items, each a str (text) or a ToolCall.
    """

    def __init__(self, tools: list[Tool]):
        self.names = {t.name for t in tools}
        self._state = "start"  # start | text | call | json
        self._buf = ""

    def feed(self, text: str) -> list[str | ToolCall]:
        self._buf += text
        out: list[str | ToolCall] = []
        while self._buf:
            if self._state == "start":
                stripped = self._buf.lstrip()
                if not stripped:
                    return out
                if stripped.startswith("{"):
                    self._state = "json"
                elif stripped.startswith(OPEN) or OPEN.startswith(stripped):
                    if not stripped.startswith(OPEN):
                        return out
                    self._state = "text"
                else:
                    self._state = "text"
            elif self._state == "json":
                return out  # decided at flush: a whole-answer JSON call, or text
            elif self._state == "text":
                i = self._buf.find(OPEN)
                if i >= 0:
                    if i:
                        out.append(self._buf[:i])
                    self._buf = self._buf[i + len(OPEN):]
                    self._state = "call"
                    continue
                keep = _partial_suffix(self._buf, OPEN)
                if len(self._buf) > keep:
                    out.append(self._buf[: len(self._buf) - keep])
                self._buf = self._buf[len(self._buf) - keep:]
                return out
            else:  # call
                i = self._buf.find(CLOSE)
                if i < 0:
                    return out
                payload, self._buf = self._buf[:i], self._buf[i + len(CLOSE):]
                call = _as_call(payload.strip(), self.names)
                out.append(call if call else f"{OPEN}{payload}{CLOSE}")
                self._state = "text"
        return out

    def flush(self) -> list[str | ToolCall]:
        buf, self._buf = self._buf, ""
        if not buf:
            return []
        if self._state in ("json", "call"):
            call = _as_call(buf.strip(), self.names)
            if call:
                return [call]
            return [f"{OPEN}{buf}" if self._state == "call" else buf]
        return [buf]
