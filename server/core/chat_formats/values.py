"""Argument values as models write them, turned into JSON values.

Formats that write arguments as XML parameters give each value as text; what it means depends
on the tool's schema: a string parameter keeps its text verbatim (quotes and all), other types
are JSON, and a union with string takes the JSON reading only when it is one of the union's
other types. Some formats write Python-like calls (LFM2: `f(a=1, b="x")`) or their own literal
syntax (Gemma 4: `{city:<|"|>Paris<|"|>}`); those are read here too, never evaluated.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


def json_type(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return _JSON_TYPES[type(value)]
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return _JSON_TYPES.get(type(value), "string")


def schema_types(schema: dict[str, Any] | None) -> set[str]:
    """The JSON types a schema admits (empty: anything)."""
    if not schema:
        return set()
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {k for k in kind if isinstance(k, str)}
    types: set[str] = set()
    for key in ("anyOf", "oneOf"):
        for alt in schema.get(key) or []:
            if isinstance(alt, dict):
                sub = schema_types(alt)
                if not sub:
                    return set()
                types |= sub
    if not types and "enum" in schema:
        types = {json_type(v) for v in schema["enum"]}
    if not types and "const" in schema:
        types = {json_type(schema["const"])}
    return types


def _admits(types: set[str], value: Any) -> bool:
    kind = json_type(value)
    return kind in types or (kind == "integer" and "number" in types)


def coerce(text: str, schema: dict[str, Any] | None) -> Any:
    """A parameter's text as the value the schema asks for."""
    types = schema_types(schema)
    if types == {"string"}:
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if "string" in types and not _admits(types - {"string"}, value):
        return text
    return value


def coerce_typed(text: str, declared: str | None, schema: dict[str, Any] | None) -> Any:
    """A value whose format declares its type itself (DSML's string="true", Kimi's type=)."""
    if declared in ("true", "string", "str"):
        return text
    if declared in ("false", "number", "integer", "boolean", "object", "array", "json",
                    "null", "int", "float", "bool"):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return coerce(text, schema)


def json_prefix(text: str, start: int = 0) -> tuple[Any, int] | None:
    """The JSON value at `start` (after white space) and where it ends, or None."""
    i = start
    while i < len(text) and text[i].isspace():
        i += 1
    try:
        return json.JSONDecoder().raw_decode(text, i)
    except ValueError:
        return None


_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n?(.*?)\n?\s*```\s*$", re.S)


def unfence(text: str) -> str:
    """The inside of a Markdown code block, or the text itself."""
    m = _FENCE.match(text)
    return m.group(1) if m else text


def json_value(text: str) -> Any:
    """A whole text as one JSON value (in a code block or not); raises ValueError."""
    return json.loads(unfence(text).strip())


# ------------------------------------------------------------------------ Python-like calls

_LITERAL_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False,
                  "None": None}


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in _LITERAL_NAMES:
        return _LITERAL_NAMES[node.id]
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {str(_literal(k)): _literal(v) for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    raise ValueError("not a literal")


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    raise ValueError("not a name")


def python_calls(text: str) -> list[tuple[str, dict[str, Any]]] | None:
    """`[f(a=1), g(b="x")]` (or one call, unbracketed) as (name, arguments) pairs; None when
    it is not exactly that. Parsed with `ast`, never evaluated."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError):
        return None
    nodes = tree.elts if isinstance(tree, (ast.List, ast.Tuple)) else [tree]
    out = []
    try:
        for node in nodes:
            if not isinstance(node, ast.Call) or node.args:
                return None
            out.append((_dotted(node.func), {k.arg: _literal(k.value) for k in node.keywords
                                             if k.arg is not None}))
    except ValueError:
        return None
    return out


# ------------------------------------------------------------------------ Gemma 4 literals

GEMMA_QUOTE = '<|"|>'
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_KEY = re.compile(r"[A-Za-z_][\w.\-]*")


class _GemmaReader:
    """Gemma 4's argument syntax: JSON-like, bare keys, strings quoted by <|"|>."""

    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def value(self) -> Any:
        self.skip()
        t, p = self.text, self.pos
        if t.startswith(GEMMA_QUOTE, p):
            end = t.find(GEMMA_QUOTE, p + len(GEMMA_QUOTE))
            if end < 0:
                raise ValueError("unterminated string")
            self.pos = end + len(GEMMA_QUOTE)
            return t[p + len(GEMMA_QUOTE):end]
        if t.startswith("{", p):
            return self.mapping()
        if t.startswith("[", p):
            self.pos += 1
            items: list[Any] = []
            while True:
                self.skip()
                if self.text.startswith("]", self.pos):
                    self.pos += 1
                    return items
                items.append(self.value())
                self.skip()
                if self.text.startswith(",", self.pos):
                    self.pos += 1
        if t.startswith('"', p):
            value, self.pos = json.JSONDecoder().raw_decode(t, p)
            return value
        for word, value in (("true", True), ("false", False), ("null", None)):
            if t.startswith(word, p):
                self.pos += len(word)
                return value
        m = _NUMBER.match(t, p)
        if m:
            self.pos = m.end()
            return json.loads(m.group(0))
        raise ValueError(f"unexpected {t[p:p + 10]!r}")

    def mapping(self) -> dict[str, Any]:
        self.skip()
        if not self.text.startswith("{", self.pos):
            raise ValueError("expected {")
        self.pos += 1
        out: dict[str, Any] = {}
        while True:
            self.skip()
            if self.text.startswith("}", self.pos):
                self.pos += 1
                return out
            if self.text.startswith(GEMMA_QUOTE, self.pos):
                key = self.value()
            else:
                m = _KEY.match(self.text, self.pos)
                if not m:
                    raise ValueError("expected a key")
                key, self.pos = m.group(0), m.end()
            self.skip()
            if not self.text.startswith(":", self.pos):
                raise ValueError("expected :")
            self.pos += 1
            out[str(key)] = self.value()
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1


def gemma_object(text: str) -> tuple[dict[str, Any], int]:
    """A Gemma 4 argument object at the start of `text` and where it ends; ValueError if none."""
    reader = _GemmaReader(text)
    return reader.mapping(), reader.pos


def gemma_literal(value: Any) -> str:
    """A JSON value written in Gemma 4's syntax (for calls in the conversation history)."""
    if isinstance(value, str):
        return f"{GEMMA_QUOTE}{value}{GEMMA_QUOTE}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{gemma_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(gemma_literal(v) for v in value) + "]"
    return json.dumps(value)
