"""Forced tool calls (tool_choice `required` or a named tool), in the model's own convention.

The prompt is prefilled with the start of a call as the model itself writes it (its format's
convention); the rest is constrained, so the call always parses and its arguments follow the
tool's schema:

- one tool whose arguments are a JSON object: the prefix names it and the tool's JSON Schema
  constrains the object (the engine compiles the schema); the arguments can then stream;
- arguments written as XML parameters, or a choice between several tools: a GBNF grammar of
  ours (gbnf.py, conventions.py) covers the rest of the call, and the call is read back with
  the format's own parser when the output ends.

A prompt that leaves reasoning open (a thinking model) is closed first: the call is the answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequest
from ..types import Tool, ToolChoice
from .base import Call, Toolset
from .families import ChatFormat


@dataclass
class ForcedCall:
    """What to prefill, how to constrain what follows, and how to read the call back."""

    prefill: str
    #: JSON Schema of the generated text (engine-compiled), or None.
    schema: dict[str, Any] | None
    #: GBNF grammar of the generated text, or None.
    grammar: str | None
    #: Set when the output is exactly this tool's JSON arguments (they can stream).
    name: str | None
    parse: Callable[[str], Call | None]


def object_schema(parameters: dict[str, Any] | None) -> dict[str, Any]:
    schema = dict(parameters or {})
    schema.setdefault("type", "object")
    return schema


def _first_call(fmt: ChatFormat, tools: list[Tool], text: str) -> Call | None:
    parser = fmt.parser(tools)
    for item in parser.feed(text) + parser.flush():
        if isinstance(item, Call):
            return item
    return None


def forced_call(fmt: ChatFormat, tools: list[Tool], choice: ToolChoice,
                prompt: str) -> ForcedCall | None:
    """The forced call a request asks for, or None (tool_choice auto or none)."""
    if choice.mode == "function":
        tool = next((t for t in tools if t.name == choice.name), None)
        if tool is None:
            raise InvalidRequest(f"tool_choice names {choice.name!r}, which is not in tools",
                                 param="tool_choice")
        targets = [tool]
    elif choice.mode == "required":
        if not tools:
            raise InvalidRequest("tool_choice is 'required' but no tools were given",
                                 param="tool_choice")
        targets = list(tools)
    else:
        return None
    opened = fmt.opened_reasoning(prompt)
    lead = f"{opened[1]}\n" if opened else ""
    conv = fmt.convention
    if len(targets) == 1:
        tool = targets[0]
        before = conv.before(tool.name)
        if conv.params is None:
            toolset = Toolset.of(targets)

            def parse_arguments(text: str) -> Call | None:
                try:
                    return toolset.call(tool.name, json.loads(text))
                except ValueError:
                    return None

            return ForcedCall(lead + before, object_schema(tool.parameters), None, tool.name,
                              parse_arguments)
        grammar = conv.grammar([(tool.name, object_schema(tool.parameters))], from_head=False)
        return ForcedCall(lead + before, None, grammar, None,
                          lambda text: _first_call(fmt, targets, before + text))
    head = conv.head
    grammar = conv.grammar([(t.name, object_schema(t.parameters)) for t in targets],
                           from_head=True)
    return ForcedCall(lead + head, None, grammar, None,
                      lambda text: _first_call(fmt, targets, head + text))
