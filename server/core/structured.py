"""Structured output, followed as it is written: where the JSON is, and how to finish it.

The grammar guarantees the model writes a valid *prefix* of a schema-valid document, but the
token budget can end it anywhere. `JsonState` follows the text character by character (which
containers are open, which keys are written, what scalar is half-written, under which part of
the schema) and `closings()` builds the shortest texts that turn what was written so far into
a document that parses and validates: it finishes the scalar (a string, respecting its pattern
or minimum length; a number, within its bounds; a keyword), adds every required key still
missing with a minimal value (schema_view.py), the items `minItems` asks for, and closes the
containers. `Closer` checks each candidate against the original schema with jsonschema;
`BudgetGuard` (core/budget.py) decides when to use it.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from .schema import validator_class
from .schema_view import ANY, SchemaView, decode, finish_escape

_MAX_COMBINATIONS = 16


class JsonStateError(ValueError):
    """The text is not a JSON prefix this tracker understands."""


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
        return out or [ANY]

    def _start_value(self, ch: str) -> None:
        schemas = [s for s in self._value_schemas() if _admits(s, ch)] or [ANY]
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
        key = decode(raw)
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
        head, name = finish_escape(raw, ANY, self.view)
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
