"""Schemathesis fuzzing of the live server with the document it serves at /openapi.json: no
5xx, and statuses, content types and JSON bodies (success and error answers) as documented.
Fuzzed requests mostly meet errors, so known-good requests check every documented success
answer against its schema too.

Bounded so it fits the suite: a server of its own with a 512-token context, few examples
per operation, generated token budgets capped by a hook, destructive routes excluded.
"""

from __future__ import annotations

import json

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from server import openapi_doc
from server.api import openapi
from server.api.ollama_codec import timestamp
from server.api.validation import validate
from server.config import parse_duration
from server.core.errors import InvalidRequest
from server.core.signing import ThinkingSigner
from tests.conftest import MODEL, ServerProcess

#: Routes fuzzing must not call: they wipe the store or reach the network (pulls and pushes
#: go to registries; a fuzzed name is a real registry lookup).
EXCLUDED = [
    ("DELETE", "/models/purge"),
    ("POST", "/models/create"),
    ("POST", "/models/{name}/push"),
    ("POST", "/api/pull"),
    ("POST", "/api/push"),
]

#: Operations that may name the real model: never deleting ones (the model would be gone
#: for every later example).
REAL_MODEL_METHODS = {"POST"}

#: Generated fields that set how much work a request asks for, and their caps.
CAPS = {"max_tokens": 4, "max_completion_tokens": 4, "num_predict": 4, "n": 2,
        "context-size": 512, "num_ctx": 512, "top_logprobs": 2, "max_output_tokens": 4}


def _cap(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in CAPS and isinstance(value, int) and not isinstance(value, bool):
                node[key] = max(min(value, CAPS[key]), -1)
            else:
                _cap(value)
    elif isinstance(node, list):
        for item in node:
            _cap(item)


@schemathesis.hook
def map_body(ctx, body):
    """Keep generation cheap, and aim generation requests at the real model half the time
    (a random name is a fast 404 that exercises nothing else)."""
    _cap(body)
    if ctx.operation is None or ctx.operation.method.upper() not in REAL_MODEL_METHODS:
        return body
    if isinstance(body, dict) and isinstance(body.get("model"), str) and len(body) % 2:
        body["model"] = MODEL
    return body


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    server = ServerProcess(base / "models", base / "server.log",
                           env={"DMR_CONTEXT_SIZE": "512", "DMR_THREADS": "1"})
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


#: What every answer is checked for: no server error, and status, media type and body (JSON
#: bodies against their response schema; streams by media type only) as documented.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]

#: The same document the server serves (test_openapi keeps docs/openapi.json equal).
DOCUMENT = openapi.document(openapi_doc.standalone_app())


def _schema():
    """DOCUMENT without the routes fuzzing must not call."""
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    for method, path in EXCLUDED:
        schema = schema.exclude(method=method, path=path)
    # The /v1 and /anthropic/v1 aliases (and DMR's /responses and /engines/responses) mount
    # the very views fuzzed under /engines/v1 and /engines/{engine}/v1; fuzzing them again
    # only doubles the time.
    return schema.exclude(path_regex=r"^/((anthropic/)?v1/|(engines/)?responses)")


schema = _schema()


def test_live_server_serves_the_fuzzed_document(fuzz_server):
    response = requests.get(fuzz_server.url + "/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.json() == json.loads(json.dumps(schema.raw_schema))


_CHAT = [{"role": "user", "content": "Say hi"}]
_TOOL = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}

#: Requests each answered with a 200 (201 for a tag): (method, path, path parameters or query,
#: body). Small token budgets; the generation ones also load the model for /api/ps.
GOOD_REQUESTS = [
    ("POST", "/engines/v1/chat/completions", None,
     {"model": MODEL, "messages": _CHAT, "max_tokens": 3, "n": 2, "logprobs": True,
      "top_logprobs": 1}),
    ("POST", "/engines/v1/chat/completions", None,
     {"model": MODEL, "messages": _CHAT, "max_tokens": 24, "tool_choice": "required",
      "tools": [{"type": "function", "function": {"name": "f", "parameters": _TOOL}}]}),
    ("POST", "/engines/v1/completions", None,
     {"model": MODEL, "prompt": ["Hi", "Yo"], "max_tokens": 2, "echo": True, "logprobs": 1}),
    ("POST", "/engines/v1/embeddings", None, {"model": MODEL, "input": ["a", "b"]}),
    ("POST", "/engines/v1/embeddings", None,
     {"model": MODEL, "input": "a", "encoding_format": "base64", "dimensions": 4}),
    ("GET", "/engines/v1/models", None, None),
    ("GET", "/engines/v1/models/{name}", {"name": MODEL}, None),
    ("POST", "/engines/v1/messages", None,
     {"model": MODEL, "max_tokens": 8, "messages": _CHAT,
      "thinking": {"type": "enabled", "budget_tokens": 3}}),
    ("POST", "/engines/v1/messages", None,
     {"model": MODEL, "max_tokens": 24, "messages": _CHAT, "tool_choice": {"type": "any"},
      "tools": [{"name": "f", "input_schema": _TOOL}]}),
    ("POST", "/engines/v1/messages/count_tokens", None, {"model": MODEL, "messages": _CHAT}),
    ("POST", "/api/chat", None,
     {"model": MODEL, "messages": _CHAT, "stream": False, "think": True, "logprobs": True,
      "options": {"num_predict": 3}}),
    ("POST", "/api/chat", None, {"model": MODEL, "stream": False}),
    ("POST", "/api/generate", None,
     {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 3}}),
    ("POST", "/api/generate", None,
     {"model": MODEL, "prompt": "Hi", "raw": True, "stream": False, "options": {"num_predict": 2}}),
    ("POST", "/api/embed", None, {"model": MODEL, "input": ["a", "b"], "dimensions": 4}),
    ("POST", "/api/embeddings", None, {"model": MODEL, "prompt": "a"}),
    ("GET", "/api/tags", None, None),
    ("GET", "/api/ps", None, None),
    ("POST", "/api/show", None, {"model": MODEL}),
    ("GET", "/api/version", None, None),
    ("GET", "/models", None, None),
    ("GET", "/models/{name}", {"name": MODEL}, None),
    ("POST", "/models/{name}/tag", {"name": MODEL, "repo": "fuzz/copy", "tag": "t"}, None),
    ("DELETE", "/models/{name}", {"name": "fuzz/copy:t"}, None),
    ("GET", "/engines/status", None, None),
    ("GET", "/engines/ps", None, None),
    ("GET", "/engines/df", None, None),
    ("GET", "/engines/requests", None, None),
    ("POST", "/engines/unload", None, {"models": ["fuzz/none"]}),
    ("GET", "/health", None, None),
    ("GET", "/version", None, None),
    ("POST", "/engines/v1/responses", None,
     {"model": MODEL, "input": "Say hi", "max_output_tokens": 3, "reasoning": {"effort": "low"},
      "metadata": {"k": "v"}}),
    ("POST", "/engines/v1/responses", None,
     {"model": MODEL, "input": [{"role": "user", "content": "Hi"}], "max_output_tokens": 24,
      "tool_choice": "required", "store": False,
      "tools": [{"type": "function", "name": "f", "parameters": _TOOL}]}),
    ("POST", "/engines/v1/responses/input_tokens", None, {"model": MODEL, "input": "Hi"}),
]


@pytest.mark.timeout(180)
def test_good_requests_get_documented_answers(fuzz_server):
    """Each success answer matches its response schema (runs before fuzzing changes the
    store), and the document gives a schema for every one of them."""
    full = schemathesis.openapi.from_dict(DOCUMENT)
    for method, path, params, body in GOOD_REQUESTS:
        operation = full[path][method]
        names = {p["name"] for p in DOCUMENT["paths"][path][method.lower()].get("parameters", [])
                 if p["in"] == "path"}
        params = params or {}
        kwargs = {} if body is None else {"body": body, "media_type": "application/json"}
        case = operation.Case(path_parameters={k: v for k, v in params.items() if k in names},
                              query={k: v for k, v in params.items() if k not in names} or None,
                              **kwargs)
        response = case.call_and_validate(base_url=fuzz_server.url, timeout=60, checks=CHECKS)
        status = 201 if path.endswith("/tag") else 200
        assert response.status_code == status, (method, path, response.text[:300])
        content = DOCUMENT["paths"][path][method.lower()]["responses"][str(status)]["content"]
        assert "schema" in content["application/json"], (method, path)


@pytest.mark.timeout(120)
def test_stored_response_routes_get_documented_answers(fuzz_server):
    """Retrieve, input items and delete of a real stored response match their schemas."""
    full = schemathesis.openapi.from_dict(DOCUMENT)
    created = requests.post(fuzz_server.url + "/engines/v1/responses", timeout=60,
                            json={"model": MODEL, "input": "Hi", "max_output_tokens": 2})
    assert created.status_code == 200, created.text
    params = {"response_id": created.json()["id"]}
    for method, path in (("GET", "/engines/v1/responses/{response_id}"),
                         ("GET", "/engines/v1/responses/{response_id}/input_items"),
                         ("DELETE", "/engines/v1/responses/{response_id}")):
        case = full[path][method].Case(path_parameters=params)
        response = case.call_and_validate(base_url=fuzz_server.url, timeout=30, checks=CHECKS)
        assert response.status_code == 200, (method, path, response.text[:300])


@schema.parametrize()
@settings(max_examples=10, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@pytest.mark.timeout(120)
def test_fuzz(case, fuzz_server):
    case.call_and_validate(base_url=fuzz_server.url, timeout=30, checks=CHECKS)


# ------------------------------------------------- regressions: 5xx that fuzzing found


def _rejects(schema_name: str, body: dict) -> str:
    with pytest.raises(InvalidRequest) as info:
        validate(schema_name, body)
    return str(info.value)


def test_content_block_without_type_is_a_400():
    message = _rejects("anthropic_messages", {"model": "m", "max_tokens": 1, "messages": [
        {"role": "user", "content": [{}]}]})
    assert "messages[0].content[0].type" in message and "required" in message


def test_integral_floats_are_not_integers():
    """[[0.0]] passed JSON Schema's "integer" and reached the tokenizer as a float."""
    assert "integer" in _rejects("openai_embedding",
                                 {"model": "m", "input": "x", "dimensions": 2.0})
    _rejects("openai_embedding", {"model": "m", "input": [[0.0]]})


def test_thinking_signature_with_non_ascii_or_surrogates():
    signer = ThinkingSigner(b"k" * 32)
    assert not signer.verify("\udb5d thought", "é\udb5d")
    assert signer.verify("\ud800", signer.sign("\ud800"))


def test_far_keep_alive_shows_as_year_9999_and_nan_is_refused():
    assert timestamp(1e300) == timestamp(float("inf")) == "9999-12-31T23:59:59Z"
    for value in ("nan", float("nan")):
        with pytest.raises(ValueError):
            parse_duration(value)
