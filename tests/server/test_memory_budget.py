"""The memory budget with real runner processes (core/memory.py): a budget that fits one model
but not two swaps them, least recently used out; a model that can never fit is a 507, one
that fits once a busy model is idle a 503, in each dialect; /engines/ps and /api/ps show the
estimate next to the runner's measured RSS."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from server.store.bundled import bundled_gguf
from tests.conftest import MODEL, NO_EOS, ServerProcess
from tests.server.test_cli import ok

SECOND, BIG = "ai/second", "ai/big"
MIB = 1 << 20
# Estimates with these settings: ai/smollm2 (512 tokens) ~335 MiB, ai/second (256) ~315 MiB,
# ai/big (4,096) ~611 MiB: a 500 MiB budget holds one of the first two, never ai/big.
ENV = {"DMR_CONTEXT_SIZE": "512", "DMR_PARALLEL": "2", "DMR_PROMPT_CACHE_MIB": "32",
       "DMR_MEMORY_BUDGET": "500MiB"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("memory-budget")
    proc = ServerProcess(base / "models", base / "server.log", env=ENV)
    proc.wait_ready()
    ok(proc.url, "package", "--gguf", str(bundled_gguf()), "--context-size", "256", SECOND)
    ok(proc.url, "package", "--gguf", str(bundled_gguf()), "--context-size", "4096", BIG)
    yield proc
    proc.stop()


def chat(url: str, model: str, **extra) -> requests.Response:
    return requests.post(url + "/engines/v1/chat/completions", timeout=300, json={
        "model": model, "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 4, **extra})


def loaded(url: str) -> list[str]:
    return [e["model_name"].split(":")[0] for e in requests.get(url + "/engines/ps").json()]


def test_two_models_swap_within_a_budget_that_fits_one(server):
    for model in (MODEL, SECOND, MODEL, SECOND):
        r = chat(server.url, model)
        assert r.status_code == 200, r.text
        assert loaded(server.url) == [model]  # the other one was unloaded first
    assert "to make room for" in server.log()


def test_ps_shows_the_estimate_next_to_the_measured_rss(server):
    assert chat(server.url, SECOND).status_code == 200
    [entry] = requests.get(server.url + "/engines/ps").json()
    estimate, rss = entry["memory_estimate"], entry["memory_rss"]
    assert entry["memory_estimate_parts"]["kv_cache"] > 0
    assert 100 * MIB < rss < estimate <= 500 * MIB, entry
    [ollama] = requests.get(server.url + "/api/ps").json()["models"]
    assert ollama["size"] == ollama["memory_estimate"] == estimate and ollama["memory_rss"] > 0
    out = ok(server.url, "ps")
    assert "MEMORY (ESTIMATE / RSS)" in out and "MB / " in out


def _bodies(url: str, model: str) -> dict[str, requests.Response]:
    messages = [{"role": "user", "content": "Hi"}]
    return {
        "openai": requests.post(url + "/v1/chat/completions", timeout=60, json={
            "model": model, "messages": messages, "max_tokens": 2}),
        "anthropic": requests.post(url + "/v1/messages", timeout=60, json={
            "model": model, "messages": messages, "max_tokens": 2}),
        "ollama": requests.post(url + "/api/chat", timeout=60, json={
            "model": model, "messages": messages, "stream": False}),
    }


def _message(dialect: str, response: requests.Response) -> str:
    body = response.json()
    if dialect == "openai":
        return body["error"]["message"]
    if dialect == "anthropic":
        assert body["type"] == "error"
        return body["error"]["message"]
    return body["error"]


def test_a_model_larger_than_the_budget_is_507_in_every_dialect(server):
    for dialect, r in _bodies(server.url, BIG).items():
        assert r.status_code == 507, (dialect, r.text)
        message = _message(dialect, r)
        assert "more than the whole memory budget of 500.0 MiB" in message, message
        assert "kv cache" in message and "context size" in message
    assert BIG not in loaded(server.url)


def test_a_model_that_fits_once_another_is_idle_is_503_while_it_is_busy(server):
    assert chat(server.url, MODEL).status_code == 200
    done = threading.Event()

    def hold():
        chat(server.url, MODEL, max_tokens=300, logit_bias=NO_EOS)
        done.set()

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(1.0)  # the long answer is being generated
    try:
        replies = _bodies(server.url, SECOND)
        assert not done.is_set(), "the holding request ended too soon to test anything"
        expected = {"openai": 503, "anthropic": 529, "ollama": 503}
        for dialect, r in replies.items():
            assert r.status_code == expected[dialect], (dialect, r.text)
            assert r.headers.get("Retry-After")
            message = _message(dialect, r)
            assert "ai/smollm2:latest is in use" in message and "500.0 MiB" in message
    finally:
        holder.join()
    assert chat(server.url, SECOND).status_code == 200  # idle now: swapped
    assert loaded(server.url) == [SECOND]
