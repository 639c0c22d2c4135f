"""The llama.cpp scheduler under pressure, through HTTP on servers of its own."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import NO_EOS, ServerProcess


@pytest.fixture(scope="module")
def small_pool_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("small-pool")
    server = ServerProcess(base / "models", base / "server.log", env={
        "DMR_CONTEXT_SIZE": "256", "DMR_PARALLEL": "4", "DMR_KV_CACHE_TOKENS": "300",
        "DMR_MAX_QUEUE": "6"})
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def chat(url: str, content: str, **extra) -> requests.Response:
    return requests.post(url + "/v1/chat/completions", json={
        "model": "ai/smollm2", "messages": [{"role": "user", "content": content}],
        "temperature": 0, **extra}, timeout=300)


def test_full_kv_cache_preempts_and_resumes_without_loss(small_pool_server):
    # Four sequences of ~200 tokens need ~900 cells; the pool has 300. Each is forced onto its
    # own token so that a resumed sequence that lost or mixed tokens would show.
    tokens = [1001, 1500, 2002, 2503]

    def run(token_id):
        bias = {**NO_EOS, str(token_id): 100}
        return chat(small_pool_server.url, "Hi", max_tokens=150, logit_bias=bias, logprobs=True)

    with ThreadPoolExecutor(4) as pool:
        replies = [r.json() for r in pool.map(run, tokens)]
    for reply in replies:
        assert reply["usage"]["completion_tokens"] == 150, reply
        assert len({t["token"] for t in reply["choices"][0]["logprobs"]["content"]}) == 1
    assert "preempting" in small_pool_server.log()


def test_queue_beyond_its_bound_is_overloaded(small_pool_server):
    # 6 may wait for the 4 slots; the rest are refused with 503 and Retry-After, never a 500.
    def run(i):
        return chat(small_pool_server.url, f"Story {i}", max_tokens=40, logit_bias=NO_EOS)

    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(run, range(16)))
    statuses = sorted(r.status_code for r in replies)
    assert set(statuses) <= {200, 503}
    # Requests arriving together fill the queue before any is admitted to a slot, so at
    # least the queue's worth is accepted; every accepted one runs to the end.
    accepted = [r.json() for r in replies if r.status_code == 200]
    assert len(accepted) >= 6
    assert all(r["usage"]["completion_tokens"] == 40 for r in accepted)
    refused = [r for r in replies if r.status_code == 503]
    assert refused, statuses
    assert refused[0].headers["Retry-After"] and refused[0].json()["error"]["type"]


@pytest.fixture(scope="module")
def unified_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("unified")
    server = ServerProcess(base / "models", base / "server.log", env={"DMR_KV_UNIFIED": "1"})
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("layout", ["per_slot", "unified"])
def test_shared_system_prompt_is_prefilled_once(request, layout):
    # A second conversation that shares a long system prompt with a finished one reuses its
    # KV cells (copied between slots), so only its own messages are prefilled. Both KV
    # layouts: one cache per slot (the default) and one shared by all slots.
    server = request.getfixturevalue("dmr_server" if layout == "per_slot" else "unified_server")
    system = "You are a terse assistant. " + "Remember these facts. " * 120

    def ask(user):
        return requests.post(server.url + "/v1/chat/completions", json={
            "model": "ai/smollm2", "max_tokens": 2, "messages": [
                {"role": "system", "content": system}, {"role": "user", "content": user}]}).json()

    a = ask("First conversation")
    b = ask("Second, different conversation")
    prompt = b["usage"]["prompt_tokens"]
    assert a["usage"]["prompt_tokens"] > 400
    assert b["usage"]["prompt_tokens_details"]["cached_tokens"] > prompt - 20


def _wait_idle(url: str, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(r["in_use"] for r in requests.get(url + "/engines/ps").json()):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("read_chunks", [0, 3])
def test_client_that_disconnects_frees_its_slot(dmr_server, read_chunks):
    # Before reading anything, or mid-stream: the server cancels the sequence at its next
    # write, instead of generating 2,000 tokens for nobody.
    with requests.post(dmr_server.url + "/v1/chat/completions", stream=True, json={
            "model": "ai/smollm2", "messages": [{"role": "user", "content": "Go on forever."}],
            "max_tokens": 2000, "stream": True, "logit_bias": NO_EOS}) as r:
        lines = r.iter_lines()
        for _ in range(read_chunks):
            next(lines)
    started = time.monotonic()
    assert _wait_idle(dmr_server.url), dmr_server.log()[-2000:]
    assert time.monotonic() - started < 10
