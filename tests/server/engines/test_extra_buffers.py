"""Extra buffer types decided per CPU, on any CI host, with the real model.

llama.cpp's AMX kernels segfault on multi-token batches (Sapphire Rapids; see
engines/cpu.py). `DMR_CPUINFO` points the server at a simulated AMX CPU and
`DMR_FAULT=amx-segv` makes its runners die exactly as llama.cpp does there, so every host
tests the machine it may be moved to tomorrow.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import MODEL, ServerProcess
from tests.server.engines import runner_helpers as h
from tests.server.test_cli import ok

LONG = " ".join(f"Fact {i}: the lighthouse keeper counted {i} ships today." for i in range(30))


def _amx_env(tmp_path, **extra: str) -> dict[str, str]:
    return {"DMR_CPUINFO": h.fake_amx_cpuinfo(tmp_path), "DMR_FAULT": "amx-segv",
            "DMR_PARALLEL": "8", "DMR_CONTEXT_SIZE": "1024", **extra}


def _canary(url: str) -> None:
    """Long prompts (multi-token prefill batches) and 8 sequences decoded together."""
    def ask(i: int) -> requests.Response:
        return requests.post(url + "/engines/v1/chat/completions", timeout=300, json={
            "model": MODEL, "max_tokens": 16, "temperature": 0, "messages": [
                {"role": "user", "content": f"{LONG} Question {i}: what did he count?"}]})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(8)))
    for r in answers:
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["usage"]["prompt_tokens"] > 300 and body["choices"][0]["message"]["content"]


@pytest.fixture(scope="module")
def off_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("extra-off")
    proc = ServerProcess(base / "models", base / "server.log",
                         env={"DMR_EXTRA_BUFFERS": "off", "DMR_CONTEXT_SIZE": "1024"})
    proc.wait_ready()
    yield proc
    proc.stop()


def test_canary_with_default_settings(server_url):
    _canary(server_url)
    entry = h.runner_of(server_url, MODEL)
    assert entry["extra_buffers"] in ("on", "off")
    assert entry["extra_buffers_reason"].startswith("auto: ")


def test_canary_with_extra_buffers_off(off_server):
    _canary(off_server.url)
    entry = h.runner_of(off_server.url, MODEL)
    assert (entry["extra_buffers"], entry["extra_buffers_reason"]) == ("off", "off: as configured")
    status = requests.get(off_server.url + "/engines/status").json()["llama.cpp"]
    assert "extra buffers off (off: as configured)" in status


def test_auto_on_a_simulated_amx_cpu_probes_and_turns_them_off(tmp_path):
    models = tmp_path / "models"
    proc = ServerProcess(models, tmp_path / "server-1.log", env=_amx_env(tmp_path))
    try:
        proc.wait_ready()
        status = requests.get(proc.url + "/engines/status").json()["llama.cpp"]
        assert "not yet probed" in status
        _canary(proc.url)  # the first request loads: the probe crashes, the runner restarts
        entry = h.runner_of(proc.url, MODEL)
        assert entry["extra_buffers"] == "off"
        assert "probe decode with them on crashed (signal 11, SIGSEGV)" in \
            entry["extra_buffers_reason"]
        assert "llama.cpp#20824" in entry["extra_buffers_reason"]
        log = proc.log()
        assert "starting it again with extra buffers off" in log
        assert "extra buffers off (auto: a multi-token probe decode with them on crashed" in log
    finally:
        proc.stop()
    verdicts = json.loads((models / "cpu-verdicts.json").read_text())
    assert [v["extra_buffers"] for v in verdicts.values()] == ["off"]

    # Restarted on the same machine: remembered, no probe, no crash.
    proc = ServerProcess(models, tmp_path / "server-2.log", env=_amx_env(tmp_path))
    try:
        proc.wait_ready()
        assert "remembered" in requests.get(proc.url + "/engines/status").json()["llama.cpp"]
        assert h.chat(proc.url, MODEL).status_code == 200
        assert "remembered" in h.runner_of(proc.url, MODEL)["extra_buffers_reason"]
        assert "SIGSEGV" not in proc.log().split("remembered")[0]
    finally:
        proc.stop()


def test_forced_on_crashes_then_the_crash_loop_guard_answers_503(tmp_path):
    proc = ServerProcess(tmp_path / "models", tmp_path / "server.log", env=_amx_env(
        tmp_path, DMR_EXTRA_BUFFERS="on", DMR_CRASH_LOOP_LIMIT="2",
        DMR_CRASH_LOOP_WINDOW="120"))
    try:
        proc.wait_ready()
        for _ in range(2):
            r = h.chat(proc.url, MODEL)
            assert r.status_code == 500, r.text
            message = h.error_message(r, "openai")
            assert "stopped (signal 11, SIGSEGV)" in message and "extra_buffers: off" in message
        for dialect, response in [
            ("openai", h.chat(proc.url, MODEL)),
            ("anthropic", requests.post(proc.url + "/v1/messages", json={
                "model": MODEL, "max_tokens": 8,
                "messages": [{"role": "user", "content": "hi"}]})),
            ("ollama", requests.post(proc.url + "/api/chat", json={
                "model": MODEL, "stream": False,
                "messages": [{"role": "user", "content": "hi"}]})),
        ]:
            assert response.status_code == 503, response.text
            assert int(response.headers["Retry-After"]) > 0
            message = h.error_message(response, dialect, code="runner_crash_loop")
            assert "crashed 2 times within 120 s" in message, message
            assert "extra_buffers: off" in message and "--no-repack" in message
        assert requests.get(proc.url + "/health").status_code == 200
        # The setting the message names fixes it at once, no waiting for the window.
        ok(proc.url, "configure", "--extra-buffers", "off", MODEL)
        assert h.when(lambda: h.chat(proc.url, MODEL).status_code == 200, timeout=60)
        assert h.runner_of(proc.url, MODEL)["extra_buffers"] == "off"
        _canary(proc.url)
        # llama-server's own flag does the same.
        ok(proc.url, "configure", "--extra-buffers", "on", MODEL)
        # A prompt not sent before: a cached one (the prompt cache keeps it across runners)
        # would need a one-token decode only, which the simulated AMX fault lets through.
        assert h.when(lambda: h.chat(proc.url, MODEL, "Something new.").status_code == 500,
                      timeout=60)
        ok(proc.url, "configure", MODEL, "--", "--no-repack")
        assert h.when(lambda: h.chat(proc.url, MODEL).status_code == 200, timeout=60)
    finally:
        proc.stop()
