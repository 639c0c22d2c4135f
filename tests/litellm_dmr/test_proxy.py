"""The LiteLLM proxy running the repo's config.example.yaml in front of the real server.

The example's `localhost:12434` and `localhost:12435` (the second load-balanced replica, in
its `/engines/llama.cpp/v1` form) both point at the session's test server. Clients are the
ones on LiteLLM's Docker Model Runner page: the OpenAI SDK, raw HTTP (its cURL examples),
LiteLLM's own SDK via `litellm_proxy/`, plus the Anthropic SDK on the proxy's /v1/messages.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx
import litellm
import pytest
from openai import OpenAI

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.yaml"
HELLO = [{"role": "user", "content": "hello from litellm"}]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _litellm_command() -> list[str]:
    script = Path(sys.executable).with_name("litellm")
    return [str(script)] if script.exists() else [sys.executable, "-m", "litellm.proxy.proxy_cli"]


class Proxy:
    def __init__(self, url: str, key: str, log_path: Path):
        self.url, self.key, self.log_path = url, key, log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:]


@pytest.fixture(scope="module")
def proxy(server_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("proxy")
    config = EXAMPLE.read_text()
    assert "http://localhost:12434" in config and "http://localhost:12435" in config
    config = (config.replace("http://localhost:12434", server_url)
              .replace("http://localhost:12435", server_url))
    (tmp / "config.yaml").write_text(config)
    port = _free_port()
    key = "sk-" + secrets.token_hex(16)
    env = {**os.environ, "LITELLM_MASTER_KEY": key, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("DOCKER_MODEL_RUNNER_API_BASE", None)
    log_path = tmp / "proxy.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*_litellm_command(), "--config", str(tmp / "config.yaml"), "--host", "127.0.0.1",
             "--port", str(port)], cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    running = Proxy(f"http://127.0.0.1:{port}", key, log_path)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"litellm proxy exited with {proc.returncode}:\n{running.log()}")
            try:
                if httpx.get(running.url + "/health/liveliness", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"litellm proxy not ready after 180 s:\n{running.log()}")
            time.sleep(0.5)
        yield running
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def client(proxy) -> OpenAI:
    return OpenAI(base_url=proxy.url, api_key=proxy.key, max_retries=0)


@pytest.mark.parametrize("name", ["llama-3.1", "mistral-7b", "smollm2"])
def test_chat_openai_sdk(client, proxy, name):
    raw = client.chat.completions.with_raw_response.create(model=name, messages=HELLO,
                                                           max_tokens=8)
    resp = raw.parse()
    assert resp.choices[0].message.content.strip()
    assert resp.choices[0].finish_reason in ("stop", "length")
    assert resp.usage.prompt_tokens > 0 and 0 < resp.usage.completion_tokens <= 8
    assert resp.model == name
    # Spend tracking priced the local model at zero (no "model isn't mapped" error).
    assert float(raw.headers["x-litellm-response-cost-original"]) == 0.0
    assert "isn't mapped" not in proxy.log()


def test_streaming_openai_sdk(client):
    stream = client.chat.completions.create(model="llama-3.1", messages=HELLO, max_tokens=8,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    usage = chunks[-1].usage
    assert usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= 8


def test_embeddings_openai_sdk(client):
    # The OpenAI SDK asks for base64 by default and decodes it itself.
    default = client.embeddings.create(model="embeddings", input=["hello", "world"])
    floats = client.embeddings.create(model="embeddings", input="hello",
                                      encoding_format="float")
    assert len(default.data) == 2
    dims = len(default.data[0].embedding)
    assert dims > 0 and len(floats.data[0].embedding) == dims
    assert all(isinstance(x, float) for x in floats.data[0].embedding)
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-5)


def test_text_completion_openai_sdk(client):
    resp = client.completions.create(model="mistral-7b", prompt="Once upon a time", max_tokens=6)
    assert resp.choices[0].text.strip()
    assert 0 < resp.usage.prompt_tokens < 10  # a raw prompt, no chat template
    assert 0 < resp.usage.completion_tokens <= 6


def test_curl_examples(proxy):
    """The seed's two cURL calls, as raw HTTP."""
    headers = {"Authorization": f"Bearer {proxy.key}", "Content-Type": "application/json"}
    body = {"model": "llama-3.1", "messages": HELLO, "max_tokens": 8}
    resp = httpx.post(proxy.url + "/v1/chat/completions", headers=headers, json=body, timeout=120)
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"].strip()

    lines = []
    with httpx.stream("POST", proxy.url + "/v1/chat/completions", headers=headers,
                      json={**body, "stream": True}, timeout=120) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in stream.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(ln[len("data: "):]) for ln in lines[:-1]]
    assert "".join(e["choices"][0]["delta"].get("content") or ""
                   for e in events if e["choices"]).strip()


def test_litellm_sdk_through_the_proxy(proxy, monkeypatch):
    """The seed's `litellm_proxy/llama-3.1` examples."""
    # For "llama" names LiteLLM's stream token counter fetches a tokenizer from Hugging Face;
    # offline that costs ~45 s of retries before it falls back to tiktoken.
    monkeypatch.setattr(litellm, "disable_hf_tokenizer_download", True)
    resp = litellm.completion(model="litellm_proxy/llama-3.1", messages=HELLO,
                              api_base=proxy.url, api_key=proxy.key, max_tokens=8)
    assert resp.choices[0].message.content.strip()
    stream = litellm.completion(model="litellm_proxy/llama-3.1", messages=HELLO,
                                api_base=proxy.url, api_key=proxy.key, max_tokens=8,
                                stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream
                   if hasattr(c.choices[0], "delta")).strip()


def test_every_deployment_is_healthy(proxy):
    """/health calls each deployment, so both load-balanced `smollm2` bases are exercised."""
    resp = httpx.get(proxy.url + "/health", headers={"Authorization": f"Bearer {proxy.key}"},
                     timeout=180)
    assert resp.status_code == 200, resp.text
    report = resp.json()
    assert report["unhealthy_count"] == 0, report["unhealthy_endpoints"]
    bases = sorted(e["api_base"] for e in report["healthy_endpoints"]
                   if e["model"] == "docker_model_runner/ai/smollm2")
    assert len(report["healthy_endpoints"]) == 5
    assert any(b.endswith("/engines/llama.cpp/v1") for b in bases)


def test_unknown_model_group_is_a_client_error(client):
    import openai

    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="no-such-group", messages=HELLO, max_tokens=2)


# ---- Anthropic Messages through the proxy -------------------------------------------
# The proxy translates /v1/messages into a chat completion for the plugin, so this does
# not depend on the server's own Anthropic endpoint.
def test_anthropic_messages_through_the_proxy(proxy):
    client = anthropic.Anthropic(base_url=proxy.url, api_key=proxy.key, max_retries=0)
    msg = client.messages.create(model="llama-3.1", max_tokens=16,
                                 messages=[{"role": "user", "content": "Say hello."}])
    assert msg.role == "assistant"
    assert msg.content[0].type == "text" and msg.content[0].text.strip()
    assert msg.stop_reason in ("end_turn", "max_tokens")
    assert msg.usage.input_tokens > 0 and 0 < msg.usage.output_tokens <= 16

    with client.messages.stream(model="llama-3.1", max_tokens=16,
                                messages=[{"role": "user", "content": "Say hello."}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip()
    assert final.usage.output_tokens > 0
