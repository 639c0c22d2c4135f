"""Models load lazily on first use and unload after keep_alive idle seconds."""

import time

import requests

from tests.conftest import ServerProcess


def loaded(url: str) -> list[str]:
    info = requests.get(url + "/info").json()
    return [m["id"] for m in info["models"] if m["loaded"]]


def test_lazy_load_and_idle_unload(tmp_path):
    server = ServerProcess(tmp_path / "models", tmp_path / "server.log",
                           env={"DMR_KEEP_ALIVE": "2s"})
    try:
        server.wait_ready()
        assert loaded(server.url) == []
        r = requests.post(server.url + "/v1/chat/completions", json={
            "model": "ai/smollm2", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 2})
        assert r.status_code == 200
        assert len(loaded(server.url)) == 1
        deadline = time.monotonic() + 20
        while loaded(server.url) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert loaded(server.url) == [], server.log()
        # and it loads again on demand
        r = requests.post(server.url + "/v1/completions", json={
            "model": "ai/smollm2", "prompt": "hi", "max_tokens": 2})
        assert r.status_code == 200 and len(loaded(server.url)) == 1
    finally:
        server.stop()
