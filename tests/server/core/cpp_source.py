"""A small reader for the C++ of llama.cpp's tests/test-chat.cpp: tokens, string literals
(escapes, raw strings, adjacent concatenation) and the few expressions the test cases use
(the message helper functions, initializer lists, `+` on strings, variables)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------------------- C++ tokens

_TOKEN = re.compile(r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/|\#[^\n]*)
  | (?P<raw>R"(?P<delim>[^(\s]*)\((?P<body>.*?)\)(?P=delim)")
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<chr>'(?:[^'\\]|\\.)')
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<id>[A-Za-z_][A-Za-z_0-9]*(?:::[A-Za-z_][A-Za-z_0-9]*)*)
  | (?P<op>->|::|&&|\|\||==|!=|<=|>=|[^\w\s"'])
""", re.S | re.X)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "'": "'", "0": "\0"}


def _unescape(body: str) -> str:
    out, i = [], 0
    raw = bytearray()
    while i < len(body):
        c = body[i]
        if c == "\\":
            n = body[i + 1]
            if n == "x":
                j = i + 2
                while j < len(body) and body[j] in "0123456789abcdefABCDEF":
                    j += 1
                raw.append(int(body[i + 2:j], 16))
                i = j
                continue
            if raw:
                out.append(raw.decode("utf-8", "replace"))
                raw = bytearray()
            out.append(_ESCAPES[n])
            i += 2
            continue
        if raw:
            out.append(raw.decode("utf-8", "replace"))
            raw = bytearray()
        out.append(c)
        i += 1
    if raw:
        out.append(raw.decode("utf-8", "replace"))
    return "".join(out)


@dataclass
class Tok:
    kind: str  # str | num | id | op
    value: Any
    line: int


def tokenize(source: str) -> list[Tok]:
    toks: list[Tok] = []
    pos, line = 0, 1
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:
            raise ValueError(f"cannot tokenize line {line}: {source[pos:pos + 40]!r}")
        kind = m.lastgroup if m.lastgroup not in ("delim", "body") else "raw"
        text = m.group(0)
        if m.group("raw") is not None:
            toks.append(Tok("str", m.group("body"), line))
        elif m.group("str") is not None:
            toks.append(Tok("str", _unescape(text[1:-1]), line))
        elif kind == "num":
            toks.append(Tok("num", float(text) if "." in text else int(text), line))
        elif kind in ("id", "op", "chr"):
            toks.append(Tok("id" if kind == "id" else "op", text, line))
        line += text.count("\n")
        pos = m.end()
    return toks


# ---------------------------------------------------------------------------- values


@dataclass
class Msg:
    role: str = ""
    content: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, str]] = field(default_factory=list)
    tool_name: str = ""
    tool_call_id: str = ""

    def copy(self) -> Msg:
        return Msg(self.role, self.content, self.reasoning,
                   [dict(c) for c in self.tool_calls], self.tool_name, self.tool_call_id)


def _assist(content="", reasoning="", name="", arguments="", call_id="") -> Msg:
    msg = Msg("assistant", content, reasoning)
    if name or call_id:
        msg.tool_calls.append({"name": name, "arguments": arguments, "id": call_id})
    return msg


def _multi(reasoning, content, calls) -> Msg:
    msg = Msg("assistant", content, reasoning)
    msg.tool_calls = [{"name": n, "arguments": a, "id": ""} for n, a in calls]
    return msg


FUNCTIONS = {
    "simple_assist_msg": _assist,
    "message_with_tool_calls": lambda n, a: _assist("", "", n, a),
    "message_with_tool_calls_and_reasoning": lambda n, a, r: _assist("", r, n, a),
    "message_with_reasoning_content_and_multiple_tool_calls": _multi,
    "message_with_content_and_tool_call": lambda c, n, a: _assist(c, "", n, a),
    "message_with_reasoning_and_tool_call": lambda r, n, a: _assist("", r, n, a),
}


def tool_from_items(items: list) -> dict[str, Any]:
    name, description, parameters = (list(items) + ["", ""])[:3]
    return {"name": name, "description": description, "parameters": json.loads(parameters or "{}")}


class Unsupported(Exception):
    """A construct the evaluator does not know; the statement is skipped."""


class Evaluator:
    def __init__(self, toks: list[Tok]):
        self.toks = toks
        self.vars: dict[str, Any] = {}

    # expressions ---------------------------------------------------------------------------

    def expr(self, i: int) -> tuple[Any, int]:
        value, i = self.primary(i)
        while self.toks[i].value == "+" and self.toks[i].kind == "op":
            rhs, i = self.primary(i + 1)
            value = value + rhs
        return value, i

    def primary(self, i: int) -> tuple[Any, int]:
        t = self.toks[i]
        if t.kind == "str":
            s = t.value
            i += 1
            while self.toks[i].kind == "str":
                s += self.toks[i].value
                i += 1
            return s, i
        if t.kind == "num":
            return t.value, i + 1
        if t.kind == "op" and t.value == "{":
            items, i = self.items(i + 1, "}")
            return items, i
        if t.kind == "id":
            name = t.value
            if name in ("true", "false"):
                return name == "true", i + 1
            if name.startswith(("COMMON_", "std::")) and self.toks[i + 1].value != "(":
                return name, i + 1
            if self.toks[i + 1].value == "(":
                args, j = self.items(i + 2, ")")
                if name in FUNCTIONS:
                    return FUNCTIONS[name](*args), j
                if name == "std::string":
                    return (args[0] if args else ""), j
                raise Unsupported(name)
            if name in self.vars:
                value = self.vars[name]
                return (value.copy() if isinstance(value, Msg) else value), i + 1
            raise Unsupported(name)
        raise Unsupported(repr(t.value))

    def items(self, i: int, close: str) -> tuple[list, int]:
        out = []
        while not (self.toks[i].kind == "op" and self.toks[i].value == close):
            value, i = self.expr(i)
            out.append(value)
            if self.toks[i].value == ",":
                i += 1
        return out, i + 1
