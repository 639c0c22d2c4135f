"""The remote engine's replica logic against stub upstreams that fail on demand: which replica
a request goes to, retries before the first byte, cooldowns and their end, in-band errors
after it, and what the client sees (OpenAI's shapes) through the real Flask app.

A stub is enough here: nothing below the HTTP level runs. test_remote_e2e.py runs the same
paths against real servers and the real model.
"""

from __future__ import annotations

import json
import time

import pytest

from server.api.remote_proxy import event_payloads, sse_events
from server.app import create_app
from server.config import Settings
from server.engines.remote.config import parse_engine
from server.engines.remote.engine import NoUpstream, RemoteEngine

from .stub_upstream import MODEL, StubUpstream

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def stubs():
    a, b = StubUpstream("a"), StubUpstream("b")
    yield a, b
    a.stop()
    b.stop()


def _engine(*stubs_, **options) -> RemoteEngine:
    engine = RemoteEngine(parse_engine("vllm", {"upstreams": [s.url for s in stubs_], **options}))
    for upstream in engine.upstreams:
        engine.check(upstream)
    return engine


@pytest.fixture
def app_for(tmp_path):
    apps = []

    def make(*stubs_, **options):
        settings = Settings.from_mapping({
            "models_dir": tmp_path / "models", "import_default_model": False,
            "engines": {"vllm": {"upstreams": [s.url for s in stubs_], **options}}})
        app = create_app(settings)
        apps.append(app)
        for engine in app.extensions["dmr"].runtime.remotes.values():
            for upstream in engine.upstreams:
                engine.check(upstream)
        return app.test_client()

    yield make
    for app in apps:
        app.extensions["dmr"].runtime.close()


def _post(engine: RemoteEngine, body=CHAT, model=MODEL):
    return engine.forward("POST", "chat/completions", body=json.dumps(body).encode(),
                          headers={"Content-Type": "application/json"}, model=model)


def _served_by(stub: StubUpstream) -> int:
    return len([r for r in stub.requests if r["method"] == "POST"])


# ------------------------------------------------------------------------------ balancing


def test_least_busy_sends_the_next_request_to_the_idle_replica(stubs):
    a, b = stubs
    engine = _engine(a, b)
    held = _post(engine, {**CHAT, "stream": True})  # open: one request in flight
    assert held.streaming
    for _ in range(3):
        answer = _post(engine)
        assert answer.upstream is not held.upstream
        answer.close()
    held.close()
    assert {u.in_flight for u in engine.upstreams} == {0}
    engine.close()


def test_round_robin_alternates(stubs):
    a, b = stubs
    engine = _engine(a, b, balance="round-robin")
    order = []
    for _ in range(4):
        answer = _post(engine)
        order.append(answer.upstream.url)
        answer.close()
    assert order[0] != order[1] and order[:2] == order[2:]
    engine.close()


def test_a_replica_without_the_model_is_not_chosen(stubs):
    a, b = stubs
    a.models = ["other/model"]
    engine = _engine(a, b)
    for _ in range(4):
        _post(engine).close()
    assert _served_by(a) == 0 and _served_by(b) == 4
    engine.close()


def test_the_model_is_sent_as_the_upstream_spells_it(stubs, app_for):
    a, b = stubs
    client = app_for(a, b)
    resp = client.post("/engines/vllm/v1/chat/completions",
                       json={**CHAT, "model": "org/stub-model"})
    assert resp.status_code == 200, resp.json
    sent = [r["body"]["model"] for r in a.requests + b.requests if r["method"] == "POST"]
    assert sent == [MODEL]


# ------------------------------------------------------------------------------ failures


def test_a_dead_replica_is_retried_elsewhere_and_cooled_down(stubs, app_for):
    a, b = stubs
    client = app_for(a, b, cooldown="30s")
    a.stop()
    for _ in range(4):
        resp = client.post("/engines/vllm/v1/chat/completions", json=CHAT)
        assert resp.status_code == 200, resp.json
        assert resp.json["choices"][0]["message"]["content"] == "hello from b"
    status = client.get("/engines/remote").json["vllm"]["upstreams"]
    dead = next(u for u in status if u["url"] == a.url)
    assert dead["state"] == "cooling down" and "Connection refused" in dead["last_error"]
    assert dead["failed_requests"] == 1 and dead["retried_requests"] == 1  # then left alone
    assert dead["cooldown_seconds"] > 20


@pytest.mark.parametrize("mode", ["503", "502"])
def test_busy_or_gateway_errors_move_on_to_the_next_replica(stubs, mode):
    a, b = stubs
    a.mode = mode
    engine = _engine(a, b)
    for _ in range(3):
        answer = _post(engine)
        assert answer.status == 200 and answer.upstream.url == b.url
        answer.close()
    cooling = engine.upstreams[0].cooldown_left()
    assert 0 < cooling <= (2 if mode == "503" else 5)  # 503: the stub's Retry-After: 2
    engine.close()


def test_when_every_replica_is_busy_its_503_is_passed_on(stubs, app_for):
    a, b = stubs
    a.mode = b.mode = "503"
    client = app_for(a, b)
    resp = client.post("/engines/vllm/v1/chat/completions", json=CHAT)
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "2"
    assert resp.json["error"]["message"] == "stub says 503"


@pytest.mark.parametrize("mode", ["400", "404", "500"])
def test_errors_the_upstream_answers_are_passed_through_not_retried(stubs, app_for, mode):
    a, b = stubs
    a.mode = b.mode = mode
    client = app_for(a, b)
    resp = client.post("/engines/vllm/v1/chat/completions", json=CHAT)
    assert resp.status_code == int(mode)
    assert resp.json["error"]["message"] == f"stub says {mode}"
    assert _served_by(a) + _served_by(b) == 1
    states = [u["state"] for u in client.get("/engines/remote").json["vllm"]["upstreams"]]
    assert states == ["up", "up"]  # it answered: alive


def test_all_replicas_down_is_a_503_in_openai_shape(stubs, app_for):
    a, b = stubs
    client = app_for(a, b)
    a.stop()
    b.stop()
    resp = client.post("/engines/vllm/v1/chat/completions", json=CHAT)
    assert resp.status_code == 503
    assert int(resp.headers["Retry-After"]) >= 1
    error = resp.json["error"]
    assert error["type"] == "unavailable_error"
    assert a.url in error["message"] and b.url in error["message"]
    # The Anthropic dialect says it in its own shape.
    resp = client.post("/engines/vllm/v1/messages",
                       json={"model": MODEL, "max_tokens": 5, "messages": CHAT["messages"]})
    assert resp.status_code == 529 and resp.json["error"]["type"] == "overloaded_error"


def test_no_upstream_error_names_every_reason(stubs):
    a, b = stubs
    engine = _engine(a, b)
    a.stop()
    b.stop()
    with pytest.raises(NoUpstream, match="Connection refused"):
        _post(engine)
    engine.close()


def test_a_health_check_ends_the_cooldown(stubs):
    a, b = stubs
    engine = _engine(a, b, cooldown="60s", max_cooldown="60s", health_interval="0.2s")
    a.mode = b.mode = "break"
    broken = _post(engine, {**CHAT, "stream": True})
    with pytest.raises(Exception, match="middle of its answer"):
        list(broken.chunks())
    failed = broken.upstream
    assert failed.cooldown_left() > 30
    a.mode = b.mode = "ok"
    engine.start()
    deadline = time.monotonic() + 10
    while failed.cooldown_left() > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert failed.cooldown_left() == 0 and failed.snapshot()["state"] == "up"
    engine.close()


def test_a_failing_health_check_takes_the_replica_out(stubs, monkeypatch):
    a, b = stubs
    a.require_key = "right"
    monkeypatch.setenv("STUB_KEY", "wrong")
    engine = RemoteEngine(parse_engine("vllm", {"upstreams": [
        {"url": a.url, "api_key_env": "STUB_KEY"}, b.url]}))
    assert engine.check(engine.upstreams[0]) is False
    snap = engine.upstreams[0].snapshot()
    assert snap["state"] == "cooling down" and "HTTP 401 (check api_key_env)" in snap["last_error"]
    for _ in range(3):
        answer = _post(engine)
        assert answer.upstream.url == b.url
        answer.close()
    engine.close()


# ------------------------------------------------------------------------------ streams


def test_a_stream_that_breaks_ends_with_an_in_band_error(stubs, app_for):
    a, b = stubs
    a.mode = b.mode = "break"
    client = app_for(a, b)
    resp = client.post("/engines/vllm/v1/chat/completions", json={**CHAT, "stream": True})
    assert resp.status_code == 200
    payloads = list(event_payloads(iter([resp.data])))
    events = [json.loads(p) for p in payloads]
    assert events[1]["choices"][0]["delta"]["content"].startswith("hello from")
    assert "middle of its answer" in events[-1]["error"]["message"]
    assert "[DONE]" not in payloads and len(events) == 3  # the half event was not passed on


def test_streams_are_relayed_event_by_event(stubs, app_for):
    a, b = stubs
    client = app_for(a, b)
    resp = client.post("/engines/vllm/v1/chat/completions", json={**CHAT, "stream": True},
                       buffered=False)
    assert resp.mimetype == "text/event-stream"
    pieces = list(resp.response)
    assert len(pieces) >= 3 and all(p.endswith(b"\n\n") for p in pieces)
    assert pieces[-1] == b"data: [DONE]\n\n"
    resp.close()


def test_sse_framing_holds_back_only_the_unfinished_event():
    chunks = [b"data: {\"a\"", b": 1}\n", b"\ndata: 2\n\ndata: 3\n\nda", b"ta: [DONE]\n\n"]
    out = list(sse_events(iter(chunks)))
    assert out == [b"data: {\"a\": 1}\n\ndata: 2\n\ndata: 3\n\n", b"data: [DONE]\n\n"]
    assert list(event_payloads(iter(chunks))) == ['{"a": 1}', "2", "3", "[DONE]"]
    assert list(sse_events(iter([b"data: x\r\n\r\n"]))) == [b"data: x\n\n"]


# ------------------------------------------------------------------------------ passthrough


def test_any_route_query_and_headers_pass_through(stubs, app_for, monkeypatch):
    a, b = stubs
    a.require_key = b.require_key = "up-secret"
    monkeypatch.setenv("STUB_KEY", "up-secret")
    client = app_for(a, b, api_key_env="STUB_KEY")
    resp = client.post("/engines/vllm/v1/responses?stream=false", json={"model": MODEL,
                                                                          "input": "hi"},
                       headers={"Authorization": "Bearer client-key", "X-Request-Id": "r1"})
    assert resp.status_code == 200, resp.json
    seen = next(r for r in a.requests + b.requests if r["method"] == "POST")
    assert seen["path"] == "/v1/responses" and seen["query"] == "stream=false"
    assert seen["headers"]["Authorization"] == "Bearer up-secret"  # never the client's key
    assert seen["headers"]["X-Request-Id"] == "r1"
    resp = client.get("/engines/vllm/v1/files?limit=2")
    assert resp.status_code == 200
    assert [r["query"] for r in a.requests + b.requests if r["path"] == "/v1/files"] == [
        "limit=2"]


def test_models_are_listed_with_their_backend(stubs, app_for):
    a, b = stubs
    client = app_for(a, b)
    listing = client.get("/engines/vllm/v1/models").json["data"]
    assert [(m["id"], m["dmr"]["backend"], m["dmr"]["name"]) for m in listing] == [
        (MODEL, "vllm", "org/stub-model:latest")]
    assert sorted(listing[0]["dmr"]["upstreams"]) == sorted([a.url, b.url])
    assert client.get("/engines/vllm/v1/models/org/stub-model").json["id"] == MODEL
    missing = client.get("/engines/vllm/v1/models/org/none")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "model_not_found"
    assert [m["id"] for m in client.get("/v1/models").json["data"]] == [MODEL]
    native = client.get("/models").json
    assert [(m["id"], m["backend"]) for m in native] == [(MODEL, "vllm")]
    tags = client.get("/api/tags").json["models"]
    assert [(t["name"], t["details"]["format"]) for t in tags] == [(MODEL, "remote")]


def test_engine_less_routes_follow_the_model(stubs, app_for):
    a, b = stubs
    client = app_for(a, b)
    resp = client.post("/v1/chat/completions", json=CHAT)
    assert resp.status_code == 200 and resp.json["choices"][0]["message"]["content"]
    resp = client.post("/v1/embeddings", json={"model": MODEL, "input": "x"})
    assert resp.json["data"][0]["embedding"] == [3.0, 4.0]  # as the upstream sent it
    resp = client.post("/api/embed", json={"model": MODEL, "input": "x"})
    assert resp.json["embeddings"] == [[0.6, 0.8]]  # Ollama's: normalised here
    unknown = client.post("/v1/chat/completions", json={**CHAT, "model": "ai/none"})
    assert unknown.status_code == 404  # not remote, not local: the local 404


def test_remote_engines_load_nothing_and_refuse_configure(stubs, app_for):
    a, b = stubs
    client = app_for(a, b)
    resp = client.post("/engines/vllm/_configure", json={"model": MODEL, "context-size": 512})
    assert resp.status_code == 400 and "remote engine" in resp.get_data(as_text=True)
    assert client.get("/engines/ps").json == []


# ------------------------------------------------------------------------------ dialects


def test_anthropic_tool_calls_and_thinking_from_an_upstream_stream(stubs, app_for):
    a, b = stubs
    a.mode = b.mode = "tool"
    client = app_for(a, b)
    body = {"model": MODEL, "max_tokens": 50, "stream": True,
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [{"name": "get_weather", "input_schema": {
                "type": "object", "properties": {"city": {"type": "string"}}}}]}
    resp = client.post("/v1/messages", json=body)
    events = [json.loads(p) for p in event_payloads(iter([resp.data]))]
    starts = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["thinking", "tool_use"]
    tool = next(e["content_block"] for e in events if e["type"] == "content_block_start"
                and e["content_block"]["type"] == "tool_use")
    assert tool["name"] == "get_weather"
    args = "".join(e["delta"]["partial_json"] for e in events
                   if e["type"] == "content_block_delta"
                   and e["delta"]["type"] == "input_json_delta")
    assert json.loads(args) == {"city": "Paris"}
    delta = next(e for e in events if e["type"] == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["input_tokens"] == 9 and delta["usage"]["output_tokens"] == 7
    sent = next(r["body"] for r in a.requests + b.requests if r["method"] == "POST")
    assert sent["tools"][0]["function"]["name"] == "get_weather" and sent["stream"] is True


@pytest.mark.parametrize("stream", [False, True])
def test_ollama_tool_calls_from_an_upstream(stubs, app_for, stream):
    a, b = stubs
    a.mode = b.mode = "tool"
    client = app_for(a, b)
    resp = client.post("/api/chat", json={"model": MODEL, "stream": stream, "messages": [
        {"role": "user", "content": "Weather in Paris?"}]})
    lines = [json.loads(line) for line in resp.get_data(as_text=True).splitlines()]
    calls = [c for line in lines for c in line["message"].get("tool_calls") or []]
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("get_weather", {"city": "Paris"})]
    assert "".join(line["message"].get("thinking") or "" for line in lines) == (
        "The user wants weather.")
    assert lines[-1]["done"] and lines[-1]["eval_count"] == 7
    sent = next(r["body"] for r in a.requests + b.requests if r["method"] == "POST")
    assert sent.get("stream", False) is stream  # a whole answer is asked for as one


def test_other_engines_keep_their_404_and_405(stubs, app_for):
    a, b = stubs
    client = app_for(a, b)
    assert client.get("/engines/llama.cpp/v1/chat/completions").status_code == 405
    assert client.get("/engines/llama.cpp/v1/no/such/route").status_code == 404
    assert client.post("/engines/nosuch/v1/chat/completions", json=CHAT).status_code == 404
    assert client.get("/engines/vllm/v1/files").status_code == 200  # the remote's: forwarded
