"""A native crash in llama.cpp fails only its own model's requests (engines/runner/).

A server of its own, with two models in two runner processes. Runners are killed with
SIGSEGV (what llama.cpp's AMX kernels do) mid-stream and mid-request in every dialect: the
client gets a clear error in its dialect, the next request gets a new runner within seconds,
the other model and /health never notice.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from server.store.bundled import bundled_gguf
from tests.conftest import MODEL, NO_EOS, ServerProcess
from tests.server.engines import runner_helpers as h
from tests.server.test_cli import ok

SECOND = "ai/second"
DIALECTS = ["openai", "anthropic", "ollama"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("runner-faults")
    proc = ServerProcess(base / "models", base / "server.log", env={
        "DMR_PARALLEL": "4", "DMR_CONTEXT_SIZE": "1024", "DMR_CRASH_LOOP_LIMIT": "50"})
    proc.wait_ready()
    ok(proc.url, "package", "--gguf", str(bundled_gguf()), "--context-size", "512", SECOND)
    yield proc
    proc.stop()


def _crash(url: str, model: str = MODEL, sig: int = signal.SIGSEGV) -> int:
    pid = h.runner_of(url, model)["runner_pid"]
    h.kill(pid, sig)
    assert h.wait_gone(pid), "the runner did not die"
    return pid


def _next_request_recovers(url: str, model: str = MODEL) -> float:
    started = time.monotonic()
    r = h.chat(url, model)
    assert r.status_code == 200, r.text
    return time.monotonic() - started


def _assert_crash_message(message: str, model: str = MODEL) -> None:
    assert f"runner for {model}:latest stopped (signal 11, SIGSEGV)" in message, message
    assert "next request starts a new runner" in message


def test_each_model_has_its_own_runner_process(server):
    assert h.chat(server.url, MODEL).status_code == 200
    assert h.chat(server.url, SECOND).status_code == 200
    first, second = h.runner_of(server.url, MODEL), h.runner_of(server.url, SECOND)
    assert first["runner_pid"] != second["runner_pid"]
    worker = h.parent_of(first["runner_pid"])
    assert h.parent_of(second["runner_pid"]) == worker
    assert h.parent_of(worker) == server.proc.pid  # Gunicorn's arbiter
    # llama.cpp is loaded in the runners only: nothing of it can crash the HTTP worker.
    assert "libllama" in Path(f"/proc/{first['runner_pid']}/maps").read_text()
    assert "libllama" not in Path(f"/proc/{worker}/maps").read_text()
    assert first["extra_buffers"] in ("on", "off") and first["extra_buffers_reason"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_segv_mid_stream_ends_the_stream_with_an_error(server, dialect):
    assert h.chat(server.url, MODEL).status_code == 200  # loaded
    sampling = {"logit_bias": NO_EOS} if dialect == "openai" else {}
    with h.stream_request(server.url, dialect, MODEL, 400, **sampling) as r:
        assert r.status_code == 200
        items = h.events(r, dialect)
        for item in items:
            if h.has_text(item, dialect):
                break
        _crash(server.url)
        errors = [m for m in (h.error_of(item, dialect) for item in items) if m]
    assert len(errors) == 1, errors
    _assert_crash_message(errors[0])
    assert _next_request_recovers(server.url) < 10


@pytest.mark.parametrize("dialect", DIALECTS)
def test_segv_mid_request_answers_500_in_the_dialect(server, dialect):
    assert h.chat(server.url, MODEL).status_code == 200
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(
        r=h.non_stream(server.url, dialect, MODEL, 400)))
    thread.start()
    assert h.when(lambda: h.processing(server.url) > 0)
    _crash(server.url)
    thread.join(60)
    response = result["r"]
    assert response.status_code == 500, response.text
    _assert_crash_message(h.error_message(response, dialect))
    assert _next_request_recovers(server.url) < 10


@pytest.mark.parametrize("sig, hint", [
    (signal.SIGABRT, "extra_buffers: off"),  # a GGML_ASSERT aborts
    (signal.SIGKILL, "out-of-memory killer"),  # what the OOM killer sends
])
def test_abort_and_kill_answer_500_with_their_signal(server, sig, hint):
    assert h.chat(server.url, MODEL).status_code == 200
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(
        r=h.non_stream(server.url, "openai", MODEL, 400)))
    thread.start()
    assert h.when(lambda: h.processing(server.url) > 0)
    _crash(server.url, sig=sig)
    thread.join(60)
    response = result["r"]
    assert response.status_code == 500, response.text
    error = response.json()["error"]
    assert error["code"] == "runner_crashed" and error["type"] == "server_error", error
    name = signal.Signals(sig).name
    assert f"stopped (signal {int(sig)}, {name})" in error["message"], error
    assert hint in error["message"], error
    assert _next_request_recovers(server.url) < 10


def test_the_other_model_and_health_never_notice(server):
    assert h.chat(server.url, MODEL).status_code == 200
    second_pid = h.runner_of(server.url, SECOND)["runner_pid"] if any(
        e["model_name"].startswith(SECOND) for e in h.ps(server.url)) else None
    health: list[int] = []
    stop = threading.Event()

    def probe_health():
        while not stop.is_set():
            health.append(requests.get(server.url + "/health", timeout=5).status_code)
            time.sleep(0.05)

    prober = threading.Thread(target=probe_health)
    prober.start()
    try:
        with h.stream_request(server.url, "openai", SECOND, 120, logit_bias=NO_EOS) as r:
            items = h.events(r, "openai")
            for item in items:
                if h.has_text(item, "openai"):
                    break
            _crash(server.url, MODEL)
            rest = list(items)
    finally:
        stop.set()
        prober.join()
    assert not [i for i in rest if "error" in i], rest
    finish = [c["finish_reason"] for i in rest for c in i.get("choices", [])
              if c.get("finish_reason")]
    assert finish == ["length"]
    assert health and set(health) == {200}
    if second_pid is not None:
        assert h.runner_of(server.url, SECOND)["runner_pid"] == second_pid
    assert _next_request_recovers(server.url) < 10


def test_embeddings_and_token_counts_survive_a_crash(server):
    assert h.chat(server.url, MODEL).status_code == 200
    _crash(server.url)
    r = requests.post(server.url + "/engines/v1/embeddings",
                      json={"model": MODEL, "input": "hello"}, timeout=60)
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) > 0
    _crash(server.url)
    r = requests.post(server.url + "/v1/messages/count_tokens", timeout=60, json={
        "model": MODEL, "messages": [{"role": "user", "content": "hello"}]})
    assert r.status_code == 200 and r.json()["input_tokens"] > 0


def test_unload_ends_the_runner_and_returns_its_memory(server):
    assert h.chat(server.url, SECOND).status_code == 200
    pid = h.runner_of(server.url, SECOND)["runner_pid"]
    runner_rss = h.rss_mib(pid)
    assert runner_rss > 50, runner_rss  # weights and KV cache live in the runner
    worker = h.parent_of(pid)
    worker_rss = h.rss_mib(worker)
    r = requests.post(server.url + "/engines/unload", json={"models": [SECOND]}, timeout=60)
    assert r.status_code == 200 and r.json()["unloaded_runners"] == 1
    assert h.wait_gone(pid)
    assert h.rss_mib(worker) < worker_rss + 20  # nothing moved into the server process
    assert not any(e["model_name"].startswith(SECOND) for e in h.ps(server.url))


def test_runners_end_with_the_server(tmp_path):
    proc = ServerProcess(tmp_path / "models", tmp_path / "server.log")
    try:
        proc.wait_ready()
        assert h.chat(proc.url, MODEL).status_code == 200
        pid = h.runner_of(proc.url, MODEL)["runner_pid"]
        worker = h.parent_of(pid)
        h.kill(worker, signal.SIGKILL)  # no clean shutdown: the kernel's parent-death signal
        assert h.wait_gone(pid, 10), "the runner outlived the server's worker"
    finally:
        proc.stop()
