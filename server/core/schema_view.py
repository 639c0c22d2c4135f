"""A normalized JSON Schema, asked what the closer needs: which schema applies where, the
smallest value each accepts, and how to finish a half-written string or number.

Used by structured.py; minimal values are compact JSON (no spaces), strings are finished by
their pattern or format automaton (core/regex.py) or padded to their minLength, numbers by the
automaton of their bounds (core/numbers.py).
"""

from __future__ import annotations

import json
from typing import Any

from . import numbers, regex
from .schema import FORMAT_PATTERNS

MAX_DEPTH = 24
#: "Any value" (never mutated: the minimal-value cache is keyed by schema identity).
ANY: dict[str, Any] = {}
_NOTHING: dict[str, Any] = {"enum": []}


class SchemaView:
    """Questions about a normalized schema: what may appear where, and its smallest value."""

    def __init__(self, root: dict[str, Any]):
        self.root = root
        self._matchers: dict[str, regex.Matcher] = {}
        self._minimal: dict[int, str | None] = {}

    def resolve(self, schema: Any) -> dict[str, Any]:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < MAX_DEPTH:
            node: Any = self.root
            for part in schema["$ref"].split("#", 1)[-1].split("/")[1:]:
                node = node.get(part.replace("~1", "/").replace("~0", "~"), ANY) \
                    if isinstance(node, dict) else ANY
            schema, seen = node, seen + 1
        if schema is True or schema is None:
            return ANY
        return schema if isinstance(schema, dict) else _NOTHING

    def candidates(self, schema: Any) -> list[dict[str, Any]]:
        """The schema's alternatives (anyOf/oneOf flattened, references followed)."""
        schema = self.resolve(schema)
        branches = schema.get("anyOf") or schema.get("oneOf")
        if not branches:
            return [schema]
        out = []
        for branch in branches:
            out.extend(self.candidates(branch))
        return out

    def matcher(self, pattern: str) -> regex.Matcher:
        if pattern not in self._matchers:
            self._matchers[pattern] = regex.matcher(pattern)
        return self._matchers[pattern]

    def number_matcher(self, schema: dict[str, Any]) -> regex.Matcher:
        integer = schema.get("type") == "integer"
        if numbers.has_bounds(schema):
            pattern = numbers.range_pattern(schema, integer)
        else:
            pattern = numbers.INTEGER if integer else numbers.NUMBER
        return self.matcher(pattern)

    @staticmethod
    def property_schema(schema: dict[str, Any], key: str) -> Any:
        """The schema of `key` in an object schema; None when the key may not appear."""
        props = schema.get("properties")
        if props is not None and key in props:
            return props[key]
        extra = schema.get("additionalProperties")
        if props is None:
            return ANY if extra is None or extra is True else (extra or None)
        return extra if isinstance(extra, dict) else (ANY if extra is True else None)

    @staticmethod
    def item_schema(schema: dict[str, Any], index: int) -> Any:
        prefix = schema.get("prefixItems") or []
        if index < len(prefix):
            return prefix[index]
        items = schema.get("items")
        return ANY if items is None or items is True else items

    @staticmethod
    def needed_items(schema: dict[str, Any]) -> int:
        """Items the grammar asks for: minItems, and every tuple item."""
        prefix = len(schema.get("prefixItems") or [])
        low = schema.get("minItems", 0)
        high = schema.get("maxItems")
        need = max(low, prefix)
        return min(need, high) if high is not None else need

    def minimal(self, schema: Any, depth: int = 0) -> str | None:
        """The shortest JSON text this schema accepts (compact), or None."""
        if depth > MAX_DEPTH:
            return None
        options = []
        for candidate in self.candidates(schema):
            key = id(candidate)
            if key not in self._minimal:
                self._minimal[key] = None  # a recursive schema cannot loop here
                self._minimal[key] = self._minimal_one(candidate, depth)
            if self._minimal[key] is not None:
                options.append(self._minimal[key])
        return min(options, key=len) if options else None

    def _minimal_one(self, s: dict[str, Any], depth: int) -> str | None:
        if "const" in s:
            return json.dumps(s["const"], ensure_ascii=False)
        if "enum" in s:
            members = [json.dumps(v, ensure_ascii=False) for v in s["enum"]]
            return min(members, key=len) if members else None
        kind = s.get("type")
        if kind == "object" or (kind is None and ("properties" in s or "required" in s)):
            return self.close_object(s, [], "open", depth)
        if kind == "array" or (kind is None and ("items" in s or "prefixItems" in s)):
            return self.close_array(s, 0, "open", depth)
        if kind == "string" or (kind is None and ("pattern" in s or "format" in s)):
            rest = self.finish_string(s, "")
            return None if rest is None else '"' + rest
        if kind in ("integer", "number"):
            return self.finish_number(s, "")
        if kind == "boolean":
            return "true"
        if kind == "null":
            return "null"
        return "0"  # any value

    # ------------------------------------------------------------------ finishing pieces

    def finish_string(self, s: dict[str, Any], raw: str) -> str | None:
        """What ends a string value whose JSON text (after the opening quote) is `raw`."""
        members = s.get("enum") if "enum" in s else ([s["const"]] if "const" in s else None)
        if members is not None:
            fits = [json.dumps(m, ensure_ascii=False) for m in members if isinstance(m, str)]
            fits = [m[1 + len(raw):] for m in fits if m[1:].startswith(raw)]
            return min(fits, key=len) if fits else None
        head, decoded = finish_escape(raw, s, self)
        if decoded is None:
            return None
        pattern = s.get("pattern") or FORMAT_PATTERNS.get(s.get("format"))
        if pattern:
            rest = self.matcher(pattern).completion(decoded)
            if rest is None:
                return None
            return head + json.dumps(rest, ensure_ascii=False)[1:-1] + '"'
        missing = s.get("minLength", 0) - len(decoded)
        return head + "a" * max(0, missing) + '"'

    def finish_number(self, s: dict[str, Any], text: str) -> str | None:
        members = s.get("enum") if "enum" in s else ([s["const"]] if "const" in s else None)
        if members is not None:
            fits = [json.dumps(m) for m in members
                    if isinstance(m, int | float) and not isinstance(m, bool)]
            fits = [m[len(text):] for m in fits if m.startswith(text)]
            return min(fits, key=len) if fits else None
        if s.get("type") not in ("integer", "number"):
            s = {**s, "type": "number"}
        try:
            return self.number_matcher(s).completion(text)
        except numbers.EmptyRange:
            return None

    def close_object(self, s: dict[str, Any], keys: list[str], mode: str,
                     depth: int = 0) -> str | None:
        """The missing required keys with minimal values, then "}". `mode`: "open" (the
        whole object, braces included), "first" (no member written yet), "after" (after a
        member)."""
        parts = []
        for name in s.get("required") or []:
            if name in keys:
                continue
            value = self.minimal(self.property_schema(s, name), depth + 1)
            if value is None:
                return None
            parts.append(json.dumps(name, ensure_ascii=False) + ":" + value)
        if mode == "open":
            return "{" + ",".join(parts) + "}"
        if mode == "first":
            return ",".join(parts) + "}"
        return "".join("," + p for p in parts) + "}"

    def close_array(self, s: dict[str, Any], count: int, mode: str,
                    depth: int = 0) -> str | None:
        """The items minItems (and a tuple) still need, then "]"; modes as close_object's."""
        items = []
        for i in range(count, max(self.needed_items(s), count)):
            value = self.minimal(self.item_schema(s, i), depth + 1)
            if value is None:
                return None
            items.append(value)
        if mode == "open":
            return "[" + ",".join(items) + "]"
        if mode == "first":
            return ",".join(items) + "]"
        return "".join("," + v for v in items) + "]"


_ESCAPES = [("n", "\n"), ('"', '"'), ("\\", "\\"), ("t", "\t"), ("/", "/"), ("r", "\r"),
            ("b", "\b"), ("f", "\f")]


def finish_escape(raw: str, s: dict[str, Any], view: SchemaView) -> tuple[str, str | None]:
    """(text that completes a half-written escape at the end of `raw`, the decoded string)."""
    tail = raw[raw.rfind("\\"):] if "\\" in raw else ""
    # An escape is open when the last backslash run is odd and not yet complete.
    run = len(raw) - len(raw.rstrip("\\"))
    pattern = s.get("pattern") or FORMAT_PATTERNS.get(s.get("format"))
    fits = view.matcher(pattern).viable if pattern else (lambda _text: True)
    if run % 2 == 1:
        head_raw = raw[:-1]
        base = decode(head_raw)
        if base is None:
            return "", None
        for code, char in _ESCAPES:
            if fits(base + char):
                return code, base + char
        return "", None
    if tail.startswith("\\u") and len(tail) < 6 and run == 0:
        hexpart = tail[2:]
        padded = hexpart + "0" * (4 - len(hexpart))
        decoded = decode(raw[:-len(tail)] + "\\u" + padded)
        return padded[len(hexpart):], decoded
    return "", decode(raw)


def decode(raw: str) -> str | None:
    try:
        return json.loads('"' + raw + '"')
    except ValueError:
        return None
