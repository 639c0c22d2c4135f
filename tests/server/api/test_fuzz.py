"""Schemathesis fuzzing of the live server with the document it serves at /openapi.json: no
5xx, and statuses and content types as documented.

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
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

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
    # Ollama-only features answered with a fixed 501 Not Implemented whatever the input
    # (documented so in the spec): nothing to fuzz, and a 5xx by design.
    ("POST", "/api/create"),
    ("POST", "/api/blobs/{digest}"),
]

#: Operations that may name the real model: never deleting ones (the model would be gone
#: for every later example).
REAL_MODEL_METHODS = {"POST"}

#: Generated fields that set how much work a request asks for, and their caps.
CAPS = {"max_tokens": 4, "max_completion_tokens": 4, "num_predict": 4, "n": 2,
        "context-size": 512, "num_ctx": 512, "top_logprobs": 2}


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


def _schema():
    """The same document the server serves (test_openapi keeps docs/openapi.json equal)."""
    schema = schemathesis.openapi.from_dict(openapi.document(openapi.standalone_app()))
    for method, path in EXCLUDED:
        schema = schema.exclude(method=method, path=path)
    # The /v1 and /anthropic/v1 aliases mount the very views fuzzed under /engines/v1 and
    # /engines/{engine}/v1; fuzzing them again only doubles the time.
    return schema.exclude(path_regex=r"^/(anthropic/)?v1/")


schema = _schema()


def test_live_server_serves_the_fuzzed_document(fuzz_server):
    response = requests.get(fuzz_server.url + "/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.json() == json.loads(json.dumps(schema.raw_schema))


@schema.parametrize()
@settings(max_examples=10, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@pytest.mark.timeout(120)
def test_fuzz(case, fuzz_server):
    case.call_and_validate(base_url=fuzz_server.url, timeout=30,
                           checks=[not_a_server_error, status_code_conformance,
                                   content_type_conformance])


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
