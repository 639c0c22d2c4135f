"""Request bodies: JSON parsing and validation against the schemas in `schemas/`.

Every dialect validates with the same code; the schemas are the single description of what
each endpoint accepts. Errors become InvalidRequest with a message that says what to fix and
a `param` path such as `messages[0].role`.
"""

from __future__ import annotations

import json
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import jsonschema
from flask import request
from jsonschema.exceptions import relevance
from referencing import Registry, Resource
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from ..core.errors import InvalidRequest, PayloadTooLarge, RequestTimeout
from ..core.schema import validator_class

SCHEMA_DIR = resources.files(__package__) / "schemas"


@lru_cache(maxsize=1)
def _registry() -> Registry:
    resources_ = []
    for entry in SCHEMA_DIR.iterdir():
        if entry.name.endswith(".json"):
            contents = json.loads(entry.read_text(encoding="utf-8"))
            resources_.append((entry.name, Resource.from_contents(contents)))
    return Registry().with_resources(resources_)


def _is_int(_checker, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


@cache
def validator(name: str) -> jsonschema.protocols.Validator:
    """Validator for schema `name`. "integer" means a JSON integer literal: JSON Schema would
    take 1.0, which the views then use as a count or token id (as Go peers do, we refuse it)."""
    schema = _registry().contents(f"{name}.json")
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    cls = jsonschema.validators.extend(
        cls, type_checker=cls.TYPE_CHECKER.redefine("integer", _is_int))
    return cls(schema, registry=_registry())


def param_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate(name: str, body: Any) -> None:
    """Raise InvalidRequest naming the first thing wrong with `body` under schema `name`."""
    error = _most_relevant(list(validator(name).iter_errors(body)))
    if error is None:
        return
    where, message = _explain(error)
    text = f"{where}: {message}" if where else message
    raise InvalidRequest(f"invalid request: {text}", param=where or None)


_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
               float: "number", type(None): "null"}


def _most_relevant(errors: list):
    """Like jsonschema's best_match, but without descending into oneOf branches: _explain
    chooses the branch itself."""
    return max(errors, key=relevance) if errors else None


def _type_name(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _explain(error) -> tuple[str, str]:
    """(param path, message) for an error; oneOf/anyOf failures are explained through the
    branch the input was evidently aiming for, or by listing what would have been accepted."""
    where = param_path(error.absolute_path)
    if error.validator not in ("oneOf", "anyOf") or not error.context:
        return where, error.message
    branches = error.validator_value
    by_branch: dict[int, list] = {}
    for sub in error.context:
        by_branch.setdefault(sub.schema_path[0], []).append(sub)
    instance = error.instance
    tags = [(b.get("properties", {}).get("type") or {}).get("const") for b in branches]
    if isinstance(instance, dict) and any(tags):
        if instance.get("type") is not None and instance["type"] in tags:
            i = tags.index(instance["type"])
            return _explain(_most_relevant(by_branch.get(i, [])) or error)
        allowed = ", ".join(repr(t) for t in tags if t)
        if "type" not in instance:
            return (f"{where}.type" if where else "type",
                    f"'type' is a required property (one of {allowed})")
        return (f"{where}.type" if where else "type",
                f"{instance.get('type')!r} is not one of {allowed}")
    # A branch whose type matched but which failed deeper says the most.
    for subs in by_branch.values():
        if not any(sub.validator in ("type", "const", "enum")
                   and list(sub.relative_path) in ([], ["type"]) for sub in subs):
            return _explain(_most_relevant(subs))
    labels = [_label(b) for b in branches]
    return where, f"expected {' or '.join(labels)}, got {_type_name(instance)} {instance!r:.60}"


def _label(schema: dict) -> str:
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v) for v in schema["enum"])
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1].replace("_", " ")
    kind = schema.get("type", "value")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    if kind == "array" and isinstance(schema.get("items"), dict) and "type" in schema["items"]:
        kind = f"array of {schema['items']['type']}s"
    return kind


def json_body() -> dict[str, Any]:
    """The request's JSON object; malformed or non-object bodies are a 400, oversize a 413."""
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge as exc:
        raise PayloadTooLarge("request body too large (the limit is "
                              f"{request.max_content_length or 0} bytes)") from exc
    except ClientDisconnected as exc:
        if isinstance(exc.__context__, TimeoutError):  # the worker's client_timeout
            raise RequestTimeout("the request body stopped arriving before it was complete "
                                 "(no data for too long); send it without pauses") from exc
        raise InvalidRequest("the request body ended before Content-Length bytes arrived") \
            from exc
    if not raw.strip():
        raise InvalidRequest("request body is empty; send a JSON object")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"invalid JSON in request body: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body


def check_json_schema(schema: Any, param: str) -> None:
    """A user-supplied JSON Schema (response_format, tool parameters) must itself be valid."""
    try:
        validator_class(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidRequest(f"{param} is not a valid JSON Schema: {exc.message}",
                             param=param) from exc
