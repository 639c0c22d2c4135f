"""Broken model files: a clear 422 for that model in every dialect, while the others serve.

A server of its own (its store gets broken models) with the bundled model; the broken ones
are packaged from damaged copies of the real GGUF, or damaged on disk after a good pull.
"""

from __future__ import annotations

import threading

import pytest
import requests

from server.store.bundled import bundled_gguf
from server.store.store import ModelStore
from tests.conftest import MODEL, ServerProcess
from tests.server.test_cli import dmr, ok


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("faults")
    proc = ServerProcess(base / "models", base / "server.log")
    proc.wait_ready()
    proc.models_dir = base / "models"
    yield proc
    proc.stop()


def _package(url: str, path, tag: str) -> None:
    assert tag in ok(url, "pull", str(path), "--tag", tag)


def _ask_every_dialect(url: str, model: str) -> list[requests.Response]:
    chat = [{"role": "user", "content": "hi"}]
    return [
        requests.post(f"{url}/engines/v1/chat/completions", json={"model": model,
                                                                  "messages": chat}),
        requests.post(f"{url}/v1/messages", json={"model": model, "max_tokens": 8,
                                                  "messages": chat}),
        requests.post(f"{url}/api/chat", json={"model": model, "messages": chat,
                                               "stream": False}),
        requests.post(f"{url}/engines/v1/embeddings", json={"model": model, "input": "hi"}),
    ]


def _assert_clear_refusal(responses: list[requests.Response], model: str, why: str) -> None:
    openai, anthropic, ollama, embeddings = responses
    for r in responses:
        assert r.status_code == 422, (r.status_code, r.text)
    assert openai.json()["error"]["code"] == "model_load_failed"
    assert anthropic.json()["type"] == "error"
    assert anthropic.json()["error"]["type"] == "invalid_request_error"
    assert embeddings.json()["error"]["code"] == "model_load_failed"
    for message in (openai.json()["error"]["message"], anthropic.json()["error"]["message"],
                    ollama.json()["error"], embeddings.json()["error"]["message"]):
        assert message.startswith(f"model {model}") and why in message, message
        assert "pull it again" in message


def _healthy_answer(url: str) -> str:
    r = requests.post(f"{url}/engines/v1/chat/completions",
                      json={"model": MODEL, "max_tokens": 8,
                            "messages": [{"role": "user", "content": "Say hello."}]})
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def test_truncated_gguf_is_refused_while_the_good_model_streams(server, tmp_path):
    url = server.url
    data = bundled_gguf().read_bytes()
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(data[: len(data) // 2])  # header intact, tensors cut off
    _package(url, truncated, "ai/truncated:latest")

    # A stream on the good model runs while the broken one is tried in every dialect.
    lines: list[bytes] = []
    stream = requests.post(f"{url}/engines/v1/chat/completions", stream=True, json={
        "model": MODEL, "stream": True, "max_tokens": 40,
        "messages": [{"role": "user", "content": "Tell me about the sea."}]})
    reader = threading.Thread(target=lambda: lines.extend(stream.iter_lines()))
    reader.start()
    _assert_clear_refusal(_ask_every_dialect(url, "ai/truncated:latest"),
                          "ai/truncated:latest", "corrupted or incomplete")
    reader.join(120)
    lines = [line for line in lines if line]
    assert stream.status_code == 200 and lines[-1] == b"data: [DONE]", lines[-3:]
    assert _healthy_answer(url)
    # The broken model is still listed (the user can see and remove it) and nothing leaked.
    assert requests.get(f"{url}/models/ai/truncated").status_code == 200
    assert "ai/truncated" not in requests.get(f"{url}/engines/ps").text


def test_garbled_headers_are_refused(server, tmp_path):
    data = bytearray(bundled_gguf().read_bytes())
    start = data.index(b"token_embd.weight")  # the first tensor description
    # Garbage over the tensor descriptions: packaging reads the header and refuses the file.
    garbled = bytearray(data)
    for i in range(0, 4000, 97):
        garbled[start + i] ^= 0xFF
    path = tmp_path / "garbled.gguf"
    path.write_bytes(bytes(garbled))
    refused = dmr(server.url, "pull", str(path), "--tag", "ai/garbled:latest")
    assert refused.returncode == 1 and "GGUF header" in refused.stderr, refused.stderr
    # A well-formed header naming an impossible tensor type: only llama.cpp can tell.
    n_dims_at = start + len("token_embd.weight")
    type_at = n_dims_at + 4 + 8 * data[n_dims_at]
    data[type_at:type_at + 4] = (200).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    _package(server.url, path, "ai/bad-type:latest")
    _assert_clear_refusal(_ask_every_dialect(server.url, "ai/bad-type:latest"),
                          "ai/bad-type:latest", "invalid ggml type 200")
    assert _healthy_answer(server.url)


def test_weights_damaged_on_disk_after_the_pull(server, tmp_path):
    """A stored blob cut short later (disk trouble, a stray `truncate`) is named as such."""
    data = bytearray(bundled_gguf().read_bytes())
    data[-1] ^= 0xFF  # one weight differs: a blob of its own, not the bundled model's
    copy = tmp_path / "victim.gguf"
    copy.write_bytes(bytes(data))
    _package(server.url, copy, "ai/victim:latest")
    blob = ModelStore(server.models_dir).get("ai/victim").gguf_path
    with open(blob, "r+b") as fh:
        fh.truncate(blob.stat().st_size - 4096)
    _assert_clear_refusal(_ask_every_dialect(server.url, "ai/victim:latest"),
                          "ai/victim:latest", "truncated or overwritten")
    blob.unlink()
    _assert_clear_refusal(_ask_every_dialect(server.url, "ai/victim:latest"),
                          "ai/victim:latest", "missing from the store")
    assert _healthy_answer(server.url)
