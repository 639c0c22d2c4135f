"""The OpenAPI document: valid 3.1, every served route in it, schemas shared with validation,
successful answers described by the response schemas, and docs/openapi.json up to date
(regenerate: python -m server.openapi_doc > docs/openapi.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from schemathesis.specs.openapi.definitions import OPENAPI_31

from server import openapi_doc
from server.api import openapi
from server.api.validation import SCHEMA_DIR, validate
from server.core.errors import InvalidRequest

DOC = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


@pytest.fixture(scope="module")
def app():
    return openapi_doc.standalone_app()


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


def test_answering_views_reference_their_response_schema(app, doc):
    """Each view in RESPONSES exists and names a response component, which its success
    answer carries as the JSON body; streamed media types stay listed beside it."""
    views = {f"{f.__module__.rsplit('.', 1)[-1]}.{f.__name__}" for f in app.view_functions.values()}
    assert set(openapi.RESPONSES) <= views
    comps = doc["components"]["schemas"]
    assert all(name in comps for name in openapi.RESPONSES.values())
    chat = doc["paths"]["/engines/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert chat["application/json"]["schema"] == {
        "$ref": "#/components/schemas/openai_response.chat_completion"}
    assert "text/event-stream" in chat
    tag = doc["paths"]["/models/{name}/tag"]["post"]["responses"]["201"]["content"]
    assert tag["application/json"]["schema"]["$ref"].endswith("dmr_response.tag_result")
    ollama_chat = doc["paths"]["/api/chat"]["post"]["responses"]["200"]["content"]
    assert set(ollama_chat) == {"application/json", "application/x-ndjson"}
    # Answers that never stream do not list a stream format.
    assert set(doc["paths"]["/api/embed"]["post"]["responses"]["200"]["content"]) == {
        "application/json"}


def test_response_component_names_do_not_clash(monkeypatch):
    """Request and response files share one component namespace."""
    monkeypatch.setattr(openapi, "RESPONSE_DIR", openapi.SCHEMA_DIR)
    with pytest.raises(ValueError, match="used twice"):
        openapi.components()


#: Real answers (recorded from a server with ai/smollm2), one per kind of response component.
_TOKEN = {"token": "Hi", "logprob": -0.5, "bytes": [72, 105],
          "top_logprobs": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105]}]}
_USAGE = {"prompt_tokens": 31, "completion_tokens": 5, "total_tokens": 36,
          "prompt_tokens_details": {"cached_tokens": 0}}
_DETAILS = {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
            "parameter_size": "134.52M", "quantization_level": "Q4_1"}
_ID = "sha256:" + "3f" * 32
ANSWERS = [
    ("openai_response.chat_completion", {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1795303706,
        "model": "ai/smollm2", "system_fingerprint": "litellm-dmr",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                     "logprobs": {"content": [_TOKEN]}, "finish_reason": "length"},
                    {"index": 1, "message": {"role": "assistant", "content": None,
                                             "reasoning_content": "hm",
                                             "tool_calls": [{"id": "call_1", "type": "function",
                                                             "function": {"name": "f",
                                                                          "arguments": "{}"}}]},
                     "logprobs": None, "finish_reason": "tool_calls"}],
        "usage": _USAGE}),
    ("openai_response.text_completion", {
        "id": "cmpl-1", "object": "text_completion", "created": 1795303706, "model": "m",
        "choices": [{"text": "hi there", "index": 0, "finish_reason": "length",
                     "logprobs": {"tokens": [" there"], "token_logprobs": [-1.5],
                                  "top_logprobs": [{" there": -1.5}], "text_offset": [2]}}],
        "usage": _USAGE}),
    ("openai_response.embedding_list", {
        "object": "list", "model": "m", "usage": {"prompt_tokens": 2, "total_tokens": 2},
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]},
                 {"object": "embedding", "index": 1, "embedding": "b7YQvw38Ur+J5Q49"}]}),
    ("openai_response.model_list", {"object": "list", "data": [{
        "id": "ai/smollm2:latest", "object": "model", "created": 1795303689, "owned_by": "docker",
        "dmr": {"context_window": 8192, "architecture": "llama", "parameters": "134.52 M",
                "quantization": "Q4_1", "size": "93.81 MiB"}}]}),
    ("anthropic_response.message", {
        "id": "msg_01", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "thinking", "thinking": "hm", "signature": "c2ln"},
                    {"type": "text", "text": "Hi"},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 31, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 30, "output_tokens": 5}}),
    ("anthropic_response.token_count", {"input_tokens": 31}),
    ("ollama_response.chat", {
        "model": "m", "created_at": "2026-11-21T23:28:35.064643Z",
        "message": {"role": "assistant", "content": "", "thinking": "hm",
                    "tool_calls": [{"id": "call_1", "function": {"index": 0, "name": "f",
                                                                 "arguments": {"a": 1}}}]},
        "logprobs": [_TOKEN], "done": True, "done_reason": "stop", "total_duration": 90949598,
        "load_duration": 0, "prompt_eval_count": 31, "prompt_eval_duration": 30179359,
        "eval_count": 4, "eval_duration": 51458161}),
    ("ollama_response.generate", {
        "model": "m", "created_at": "2026-11-21T23:28:35.885544Z", "response": "",
        "done": True, "done_reason": "unload", "total_duration": 27818821, "load_duration": 0}),
    ("ollama_response.embed", {"model": "m", "embeddings": [[0.6, 0.8]], "total_duration": 1,
                               "load_duration": 0, "prompt_eval_count": 1}),
    ("ollama_response.embeddings", {"embedding": []}),
    ("ollama_response.tags", {"models": [{
        "name": "ai/smollm2:latest", "model": "ai/smollm2:latest",
        "modified_at": "2026-11-21T23:28:09Z", "size": 98362432, "digest": "3f" * 32,
        "details": _DETAILS}]}),
    ("ollama_response.ps", {"models": [{
        "name": "ai/smollm2:latest", "model": "ai/smollm2:latest", "size": 96576768,
        "digest": "3f" * 32, "details": {**_DETAILS, "families": None},
        "expires_at": "2318-01-01T00:00:00Z", "size_vram": 0, "context_length": 512}]}),
    ("ollama_response.show", {
        "license": "apache-2.0", "modelfile": "FROM m\n", "parameters": "num_ctx 512",
        "template": "", "details": _DETAILS, "model_info": {"general.architecture": "llama"},
        "capabilities": ["completion"], "modified_at": "2026-11-21T23:28:09Z"}),
    ("ollama_response.version", {"version": "0.12.11", "dmr": "0.1.0"}),
    ("dmr_response.model_list", [{"id": _ID, "tags": ["ai/smollm2:latest"],
                                  "created": 1795303689,
                                  "config": {"format": "gguf",
                                             "gguf": {"llama.block_count": "30"}}}]),
    ("dmr_response.delete_result", [{"Untagged": "a/b:t"}, {"Deleted": _ID}]),
    ("dmr_response.engines_ps", [{"backend_name": "llama.cpp", "model_name": "ai/smollm2:latest",
                                  "mode": "completion", "last_used": "2026-11-21T23:28:36Z",
                                  "in_use": False, "keep_alive": "5m0s", "context_size": 512}]),
]

#: Answers a client could not use, and the response component that must refuse them.
BROKEN = [
    ("openai_response.chat_completion", {"object": "chat.completion", "choices": []}),
    ("openai_response.chat_completion", {
        "id": "x", "object": "chat.completion", "created": 1, "model": "m", "usage": _USAGE,
        "choices": [{"index": 0, "message": {"role": "assistant"}, "finish_reason": "stop"}]}),
    ("openai_response.chat_completion", {
        "id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "usage": {**_USAGE, "total_tokens": 1.5},
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "a"},
                     "finish_reason": None}]}),
    ("openai_response.embedding_list", {"object": "list", "model": "m", "usage": {},
                                        "data": [{"object": "embedding", "index": 0,
                                                  "embedding": [0.1]}]}),
    ("anthropic_response.message", {
        "id": "msg", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "text"}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1}}),
    ("ollama_response.chat", {"model": "m", "created_at": "now", "done": True}),
    ("dmr_response.model", {"id": "ai/smollm2", "tags": [], "created": 1, "config": {}}),
]


@pytest.mark.parametrize(("name", "body"), ANSWERS + BROKEN,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(ANSWERS + BROKEN)])
def test_response_components_describe_real_answers(doc, name, body):
    root = {"components": {"schemas": doc["components"]["schemas"]}}
    component = jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", **root})
    assert component.is_valid(body) is ((name, body) in ANSWERS)


def test_served_document_matches(app, doc):
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == json.loads(json.dumps(doc))


def test_committed_copy_is_fresh(app):
    assert DOC.read_text(encoding="utf-8") == openapi.render(app), (
        "docs/openapi.json is stale: python -m server.openapi_doc > docs/openapi.json")
