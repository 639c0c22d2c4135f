"""`dmr serve --socket PATH`: a Unix socket beside TCP or instead of it, created 0660, removed
on exit, with Docker Desktop's `/exp/vDD4.40/...` prefix, reached by `curl --unix-socket`, the
OpenAI, Anthropic and Ollama SDKs (through an httpx transport) and `dmr` with
`MODEL_RUNNER_HOST=unix://PATH`."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anthropic
import httpx
import ollama
import openai
import pytest
import requests

from tests.conftest import MODEL, ServerProcess

HELLO = [{"role": "user", "content": "hi"}]
DESKTOP = "/exp/vDD4.40"


def _socket_dir() -> Path:
    # sun_path holds ~107 bytes: pytest's tmp dirs can be longer than that
    return Path(tempfile.mkdtemp(prefix="dmr-sock-"))


def _wait_socket(path: Path, server: ServerProcess, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    transport = httpx.HTTPTransport(uds=str(path))
    with httpx.Client(transport=transport, base_url="http://localhost") as client:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{server.log()}")
            try:
                if client.get("/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
    raise RuntimeError(f"socket not ready:\n{server.log()}")


@pytest.fixture(scope="module")
def sock(tmp_path_factory):
    base = tmp_path_factory.mktemp("sock")
    sdir = _socket_dir()
    path = sdir / "dmr.sock"
    server = ServerProcess(base / "models", base / "server.log", "--socket", str(path),
                           env={"DMR_THREADS": "1", "DMR_API_KEYS": ""})
    try:
        server.wait_ready()
        _wait_socket(path, server)
        server.socket_path = path
        yield server
    finally:
        server.stop()
        shutil.rmtree(sdir, ignore_errors=True)


def _curl(path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--unix-socket", str(path), "-w", "\n%{http_code}",
                           url, *args], capture_output=True, text=True, timeout=120)


def test_socket_is_0660_beside_tcp(sock):
    mode = sock.socket_path.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
    assert requests.get(sock.url + "/engines/v1/models").status_code == 200
    assert f"unix:{sock.socket_path}" in sock.log()


def test_curl_with_desktops_prefix(sock):
    """The seed's example: `curl --unix-socket ... localhost/exp/vDD4.40/engines/v1/...`."""
    body = json.dumps({"model": MODEL, "max_tokens": 4, "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Please write 500 words about the fall of Rome."}]})
    out = _curl(sock.socket_path, f"localhost{DESKTOP}/engines/v1/chat/completions",
                "-H", "Content-Type: application/json", "-d", body)
    text, status = out.stdout.rsplit("\n", 1)
    assert status == "200", out
    answer = json.loads(text)
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["content"]
    out = _curl(sock.socket_path, "http://localhost/models")
    text, status = out.stdout.rsplit("\n", 1)
    assert status == "200" and json.loads(text)[0]["tags"]
    out = _curl(sock.socket_path, f"http://localhost{DESKTOP}/api/tags")
    assert out.stdout.endswith("200") and MODEL in out.stdout
    out = _curl(sock.socket_path, "http://localhost/models", "-H", "Host: evil.example")
    assert out.stdout.endswith("403")  # a reverse proxy in front forwards the browser's Host


def test_desktop_prefix_is_only_for_the_socket(sock):
    assert requests.get(sock.url + f"{DESKTOP}/engines/v1/models").status_code == 404


def _http(path: Path) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(path)))


def test_openai_sdk_over_the_socket(sock):
    for prefix in ("", DESKTOP):
        client = openai.OpenAI(base_url=f"http://localhost{prefix}/engines/v1", api_key="x",
                               http_client=_http(sock.socket_path), max_retries=0)
        out = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=3)
        assert out.choices[0].message.content
        stream = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=3,
                                                stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_anthropic_sdk_over_the_socket(sock):
    # the SDK wants a client of the HTTP library it is built on: httpx2 (httpx's fork) lately
    from anthropic import _base_client

    lib = getattr(_base_client, "httpx2", None) or httpx
    http_client = lib.Client(transport=lib.HTTPTransport(uds=str(sock.socket_path)))
    client = anthropic.Anthropic(base_url="http://localhost", api_key="x",
                                 http_client=http_client, max_retries=0)
    out = client.messages.create(model=MODEL, messages=HELLO, max_tokens=3)
    assert out.content[0].text
    with client.messages.stream(model=MODEL, messages=HELLO, max_tokens=3) as stream:
        assert "".join(stream.text_stream)


def test_ollama_sdk_over_the_socket(sock):
    client = ollama.Client(host="http://localhost",
                           transport=httpx.HTTPTransport(uds=str(sock.socket_path)))
    out = client.chat(model=MODEL, messages=HELLO, options={"num_predict": 3})
    assert out.message.content and out.done
    assert "".join(part.message.content for part in client.chat(
        model=MODEL, messages=HELLO, options={"num_predict": 3}, stream=True))


def _dmr(host: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MODEL_RUNNER_HOST": host}
    return subprocess.run([sys.executable, "-m", "server.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_dmr_client_over_the_socket(sock, tmp_path):
    host = f"unix://{sock.socket_path}"
    listing = _dmr(host, "ls")
    assert listing.returncode == 0 and MODEL in listing.stdout, listing.stderr
    answer = _dmr(host, "run", "--max-tokens", "4", MODEL, "Say", "hello")
    assert answer.returncode == 0 and answer.stdout.strip(), answer.stderr
    assert json.loads(_dmr(host, "status", "--json").stdout)["running"]
    down = _dmr(f"unix://{tmp_path}/none.sock", "ls")
    assert down.returncode == 1 and "cannot reach the model runner at unix://" in down.stderr


def test_socket_only_and_removed_on_exit(tmp_path):
    sdir = _socket_dir()
    path = sdir / "only.sock"
    server = ServerProcess(tmp_path / "models", tmp_path / "server.log", "--socket", str(path),
                           "--no-tcp", env={"DMR_THREADS": "1", "DMR_API_KEYS": ""})
    try:
        _wait_socket(path, server)
        with socket.socket() as probe:  # nothing listens on the TCP port
            assert probe.connect_ex(("127.0.0.1", server.port)) != 0
        host = f"unix://{path}"
        assert _dmr(host, "ps").returncode == 0
        server.stop()
        assert not path.exists(), "the socket outlived the server"
    finally:
        server.stop()
        shutil.rmtree(sdir, ignore_errors=True)


def test_stale_socket_is_replaced(tmp_path):
    """A socket left by a killed server does not stop the next start."""
    sdir = _socket_dir()
    path = sdir / "stale.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    server = ServerProcess(tmp_path / "models", tmp_path / "server.log", "--socket", str(path),
                           "--no-tcp", env={"DMR_THREADS": "1", "DMR_API_KEYS": ""})
    try:
        _wait_socket(path, server)
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
    finally:
        server.stop()
        shutil.rmtree(sdir, ignore_errors=True)
