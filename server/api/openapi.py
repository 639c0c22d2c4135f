"""OpenAPI 3.1 for every route the app serves, generated from the request and response schemas.

The JSON Schemas in `schemas/` (request bodies) and `schemas/responses/` (successful JSON
answers) stay the one source: each file becomes a component (its `$defs` hoisted to
`<file>.<def>` components, `$ref`s rewritten to match), views are tied to the schema they
validate with through `SCHEMAS` and to the shape of their answer through `RESPONSES`, and
routes come from `app.url_map`, so the document cannot miss a route or disagree with
validation. Streamed answers (SSE, NDJSON) are listed by media type only.
Regenerate the committed copy with `python -m server.openapi_doc > docs/openapi.json` (the app
is built above this floor, in server/openapi_doc.py).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, current_app, jsonify

from .. import __version__
from .validation import SCHEMA_DIR

if TYPE_CHECKING:  # importlib.resources.abc is 3.11+; annotations only need it to type-check
    from importlib.resources.abc import Traversable  # novm

#: View (module.function) -> the schema its request body is validated with.
SCHEMAS = {
    "openai.chat_completions": "openai_chat",
    "openai.completions": "openai_completion",
    "openai.embeddings": "openai_embedding",
    "anthropic.messages": "anthropic_messages",
    "anthropic.count_tokens": "anthropic_count_tokens",
    "ollama.chat": "ollama_chat",
    "ollama.generate": "ollama_generate",
    "ollama.embed": "ollama_embed",
    "ollama.embeddings": "ollama_embeddings",
    "ollama.show": "ollama_model_ref",
    "ollama.copy": "ollama_copy",
    "ollama.delete": "ollama_model_ref",
    "ollama.pull": "ollama_model_ref",
    "ollama_create.create": "ollama_create",
    "ollama_create.push": "ollama_model_ref",
    "engines.unload": "dmr_unload",
    "engines.configure": "dmr_configure",
    "models.create_model": "dmr_create",
    "models.push_model": "dmr_push",
    "responses.create_response": "openai_responses",
    "responses.count_input_tokens": "openai_responses_input_tokens",
}

#: Where the response schemas live: one file per dialect, one `$defs` entry per answer.
RESPONSE_DIR = SCHEMA_DIR / "responses"

#: View (module.function) -> the component describing its successful JSON answer.
RESPONSES = {
    "openai.chat_completions": "openai_response.chat_completion",
    "openai.completions": "openai_response.text_completion",
    "openai.embeddings": "openai_response.embedding_list",
    "models.openai_list": "openai_response.model_list",
    "models.openai_get": "openai_response.model",
    "anthropic.messages": "anthropic_response.message",
    "anthropic.count_tokens": "anthropic_response.token_count",
    "ollama.chat": "ollama_response.chat",
    "ollama.generate": "ollama_response.generate",
    "ollama.embed": "ollama_response.embed",
    "ollama.embeddings": "ollama_response.embeddings",
    "ollama.tags": "ollama_response.tags",
    "ollama.ps": "ollama_response.ps",
    "ollama.show": "ollama_response.show",
    "ollama.version": "ollama_response.version",
    "models.list_models": "dmr_response.model_list",
    "models.get_model": "dmr_response.model",
    "models.tag_model": "dmr_response.tag_result",
    "models.delete_model": "dmr_response.delete_result",
    "engines.status": "dmr_response.engines_status",
    "engines.ps": "dmr_response.engines_ps",
    "engines.df": "dmr_response.engines_df",
    "engines.unload": "dmr_response.unload_result",
    "recorder_routes.requests_": "dmr_response.request_records",
    "misc.health": "dmr_response.health",
    "misc.version": "dmr_response.version",
    "responses.create_response": "responses_api.response",
    "responses.get_response": "responses_api.response",
    "responses.cancel_response": "responses_api.response",
    "responses.delete_response": "responses_api.deleted",
    "responses.list_input_items": "responses_api.input_item_list",
    "responses.count_input_tokens": "responses_api.input_tokens",
}

#: Query parameters read by views (module.function -> name -> (required, description)).
QUERY = {
    "models.tag_model": {"repo": (True, "target repository"), "tag": (True, "target tag")},
    "models.delete_model": {"force": (False, "delete even when other tags share the files")},
    "engines.show_configuration": {"model": (False, "only this model's configuration")},
    "responses.get_response": {
        "stream": (False, "true: stream the response's events (SSE)"),
        "starting_after": (False, "with stream: only events after this sequence number")},
    "responses.list_input_items": {
        "limit": (False, "items per page, 1-100 (20)"), "order": (False, "asc or desc (desc)"),
        "after": (False, "item id to list after"), "before": (False, "item id to list before")},
    "recorder_routes.requests_": {
        "model": (False, "only this model's records (a name or ID)"),
        "include_existing": (False, "when following (Accept: text/event-stream), first the "
                                    "records kept")},
}

#: Views that stream in their dialect's second format when `stream` is set (Ollama: unless
#: it is false).
STREAMING = {"openai.chat_completions", "openai.completions", "anthropic.messages",
             "ollama.chat", "ollama.generate", "responses.create_response",
             "responses.get_response"}
STREAMS = {"openai": "text/event-stream", "anthropic": "text/event-stream",
           "ollama": "application/x-ndjson"}

_ERROR_SCHEMAS: dict[str, dict[str, Any]] = {
    "OpenAIError": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["message", "type"],
                                 "properties": {"message": {"type": "string"},
                                                "type": {"type": "string"},
                                                "param": {"type": ["string", "null"]},
                                                "code": {"type": ["string", "null"]}}}}},
    "AnthropicError": {
        "type": "object", "required": ["type", "error"],
        "properties": {"type": {"const": "error"},
                       "error": {"type": "object", "required": ["type", "message"],
                                 "properties": {"type": {"type": "string"},
                                                "message": {"type": "string"}}}}},
    "OllamaError": {"type": "object", "required": ["error"],
                    "properties": {"error": {"type": "string"}}},
}

#: Error statuses each dialect answers with (core error statuses mapped by the dialect).
_ERROR_STATUSES = {
    "openai": (400, 401, 403, 404, 408, 409, 412, 413, 422, 503),
    "anthropic": (400, 401, 403, 404, 408, 413, 422, 529),
    "ollama": (400, 401, 403, 404, 408, 409, 412, 413, 422, 503, 507),
    "plain": (400, 401, 403, 404, 408, 409, 412, 413, 422, 503, 507),
}
#: Statuses only a request with a body can meet (a body that stalls, conflicts, is too big,
#: names a model that fails to load or does not fit on the disk).
_BODY_STATUSES = (408, 409, 413, 422, 507)
_ERROR_RESPONSE = {"openai": "OpenAIError", "anthropic": "AnthropicError",
                   "ollama": "OllamaError", "plain": "PlainError"}
_TAGS = {"openai": "OpenAI", "anthropic": "Anthropic", "ollama": "Ollama", "plain": "DMR"}


def _error_responses() -> dict[str, Any]:
    """One response per dialect error shape; DMR's native routes answer in plain text."""
    out = {name: {"description": f"{name[:-5]} error", "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{name}"}}}} for name in _ERROR_SCHEMAS}
    out["PlainError"] = {"description": "DMR error (plain text)",
                         "content": {"text/plain": {"schema": {"type": "string"}}}}
    return out

_REF = re.compile(r"^(?P<file>[\w.-]+\.json)?(?:#(?P<pointer>.*))?$")


def _component_refs(node: Any, file: str) -> Any:
    """A copy of `node` with `$ref`s into schema files pointed at their components."""
    if isinstance(node, list):
        return [_component_refs(item, file) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _component_refs(value, file) for key, value in node.items()}
    if isinstance(node.get("$ref"), str):
        match = _REF.match(node["$ref"])
        target = (match["file"] or f"{file}.json")[:-5] if match else None
        pointer = (match["pointer"] or "") if match else None
        if pointer == "":
            out["$ref"] = f"#/components/schemas/{target}"
        elif pointer and pointer.startswith("/$defs/") and pointer.count("/") == 2:
            out["$ref"] = f"#/components/schemas/{target}.{pointer[7:]}"
        else:
            raise ValueError(f"{file}.json: unsupported $ref {node['$ref']!r}")
    return out


def _file_components(directory: Traversable) -> dict[str, Any]:
    """The schema files directly in `directory` as components named after the files."""
    schemas: dict[str, Any] = {}
    for entry in sorted(directory.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".json"):
            continue
        name = entry.name[:-5]
        schema = json.loads(entry.read_text(encoding="utf-8"))
        schema.pop("$schema", None)  # OpenAPI 3.1's dialect is 2020-12 already
        for def_name, sub in schema.pop("$defs", {}).items():
            schemas[f"{name}.{def_name}"] = _component_refs(sub, name)
        schemas[name] = _component_refs(schema, name)
    return schemas


def components() -> dict[str, Any]:
    """Every request and response schema file as components, plus the dialects' error
    bodies; the two directories share one namespace, so a name may not be used twice."""
    schemas: dict[str, Any] = {}
    for part in (_file_components(SCHEMA_DIR), _file_components(RESPONSE_DIR), _ERROR_SCHEMAS):
        clash = schemas.keys() & part.keys()
        if clash:
            raise ValueError(f"schema component names used twice: {sorted(clash)}")
        schemas.update(part)
    return schemas


def _dialect(blueprint: str | None) -> str:
    if blueprint and blueprint.startswith(("openai", "models_")):
        return "openai"
    if blueprint and blueprint.startswith("anthropic"):
        return "anthropic"
    if blueprint == "ollama":
        return "ollama"
    return "plain"  # DMR's native and server routes answer errors in plain text


def _responses(dialect: str, view: str, method: str, path_params: bool) -> dict[str, Any]:
    ok: dict[str, Any] = {"application/json": {}}
    if view in STREAMING:
        ok[STREAMS[dialect]] = {}
    if view in ("models.load_model", "models.create_model", "models.push_model",
                "ollama.pull", "ollama_create.create", "ollama_create.push"):
        ok = {"application/json": {}, "text/plain": {}, "application/x-ndjson": {}}
    if view == "metrics.metrics":
        ok = {"text/plain": {}}  # Prometheus' text exposition format
    if view == "misc.root":
        ok = {"text/plain": {}}  # a browser (Accept: text/html) is redirected to /ui
    if view == "recorder_routes.requests_":  # followed with Accept: text/event-stream
        ok["text/event-stream"] = {}
    if view.startswith("dashboard."):
        ok = {"text/html": {}} if view == "dashboard.index" else {
            "text/html": {}, "text/javascript": {}, "text/css": {}}
    if view in RESPONSES:
        ok["application/json"] = {"schema": {"$ref": f"#/components/schemas/{RESPONSES[view]}"}}
    out: dict[str, Any] = {"200": {"description": "OK", "content": ok}}
    if view in STREAMING:
        when = "unless `stream` is false" if dialect == "ollama" else "when `stream` is true"
        out["200"]["description"] = f"OK: one JSON object, or a stream ({STREAMS[dialect]}) {when}"
    if view == "models.tag_model":
        out = {"201": {"description": "Created", "content": ok}}
    if view == "engines.configure":  # DMR accepts with a 202 (ours lists any notes)
        out = {"202": {"description": "Accepted", "content": {"text/plain": {}}}}
    if view == "ollama_create.blob_upload":
        out = {"201": {"description": "Stored"}}
    if view == "ollama_create.blob_exists":
        out = {"200": {"description": "Present"}, "404": {"description": "Absent"}}
    error = {"$ref": f"#/components/responses/{_ERROR_RESPONSE[dialect]}"}
    statuses = _ERROR_STATUSES[dialect]
    if view in ("ollama.delete", "ollama.copy"):  # Ollama answers a bare 200
        out = {"200": {"description": "Deleted" if view == "ollama.delete" else "Copied"}}
    if method == "GET":
        statuses = tuple(s for s in statuses if s not in _BODY_STATUSES)
    for status in statuses:
        out[str(status)] = error
    if path_params and dialect != "plain":
        # A parameter the route cannot match (a name with a newline) meets the app's own
        # plain-text 404 before any dialect sees it.
        body = _error_responses()[_ERROR_RESPONSE[dialect]]["content"]
        out["404"] = {"description": "Not found",
                      "content": {**body, "text/plain": {"schema": {"type": "string"}}}}
    return out


def _operation(app: Flask, rule, method: str) -> dict[str, Any]:
    func = app.view_functions[rule.endpoint]
    view = f"{func.__module__.rsplit('.', 1)[-1]}.{func.__name__}"
    dialect = _dialect(rule.endpoint.rpartition(".")[0] or None)
    op: dict[str, Any] = {
        "operationId": f"{rule.endpoint}.{method.lower()}",
        "tags": [_TAGS[dialect]],
        "summary": (func.__doc__ or "").strip().split("\n")[0] or view,
    }
    params = [{"name": arg, "in": "path", "required": True, "schema": {"type": "string"}}
              for arg in sorted(rule.arguments)]
    for name, (required, text) in QUERY.get(view, {}).items():
        params.append({"name": name, "in": "query", "required": required,
                       "description": text, "schema": {"type": "string"}})
    if params:
        op["parameters"] = params
    if view in SCHEMAS:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{SCHEMAS[view]}"}}}}
    op["responses"] = _responses(dialect, view, method, bool(rule.arguments))
    return op


def document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `app`'s routes."""
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(app, rule, method)
    return {"openapi": "3.1.0",
            "info": {"title": "litellm-dmr", "version": __version__,
                     "description": "Docker Model Runner compatible API: OpenAI, Anthropic, "
                                    "Ollama and DMR-native routes."},
            "paths": paths,
            "components": {"schemas": components(), "responses": _error_responses()}}


bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
def openapi_json():
    """This server's OpenAPI 3.1 document."""
    return jsonify(document(current_app))


def render(app: Flask) -> str:
    """The document as committed in docs/openapi.json."""
    return json.dumps(document(app), indent=2, ensure_ascii=False) + "\n"
