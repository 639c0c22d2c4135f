"""JSON Schema (in the core's normal form, core/schema.py) to a llama.cpp GBNF grammar.

llama-cpp-python's converter does objects, unions, references, enums and plain strings well;
this subclass adds what it leaves out, so that what the grammar allows is what the schema
allows:
- numbers and integers within `minimum`/`maximum`/`exclusive*` bounds, any range
  (core/numbers.py builds the pattern of their text);
- `pattern` and the string formats, from our own regular-expression tree (core/regex.py),
  written as JSON string content: a `"`, a backslash or a control character the pattern
  allows is written escaped, so the string never ends early or holds a raw line break;
- arrays with `prefixItems` and `items` together, and `minItems`/`maxItems` everywhere;
- string characters without raw control characters (the upstream rule lets the model write a
  raw line break inside a string, which `json.loads` refuses);
- `{}` below the root as any value (upstream makes it an object).
"""

from __future__ import annotations

import json
from typing import Any

from llama_cpp.llama_grammar import PRIMITIVE_RULES, RESERVED_NAMES, BuiltinRule, SchemaConverter

from ...core import numbers, regex
from ...core.errors import Field, InvalidRequest
from ...core.schema import ENFORCED, FORMAT_PATTERNS

#: One JSON string character: anything but `"`, a backslash and control characters, or an
#: escape sequence.
_CHAR = BuiltinRule(r'[^"\\\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})', [])

_SHORT_ESCAPES = {0x22: '\\"', 0x5C: "\\\\", 0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r",
                  0x08: "\\b", 0x0C: "\\f"}


def _code(c: int) -> str:
    return f"\\x{c:02X}" if c < 0x80 else (f"\\u{c:04X}" if c <= 0xFFFF else f"\\U{c:08X}")


def _literal(text: str) -> str:
    """A GBNF string literal."""
    return '"' + "".join(ch if ch.isalnum() or ch in " -_.:,{}[]" else _code(ord(ch))
                         for ch in text) + '"'


def _class(ranges) -> str:
    return "[" + "".join(_code(lo) if lo == hi else f"{_code(lo)}-{_code(hi)}"
                         for lo, hi in ranges) + "]"


def _subtract(ranges, drop: set[int]):
    out = []
    for lo, hi in ranges:
        start = lo
        for c in sorted(x for x in drop if lo <= x <= hi):
            if c > start:
                out.append((start, c - 1))
            start = c + 1
        if start <= hi:
            out.append((start, hi))
    return out


def render(node: regex.Node, json_string: bool) -> str:
    """GBNF for a regular-expression tree. With `json_string`, for the characters of a JSON
    string's content (escaped as JSON escapes them); else for raw text (a number)."""
    if isinstance(node, regex.Chars):
        if not json_string:
            return _class(node.ranges)
        special = {c for lo, hi in node.ranges for c in range(lo, min(hi, 0x5C) + 1)
                   if c < 0x20 or c in (0x22, 0x5C)}
        plain = _subtract([(max(lo, 0x20), hi) for lo, hi in node.ranges if hi >= 0x20],
                          {0x22, 0x5C})
        options = [_class(plain)] if plain else []
        for c in sorted(special):
            options.append(_literal(_SHORT_ESCAPES.get(c, f"\\u{c:04x}")))
        if not options:
            raise InvalidRequest("the pattern allows no character a JSON string can hold")
        return options[0] if len(options) == 1 else "(" + " | ".join(options) + ")"
    if isinstance(node, regex.Seq):
        if not node.items:
            return '""'
        return "(" + " ".join(render(item, json_string) for item in node.items) + ")"
    if isinstance(node, regex.Alt):
        return "(" + " | ".join(render(o, json_string) for o in node.options) + ")"
    inner = render(node.node, json_string)
    if inner[-1] in "*+?}":
        inner = f"({inner})"
    if (node.min, node.max) == (0, None):
        return f"{inner}*"
    if (node.min, node.max) == (1, None):
        return f"{inner}+"
    if (node.min, node.max) == (0, 1):
        return f"{inner}?"
    upper = "" if node.max is None else str(node.max)
    if node.min == node.max:
        return f"{inner}{{{node.min}}}"
    return f"{inner}{{{node.min},{upper}}}"


def _repeat(item: str, low: int, high: int | None) -> str:
    """`item` repeated low..high times, separated by commas."""
    if high == 0:
        return ""
    rest = f'( "," space {item} )'
    tail_low = max(0, low - 1)
    tail_high = None if high is None else high - 1
    if tail_high == 0:
        tail = ""
    elif tail_high is None:
        tail = f"{rest}{{{tail_low},}}" if tail_low else f"{rest}*"
    else:
        tail = f"{rest}{{{tail_low},{tail_high}}}"
    body = f"{item} {tail}".strip()
    return body if low >= 1 else f"( {body} )?"


class _Converter(SchemaConverter):
    def __init__(self):
        super().__init__(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)

    def _add_primitive(self, name: str, rule: BuiltinRule):
        return super()._add_primitive(name, _CHAR if name == "char" else rule)

    def visit(self, schema: dict[str, Any], name: str):
        kind = schema.get("type")
        rule_name = name + "-" if name in RESERVED_NAMES else name or "root"
        if "$ref" in schema or "anyOf" in schema or "oneOf" in schema or "const" in schema \
                or "enum" in schema:
            return super().visit(schema, name)
        if not any(key in ENFORCED for key in schema) and name:
            # {} (or only annotations) is any value; upstream would make it an object
            return self._add_rule(rule_name, self._add_primitive("value",
                                                                 PRIMITIVE_RULES["value"]))
        if kind in ("integer", "number") and numbers.has_bounds(schema):
            try:
                pattern = numbers.range_pattern(schema, kind == "integer")
            except numbers.EmptyRange as exc:
                raise InvalidRequest(f"unsatisfiable JSON schema: {exc}") from exc
            return self._add_rule(rule_name,
                                  render(regex.parse(pattern), json_string=False) + " space")
        if kind in (None, "string") and ("pattern" in schema or "format" in schema):
            pattern = schema.get("pattern") or FORMAT_PATTERNS[schema["format"]]
            body = render(regex.parse(pattern), json_string=True)
            return self._add_rule(rule_name, f'"\\"" {body} "\\"" space')
        if kind == "array" or (kind is None and ("items" in schema or "prefixItems" in schema)):
            return self._add_rule(rule_name, self._array(schema, name))
        return super().visit(schema, name)

    def _array(self, schema: dict[str, Any], name: str) -> str:
        prefix = schema.get("prefixItems") or []
        items = schema.get("items", None if prefix else {})
        low = schema.get("minItems", 0)
        high = schema.get("maxItems")
        if items is False or items is None:  # exactly the tuple (no more items)
            high = len(prefix) if high is None else min(high, len(prefix))
        base = f"{name}{'-' if name else ''}"
        prefix = prefix[:high] if high is not None else prefix
        rules = [self.visit(s, f"{base}tuple-{i}") for i, s in enumerate(prefix)]
        body = ' "," space '.join(rules)
        if items not in (False, None) and (high is None or high > len(rules)):
            item = self.visit(items, f"{base}item")
            extra_low = max(0, low - len(rules))
            extra_high = None if high is None else high - len(rules)
            if rules:
                upper = "" if extra_high is None else str(extra_high)
                body += f' ( "," space {item} ){{{extra_low},{upper}}}'
            else:
                body = _repeat(item, extra_low, extra_high)
        return f'"[" space {body} "]" space'


def schema_grammar(schema: dict[str, Any]) -> str:
    """The GBNF grammar for a normalized JSON Schema; InvalidRequest when it cannot be
    converted."""
    converter = _Converter()
    try:
        resolved = converter.resolve_refs(json.loads(json.dumps(schema)), "stdin")
        converter.visit(resolved, "")
    except InvalidRequest:
        raise
    except (regex.RegexError, AssertionError, ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest(f"unsupported JSON schema: {exc}", field=Field.RESPONSE_SCHEMA) from exc
    return converter.format_grammar()


