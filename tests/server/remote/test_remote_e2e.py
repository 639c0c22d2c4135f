"""A remote engine in front of two real servers, as a user sets it up:
`DMR_ENGINE_VLLM=<two upstream URLs> dmr serve`, then the official SDKs of every dialect.

The upstreams are our own servers (OpenAI base `/engines/v1`), each requiring its own API key,
which the front sends from `api_key_env`. No real vLLM here (it needs a GPU): the forwarding
only relies on the OpenAI API that vLLM, SGLang and llama-server share.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import anthropic
import ollama
import openai
import pytest
import requests

from tests.conftest import MODEL

from .conftest import UPSTREAM_KEY, upstream_state

HELLO = [{"role": "user", "content": "Say hello."}]
FRONT_KEY = "front-secret"


@pytest.fixture(scope="module")
def front(fleet):
    """A front server without keys of its own."""
    return fleet.start_front()


@pytest.fixture(scope="module")
def locked_front(fleet):
    """A front server whose clients need FRONT_KEY (and whose upstreams need theirs)."""
    return fleet.start_front(env={"DMR_API_KEYS": FRONT_KEY})


@pytest.fixture(scope="module")
def client(front) -> openai.OpenAI:
    return openai.OpenAI(base_url=front.url + "/engines/vllm/v1", api_key="unused",
                         max_retries=0)


def _direct(fleet) -> openai.OpenAI:
    return openai.OpenAI(base_url=fleet.upstreams[0].url + "/engines/v1", api_key=UPSTREAM_KEY,
                         max_retries=0)


def test_chat_streamed_and_not_is_the_upstreams_answer(client, fleet):
    args = {"model": MODEL, "messages": HELLO, "max_tokens": 12, "temperature": 0, "seed": 7}
    expected = _direct(fleet).chat.completions.create(**args).choices[0].message.content
    resp = client.chat.completions.create(**args)
    assert resp.choices[0].message.content == expected and expected.strip()
    assert resp.usage.prompt_tokens > 0 and 0 < resp.usage.completion_tokens <= 12
    chunks = list(client.chat.completions.create(
        **args, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    assert chunks[-1].usage.completion_tokens == resp.usage.completion_tokens


def test_completions_and_embeddings(client):
    text = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=6,
                                     temperature=0)
    assert text.choices[0].text.strip() and 0 < text.usage.completion_tokens <= 6
    vectors = client.embeddings.create(model=MODEL, input=["hello", "world"])
    assert len(vectors.data) == 2 and len(vectors.data[0].embedding) > 100


def test_the_client_may_spell_the_model_either_way(client):
    for name in ("ai/smollm2", "ai/smollm2:latest", "smollm2"):
        resp = client.chat.completions.create(model=name, messages=HELLO, max_tokens=2)
        assert resp.choices[0].finish_reason in ("stop", "length")


def test_upstream_errors_pass_through_in_openai_shape(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="ai/no-such-model", messages=HELLO, max_tokens=2)
    assert err.value.body["code"] == "model_not_found"
    assert "ai/no-such-model" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=2,
                                       temperature="hot")
    assert err.value.body["param"] == "temperature"


def test_models_are_the_upstreams_with_their_backend(front, client):
    listed = client.models.list().data
    assert [m.id for m in listed] == ["ai/smollm2:latest"]
    assert listed[0].dmr["backend"] == "vllm" and len(listed[0].dmr["upstreams"]) == 2
    assert client.models.retrieve("ai/smollm2").id == "ai/smollm2:latest"
    everything = requests.get(front.url + "/v1/models", timeout=10).json()["data"]
    assert [(m["id"], m["dmr"]["backend"]) for m in everything] == [("ai/smollm2:latest", "vllm")]
    native = requests.get(front.url + "/models", timeout=10).json()
    assert [(m["tags"][0], m["backend"]) for m in native] == [("ai/smollm2:latest", "vllm")]


def test_keys_the_front_checks_and_the_upstream_key_it_sends(locked_front):
    url = locked_front.url + "/engines/vllm/v1/chat/completions"
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 2}
    assert requests.post(url, json=body, timeout=60).status_code == 401
    # The upstreams' key is not a key of the front, and the front's is never passed on.
    assert requests.post(url, json=body, timeout=60,
                         headers={"Authorization": f"Bearer {UPSTREAM_KEY}"}).status_code == 401
    ok = requests.post(url, json=body, timeout=60,
                       headers={"Authorization": f"Bearer {FRONT_KEY}"})
    assert ok.status_code == 200, ok.text
    preflight = requests.options(url, timeout=10, headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"


def test_anthropic_sdk_on_the_remote_engine(front):
    client = anthropic.Anthropic(base_url=front.url + "/engines/vllm", api_key="unused",
                                 max_retries=0)
    msg = client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert msg.content[0].type == "text" and msg.content[0].text.strip()
    assert msg.stop_reason in ("end_turn", "max_tokens")
    assert msg.usage.input_tokens > 0 and 0 < msg.usage.output_tokens <= 10
    with client.messages.stream(model=MODEL, max_tokens=10, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip() and final.usage.output_tokens > 0
    count = client.messages.count_tokens(model=MODEL, messages=HELLO)
    assert count.input_tokens == msg.usage.input_tokens
    # Without the engine in the URL, the model name finds the remote engine.
    plain = anthropic.Anthropic(base_url=front.url, api_key="unused", max_retries=0)
    assert plain.messages.create(model=MODEL, max_tokens=5, messages=HELLO).content[0].text


def test_ollama_client_on_a_remote_model(front):
    client = ollama.Client(host=front.url)
    chat = client.chat(model=MODEL, messages=HELLO, options={"num_predict": 8, "seed": 1})
    assert chat.message.content.strip() and chat.done_reason in ("stop", "length")
    streamed = list(client.chat(model=MODEL, messages=HELLO, stream=True,
                                options={"num_predict": 8}))
    assert "".join(p.message.content for p in streamed).strip() and streamed[-1].done
    assert streamed[-1].eval_count > 0
    raw = client.generate(model=MODEL, prompt="Once upon a time", raw=True,
                          options={"num_predict": 5})
    assert raw.response.strip()
    vector = client.embed(model=MODEL, input="hello").embeddings[0]
    assert abs(sum(x * x for x in vector) - 1) < 1e-3  # Ollama's vectors are normalised
    assert [m.model for m in client.list().models] == ["ai/smollm2:latest"]
    assert client.generate(model=MODEL, prompt="").done  # "load": nothing to load here


def test_status_metrics_and_dmr_status(front, fleet):
    status = requests.get(front.url + "/engines/status", timeout=10).json()
    assert status["vllm"].startswith("Running: remote, 2/2 upstreams up")
    upstreams = upstream_state(front.url)
    assert sorted(upstreams) == sorted(f"{u.url}/engines/v1" for u in fleet.upstreams)
    for up in upstreams.values():
        assert up["state"] == "up" and up["latency_ms"] > 0
        assert up["models"] == ["ai/smollm2:latest"]
    metrics = requests.get(front.url + "/metrics", timeout=10).text
    for up in upstreams:
        assert f'dmr_remote_upstream_up{{backend="vllm",upstream="{up}"}} 1.0' in metrics
        assert f'dmr_remote_upstream_latency_seconds{{backend="vllm",upstream="{up}"}}' in metrics
    env = {**os.environ, "MODEL_RUNNER_HOST": front.url}
    out = subprocess.run([sys.executable, "-m", "server.cli", "status"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for up in upstreams:
        line = next(ln for ln in out.stdout.splitlines() if up in ln)
        assert "vllm" in line and " up " in f"{line} " and "ms" in line
    as_json = subprocess.run([sys.executable, "-m", "server.cli", "status", "--json"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert len(json.loads(as_json.stdout)["remote"]["vllm"]["upstreams"]) == 2


def test_nothing_is_loaded_on_the_front(front):
    assert requests.get(front.url + "/engines/ps", timeout=10).json() == []
    assert requests.get(front.url + "/api/ps", timeout=10).json() == {"models": []}
