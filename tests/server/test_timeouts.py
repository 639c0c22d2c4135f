"""Request and client timeouts, on a server of their own with one slot and short limits.

request_timeout bounds waiting plus generating: a running answer ends as if max_tokens ran out
(its text kept), a request that never got going is "overloaded" (retry later). client_timeout
drops clients that stall while sending, so they cannot hold the HTTP threads.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import anthropic
import openai
import pytest
import requests

from tests.conftest import MODEL, NO_EOS, ServerProcess

REQUEST_TIMEOUT = 3
CLIENT_TIMEOUT = 2
STORY = [{"role": "user", "content": "Write a very long story about a lighthouse."}]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    base = tmp_path_factory.mktemp("timeouts")
    proc = ServerProcess(base / "models", base / "server.log", "--parallel", "1",
                         env={"DMR_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
                              "DMR_CLIENT_TIMEOUT": str(CLIENT_TIMEOUT)})
    proc.wait_ready()
    # Load the model now, so that no test's clock includes loading it.
    requests.post(f"{proc.url}/engines/v1/chat/completions",
                  json={"model": MODEL, "max_tokens": 1, "messages": STORY}).raise_for_status()
    yield proc.url
    proc.stop()


def test_a_long_answer_ends_at_the_timeout_with_its_text(url):
    client = openai.OpenAI(base_url=f"{url}/engines/v1", api_key="none", max_retries=0)
    started = time.monotonic()
    reply = client.chat.completions.create(model=MODEL, messages=STORY, max_tokens=100_000 // 30,
                                           logit_bias=NO_EOS)
    elapsed = time.monotonic() - started
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens > 0 and reply.choices[0].message.content
    assert REQUEST_TIMEOUT - 0.5 < elapsed < REQUEST_TIMEOUT + 3, elapsed

    chunks = list(client.chat.completions.create(
        model=MODEL, messages=STORY, max_tokens=3000, logit_bias=NO_EOS, stream=True))
    assert chunks[-1].choices[0].finish_reason == "length"
    assert "".join(c.choices[0].delta.content or "" for c in chunks)

    claude = anthropic.Anthropic(base_url=f"{url}/anthropic", api_key="none", max_retries=0)
    message = claude.messages.create(model=MODEL, max_tokens=3000, messages=STORY,
                                     extra_body={"logit_bias": NO_EOS})
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens > 0


def test_requests_that_wait_past_the_timeout_are_told_to_retry(url):
    """One slot, four long requests at once. The first answers until the timeout. Each one
    queued behind it gets the slot when the one before times out, which is just before (or
    at) its own deadline: it answers with what it managed, or, with no token yet, is refused
    as overloaded with Retry-After. Nobody waits past the timeout."""
    results: list[tuple[requests.Response, float]] = []
    lock = threading.Lock()

    def ask() -> None:
        started = time.monotonic()
        r = requests.post(f"{url}/engines/v1/chat/completions", json={
            "model": MODEL, "messages": STORY, "max_tokens": 3000, "logit_bias": NO_EOS})
        with lock:
            results.append((r, time.monotonic() - started))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 4
    ok = [r for r, _ in results if r.status_code == 200]
    refused = [r for r, _ in results if r.status_code == 503]
    assert len(ok) + len(refused) == 4, [(r.status_code, r.text[:200]) for r, _ in results]
    assert ok and all(r.json()["choices"][0]["finish_reason"] == "length" for r in ok)
    assert refused, "no request was refused though three had to wait for the only slot"
    for r in refused:
        assert r.headers["Retry-After"].isdigit()
        error = r.json()["error"]
        assert error["type"] == "unavailable_error" and "request timeout" in error["message"]
    assert max(seconds for _, seconds in results) < 2 * REQUEST_TIMEOUT + 2


def test_waiting_anthropic_request_is_overloaded_529(url):
    blocker = threading.Thread(target=requests.post, args=(
        f"{url}/engines/v1/chat/completions",), kwargs={"json": {
            "model": MODEL, "messages": STORY, "max_tokens": 3000, "logit_bias": NO_EOS}})
    blocker.start()
    time.sleep(0.5)
    r = requests.post(f"{url}/v1/messages", json={
        "model": MODEL, "max_tokens": 3000, "messages": STORY, "logit_bias": NO_EOS})
    blocker.join(60)
    # It either got the slot just before its deadline (an answer) or was refused in shape.
    if r.status_code != 200:
        assert r.status_code == 529 and r.json()["error"]["type"] == "overloaded_error", r.text
        assert "Retry-After" in r.headers


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)))


def _raw(head: bytes, url: str) -> tuple[bytes, float]:
    """Send `head` and wait for a whole answer (status line, headers and some body)."""
    with _connect(url) as sock:
        started = time.monotonic()
        sock.sendall(head)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data and data.split(b"\r\n\r\n", 1)[1]:
                break
        return data, time.monotonic() - started


@pytest.mark.parametrize("path, shape", [
    ("/engines/v1/chat/completions", "openai"), ("/v1/messages", "anthropic"),
    ("/api/chat", "ollama")])
def test_a_body_that_stops_arriving_is_a_408(url, path, shape):
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: 200\r\n\r\n").encode() + b'{"model": "ai/smollm2", '
    data, elapsed = _raw(head, url)
    status_line, _, rest = data.partition(b"\r\n")
    assert b" 408 " in status_line, data[:300]
    body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    message = {"openai": lambda b: b["error"]["message"],
               "anthropic": lambda b: b["error"]["message"],
               "ollama": lambda b: b["error"]}[shape](body)
    assert "stopped arriving" in message
    assert CLIENT_TIMEOUT - 0.5 < elapsed < CLIENT_TIMEOUT + 5, elapsed


def test_stalled_headers_are_dropped_and_the_server_keeps_serving(url):
    stalled = [_connect(url) for _ in range(3)]
    for sock in stalled:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
    assert requests.get(f"{url}/health", timeout=10).status_code == 200
    started = time.monotonic()
    for sock in stalled:
        sock.settimeout(CLIENT_TIMEOUT + 10)
        assert sock.recv(100) == b""  # closed by the server
        sock.close()
    assert time.monotonic() - started < CLIENT_TIMEOUT + 5
