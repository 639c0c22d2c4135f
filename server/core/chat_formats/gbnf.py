"""GBNF grammars for forced tool calls written in a model's own convention.

A forced call whose arguments are one JSON object after a known prefix is constrained with the
tool's JSON Schema (the engine compiles it). Everything else needs a grammar of our own: the
choice between several tools' names when the name is not inside the JSON, and arguments written
as XML parameters (string values as raw text up to the closing tag, other values as JSON).
This module writes those grammars in GBNF, llama.cpp's grammar language, with a JSON Schema
reader for the JSON parts: types, const/enum, properties and required, items and
min/maxItems, anyOf/oneOf/allOf, local $refs, string length. Keywords it does not enforce
(patterns, formats, numeric bounds) relax to their type.
"""

from __future__ import annotations

import json
import re
from typing import Any

_PRIMITIVES = {
    "ws": '| " " | "\\n" [ \\t]{0,20}',
    "json-string": '"\\"" json-char* "\\""',
    "json-char": '[^"\\\\\\x7F\\x00-\\x1F] | "\\\\" (["\\\\/bfnrt] | "u" [0-9a-fA-F]{4})',
    "json-number": '"-"? ([0-9] | [1-9] [0-9]{0,15}) ("." [0-9]+)? ([eE] [-+]? [0-9]+)?',
    "json-integer": '"-"? ([0-9] | [1-9] [0-9]{0,15})',
    "json-boolean": '"true" | "false"',
    "json-null": '"null"',
    "json-value": "json-object | json-array | json-string | json-number | json-boolean | "
                  "json-null",
    "json-object": '"{" ws ( json-string ws ":" ws json-value '
                   '( ws "," ws json-string ws ":" ws json-value )* )? ws "}"',
    "json-array": '"[" ws ( json-value ( ws "," ws json-value )* )? ws "]"',
}
_TYPES = {"string": "json-string", "number": "json-number", "integer": "json-integer",
          "boolean": "json-boolean", "null": "json-null", "object": "json-object",
          "array": "json-array"}


def literal(text: str) -> str:
    """A GBNF string literal."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _char_class(chars: set[str]) -> str:
    return "".join("\\" + c if c in "]\\^-[" else ("\\n" if c == "\n" else c)
                   for c in sorted(chars))


class Grammar:
    def __init__(self) -> None:
        self.rules: dict[str, str] = {}
        self._root_schema: dict[str, Any] = {}
        self._refs: dict[str, str] = {}

    def rule(self, name: str, body: str) -> str:
        name = re.sub(r"[^a-zA-Z0-9-]+", "-", name).strip("-").lower() or "r"
        base, n = name, 1
        while name in self.rules and self.rules[name] != body:
            n += 1
            name = f"{base}-{n}"
        self.rules[name] = body
        return name

    def primitive(self, name: str) -> str:
        self.rules.setdefault(name, _PRIMITIVES[name])
        for dep in re.findall(r"\b(?:json-[a-z]+|ws)\b", _PRIMITIVES[name]):
            if dep not in self.rules:
                self.primitive(dep)
        return name

    def text(self, root: str) -> str:
        lines = [f"root ::= {root}"] if root != "root" else []
        lines += [f"{k} ::= {v}" for k, v in self.rules.items()]
        return "\n".join(lines) + "\n"

    # ----------------------------------------------------------------------- JSON Schema

    def schema(self, schema: Any, name: str, root: dict[str, Any] | None = None) -> str:
        """A rule matching JSON values valid for `schema` (see the module doc)."""
        if root is not None:
            self._root_schema = root
        if not isinstance(schema, dict) or not schema:
            return self.primitive("json-value")
        if "$ref" in schema:
            return self._ref(schema["$ref"], name)
        if "const" in schema:
            return self.rule(name, literal(json.dumps(schema["const"], ensure_ascii=False)))
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self.rule(name, " | ".join(literal(json.dumps(v, ensure_ascii=False))
                                              for v in schema["enum"]))
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                alts = [self.schema(s, f"{name}-{i}") for i, s in enumerate(schema[key])]
                return self.rule(name, " | ".join(alts))
        if isinstance(schema.get("allOf"), list):
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self._resolve(part)
                merged.setdefault("properties", {}).update(part.get("properties") or {})
                merged["required"] = [*merged.get("required", []), *part.get("required", [])]
                merged.setdefault("type", part.get("type"))
            return self.schema(merged, name)
        kind = schema.get("type")
        if isinstance(kind, list):
            alts = [self.schema({**schema, "type": k}, f"{name}-{k}") for k in kind]
            return self.rule(name, " | ".join(alts))
        if kind == "object" or (kind is None and "properties" in schema):
            return self._object(schema, name)
        if kind == "array" or (kind is None and "items" in schema):
            return self._array(schema, name)
        if kind == "string":
            return self._string(schema, name)
        if kind in _TYPES:
            return self.primitive(_TYPES[kind])
        return self.primitive("json-value")

    def _resolve(self, schema: Any) -> dict[str, Any]:
        if isinstance(schema, dict) and "$ref" in schema:
            target: Any = self._root_schema
            for part in str(schema["$ref"]).lstrip("#").strip("/").split("/"):
                target = target.get(part, {}) if isinstance(target, dict) else {}
            return target if isinstance(target, dict) else {}
        return schema if isinstance(schema, dict) else {}

    def _ref(self, ref: str, name: str) -> str:
        if ref in self._refs:
            return self._refs[ref]
        rule = self.rule(f"ref-{ref.rsplit('/', 1)[-1]}", "json-value")
        self._refs[ref] = rule
        self.primitive("json-value")
        body_rule = self.schema(self._resolve({"$ref": ref}), rule + "-body")
        self.rules[rule] = body_rule
        return rule

    def _string(self, schema: dict[str, Any], name: str) -> str:
        lo, hi = schema.get("minLength"), schema.get("maxLength")
        if lo is None and hi is None:
            return self.primitive("json-string")
        self.primitive("json-char")
        rep = f"{{{int(lo or 0)},{'' if hi is None else int(hi)}}}"
        return self.rule(name, f'"\\"" json-char{rep} "\\""')

    def _array(self, schema: dict[str, Any], name: str) -> str:
        self.primitive("ws")
        item = self.schema(schema.get("items"), f"{name}-item")
        lo, hi = int(schema.get("minItems") or 0), schema.get("maxItems")
        if hi is not None and int(hi) == 0:
            return self.rule(name, '"[" ws "]"')
        more_hi = "" if hi is None else str(max(int(hi) - 1, 0))
        more = f'( ws "," ws {item} ){{{max(lo - 1, 0)},{more_hi}}}'
        inner = f"{item} {more}"
        return self.rule(name, f'"[" ws {inner if lo else f"( {inner} )?"} ws "]"')

    def _object(self, schema: dict[str, Any], name: str) -> str:
        self.primitive("ws")
        props = schema.get("properties") or {}
        if not props:
            extra = schema.get("additionalProperties")
            if extra is False:
                return self.rule(name, '"{" ws "}"')
            return self.primitive("json-object")
        required = [k for k in props if k in (schema.get("required") or [])]
        optional = [k for k in props if k not in required]
        pairs = {k: self.rule(f"{name}-{k}-kv", f'{literal(json.dumps(k))} ws ":" ws '
                              f'{self.schema(props[k], f"{name}-{k}")}') for k in props}
        body = ' ws "," ws '.join(pairs[k] for k in required)
        if required:
            body += "".join(f' ( ws "," ws {pairs[k]} )?' for k in optional)
        elif optional:
            alts = []
            for i, k in enumerate(optional):
                rest = "".join(f' ( ws "," ws {pairs[o]} )?' for o in optional[i + 1:])
                alts.append(f"{pairs[k]}{rest}")
            body = f"( {' | '.join(alts)} )?"
        return self.rule(name, f'"{{" ws {body} ws "}}"')

    # ----------------------------------------------------------------------- raw text

    def excluding(self, delimiter: str, name: str) -> str:
        """Any text that does not contain `delimiter` (a KMP automaton: one rule per matched
        prefix length, right-recursive so the grammar's stack stays flat)."""
        length = len(delimiter)
        chars = set(delimiter)
        names = [self.rule(f"{name}-{k}", "") for k in range(length)]

        def step(k: int, ch: str) -> int:
            while True:
                if delimiter[k] == ch:
                    return k + 1
                if k == 0:
                    return 0
                k = _failure(delimiter)[k - 1]

        for k in range(length):
            # Only the characters that move the automaton get an alternative of their own;
            # all others go back to state 0 in one class (few alternatives: few grammar
            # stacks, which is what llama.cpp's sampling cost grows with).
            moves = {ch: step(k, ch) for ch in chars}
            special = {ch for ch, nxt in moves.items() if nxt != 0}
            alts = ["", f"[^{_char_class(special)}] {names[0]}"]
            for ch in sorted(special):
                if moves[ch] < length:
                    alts.append(f"{literal(ch)} {names[moves[ch]]}")
            self.rules[names[k]] = " | ".join(alts)
        return names[0]


def _failure(pattern: str) -> list[int]:
    fail = [0] * len(pattern)
    k = 0
    for i in range(1, len(pattern)):
        while k and pattern[i] != pattern[k]:
            k = fail[k - 1]
        if pattern[i] == pattern[k]:
            k += 1
        fail[i] = k
    return fail
