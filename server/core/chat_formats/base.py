"""What a model's output is made of, once parsed: text, reasoning and tool calls.

Every chat format's parser turns the model's streamed text into these items, in order; the
pipeline turns them into core events. A parser never loses text: what does not parse as a
call comes back as Text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..types import Tool


@dataclass
class Text:
    text: str


@dataclass
class Reasoning:
    text: str


@dataclass
class Call:
    name: str
    #: The arguments as JSON text (an object).
    arguments: str
    #: The ID the model wrote itself (Mistral's [CALL_ID], Kimi's functions.x:0), if any.
    native_id: str | None = None


Item = Text | Reasoning | Call


class StreamParser(Protocol):
    """Feed decoded text as it is generated; `flush` at the end of the output.
    `in_reasoning` says whether the model is writing reasoning now."""

    @property
    def in_reasoning(self) -> bool: ...

    def feed(self, text: str) -> list[Item]: ...

    def flush(self) -> list[Item]: ...


@dataclass
class Toolset:
    """The request's tools by name: what a call may name and the schema of its arguments."""

    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, tools: list[Tool]) -> Toolset:
        return cls({t.name: t.parameters or {} for t in tools})

    def __bool__(self) -> bool:
        return bool(self.schemas)

    def __contains__(self, name: object) -> bool:
        return name in self.schemas

    def property(self, name: str, key: str) -> dict[str, Any] | None:
        props = (self.schemas.get(name) or {}).get("properties") or {}
        value = props.get(key)
        return value if isinstance(value, dict) else None

    def call(self, name: Any, arguments: Any, native_id: Any = None) -> Call | None:
        """A call, if `name` is one of the tools and `arguments` is an object (or its JSON)."""
        if not isinstance(name, str) or name not in self.schemas:
            return None
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError:
                return None
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            return None
        ident = str(native_id) if native_id not in (None, "") else None
        return Call(name, json.dumps(arguments, ensure_ascii=False), ident)


def merge(items: list[Item]) -> list[Item]:
    """Adjacent items of one kind joined (fewer, larger events)."""
    out: list[Item] = []
    for item in items:
        if isinstance(item, (Text, Reasoning)) and not item.text:
            continue
        if out and type(out[-1]) is type(item) and not isinstance(item, Call):
            out[-1] = type(item)(out[-1].text + item.text)
        else:
            out.append(item)
    return out
