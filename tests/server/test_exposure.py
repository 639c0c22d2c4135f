"""`dmr serve` beyond loopback: never an unauthenticated request unless told `--no-auth`.

A server on 0.0.0.0 with no keys generates one, prints it with the URL, stores it 0600 in the
models dir and requires it; the OpenAI, Anthropic and Ollama SDKs and the `dmr` client work
with the printed key, over 127.0.0.1 and over this machine's own non-loopback address. A
server bound to that address with `--no-auth` warns and serves without a key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import subprocess
import sys

import anthropic
import ollama
import openai
import pytest
import requests

from server import keyfile
from tests.conftest import MODEL, ServerProcess

HELLO = [{"role": "user", "content": "hi"}]


def _own_address() -> str | None:
    """A non-loopback IPv4 address of this machine, if it has one."""
    address = keyfile.reachable_address("0.0.0.0")
    try:
        return address if not ipaddress.ip_address(address).is_loopback else None
    except ValueError:
        return None


def _start(base, *args: str, url: str | None = None) -> ServerProcess:
    server = ServerProcess(base / "models", base / "server.log", *args,
                           env={"DMR_THREADS": "1", "DMR_API_KEYS": "", "DMR_NO_AUTH": ""})
    if url:
        server.url = url.format(port=server.port)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def lan(tmp_path_factory):
    base = tmp_path_factory.mktemp("lan")
    server = _start(base, "--host", "0.0.0.0")
    server.models_dir = base / "models"
    yield server
    server.stop()


def _printed_key(server: ServerProcess) -> str:
    match = re.search(r"needs an API key .*:\n\s+(dmr-\S+)\n", server.log())
    assert match, server.log()
    return match.group(1)


def test_key_is_generated_printed_and_stored_0600(lan):
    key = _printed_key(lan)
    log = lan.log()
    assert log.count(key) == 2  # the key line and the dashboard URL, once each
    assert f"/ui#key={key}" in log and "/engines/v1" in log
    path = lan.models_dir / keyfile.FILE_NAME
    assert path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_every_route_but_health_needs_the_key(lan):
    assert requests.get(lan.url + "/health").status_code == 200
    for path in ("/models", "/v1/models", "/api/tags", "/engines/ps", "/metrics", "/"):
        r = requests.get(lan.url + path)
        assert r.status_code == 401, (path, r.text)
    r = requests.get(lan.url + "/models", headers={"Authorization": "Bearer dmr-wrong"})
    assert r.status_code == 401 and "invalid API key" in r.text


def _urls(lan) -> list[str]:
    own = _own_address()
    return [lan.url] + ([f"http://{own}:{lan.port}"] if own else [])


def test_openai_sdk_with_the_printed_key(lan):
    key = _printed_key(lan)
    for url in _urls(lan):
        client = openai.OpenAI(base_url=url + "/engines/v1", api_key=key, max_retries=0)
        out = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=3)
        assert out.choices[0].message.content and out.usage.completion_tokens > 0
        stream = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=3,
                                                stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/engines/v1", api_key="sk-no",
                          max_retries=0).models.list()


def test_anthropic_sdk_with_the_printed_key(lan):
    key = _printed_key(lan)
    for url in _urls(lan):
        client = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)
        out = client.messages.create(model=MODEL, messages=HELLO, max_tokens=3)
        assert out.content[0].text and out.usage.output_tokens > 0
        with pytest.raises(anthropic.AuthenticationError):
            anthropic.Anthropic(base_url=url, api_key="sk-no", max_retries=0).messages.create(
                model=MODEL, messages=HELLO, max_tokens=3)


def test_ollama_sdk_with_the_printed_key(lan):
    key = _printed_key(lan)
    for url in _urls(lan):
        client = ollama.Client(host=url, headers={"Authorization": f"Bearer {key}"})
        out = client.chat(model=MODEL, messages=HELLO, options={"num_predict": 3})
        assert out.message.content and out.done
        assert MODEL + ":latest" in [m.model for m in client.list().models]
        with pytest.raises(ollama.ResponseError) as info:
            ollama.Client(host=url).list()
        assert info.value.status_code == 401


def test_foreign_host_still_refused(lan):
    key = _printed_key(lan)
    r = requests.get(lan.url + "/models", headers={"Host": "evil.example", "x-api-key": key})
    assert r.status_code == 403
    r = requests.get(lan.url + "/models", headers={"Host": f"10.9.8.7:{lan.port}",
                                                   "x-api-key": key})
    assert r.status_code == 200  # an address literal cannot be rebound


def _dmr(url: str, models_path: str, *args: str, key: str | None = None):
    env = {**os.environ, "MODEL_RUNNER_HOST": url, "MODELS_PATH": models_path}
    env.pop("DMR_API_KEY", None)
    if key:
        env["DMR_API_KEY"] = key
    return subprocess.run([sys.executable, "-m", "server.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_dmr_client_finds_the_local_key(lan, tmp_path):
    ok = _dmr(lan.url, str(lan.models_dir), "ls")
    assert ok.returncode == 0 and MODEL in ok.stdout, ok.stderr
    refused = _dmr(lan.url, str(tmp_path), "ls")
    assert refused.returncode == 1 and "missing API key" in refused.stderr
    explicit = _dmr(lan.url, str(tmp_path), "ps", key=_printed_key(lan))
    assert explicit.returncode == 0, explicit.stderr


def test_restart_reuses_the_stored_key(tmp_path):
    key, created = keyfile.load_or_create(tmp_path)
    assert created and key.startswith(keyfile.PREFIX) and len(key) > 40
    os.chmod(keyfile.key_path(tmp_path), 0o644)
    again, created = keyfile.load_or_create(tmp_path)
    assert again == key and not created
    assert stat.S_IMODE(keyfile.key_path(tmp_path).stat().st_mode) == 0o600


def test_configured_keys_are_used_instead(tmp_path):
    server = ServerProcess(tmp_path / "models", tmp_path / "server.log", "--host", "0.0.0.0",
                           env={"DMR_THREADS": "1", "DMR_API_KEYS": "sk-mine"})
    try:
        server.wait_ready()
        assert "needs an API key" not in server.log()
        assert not (tmp_path / "models" / keyfile.FILE_NAME).exists()
        assert requests.get(server.url + "/models").status_code == 401
        assert requests.get(server.url + "/models",
                            headers={"x-api-key": "sk-mine"}).status_code == 200
    finally:
        server.stop()


def test_no_auth_opt_out_warns_and_serves(tmp_path):
    own = _own_address() or "0.0.0.0"
    url = f"http://{own}:{{port}}" if own != "0.0.0.0" else None
    server = _start(tmp_path, "--host", own, "--no-auth", url=url)
    try:
        assert f"WARNING: serving on {own} without API keys (--no-auth)" in server.log()
        assert not (tmp_path / "models" / keyfile.FILE_NAME).exists()
        client = openai.OpenAI(base_url=server.url + "/engines/v1", api_key="x", max_retries=0)
        out = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=2)
        assert out.choices[0].message.content is not None
        assert requests.get(server.url + "/api/tags", headers={"Host": "evil.example"}
                            ).status_code == 403
    finally:
        server.stop()
