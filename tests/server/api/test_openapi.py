"""The OpenAPI document: valid 3.1, every served route in it, schemas shared with validation,
and docs/openapi.json up to date (regenerate: python -m server.api.openapi > docs/openapi.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from schemathesis.specs.openapi.definitions import OPENAPI_31

from server.api import openapi
from server.api.validation import SCHEMA_DIR, validate
from server.core.errors import InvalidRequest

DOC = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


@pytest.fixture(scope="module")
def app():
    return openapi.standalone_app()


@pytest.fixture(scope="module")
def doc(app):
    return openapi.document(app)


def test_document_is_valid_openapi_31(doc):
    assert doc["openapi"] == "3.1.0"
    jsonschema.Draft202012Validator(OPENAPI_31).validate(doc)


def test_component_schemas_are_valid_and_refs_resolve(doc):
    """Every component is a valid 2020-12 schema, and every $ref names an existing component."""
    comps = doc["components"]["schemas"]
    for schema in comps.values():
        jsonschema.Draft202012Validator.check_schema(schema)
    refs: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)
    for ref in refs:
        kind, _, name = ref.removeprefix("#/components/").partition("/")
        assert ref.startswith("#/components/") and name in doc["components"][kind], ref


def test_every_route_is_documented(app, doc):
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<path:", "<").replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in doc["paths"].get(path, {}), f"{method} {path} missing"


def test_validating_views_reference_their_schema(app, doc):
    """Each view in SCHEMAS exists, and every POST that has one carries it as its body."""
    views = {f"{f.__module__.rsplit('.', 1)[-1]}.{f.__name__}" for f in app.view_functions.values()}
    assert set(openapi.SCHEMAS) <= views
    assert {f"{n}.json" for n in openapi.SCHEMAS.values()} <= {e.name for e in SCHEMA_DIR.iterdir()}
    chat = doc["paths"]["/engines/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/openai_chat"}
    assert "requestBody" in doc["paths"]["/api/chat"]["post"]


def test_components_validate_like_the_schema_files(doc):
    """The generated components accept and reject what validation.validate does."""
    root = {"components": {"schemas": doc["components"]["schemas"]}}
    cases = [
        ("openai_chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        ("openai_chat", {"model": "m", "messages": [{"role": "nobody", "content": "hi"}]}),
        ("anthropic_messages", {"model": "m", "max_tokens": 1,
                                "messages": [{"role": "user", "content": [{}]}]}),
        ("ollama_copy", {"source": "a", "destination": "b"}),
        ("ollama_generate", {"model": 5}),
    ]
    for name, body in cases:
        component = jsonschema.Draft202012Validator(
            {"$ref": f"#/components/schemas/{name}", **root})
        try:
            validate(name, body)
            accepted = True
        except InvalidRequest:
            accepted = False
        assert component.is_valid(body) is accepted, (name, body)


def test_served_document_matches(app, doc):
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == json.loads(json.dumps(doc))


def test_committed_copy_is_fresh(app):
    assert DOC.read_text(encoding="utf-8") == openapi.render(app), (
        "docs/openapi.json is stale: python -m server.api.openapi > docs/openapi.json")
