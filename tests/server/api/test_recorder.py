"""The request recorder (GET /engines/requests) against a real server with API keys on, driven
by each dialect's official client: DMR's format, streams rebuilt into the same answer the
non-streamed request gets, the `?model=` filter, the SSE follow, the bounded ring that
survives unloads, no secret recorded, base64 media cut, and `dmr requests`."""

from __future__ import annotations

import base64
import json
import os
import queue
import secrets
import select
import signal
import subprocess
import sys
import threading
import time

import anthropic
import ollama
import openai
import pytest
import requests

from tests.conftest import MODEL, ServerProcess

KEY = "sk-rec-" + secrets.token_hex(12)
OTHER_KEY = "sk-rec-other-" + secrets.token_hex(8)
AUTH = {"Authorization": f"Bearer {KEY}"}
RING = 6
DMR_FIELDS = {"id", "model", "method", "url", "request", "response", "error", "timestamp",
              "status_code", "user_agent", "origin"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("recorder")
    s = ServerProcess(base / "models", base / "server.log",
                      env={"DMR_THREADS": "1", "DMR_API_KEYS": f"{KEY},{OTHER_KEY}",
                           "DMR_RECORDER_SIZE": str(RING)})
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


def marker() -> str:
    return "m" + secrets.token_hex(4)


def groups(server, **params) -> list[dict]:
    r = requests.get(server.url + "/engines/requests", params=params, headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def record_for(server, mark: str) -> dict:
    """The newest record whose request holds `mark` (records are made when answers end)."""
    for _ in range(50):
        found = [r for g in groups(server) for r in g["records"] if mark in r["request"]]
        if found:
            return max(found, key=lambda r: r["id"])
        time.sleep(0.1)
    raise AssertionError(f"no record for {mark}")


def ask(mark: str) -> list[dict]:
    return [{"role": "user", "content": f"Say hello ({mark})"}]


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=server.url + "/engines/v1", api_key=KEY, max_retries=0)


@pytest.fixture(scope="module")
def claude(server):
    return anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0)


@pytest.fixture(scope="module")
def olla(server):
    return ollama.Client(host=server.url, headers=AUTH)


# ------------------------------------------------------------------------------- format


def test_dmr_format_for_every_dialect(server, oai, claude, olla):
    marks = {name: marker() for name in ("openai", "anthropic", "ollama")}
    started = time.time()
    oai.chat.completions.create(model=MODEL, messages=ask(marks["openai"]), max_tokens=3)
    claude.messages.create(model=MODEL, messages=ask(marks["anthropic"]), max_tokens=3)
    olla.chat(model=MODEL, messages=ask(marks["ollama"]), options={"num_predict": 3})
    expected = {"openai": ("/engines/v1/chat/completions", "", "OpenAI/Python"),
                "anthropic": ("/v1/messages", "anthropic/messages", "Anthropic/Python"),
                "ollama": ("/api/chat", "ollama/completion", "ollama-python")}
    for dialect, mark in marks.items():
        rec = record_for(server, mark)
        assert DMR_FIELDS <= rec.keys()
        url, origin, agent = expected[dialect]
        assert (rec["dialect"], rec["url"], rec["origin"]) == (dialect, url, origin)
        assert rec["method"] == "POST" and rec["status_code"] == 200 and rec["error"] == ""
        assert rec["model"] == MODEL and agent in rec["user_agent"]
        assert started - 2 <= rec["timestamp"] <= time.time() + 1
        assert json.loads(rec["request"])["model"] == MODEL
        assert json.loads(rec["response"]) and rec["latency_ms"] > 0
        assert rec["usage"]["completion_tokens"] > 0
    (group,) = groups(server)
    assert set(group) >= {"count", "model", "config", "records"}
    assert group["model"].startswith("sha256:") and group["name"] == MODEL + ":latest"
    assert group["count"] == len(group["records"]) <= RING
    assert rec["id"].startswith(group["model"] + "_")


def test_other_routes_of_each_dialect_are_recorded(server, oai, claude, olla):
    mark = marker()
    oai.completions.create(model=MODEL, prompt=f"Once ({mark}a)", max_tokens=2)
    oai.embeddings.create(model=MODEL, input=f"text {mark}b")
    claude.messages.count_tokens(model=MODEL, messages=ask(mark + "c"))
    olla.generate(model=MODEL, prompt=f"Hi {mark}d", options={"num_predict": 2})
    olla.embed(model=MODEL, input=f"text {mark}e")
    urls = [record_for(server, mark + s)["url"] for s in "abcde"]
    assert urls == ["/engines/v1/completions", "/engines/v1/embeddings",
                    "/v1/messages/count_tokens", "/api/generate", "/api/embed"]


# ------------------------------------------------------------------------------- streams


def _both(server, call) -> tuple[dict, dict]:
    """The records of the same request made streamed, then whole (greedy: the same answer)."""
    mark = marker()
    call(mark, True)
    streamed = record_for(server, mark)
    call(mark, False)
    for _ in range(50):
        whole = record_for(server, mark)
        if whole["id"] != streamed["id"]:
            break
        time.sleep(0.1)
    assert whole["id"] != streamed["id"] and not whole["stream"] and streamed["stream"]
    return json.loads(streamed["response"]), json.loads(whole["response"])


def test_openai_chat_stream_rebuilt(server, oai):
    def call(mark, stream):
        out = oai.chat.completions.create(
            model=MODEL, messages=ask(mark), max_tokens=8, temperature=0, stream=stream,
            reasoning_effort="low", **({"stream_options": {"include_usage": True}}
                                        if stream else {}))
        if stream:
            list(out)

    streamed, whole = _both(server, call)
    assert streamed["object"] == whole["object"] == "chat.completion"
    one, two = streamed["choices"][0], whole["choices"][0]
    assert one["message"]["role"] == "assistant"
    assert one["message"]["reasoning_content"] and "content" in one["message"]
    assert one["message"] == two["message"]  # greedy, thinking included
    assert one["finish_reason"] == two["finish_reason"]
    assert streamed["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"]
    assert set(streamed) >= {"id", "created", "model", "choices", "usage"}


def test_openai_completion_stream_rebuilt(server, oai):
    def call(mark, stream):
        out = oai.completions.create(model=MODEL, prompt=f"Count: one ({mark}),", max_tokens=6,
                                     temperature=0, stream=stream)
        if stream:
            list(out)

    streamed, whole = _both(server, call)
    assert streamed["object"] == whole["object"] == "text_completion"
    assert streamed["choices"][0]["text"] == whole["choices"][0]["text"] != ""
    assert streamed["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert len(streamed["choices"]) == len(whole["choices"]) == 1


def test_anthropic_stream_rebuilt(server, claude):
    def call(mark, stream):
        out = claude.messages.create(model=MODEL, messages=ask(mark), max_tokens=8,
                                     stream=stream, extra_body={"temperature": 0})
        if stream:
            assert [e.type for e in out][-1] == "message_stop"

    streamed, whole = _both(server, call)
    assert streamed["type"] == whole["type"] == "message"
    assert [b["text"] for b in streamed["content"]] == [b["text"] for b in whole["content"]]
    assert streamed["stop_reason"] == whole["stop_reason"]
    assert streamed["usage"]["output_tokens"] == whole["usage"]["output_tokens"]
    assert streamed["id"].startswith("msg_") and streamed["role"] == "assistant"


def test_anthropic_thinking_stream_rebuilt(server, claude):
    mark = marker()  # thinking samples at temperature 1, as Claude: compare shapes
    events = list(claude.messages.create(model=MODEL, messages=ask(mark), max_tokens=12,
                                         stream=True,
                                         thinking={"type": "enabled", "budget_tokens": 4}))
    sent = "".join(e.delta.thinking for e in events if e.type == "content_block_delta"
                   and e.delta.type == "thinking_delta")
    rebuilt = json.loads(record_for(server, mark)["response"])
    blocks = rebuilt["content"]
    assert [b["type"] for b in blocks][:1] == ["thinking"] and blocks[0]["signature"]
    assert blocks[0]["thinking"] == sent
    assert rebuilt["stop_reason"] in ("end_turn", "max_tokens")
    assert rebuilt["usage"]["output_tokens"] > 0


def test_ollama_streams_rebuilt(server, olla):
    def chat(mark, stream):
        out = olla.chat(model=MODEL, messages=ask(mark), options={"num_predict": 6,
                                                                   "temperature": 0},
                        stream=stream)
        if stream:
            list(out)

    streamed, whole = _both(server, chat)
    assert streamed["done"] is True and streamed["message"]["content"]
    assert streamed["message"] == whole["message"]
    assert streamed["eval_count"] == whole["eval_count"]
    assert streamed["done_reason"] == whole["done_reason"]

    def generate(mark, stream):
        out = olla.generate(model=MODEL, prompt=f"Hi {mark}", stream=stream,
                            options={"num_predict": 5, "temperature": 0})
        if stream:
            list(out)

    streamed, whole = _both(server, generate)
    assert streamed["response"] == whole["response"] != "" and streamed["done"] is True
    assert streamed["eval_count"] == whole["eval_count"]


def test_stream_cut_off_by_the_client(server):
    mark = marker()
    with requests.post(server.url + "/v1/chat/completions", headers=AUTH, stream=True, json={
            "model": MODEL, "messages": ask(mark), "max_tokens": 200, "stream": True,
            "logit_bias": {"0": -100, "2": -100}}) as r:
        next(r.iter_lines())
    rec = record_for(server, mark)
    assert rec["status_code"] == 200 and "closed the connection" in rec["error"]
    assert json.loads(rec["response"])["object"] == "chat.completion"


def test_errors_are_recorded(server, oai):
    mark = marker()
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model=MODEL, messages=ask(mark), max_tokens=-1)
    rec = record_for(server, mark)
    assert rec["status_code"] == 400 and rec["response"] == ""
    assert json.loads(rec["error"])["error"]["param"] == "max_tokens"
    with pytest.raises(openai.NotFoundError):  # no model in the store: no ring for it
        oai.chat.completions.create(model="ai/absent-model", messages=ask(mark), max_tokens=1)
    assert len(groups(server)) == 1
    assert all(r["model"] != "ai/absent-model" for r in groups(server)[0]["records"])


# ------------------------------------------------------------------------------- filters, ring


def test_model_filter(server, oai):
    oai.chat.completions.create(model=MODEL, messages=ask(marker()), max_tokens=1)
    (group,) = groups(server)
    for name in (MODEL, MODEL + ":latest", "smollm2", group["model"]):
        assert [g["model"] for g in groups(server, model=name)] == [group["model"]], name
    assert groups(server, model="ai/absent") == []


def test_ring_is_bounded_and_survives_unload(server, oai):
    marks = [marker() for _ in range(RING + 2)]
    for mark in marks:
        oai.chat.completions.create(model=MODEL, messages=ask(mark), max_tokens=1)
    (group,) = groups(server)
    assert group["count"] == RING
    kept = " ".join(r["request"] for r in group["records"])
    assert all(m in kept for m in marks[2:]) and not any(m in kept for m in marks[:2])
    r = requests.post(server.url + "/engines/unload", json={"all": True}, headers=AUTH)
    assert r.json()["unloaded_runners"] == 1
    assert requests.get(server.url + "/engines/ps", headers=AUTH).json() == []
    assert groups(server)[0]["records"] == group["records"]


# ------------------------------------------------------------------------------- secrets


def test_no_secret_is_recorded(server):
    mark = marker()
    body = {"model": MODEL, "max_tokens": 2, "messages": [
        {"role": "user", "content": f"{mark} my keys are {KEY} and {OTHER_KEY}"}]}
    r = requests.post(server.url + f"/v1/chat/completions?k={OTHER_KEY}", json=body,
                      headers={"x-api-key": KEY, "User-Agent": f"agent {OTHER_KEY}"})
    assert r.status_code == 200
    rec = record_for(server, mark)
    assert "[redacted]" in rec["request"] and "[redacted]" in rec["user_agent"]
    everything = json.dumps(groups(server)) + requests.get(
        server.url + "/engines/requests", headers={"x-api-key": OTHER_KEY}).text
    assert KEY not in everything and OTHER_KEY not in everything
    assert "authorization" not in everything.lower() and "x-api-key" not in everything.lower()


def test_recorder_needs_the_key_and_an_allowed_host(server):
    r = requests.get(server.url + "/engines/requests")
    assert r.status_code == 401 and r.headers["Content-Type"].startswith("text/plain")
    r = requests.get(server.url + "/engines/requests",
                     headers={"Accept": "text/event-stream"})
    assert r.status_code == 401
    r = requests.get(server.url + "/engines/requests", headers={**AUTH, "Host": "evil.example"})
    assert r.status_code == 403


def test_base64_media_is_truncated(server, oai, olla, claude):
    mark = marker()
    image = base64.b64encode(os.urandom(30000)).decode()
    with pytest.raises(openai.BadRequestError):  # SmolLM2 has no vision: a 400, recorded
        oai.chat.completions.create(model=MODEL, max_tokens=1, messages=[{"role": "user", "content": [
            {"type": "text", "text": mark + "a"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}}]}])
    with pytest.raises(ollama.ResponseError):
        olla.chat(model=MODEL, messages=[{"role": "user", "content": mark + "b",
                                          "images": [image]}])
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.create(model=MODEL, max_tokens=1, messages=[{"role": "user", "content": [
            {"type": "text", "text": mark + "c"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": image}}]}])
    for suffix in "abc":
        rec = record_for(server, mark + suffix)
        assert image not in rec["request"] and image[:100] in rec["request"]
        assert f"...[truncated {len(image) - 100} chars]" in rec["request"]
        assert len(rec["request"]) < 1000


# ------------------------------------------------------------------------------- follow


def _follow(url: str, params: dict, out: queue.Queue, stop: threading.Event) -> None:
    with requests.get(url + "/engines/requests", params=params, stream=True, timeout=60,
                      headers={**AUTH, "Accept": "text/event-stream"}) as r:
        out.put(("status", r.status_code))
        event = None
        for line in r.iter_lines(decode_unicode=True):
            if stop.is_set():
                return
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                out.put((event, json.loads(line[5:])))


def _events(out: queue.Queue, until, timeout: float = 30) -> list:
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(out.get(timeout=0.5))
        except queue.Empty:
            continue
        if until(seen):
            return seen
    raise AssertionError(f"events so far: {[e for e, _ in seen]}")


def test_sse_follow(server, oai):
    oai.chat.completions.create(model=MODEL, messages=ask(marker()), max_tokens=1)
    kept = sum(g["count"] for g in groups(server))
    out, stop = queue.Queue(), threading.Event()
    threading.Thread(target=_follow, args=(server.url, {"include_existing": "true",
                                                        "model": MODEL}, out, stop),
                     daemon=True).start()
    seen = _events(out, lambda s: sum(e == "existing_request" for e, _ in s) == kept)
    assert seen[0] == ("status", 200) and seen[1] == ("connected", {"status": "connected"})
    mark = marker()
    oai.chat.completions.create(model=MODEL, messages=ask(mark), max_tokens=1,
                                stream=True).close()
    seen = _events(out, lambda s: any(e == "new_request" for e, _ in s))
    (group,) = [d for e, d in seen if e == "new_request"][0]
    assert group["count"] == 1 and mark in group["records"][0]["request"]
    assert group["model"].startswith("sha256:")
    stop.set()
    # a follower of another model hears nothing of ours
    other, stop2 = queue.Queue(), threading.Event()
    threading.Thread(target=_follow, args=(server.url, {"model": "ai/absent"}, other, stop2),
                     daemon=True).start()
    _events(other, lambda s: any(e == "connected" for e, _ in s))
    oai.chat.completions.create(model=MODEL, messages=ask(marker()), max_tokens=1)
    time.sleep(1.5)
    assert other.empty()
    stop2.set()


# ------------------------------------------------------------------------------- dmr requests


def _dmr(server, *args: str, **kwargs):
    env = {**os.environ, "MODEL_RUNNER_HOST": server.url, "DMR_API_KEY": KEY}
    return subprocess.run([sys.executable, "-m", "server.cli", *args], capture_output=True,
                          text=True, env=env, timeout=60, **kwargs)


def test_dmr_requests_command(server, oai):
    mark = marker()
    oai.chat.completions.create(model=MODEL, messages=ask(mark), max_tokens=2)
    table = _dmr(server, "requests")
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("TIME") and mark in table.stdout
    assert "openai" in table.stdout and "POST /engines/v1/chat/completions" in table.stdout
    data = json.loads(_dmr(server, "requests", "--json", "--model", MODEL).stdout)
    assert data[0]["records"] and data[0]["model"].startswith("sha256:")
    bad = _dmr(server, "requests", "--include-existing")
    assert bad.returncode == 1 and "only be used with --follow" in bad.stderr

    env = {**os.environ, "MODEL_RUNNER_HOST": server.url, "DMR_API_KEY": KEY}
    follower = subprocess.Popen([sys.executable, "-m", "server.cli", "requests", "-f", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
    try:
        ready, _, _ = select.select([follower.stderr], [], [], 30)
        assert ready and "Connected to request stream" in follower.stderr.readline()
        fresh = marker()
        oai.chat.completions.create(model=MODEL, messages=ask(fresh), max_tokens=2)
        ready, _, _ = select.select([follower.stdout], [], [], 30)
        assert ready, "dmr requests -f printed nothing"
        assert fresh in json.loads(follower.stdout.readline())[0]["records"][0]["request"]
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(10)


def test_disabled_recorder_and_sigterm_ends_followers(tmp_path):
    """recorder_size 0 records nothing; an open follow does not hold up shutdown."""
    s = ServerProcess(tmp_path / "models", tmp_path / "server.log",
                      env={"DMR_THREADS": "1", "DMR_RECORDER_SIZE": "0", "DMR_API_KEYS": "",
                           "DMR_GRACEFUL_TIMEOUT": "60"})
    try:
        s.wait_ready()
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="x", max_retries=0)
        client.chat.completions.create(model=MODEL, messages=ask("x"), max_tokens=1)
        assert requests.get(s.url + "/engines/requests").json() == []
        out, stop = queue.Queue(), threading.Event()
        threading.Thread(target=_follow, args=(s.url, {}, out, stop), daemon=True).start()
        _events(out, lambda seen: any(e == "connected" for e, _ in seen))
        start = time.monotonic()
        os.killpg(s.proc.pid, signal.SIGTERM)
        s.proc.wait(25)
        assert time.monotonic() - start < 20, s.log()  # held, it would take 60 s
    finally:
        s.stop()


def test_responses_stream_rebuilt(server, oai):
    def call(mark, stream):
        kwargs = dict(model=MODEL, input=f"Say hello ({mark})", max_output_tokens=8,
                      temperature=0, store=False)
        if stream:
            with oai.responses.stream(**kwargs) as events:
                kinds = [event.type for event in events]
            assert kinds[-1] in ("response.completed", "response.incomplete")
        else:
            oai.responses.create(**kwargs)

    streamed, whole = _both(server, call)
    assert streamed["object"] == whole["object"] == "response"
    text = lambda r: [c["text"] for item in r["output"] if item["type"] == "message"  # noqa: E731
                      for c in item["content"]]
    assert text(streamed) == text(whole) and text(whole)
    rec = record_for(server, "")  # the newest
    assert rec["dialect"] == "responses" and rec["url"] == "/engines/v1/responses"
