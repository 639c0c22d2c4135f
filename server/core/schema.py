"""The JSON Schema subset structured output enforces, and the normal form engines compile.

A request's schema (response_format, Ollama's format, Anthropic's output_config.format, a
forced tool's parameters) is checked once here: every keyword that constrains values must be
one the grammar enforces, or the request is refused with a 400 that names the keyword; it is
never silently ignored. What passes is rewritten into a normal form that a grammar converter
can take keyword by keyword:

- `allOf` members are merged into one schema; a `type` list becomes an `anyOf` of one schema
  per type; keywords beside an `anyOf`/`oneOf` are copied into every branch;
- tuple-form `items: [...]` becomes `prefixItems` (its `additionalItems` becomes `items`);
- a `pattern` is anchored (JSON Schema patterns match anywhere in the string);
- `required` names without a `properties` entry get one that accepts any value.

Annotations (title, description, default, examples, ...) are kept and have no effect.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from . import regex
from .errors import InvalidRequest

#: Keywords the grammar enforces (or that only organise the schema).
ENFORCED = {
    "type", "properties", "required", "additionalProperties", "items", "prefixItems",
    "additionalItems", "minItems", "maxItems", "minLength", "maxLength", "pattern", "format",
    "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "anyOf",
    "oneOf", "allOf", "$ref", "$defs", "definitions",
}

#: Assertions no grammar here can enforce; a request using them gets a 400 naming them.
#: (A value that asserts nothing, such as uniqueItems false, is accepted.)
UNSUPPORTED = {
    "multipleOf": None, "not": None, "if": None, "then": None, "else": None,
    "dependentRequired": None, "dependentSchemas": None, "dependencies": None,
    "patternProperties": None, "propertyNames": None, "minProperties": 0,
    "maxProperties": None, "unevaluatedProperties": None, "unevaluatedItems": None,
    "contains": None, "minContains": None, "maxContains": None, "uniqueItems": False,
    "$dynamicRef": None, "$recursiveRef": None,
}

_DATE = r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

#: String formats the grammar writes exactly, as patterns (others would be free text).
FORMAT_PATTERNS = {
    "date": f"^{_DATE}$", "time": f"^{_TIME}$", "date-time": f"^{_DATE}T{_TIME}$",
    "uuid": f"^{_UUID}$", **{f"uuid{n}": f"^{_UUID}$" for n in range(1, 6)},
}
FORMATS = set(FORMAT_PATTERNS)

_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}


def _refuse(keyword: str, where: str, param: str, why: str = "") -> InvalidRequest:
    place = f" at {where}" if where else ""
    return InvalidRequest(
        f"{param}: the JSON Schema keyword '{keyword}'{place} cannot be enforced by this "
        f"server's structured output{': ' + why if why else ''}; remove it or check the "
        "answer yourself", param=param)


class _Normalizer:
    def __init__(self, root: dict[str, Any], param: str):
        self.root = root
        self.param = param

    def resolve(self, ref: str, where: str) -> Any:
        if not ref.startswith("#"):
            raise _refuse("$ref", where, self.param, f"only local references (#/...) are "
                          f"supported, not {ref!r}")
        node: Any = self.root
        for part in ref[1:].split("/")[1:] if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                raise InvalidRequest(f"{self.param}: $ref {ref!r} at {where or 'the root'} "
                                     "points to nothing", param=self.param)
            node = node[part]
        return node

    def schema(self, node: Any, where: str) -> Any:
        if isinstance(node, bool):
            return {} if node else {"enum": []}
        if not isinstance(node, dict):
            raise InvalidRequest(f"{self.param}: the schema at {where or 'the root'} is not "
                                 "an object", param=self.param)
        for keyword, harmless in UNSUPPORTED.items():
            if keyword in node and node[keyword] != harmless:
                raise _refuse(keyword, where, self.param)
        out = dict(node)
        for bound, key in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if isinstance(out.get(bound), bool):  # draft 4: a flag on minimum/maximum
                if out.pop(bound) and key in out:
                    out[bound] = out.pop(key)
        if "$ref" in out and any(k in ENFORCED for k in out if k not in ("$ref", "$defs",
                                                                         "definitions")):
            siblings = {k: v for k, v in out.items() if k != "$ref"}
            out = {"allOf": [{"$ref": out["$ref"]}, siblings]}
        if "allOf" in out:
            out = self._merge_all(out, where)
        if isinstance(out.get("type"), list):
            return self._type_list(out, where)
        if "anyOf" in out or "oneOf" in out:
            return self._union(out, where)
        kind = out.get("type")
        if kind is not None and kind not in _TYPES:
            raise InvalidRequest(f"{self.param}: unknown type {kind!r} at {where or 'the root'}",
                                 param=self.param)
        self._check_format(out, where)
        self._check_ranges(out, where)
        if "pattern" in out:
            out["pattern"] = _anchored(out["pattern"], where, self.param)
        if isinstance(out.get("items"), list):
            out["prefixItems"] = out.pop("items")
            if "additionalItems" in out:
                out["items"] = out.pop("additionalItems")
        out.pop("additionalItems", None)
        if "properties" in out or "required" in out:
            props = dict(out.get("properties") or {})
            for name in out.get("required") or []:
                if name not in props:
                    if out.get("additionalProperties") is False:
                        raise InvalidRequest(
                            f"{self.param}: '{name}' is required at {where or 'the root'} but "
                            "additionalProperties is false and it has no property",
                            param=self.param)
                    extra = out.get("additionalProperties")
                    props[name] = extra if isinstance(extra, dict) else {}
            required = set(out.get("required") or [])
            for name in [k for k, v in props.items() if v is False]:
                if name in required:
                    raise InvalidRequest(f"{self.param}: '{name}' is required at "
                                         f"{where or 'the root'} but its schema is false",
                                         param=self.param)
                del props[name]  # may never appear: the grammar leaves it out
            out["properties"] = {k: self.schema(v, f"{where}.properties.{k}".lstrip("."))
                                 for k, v in props.items()}
        for key in ("additionalProperties", "items"):
            if isinstance(out.get(key), dict):
                out[key] = self.schema(out[key], f"{where}.{key}".lstrip("."))
        if "prefixItems" in out:
            out["prefixItems"] = [self.schema(s, f"{where}.prefixItems[{i}]".lstrip("."))
                                  for i, s in enumerate(out["prefixItems"])]
        for key in ("$defs", "definitions"):
            if isinstance(out.get(key), dict):
                out[key] = {k: self.schema(v, f"{key}.{k}") for k, v in out[key].items()}
        return out

    def _merge_all(self, node: dict[str, Any], where: str) -> dict[str, Any]:
        merged = {k: v for k, v in node.items() if k != "allOf"}
        for i, part in enumerate(node["allOf"]):
            here = f"{where}.allOf[{i}]".lstrip(".")
            while isinstance(part, dict) and "$ref" in part and len(part) == 1:
                part = self.resolve(part["$ref"], here)
            part = self.schema(part, here)
            if "anyOf" in part or "oneOf" in part:
                raise _refuse("allOf", here, self.param, "an allOf member with anyOf/oneOf")
            for key, value in part.items():
                if key not in merged:
                    merged[key] = copy.deepcopy(value)
                elif key == "required":
                    merged[key] = list(dict.fromkeys([*merged[key], *value]))
                elif key == "properties":
                    props = dict(merged[key])
                    for name, sub in value.items():
                        props[name] = ({"allOf": [props[name], sub]} if name in props else sub)
                    merged[key] = props
                elif key in ("minimum", "exclusiveMinimum", "minItems", "minLength"):
                    merged[key] = max(merged[key], value)
                elif key in ("maximum", "exclusiveMaximum", "maxItems", "maxLength"):
                    merged[key] = min(merged[key], value)
                elif merged[key] != value and key in ENFORCED:
                    raise _refuse("allOf", here, self.param,
                                  f"its members disagree on '{key}'")
        return merged

    def _type_list(self, node: dict[str, Any], where: str) -> dict[str, Any]:
        kinds = node["type"]
        if not kinds:
            raise InvalidRequest(f"{self.param}: empty type list at {where or 'the root'}",
                                 param=self.param)
        if len(kinds) == 1:
            return self.schema({**node, "type": kinds[0]}, where)
        return self._union({**{k: v for k, v in node.items() if k != "type"},
                            "anyOf": [{"type": t} for t in kinds]}, where)

    def _union(self, node: dict[str, Any], where: str) -> dict[str, Any]:
        key = "anyOf" if "anyOf" in node else "oneOf"
        branches = node[key]
        if not isinstance(branches, list) or not branches:
            raise InvalidRequest(f"{self.param}: {key} at {where or 'the root'} needs at least "
                                 "one schema", param=self.param)
        siblings = {k: v for k, v in node.items()
                    if k in ENFORCED and k not in ("anyOf", "oneOf", "$defs", "definitions")}
        kept = {k: v for k, v in node.items() if k not in siblings and k not in ("anyOf", "oneOf")}
        out_branches = []
        for i, branch in enumerate(branches):
            here = f"{where}.{key}[{i}]".lstrip(".")
            if siblings:
                branch = {"allOf": [siblings, branch]}
            out_branches.append(self.schema(branch, here))
        return {**kept, "anyOf": out_branches}

    def _check_format(self, node: dict[str, Any], where: str) -> None:
        fmt = node.get("format")
        if fmt is None:
            return
        if node.get("type") not in (None, "string"):
            return  # formats only apply to strings
        if fmt not in FORMATS:
            raise _refuse("format", where, self.param,
                          f"format {fmt!r} (supported: {', '.join(sorted(FORMATS))})")
        for other in ("pattern", "minLength", "maxLength"):
            if other in node:
                raise _refuse(other, where, self.param, f"together with format {fmt!r}")

    def _check_ranges(self, node: dict[str, Any], where: str) -> None:
        for low, high in (("minItems", "maxItems"), ("minLength", "maxLength"),
                          ("minimum", "maximum")):
            lo, hi = node.get(low), node.get(high)
            if isinstance(lo, int | float) and isinstance(hi, int | float) and lo > hi:
                raise InvalidRequest(f"{self.param}: {low} {lo} is greater than {high} {hi} "
                                     f"at {where or 'the root'}: no value can satisfy it",
                                     param=self.param)
        if "pattern" in node and ("minLength" in node or "maxLength" in node):
            raise _refuse("minLength" if "minLength" in node else "maxLength", where,
                          self.param, "together with pattern (put the length in the pattern)")
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            value = node.get(key)
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, int | float)):
                raise InvalidRequest(f"{self.param}: {key} must be a number at "
                                     f"{where or 'the root'}", param=self.param)


_UNSUPPORTED_REGEX = re.compile(r"\(\?[=!<]|\\[bBAZzk1-9]|\(\?P|\*\?|\+\?|\?\?|\}\?")


def _anchored(pattern: Any, where: str, param: str) -> str:
    """`^...$`, as grammar converters need it; JSON Schema patterns are unanchored."""
    if not isinstance(pattern, str):
        raise InvalidRequest(f"{param}: pattern must be a string", param=param)
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InvalidRequest(f"{param}: pattern {pattern!r} is not a valid regular expression: "
                             f"{exc}", param=param) from exc
    if _UNSUPPORTED_REGEX.search(pattern):
        raise _refuse("pattern", where, param, "look-arounds, back-references, word "
                      "boundaries and lazy quantifiers cannot be turned into a grammar")
    body = pattern
    starts = body.startswith("^")
    ends = regex.anchored_at_end(body)
    body = body[1 if starts else 0:len(body) - 1 if ends else len(body)]
    if "|" in body and not (starts and ends):
        body = f"({body})"
    anchored = f"^{'' if starts else '.*'}{body}{'' if ends else '.*'}$"
    try:
        regex.parse(anchored)
    except regex.RegexError as exc:
        raise _refuse("pattern", where, param, str(exc)) from exc
    return anchored


def _tuple_form(node: Any) -> bool:
    if isinstance(node, dict):
        if isinstance(node.get("items"), list) or "additionalItems" in node:
            return True
        return any(_tuple_form(v) for v in node.values())
    if isinstance(node, list):
        return any(_tuple_form(v) for v in node)
    return False


def validator_class(schema: Any):
    """The jsonschema validator for a request's schema: its `$schema` when it names one;
    else draft 7 for schemas written with tuple-form `items: [...]` (which draft 2020-12
    spells `prefixItems`), else draft 2020-12."""
    import jsonschema

    if isinstance(schema, dict) and "$schema" in schema:
        return jsonschema.validators.validator_for(schema)
    if _tuple_form(schema):
        return jsonschema.Draft7Validator
    return jsonschema.Draft202012Validator


def normalize(schema: dict[str, Any], param: str = "response_format") -> dict[str, Any]:
    """The schema in normal form; InvalidRequest (400) naming what cannot be enforced."""
    if schema is None:
        raise InvalidRequest(f"{param}: the schema is empty", param=param)
    normalizer = _Normalizer(schema, param)
    out = normalizer.schema(schema, "")
    if not isinstance(out, dict):
        raise InvalidRequest(f"{param}: the schema must be an object", param=param)
    return out
