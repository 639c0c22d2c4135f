"""The LiteLLM proxy with two of our servers behind one model name (the fleet sections of
config.example.yaml: num_retries 2, allowed_fails 1 with none for unreachable servers and
timeouts, cooldown_time 60) loses no request when one server is killed (SIGKILL) while
requests are in flight, nor afterwards."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from openai import OpenAI

from bench.fleet import fleet_config
from tests.conftest import NO_EOS, ServerProcess, free_port

from .test_proxy import REPO, _litellm_command

SERVER_ENV = {"DMR_THREADS": "1", "DMR_CONTEXT_SIZE": "1024", "DMR_PARALLEL": "2",
              "DMR_KEEP_ALIVE": "-1"}
HELLO = [{"role": "user", "content": "Tell me about the sea."}]



@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    base: Path = tmp_path_factory.mktemp("litellm-fleet")
    servers = [ServerProcess(base / f"m{i}", base / f"server{i}.log", env=SERVER_ENV)
               for i in range(2)]
    proxy_log = base / "proxy.log"
    proc = None
    try:
        for server in servers:
            server.wait_ready()
        config = fleet_config(servers[0].url, servers[1].url)
        settings = yaml.safe_load(config)["router_settings"]
        assert settings["allowed_fails_policy"]["ServiceUnavailableErrorAllowedFails"] == 0
        assert [m["litellm_params"]["api_base"] for m in yaml.safe_load(config)["model_list"]
                if m["model_name"] == "fleet"] == [servers[0].url, servers[1].url]
        (base / "config.yaml").write_text(config)
        port, key = free_port(), "sk-" + secrets.token_hex(16)
        env = {**os.environ, "LITELLM_MASTER_KEY": key, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                           os.environ.get("PYTHONPATH")]))}
        with open(proxy_log, "wb") as log:
            proc = subprocess.Popen([*_litellm_command(), "--config", str(base / "config.yaml"),
                                     "--host", "127.0.0.1", "--port", str(port)], cwd=base,
                                    env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"proxy exited:\n{proxy_log.read_text()[-5000:]}")
            try:
                if httpx.get(url + "/health/liveliness", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, proxy_log.read_text()[-5000:]
            time.sleep(0.5)
        yield servers, OpenAI(base_url=url, api_key=key, max_retries=0, timeout=120), proxy_log
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for server in servers:
            server.stop()


def _ask(client: OpenAI, i: int) -> str:
    if i % 2:
        chunks = client.chat.completions.create(model="fleet", messages=HELLO, max_tokens=4,
                                                stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    resp = client.chat.completions.create(model="fleet", messages=HELLO, max_tokens=4)
    return resp.choices[0].message.content


def test_a_killed_server_costs_no_request(fleet):
    servers, client, proxy_log = fleet
    assert all(_ask(client, i) is not None for i in range(4))

    def long_answer(_: int) -> int:  # whole answers, in flight when the server dies
        resp = client.chat.completions.create(model="fleet", messages=HELLO, max_tokens=40,
                                              extra_body={"logit_bias": NO_EOS})
        return resp.usage.completion_tokens

    # Twelve, so that the router's shuffle sends some to the second server (all twelve to the
    # first would be a 1-in-4096 chance; six gave 1 in 64, and it happened).
    with ThreadPoolExecutor(12) as pool:
        in_flight = [pool.submit(long_answer, i) for i in range(12)]
        _wait_until_busy(servers[1])
        servers[1].kill()
        assert [f.result() for f in in_flight] == [40] * 12

    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda i: _ask(client, i), range(24)))
    assert all(a is not None for a in answers)
    health = httpx.get(str(client.base_url) + "/health?model=fleet", timeout=120,
                       headers={"Authorization": f"Bearer {client.api_key}"}).json()
    assert [e["api_base"] for e in health["unhealthy_endpoints"]] == [servers[1].url]
    assert [e["api_base"] for e in health["healthy_endpoints"]] == [servers[0].url]


def _wait_until_busy(server: ServerProcess) -> None:
    """Until the server is generating for at least one request (so its death cuts one)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(e["in_use"] for e in httpx.get(server.url + "/engines/ps", timeout=5).json()):
            return
        time.sleep(0.05)
    raise AssertionError("the router never sent a request to the second server")
