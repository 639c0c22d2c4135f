"""A streaming parser for formats that write the answer as a series of addressed messages.

gpt-oss (harmony) writes `<|channel|>analysis<|message|>...<|end|>` (reasoning), then
`<|start|>assistant<|channel|>final<|message|>...` (the answer) or
`<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>
{...}<|call|>` (a call). Muse Glimmer addresses messages `to=self` (reasoning), `to=user`
(the answer) or `to=<tool>`; Functionary v3.2 writes `>>>all\\n` (the answer) or
`>>>get_weather\\n{...}`. Each message has a header and a body; `Channels` says how to
find them and what a header means, and `ChannelParser` streams the bodies out as text,
reasoning or calls (messages to built-in tools the client did not define are dropped).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .base import Call, Item, Reasoning, Text, Toolset, merge
from .scanner import find_marker

#: header, tools -> (kind, tool name): kind is "text", "reasoning", "call" or "drop".
Classifier = Callable[[str, Toolset], "tuple[str, str | None]"]
#: body, tools, tool name -> the call(s) the body holds, or None.
CallBody = Callable[[str, Toolset, str], "list[Call] | None"]


@dataclass(frozen=True)
class Channels:
    header_end: str
    body_ends: tuple[str, ...]
    #: Text that may precede a header (the next message's start), removed.
    starts: tuple[str, ...]
    classify: Classifier
    call_body: CallBody
    #: Text that can begin a header; output beginning otherwise is a plain answer.
    header_begins: tuple[str, ...] = ()
    #: Longest header; longer means the model is not writing a header.
    max_header: int = 400


class ChannelParser:
    def __init__(self, channels: Channels, tools: Toolset, *, start: str = "header"):
        self.ch = channels
        self.tools = tools
        self._buf = ""
        self._state = start  # header | text | reasoning | plain
        self._kind, self._name = {"text": ("text", None), "reasoning": ("reasoning", None)}.get(
            start, ("", None))
        if start in ("text", "reasoning"):
            self._state = "body"
        self._body = ""
        self._first = True

    @property
    def in_reasoning(self) -> bool:
        return self._state == "body" and self._kind == "reasoning"

    def feed(self, text: str) -> list[Item]:
        self._buf += text
        out: list[Item] = []
        while self._buf and self._step(out):
            pass
        return merge(out)

    def flush(self) -> list[Item]:
        out: list[Item] = []
        while self._buf and self._step(out):
            pass
        buf, self._buf = self._buf, ""
        if self._state == "body":
            self._emit(out, buf, final=True)
        elif self._state == "plain" or (self._state == "header" and buf.strip()
                                        and self._first):
            out.append(Text(buf))
        return merge(out)

    def _step(self, out: list[Item]) -> bool:
        if self._state == "plain":
            out.append(Text(self._buf))
            self._buf = ""
            return False
        if self._state == "header":
            return self._header()
        return self._body_step(out)

    def _header(self) -> bool:
        buf = self._buf
        if self._first and self.ch.header_begins:
            stripped = buf.lstrip()
            if not any(stripped.startswith(b) or b.startswith(stripped)
                       for b in self.ch.header_begins):
                self._state = "plain"
                return True
        i = buf.find(self.ch.header_end)
        if i < 0:
            if self._first and len(buf) > self.ch.max_header:
                self._state = "plain"
                return True
            return False
        header = buf[:i]
        for start in self.ch.starts:
            if header.startswith(start):
                header = header[len(start):]
                break
        self._kind, self._name = self.ch.classify(header, self.tools)
        self._buf = buf[i + len(self.ch.header_end):]
        self._state, self._body, self._first = "body", "", False
        return True

    def _body_step(self, out: list[Item]) -> bool:
        i, marker = find_marker(self._buf, list(self.ch.body_ends))
        piece, self._buf = self._buf[:i], self._buf[i:]
        if marker is None:
            self._emit(out, piece, final=False)
            return False
        self._buf = self._buf[len(marker):]
        self._emit(out, piece, final=True)
        self._state = "header"
        return True

    def _emit(self, out: list[Item], piece: str, *, final: bool) -> None:
        if self._kind == "text":
            if piece:
                out.append(Text(piece))
        elif self._kind == "reasoning":
            if piece:
                out.append(Reasoning(piece))
        elif self._kind == "call":
            self._body += piece
            if final:
                calls = self.ch.call_body(self._body, self.tools, self._name or "")
                out.extend(calls if calls else [Text(self._body)])
                self._body = ""


# ------------------------------------------------------------------------ harmony

_TO = re.compile(r"\bto=(\S+?)(?=<\||\s|$)")
_CHANNEL = re.compile(r"<\|channel\|>(\w+)")


def harmony_classify(header: str, tools: Toolset) -> tuple[str, str | None]:
    recipients = _TO.findall(header)
    channels = _CHANNEL.findall(header)
    channel = channels[-1] if channels else "final"
    recipient = next((r for r in recipients if r not in ("assistant", "user", "all")), None)
    if recipient is not None:
        if recipient.startswith("functions."):
            return "call", recipient[len("functions."):]
        return "drop", None
    return ("reasoning" if channel == "analysis" else "text"), None


def json_body(body: str, tools: Toolset, name: str) -> list[Call] | None:
    from . import values

    try:
        args = values.json_value(body)
    except ValueError:
        return None
    call = tools.call(name, args)
    return [call] if call else None


HARMONY = Channels(
    header_end="<|message|>",
    body_ends=("<|end|>", "<|call|>", "<|return|>", "<|start|>"),
    starts=("assistant",),
    classify=harmony_classify,
    call_body=json_body,
    header_begins=("<|channel|>", " to=", "to=", "<|start|>", "assistant"),
)


def muse_classify(header: str, tools: Toolset) -> tuple[str, str | None]:
    m = _TO.search(header)
    recipient = m.group(1) if m else "user"
    if recipient == "user":
        return "text", None
    if recipient == "self":
        return "reasoning", None
    return ("call", recipient) if recipient in tools else ("drop", None)


def muse_body(body: str, tools: Toolset, name: str) -> list[Call] | None:
    from .calls_xml import MUSE

    inner = body.strip()
    if inner.startswith("<atem:function_calls>"):
        inner = inner[len("<atem:function_calls>"):]
        inner = inner.removesuffix("</atem:function_calls>")
    return MUSE(inner, tools)


MUSE_CHANNELS = Channels(
    header_end="<|message|>",
    body_ends=("<|eot|>", "<|eom|>", "<|start|>"),
    starts=("assistant",),
    classify=muse_classify,
    call_body=muse_body,
    header_begins=(" to=", "to=", "<|start|>", "assistant"),
)


def functionary_classify(header: str, tools: Toolset) -> tuple[str, str | None]:
    name = header.strip()
    if name == "all" or not name:
        return "text", None
    return ("call", name) if name in tools else ("text", None)


FUNCTIONARY_V32 = Channels(
    header_end="\n",
    body_ends=(">>>",),
    starts=(">>>",),
    classify=functionary_classify,
    call_body=json_body,
    max_header=80,
)
