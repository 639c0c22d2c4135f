"""Structured output, followed as it is written: where the JSON is, and how to finish it.

The grammar guarantees the model writes a valid *prefix* of a schema-valid document, but the
token budget can end it anywhere. `JsonState` follows the text character by character (which
containers are open, which keys are written, what scalar is half-written, under which part of
the schema) and `closing()` builds the shortest text that turns what was written so far into a
document that parses and validates: it finishes the scalar (a string, respecting its pattern
or minimum length; a number, within its bounds; a keyword), adds every required key still
missing with a minimal value, the items `minItems` asks for, and closes the containers. Each
candidate is checked against the original schema with jsonschema; `BudgetGuard`
(core/budget.py) decides when to use it.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from . import numbers, regex
from .schema import FORMAT_PATTERNS, validator_class

_MAX_DEPTH = 24
_MAX_COMBINATIONS = 16
#: "Any value" (never mutated: the minimal-value cache is keyed by schema identity).
_ANY: dict[str, Any] = {}
_NOTHING: dict[str, Any] = {"enum": []}


class JsonStateError(ValueError):
    """The text is not a JSON prefix this tracker understands."""


# ------------------------------------------------------------------------------ the schema


class SchemaView:
    """Questions about a normalized schema: what may appear where, and its smallest value."""

    def __init__(self, root: dict[str, Any]):
        self.root = root
        self._matchers: dict[str, regex.Matcher] = {}
        self._minimal: dict[int, str | None] = {}

    def resolve(self, schema: Any) -> dict[str, Any]:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < _MAX_DEPTH:
            node: Any = self.root
            for part in schema["$ref"].split("#", 1)[-1].split("/")[1:]:
                node = node.get(part.replace("~1", "/").replace("~0", "~"), _ANY) \
                    if isinstance(node, dict) else _ANY
            schema, seen = node, seen + 1
        if schema is True or schema is None:
            return _ANY
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
            return _ANY if extra is None or extra is True else (extra or None)
        return extra if isinstance(extra, dict) else (_ANY if extra is True else None)

    @staticmethod
    def item_schema(schema: dict[str, Any], index: int) -> Any:
        prefix = schema.get("prefixItems") or []
        if index < len(prefix):
            return prefix[index]
        items = schema.get("items")
        return _ANY if items is None or items is True else items

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
        if depth > _MAX_DEPTH:
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
        head, decoded = _finish_escape(raw, s, self)
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


def _finish_escape(raw: str, s: dict[str, Any], view: SchemaView) -> tuple[str, str | None]:
    """(text that completes a half-written escape at the end of `raw`, the decoded string)."""
    tail = raw[raw.rfind("\\"):] if "\\" in raw else ""
    # An escape is open when the last backslash run is odd and not yet complete.
    run = len(raw) - len(raw.rstrip("\\"))
    pattern = s.get("pattern") or FORMAT_PATTERNS.get(s.get("format"))
    fits = view.matcher(pattern).viable if pattern else (lambda _text: True)
    if run % 2 == 1:
        head_raw = raw[:-1]
        base = _decode(head_raw)
        if base is None:
            return "", None
        for code, char in _ESCAPES:
            if fits(base + char):
                return code, base + char
        return "", None
    if tail.startswith("\\u") and len(tail) < 6 and run == 0:
        hexpart = tail[2:]
        padded = hexpart + "0" * (4 - len(hexpart))
        decoded = _decode(raw[:-len(tail)] + "\\u" + padded)
        return padded[len(hexpart):], decoded
    return "", _decode(raw)


def _decode(raw: str) -> str | None:
    try:
        return json.loads('"' + raw + '"')
    except ValueError:
        return None


# ------------------------------------------------------------------------------ the text


@dataclass
class _Frame:
    kind: str  # "obj" | "arr"
    schemas: list[dict[str, Any]]
    state: str
    keys: list[str] = field(default_factory=list)
    key: str = ""
    count: int = 0


@dataclass
class _Scalar:
    kind: str  # "str" | "key" | "num" | "lit"
    schemas: list[dict[str, Any]]
    text: str = ""


_STARTS = {"{": ("object",), "[": ("array",), '"': ("string",), "t": ("boolean",),
           "f": ("boolean",), "n": ("null",)}


def _admits(schema: dict[str, Any], first: str) -> bool:
    """Could a value starting with `first` satisfy this (union-free) schema?"""
    if "const" in schema or "enum" in schema:
        members = [schema["const"]] if "const" in schema else schema["enum"]
        return any(json.dumps(m).startswith(first) or (first in "-0123456789" and
                   isinstance(m, int | float) and not isinstance(m, bool)) for m in members)
    kind = schema.get("type")
    if kind is None:
        if first == "{":
            return "items" not in schema and "prefixItems" not in schema
        if first == "[":
            return "properties" not in schema
        return not any(k in schema for k in ("properties", "items", "prefixItems"))
    kinds = ("integer", "number") if first in "-0123456789" else _STARTS.get(first, ())
    return kind in kinds


class JsonState:
    """Where an incrementally written JSON document stands, under a normalized schema."""

    def __init__(self, view: SchemaView, schema: dict[str, Any]):
        self.view = view
        self.root = view.candidates(schema)
        self.stack: list[_Frame] = []
        self.scalar: _Scalar | None = None
        self.started = False
        self.done = False

    def feed(self, text: str) -> None:
        for ch in text:
            self._char(ch)

    # ------------------------------------------------------------------ parsing

    def _value_schemas(self) -> list[dict[str, Any]]:
        if not self.stack:
            return self.root
        top = self.stack[-1]
        out = []
        for s in top.schemas:
            sub = (self.view.property_schema(s, top.key) if top.kind == "obj"
                   else self.view.item_schema(s, top.count))
            if sub is not None and sub is not False:
                out.extend(self.view.candidates(sub))
        return out or [_ANY]

    def _start_value(self, ch: str) -> None:
        schemas = [s for s in self._value_schemas() if _admits(s, ch)] or [_ANY]
        if not self.stack:
            self.started = True
        if ch == "{":
            self.stack.append(_Frame("obj", schemas, "key_or_end"))
        elif ch == "[":
            self.stack.append(_Frame("arr", schemas, "value_or_end"))
        elif ch == '"':
            self.scalar = _Scalar("str", schemas)
        elif ch in "-0123456789":
            self.scalar = _Scalar("num", schemas, ch)
        elif ch in "tfn":
            self.scalar = _Scalar("lit", schemas, ch)
            self._check_literal()
        else:
            raise JsonStateError(f"unexpected {ch!r} where a value starts")

    def _check_literal(self) -> None:
        text = self.scalar.text
        if text in ("true", "false", "null"):
            self.scalar = None
            self._value_done()
        elif not any(w.startswith(text) for w in ("true", "false", "null")):
            raise JsonStateError(f"not a JSON literal: {text!r}")

    def _value_done(self) -> None:
        if not self.stack:
            self.done = True
            return
        top = self.stack[-1]
        if top.kind == "obj":
            top.keys.append(top.key)
        else:
            top.count += 1
        top.state = "comma_or_end"

    def _key_done(self, raw: str) -> None:
        top = self.stack[-1]
        key = _decode(raw)
        if key is None:
            raise JsonStateError("bad key")
        top.key = key
        top.schemas = [s for s in top.schemas
                       if self.view.property_schema(s, key) is not None] or top.schemas
        top.state = "colon"

    def _char(self, ch: str) -> None:
        scalar = self.scalar
        if scalar is not None:
            if scalar.kind in ("str", "key"):
                if ch == '"' and (len(scalar.text) - len(scalar.text.rstrip("\\"))) % 2 == 0:
                    self.scalar = None
                    if scalar.kind == "key":
                        self._key_done(scalar.text)
                    else:
                        self._value_done()
                else:
                    scalar.text += ch
                return
            if scalar.kind == "lit":
                scalar.text += ch
                self._check_literal()
                return
            if ch in "0123456789+-.eE":
                scalar.text += ch
                return
            self.scalar = None
            self._value_done()
        if ch in " \t\r\n":
            return
        if self.done:
            raise JsonStateError(f"unexpected {ch!r} after the document")
        if not self.stack:
            self._start_value(ch)
            return
        top = self.stack[-1]
        state = top.state
        if top.kind == "obj" and state in ("key_or_end", "key") and ch == '"':
            self.scalar = _Scalar("key", top.schemas)
        elif top.kind == "obj" and state == "colon" and ch == ":":
            top.state = "value"
        elif state == "comma_or_end" and ch == ",":
            top.state = "key" if top.kind == "obj" else "value"
        elif (ch == "}" and top.kind == "obj" and state in ("key_or_end", "comma_or_end")) or \
                (ch == "]" and top.kind == "arr" and state in ("value_or_end", "comma_or_end")):
            self.stack.pop()
            self._value_done()
        elif state in ("value", "value_or_end"):
            self._start_value(ch)
        else:
            raise JsonStateError(f"unexpected {ch!r} in {top.kind} ({state})")

    # ------------------------------------------------------------------ closing

    def closings(self) -> list[str]:
        """Candidate closings, shortest first (one per combination of schema alternatives)."""
        if self.done:
            return [""]
        if not self.started and self.scalar is None:
            text = self.view.minimal({"anyOf": self.root} if len(self.root) > 1
                                     else self.root[0])
            return [text] if text is not None else []
        levels = [self.scalar.schemas if self.scalar else None] + \
                 [f.schemas for f in reversed(self.stack)]
        choices = [range(len(s)) if s else [None] for s in levels]
        out = []
        for combo in itertools.islice(itertools.product(*choices), _MAX_COMBINATIONS):
            text = self._closing(combo)
            if text is not None:
                out.append(text)
        return sorted(set(out), key=len)

    def _closing(self, combo: tuple) -> str | None:
        view = self.view
        out = ""
        scalar = self.scalar
        key_finished = None
        if scalar is not None:
            s = scalar.schemas[combo[0]]
            if scalar.kind == "key":
                key_finished = self._finish_key(self.stack[-1].schemas[combo[1]],
                                                self.stack[-1].keys, scalar.text)
                piece = key_finished[0] if key_finished else None
            elif scalar.kind == "str":
                piece = view.finish_string(s, scalar.text)
            elif scalar.kind == "num":
                piece = view.finish_number(s, scalar.text)
            else:
                word = next((w for w in ("true", "false", "null") if w.startswith(scalar.text)),
                            None)
                piece = None if word is None else word[len(scalar.text):]
            if piece is None:
                return None
            out += piece
        completed = scalar is not None and scalar.kind != "key"
        for depth, frame in enumerate(reversed(self.stack)):
            state, keys, count = frame.state, list(frame.keys), frame.count
            if depth == 0 and key_finished is not None:
                state, keys = "comma_or_end", keys + [key_finished[1]]
            elif depth > 0 or completed:  # the value open in this frame has just ended
                if frame.kind == "obj":
                    keys.append(frame.key)
                else:
                    count += 1
                state = "comma_or_end"
            piece = self._close_frame(frame.kind, frame.schemas[combo[depth + 1]], state, keys,
                                      count, frame.key)
            if piece is None:
                return None
            out += piece
        return out

    def _finish_key(self, obj: dict[str, Any], keys: list[str],
                    raw: str) -> tuple[str, str] | None:
        """(text finishing the key, its `:` and a minimal value; the key) for a half key."""
        props = list((obj.get("properties") or {}).keys())
        required = [k for k in obj.get("required") or [] if k not in keys]
        order = required + [k for k in props if k not in keys and k not in required]
        for name in order:
            encoded = json.dumps(name, ensure_ascii=False)[1:-1]
            if encoded.startswith(raw):
                value = self.view.minimal(self.view.property_schema(obj, name))
                if value is not None:
                    return encoded[len(raw):] + '":' + value, name
        head, name = _finish_escape(raw, _ANY, self.view)
        if name is not None and name not in keys \
                and self.view.property_schema(obj, name) is not None:
            value = self.view.minimal(self.view.property_schema(obj, name))
            if value is not None:
                return head + '":' + value, name
        return None

    def _close_frame(self, kind: str, s: dict[str, Any], state: str, keys: list[str],
                     count: int, key: str) -> str | None:
        view = self.view
        if kind == "arr":
            if state == "comma_or_end":
                return view.close_array(s, count, "after")
            items = []  # after "[" or a comma: the items still needed (one, after a comma)
            need = max(view.needed_items(s), count + (1 if state == "value" else 0))
            for i in range(count, need):
                value = view.minimal(view.item_schema(s, i))
                if value is None:
                    return None
                items.append(value)
            return ",".join(items) + "]"
        if state in ("key_or_end", "comma_or_end"):
            return view.close_object(s, keys, "first" if state == "key_or_end" else "after")
        if state == "key":  # after a comma: a key must follow
            missing = [k for k in s.get("required") or [] if k not in keys]
            optional = [k for k in (s.get("properties") or {}) if k not in keys]
            key = (missing or optional or ["_"])[0]
            lead = json.dumps(key, ensure_ascii=False) + ":"
        else:
            lead = ":" if state == "colon" else ""
        if view.property_schema(s, key) is None:
            return None
        value = view.minimal(view.property_schema(s, key))
        rest = view.close_object(s, keys + [key], "after")
        return None if value is None or rest is None else lead + value + rest


# ------------------------------------------------------------------------------ the closer


class Closer:
    """Follows one structured output and says how to finish it validly at any point."""

    def __init__(self, original: dict[str, Any], normalized: dict[str, Any]):
        self.validator = validator_class(original)(original)
        self.view = SchemaView(normalized)
        self.state = JsonState(self.view, normalized)
        self.text = ""

    def restarted(self) -> Closer:
        """A closer for the same schema with nothing fed yet."""
        other = Closer.__new__(Closer)
        other.validator, other.view = self.validator, self.view
        other.state = JsonState(self.view, self.view.root)
        other.text = ""
        return other

    def minimal(self) -> str | None:
        """The shortest valid document, checked."""
        text = self.view.minimal(self.view.root)
        return text if text is not None and self.valid(text) else None

    def valid(self, document: str) -> bool:
        try:
            value = json.loads(document)
        except ValueError:
            return False
        return self.validator.is_valid(value)

    def feed(self, text: str) -> None:
        self.text += text
        self.state.feed(text)

    def closing(self) -> str | None:
        """The shortest text that makes everything fed so far a valid document, or None."""
        for candidate in self.state.closings():
            if self.valid(self.text + candidate):
                return candidate
        return None
