"""DMR's engine admin routes: status, ps, df, unload and a configure that is applied and kept."""

from __future__ import annotations

import threading
import time

import requests

from tests.server.conftest import ensure_pulled

LONG_PROMPT = "word " * 700  # ~700 tokens: over a 512-token context, under the default


def _chat(url: str, model: str, content: str = "Hi", max_tokens: int = 2) -> requests.Response:
    return requests.post(f"{url}/engines/v1/chat/completions", json={
        "model": model, "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": content}]})


def _wait_loaded(url: str, model: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in requests.get(f"{url}/engines/ps").json():
            if entry["model_name"] == model:
                return entry
        time.sleep(0.2)
    raise AssertionError(f"{model} never loaded")


def test_status_df_ps_unload(store_server, registry_model):
    url = store_server.url
    ensure_pulled(url, registry_model)
    status = requests.get(f"{url}/engines/status").json()
    assert status["llama.cpp"].startswith("Running: llama-cpp-python")
    assert status["vllm"].startswith("Not Installed")
    df = requests.get(f"{url}/engines/df").json()
    assert df["models_disk_usage"] > 90_000_000 and df["default_backend_disk_usage"] > 0
    assert _chat(url, registry_model).status_code == 200
    [entry] = requests.get(f"{url}/engines/ps").json()
    assert entry["backend_name"] == "llama.cpp" and entry["model_name"] == registry_model
    assert entry["mode"] == "completion" and entry["in_use"] is False
    assert entry["keep_alive"] == "5m0s" and entry["last_used"].endswith("Z")
    r = requests.post(f"{url}/engines/unload", json={"models": [registry_model]})
    assert r.json() == {"unloaded_runners": 1}
    assert requests.get(f"{url}/engines/ps").json() == []
    assert requests.post(f"{url}/engines/unload", json={"all": True}).json() == {
        "unloaded_runners": 0}


def test_configure_validation(store_server, registry_model):
    url = store_server.url
    ensure_pulled(url, registry_model)

    def configure(body):
        return requests.post(f"{url}/engines/_configure", json={"model": registry_model, **body})

    r = configure({"runtime-flags": ["--flash-attn"]})
    assert r.status_code == 400 and "not supported" in r.text and "--ctx-size" in r.text
    assert configure({"runtime-flags": ["--model", "/etc/passwd"]}).status_code == 400
    assert configure({"raw-runtime-flags": "--threads 4096"}).status_code == 400
    assert configure({"context-size": 0}).status_code == 400
    assert configure({"keep_alive": "soon"}).status_code == 400
    missing = requests.post(f"{url}/engines/_configure", json={"model": "ai/absent",
                                                               "context-size": 512})
    assert missing.status_code == 404
    assert requests.post(f"{url}/engines/vllm/_configure",
                         json={"model": registry_model}).status_code == 412
    assert requests.post(f"{url}/engines/nope/_configure",
                         json={"model": registry_model}).status_code == 404


def test_configure_is_refused_while_the_model_is_busy(store_server, registry_model):
    url = store_server.url
    ensure_pulled(url, registry_model)
    started, done = threading.Event(), threading.Event()

    def long_stream():
        with requests.post(f"{url}/engines/v1/chat/completions", stream=True, json={
                "model": registry_model, "max_tokens": 400, "stream": True,
                "messages": [{"role": "user", "content": "Write a long story."}]}) as r:
            for _ in r.iter_lines():
                started.set()
                if done.is_set():
                    break  # hang up: the server frees the slot

    worker = threading.Thread(target=long_stream)
    worker.start()
    try:
        assert started.wait(60)
        r = requests.post(f"{url}/engines/_configure",
                          json={"model": registry_model, "context-size": 1024})
        assert r.status_code == 409 and r.text == "runner already active\n"
    finally:
        done.set()
        worker.join(120)
    deadline = time.monotonic() + 30  # the hang-up frees the runner at the next write
    while any(e["in_use"] for e in requests.get(f"{url}/engines/ps").json()):
        assert time.monotonic() < deadline, "the runner stayed busy after the client left"
        time.sleep(0.2)


def test_configure_applies_and_survives_a_restart(store_server, registry_model):
    url = store_server.url
    ensure_pulled(url, registry_model)
    r = requests.post(f"{url}/engines/_configure", json={
        "model": registry_model, "context-size": 512, "keep_alive": "10m",
        "runtime-flags": ["-np", "2"], "llamacpp": {"reasoning-budget": 0}})
    assert r.status_code == 202
    entry = _wait_loaded(url, registry_model)  # preloaded with the new settings
    assert entry["context_size"] == 512 and entry["keep_alive"] == "10m0s"
    too_long = _chat(url, registry_model, LONG_PROMPT)
    assert too_long.status_code == 400 and "512" in too_long.text

    store_server.restart()
    url = store_server.url
    [shown] = requests.get(f"{url}/engines/_configure", params={"model": registry_model}).json()
    assert shown["Backend"] == "llama.cpp" and shown["Model"] == registry_model
    assert shown["ModelID"].startswith("sha256:") and shown["Mode"] == "completion"
    assert shown["Config"] == {"context-size": 512, "runtime-flags": ["-np", "2"],
                               "keep_alive": "10m0s", "llamacpp": {"reasoning-budget": 0}}
    too_long = _chat(url, registry_model, LONG_PROMPT)
    assert too_long.status_code == 400 and "512" in too_long.text
    assert _wait_loaded(url, registry_model)["context_size"] == 512

    # -1 resets the context size; other settings stay.
    assert requests.post(f"{url}/engines/_configure", json={
        "model": registry_model, "context-size": -1}).status_code == 202
    [shown] = requests.get(f"{url}/engines/_configure").json()
    assert "context-size" not in shown["Config"] and shown["Config"]["keep_alive"] == "10m0s"
    assert _chat(url, registry_model, LONG_PROMPT).status_code == 200


def test_configured_reasoning_budget_caps_thinking(store_server, registry_model):
    """`configure --reasoning-budget N` caps the thinking of requests that ask for more."""
    from server.core.reasoning import LEAD_IN

    url = store_server.url
    ensure_pulled(url, registry_model)

    def thinking_words() -> int:
        r = requests.post(f"{url}/v1/messages", json={
            "model": registry_model, "max_tokens": 1100,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [{"role": "user", "content": "Explain in depth how tides work."}]})
        assert r.status_code == 200, r.text
        [thinking] = [b["thinking"] for b in r.json()["content"] if b["type"] == "thinking"]
        return len(thinking[len(LEAD_IN):].split())

    for budget in (6, 1):
        assert requests.post(f"{url}/engines/_configure", json={
            "model": registry_model, "llamacpp": {"reasoning-budget": budget}}).status_code == 202
        # Every word is at least one token, so a capped thinking has at most `budget` words.
        assert thinking_words() <= budget
    assert requests.post(f"{url}/engines/_configure", json={
        "model": registry_model, "llamacpp": {"reasoning-budget": -1}}).status_code == 202
    assert thinking_words() > 6  # unlimited again: the request's own budget of 1024 rules
