"""Limits in every dialect, on a server with a small context so they are reached quickly:
`max_tokens` beyond the context is capped by it, prompts over it are a 400, bodies over
10 MiB a 413, each in the dialect's own error shape."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import MODEL, NO_EOS, ServerProcess

CONTEXT = 160
HUGE = 10**9
CHAT = [{"role": "user", "content": "Tell me a story."}]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    base = tmp_path_factory.mktemp("limits")
    proc = ServerProcess(base / "models", base / "server.log", "--context-size", str(CONTEXT),
                         "--parallel", "2")
    proc.wait_ready()
    yield proc.url
    proc.stop()


def test_max_tokens_beyond_the_context_is_capped_by_it(url):
    openai = requests.post(f"{url}/engines/v1/chat/completions", json={
        "model": MODEL, "messages": CHAT, "max_tokens": HUGE, "logit_bias": NO_EOS}).json()
    usage = openai["usage"]
    assert openai["choices"][0]["finish_reason"] == "length"
    assert usage["prompt_tokens"] + usage["completion_tokens"] == CONTEXT

    claude = requests.post(f"{url}/v1/messages", json={
        "model": MODEL, "messages": CHAT, "max_tokens": HUGE, "logit_bias": NO_EOS}).json()
    assert claude["stop_reason"] == "model_context_window_exceeded", claude
    assert claude["usage"]["input_tokens"] + claude["usage"]["output_tokens"] == CONTEXT

    ollama = requests.post(f"{url}/api/chat", json={
        "model": MODEL, "messages": CHAT, "stream": False,
        "options": {"num_predict": HUGE, "logit_bias": NO_EOS}}).json()
    assert ollama["done_reason"] == "length"
    assert ollama["prompt_eval_count"] + ollama["eval_count"] <= CONTEXT


def test_a_prompt_over_the_context_is_a_400_in_each_shape(url):
    long = [{"role": "user", "content": "lighthouse " * 400}]
    openai = requests.post(f"{url}/engines/v1/chat/completions",
                           json={"model": MODEL, "messages": long})
    assert openai.status_code == 400
    assert openai.json()["error"]["code"] == "context_length_exceeded"
    assert openai.json()["error"]["n_ctx"] == CONTEXT
    claude = requests.post(f"{url}/v1/messages",
                           json={"model": MODEL, "messages": long, "max_tokens": 5})
    assert claude.status_code == 400 and claude.json()["type"] == "error"
    assert claude.json()["error"]["message"].startswith("prompt is too long")
    ollama = requests.post(f"{url}/api/generate", json={
        "model": MODEL, "prompt": "lighthouse " * 400, "stream": False})
    assert ollama.status_code == 400
    assert ollama.json()["error"].startswith("the input length exceeds the context length")


@pytest.mark.parametrize("path", ["/engines/v1/chat/completions", "/v1/messages", "/api/chat",
                                  "/engines/v1/embeddings", "/api/embed"])
def test_bodies_over_10_mib_are_413(url, path):
    body = b'{"model": "ai/smollm2", "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    r = requests.post(f"{url}{path}", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    data = r.json()
    message = (data["error"]["message"] if isinstance(data.get("error"), dict)
               else data["error"])
    assert "too large" in message
