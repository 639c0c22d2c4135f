"""LiteLLM SDK calls through the plugin against the real server (session `dmr_server`).

SmolLM2-135M is tiny, so answers are never compared with expected text: the tests check
structure, non-empty output, usage counts, the URL that was called and error classes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket

import litellm
import pytest

import litellm_dmr  # noqa: F401  (registers the provider)
from litellm_dmr.provider import HIDDEN_URL_KEY

MSGS = [{"role": "user", "content": "Say hello."}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris", "London"]}},
            "required": ["city"],
        },
    },
}
FORCE_WEATHER = {"type": "function", "function": {"name": "get_weather"}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _no_env_base(monkeypatch):
    """Tests choose the base URL themselves; a developer's env must not leak in."""
    monkeypatch.delenv("DOCKER_MODEL_RUNNER_API_BASE", raising=False)
    monkeypatch.delenv("DOCKER_MODEL_RUNNER_API_KEY", raising=False)


def chat_url(server_url: str, engine: str = "llama.cpp") -> str:
    return f"{server_url}/engines/{engine}/v1/chat/completions"


def assert_chat(resp: litellm.ModelResponse, max_tokens: int) -> None:
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    usage = resp.usage
    assert usage.prompt_tokens > 0
    assert 0 < usage.completion_tokens <= max_tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


# ---- chat ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", [
    "docker_model_runner/ai/smollm2",
    "docker_model_runner/llama.cpp/ai/smollm2",
    "docker_model_runner/ai/smollm2:latest",
    "dmr/ai/smollm2",
    "dmr/llama.cpp/ai/smollm2",
])
def test_completion(server_url, name):
    resp = litellm.completion(model=name, messages=MSGS, api_base=server_url, max_tokens=8)
    assert_chat(resp, 8)
    assert resp._hidden_params[HIDDEN_URL_KEY] == chat_url(server_url)
    assert resp._hidden_params["custom_llm_provider"] == name.split("/", 1)[0]
    assert resp._hidden_params["response_cost"] == 0.0
    assert litellm.completion_cost(resp) == 0.0


def test_engine_in_the_name_is_the_url_path(server_url):
    """`vllm` is a known engine the server lacks: its 412 proves the path was /engines/vllm."""
    with pytest.raises(litellm.BadRequestError) as err:
        litellm.completion(model="docker_model_runner/vllm/ai/smollm2", messages=MSGS,
                           api_base=server_url, max_tokens=4)
    assert "HTTP 412" in str(err.value)
    assert chat_url(server_url, "vllm") in str(err.value)


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/engines", "/engines/v1",
                                    "/engines/llama.cpp", "/engines/llama.cpp/v1/"])
def test_api_base_forms_are_not_doubled(server_url, suffix):
    resp = litellm.completion(model="docker_model_runner/ai/smollm2", messages=MSGS,
                              api_base=server_url + suffix, max_tokens=2)
    assert resp.choices[0].message.content is not None
    assert resp._hidden_params[HIDDEN_URL_KEY] == chat_url(server_url)


@pytest.mark.parametrize("env_suffix", ["", "/engines/llama.cpp"])
def test_api_base_from_env(server_url, monkeypatch, env_suffix):
    """The seed sets DOCKER_MODEL_RUNNER_API_BASE; the built-in's form (with engine) works too."""
    monkeypatch.setenv("DOCKER_MODEL_RUNNER_API_BASE", server_url + env_suffix)
    monkeypatch.setenv("DOCKER_MODEL_RUNNER_API_KEY", "dummy-key")
    resp = litellm.completion(model="docker_model_runner/ai/smollm2", messages=MSGS,
                              max_tokens=4)
    assert_chat(resp, 4)
    assert resp._hidden_params[HIDDEN_URL_KEY] == chat_url(server_url)


def test_acompletion(server_url):
    async def go():
        return await litellm.acompletion(model="docker_model_runner/llama.cpp/ai/smollm2",
                                         messages=MSGS, api_base=server_url, max_tokens=8)

    resp = asyncio.run(go())
    assert_chat(resp, 8)
    assert resp._hidden_params[HIDDEN_URL_KEY] == chat_url(server_url)
    assert litellm.completion_cost(resp) == 0.0


def _check_stream(chunks: list, max_tokens: int) -> None:
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert any(c.choices and c.choices[0].finish_reason in ("stop", "length") for c in chunks)
    usage = chunks[-1].usage
    assert usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= max_tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    rebuilt = litellm.stream_chunk_builder(chunks)
    assert rebuilt.choices[0].message.content == text
    assert rebuilt.usage.completion_tokens == usage.completion_tokens


def test_streaming_with_usage(server_url):
    stream = litellm.completion(model="docker_model_runner/ai/smollm2", messages=MSGS,
                                api_base=server_url, max_tokens=8, stream=True,
                                stream_options={"include_usage": True})
    _check_stream(list(stream), 8)


def test_async_streaming_with_usage(server_url):
    async def go():
        stream = await litellm.acompletion(model="dmr/llama.cpp/ai/smollm2", messages=MSGS,
                                           api_base=server_url, max_tokens=8, stream=True,
                                           stream_options={"include_usage": True})
        return [chunk async for chunk in stream]

    _check_stream(asyncio.run(go()), 8)


def test_streaming_without_include_usage_hides_the_usage_chunk(server_url):
    chunks = list(litellm.completion(model="docker_model_runner/ai/smollm2", messages=MSGS,
                                     api_base=server_url, max_tokens=4, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    assert all(c.choices for c in chunks)  # no choices-less usage chunk was added


# ---- tools and params ---------------------------------------------------------------
def test_forced_tool_call(server_url):
    resp = litellm.completion(model="docker_model_runner/ai/smollm2",
                              messages=[{"role": "user", "content": "Weather in Paris?"}],
                              tools=[WEATHER_TOOL], tool_choice=FORCE_WEATHER,
                              api_base=server_url, max_tokens=32)
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and call.id
    assert json.loads(call.function.arguments)["city"] in ("Paris", "London")


def test_forced_tool_call_streaming_and_round_trip(server_url):
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    chunks = list(litellm.completion(model="docker_model_runner/ai/smollm2", messages=messages,
                                     tools=[WEATHER_TOOL], tool_choice=FORCE_WEATHER,
                                     api_base=server_url, max_tokens=32, stream=True,
                                     stream_options={"include_usage": True}))
    assert any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
    rebuilt = litellm.stream_chunk_builder(chunks, messages=messages)
    call = rebuilt.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"] in ("Paris", "London")
    assert rebuilt.choices[0].finish_reason == "tool_calls"
    assert rebuilt.usage.completion_tokens > 0
    # The assistant message (a LiteLLM object) and a tool result go back to the server.
    follow = litellm.completion(
        model="docker_model_runner/ai/smollm2", api_base=server_url, max_tokens=8,
        tools=[WEATHER_TOOL],
        messages=[*messages, rebuilt.choices[0].message,
                  {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"}])
    assert follow.choices[0].message.content or follow.choices[0].message.tool_calls


def test_json_schema_response_format(server_url):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    resp = litellm.completion(
        model="docker_model_runner/ai/smollm2", api_base=server_url, max_tokens=32,
        messages=[{"role": "user", "content": "Reply with JSON."}],
        response_format={"type": "json_schema",
                         "json_schema": {"name": "answer", "schema": schema}})
    assert isinstance(json.loads(resp.choices[0].message.content)["ok"], bool)


def test_seed_page_params_pass_through(server_url):
    """Every parameter in the seed's list is accepted and the ones with visible effects work."""
    resp = litellm.completion(
        model="docker_model_runner/ai/smollm2", api_base=server_url, messages=MSGS,
        temperature=0.7, max_tokens=4, top_p=0.9, frequency_penalty=0.2,
        presence_penalty=0.1, stop=["\n\n"], n=1, seed=7, user="tester",
        logit_bias={"1": -1}, logprobs=True, top_logprobs=2,
        max_retries=0, extra_body={"top_k": 20}, extra_headers={"X-Test": "1"})
    assert_chat(resp, 4)
    content = resp.choices[0].logprobs.content
    assert len(content) == resp.usage.completion_tokens
    assert all(len(t.top_logprobs) == 2 for t in content)


def test_max_completion_tokens_is_honoured(server_url):
    resp = litellm.completion(model="docker_model_runner/ai/smollm2", messages=MSGS,
                              api_base=server_url, max_completion_tokens=3)
    assert resp.usage.completion_tokens <= 3


# ---- text completion ----------------------------------------------------------------
def test_text_completion(server_url):
    resp = litellm.text_completion(model="docker_model_runner/ai/smollm2",
                                   prompt="Once upon a time", api_base=server_url, max_tokens=6)
    assert isinstance(resp, litellm.TextCompletionResponse)
    assert resp.choices[0].text.strip()
    assert resp.choices[0].finish_reason in ("stop", "length")
    # A raw /completions prompt gets no chat template: 4 words are a handful of tokens.
    assert 0 < resp.usage.prompt_tokens < 10
    assert 0 < resp.usage.completion_tokens <= 6


def test_text_completion_async_and_streaming(server_url):
    async def go():
        return await litellm.atext_completion(model="dmr/ai/smollm2", prompt="Once upon a time",
                                              api_base=server_url, max_tokens=6)

    resp = asyncio.run(go())
    assert resp.choices[0].text.strip() and 0 < resp.usage.prompt_tokens < 10
    stream = litellm.text_completion(model="docker_model_runner/ai/smollm2",
                                     prompt="Once upon a time", api_base=server_url,
                                     max_tokens=6, stream=True)
    assert "".join(c.choices[0].text or "" for c in stream).strip()


# ---- embeddings ---------------------------------------------------------------------
def test_embedding(server_url):
    resp = litellm.embedding(model="docker_model_runner/ai/smollm2", input=["hello", "world"],
                             api_base=server_url)
    vectors = [d["embedding"] for d in resp.data]
    assert len(vectors) == 2 and len(vectors[0]) == len(vectors[1]) > 0
    assert all(isinstance(x, float) for x in vectors[0])
    assert vectors[0] != vectors[1]
    assert resp.usage.prompt_tokens > 0
    assert resp._hidden_params[HIDDEN_URL_KEY] == f"{server_url}/engines/llama.cpp/v1/embeddings"
    assert litellm.completion_cost(resp) == 0.0


def test_embedding_openai_params(server_url):
    resp = litellm.embedding(model="docker_model_runner/llama.cpp/ai/smollm2", input="hi",
                             api_base=server_url, dimensions=8, encoding_format="base64")
    raw = base64.b64decode(resp.data[0]["embedding"])
    assert len(raw) == 8 * 4  # eight float32s


def test_aembedding(server_url):
    async def go():
        return await litellm.aembedding(model="dmr/ai/smollm2", input="hello",
                                        api_base=server_url)

    resp = asyncio.run(go())
    assert len(resp.data) == 1 and len(resp.data[0]["embedding"]) > 0


# ---- images -------------------------------------------------------------------------
def test_image_generation_goes_to_the_diffusers_engine(server_url):
    """The test server has no diffusers engine; the error names the URL that was called."""
    with pytest.raises((litellm.BadRequestError, litellm.NotFoundError)) as err:
        litellm.image_generation(model="docker_model_runner/ai/stable-diffusion",
                                 prompt="a cat", api_base=server_url)
    assert f"{server_url}/engines/diffusers/v1/images/generations" in str(err.value)
    assert getattr(err.value, "status_code", 0) in (400, 404, 412)


# ---- errors -------------------------------------------------------------------------
def test_unknown_model_is_not_found(server_url):
    with pytest.raises(litellm.NotFoundError) as err:
        litellm.completion(model="docker_model_runner/ai/no-such-model", messages=MSGS,
                           api_base=server_url, max_tokens=2)
    assert err.value.status_code == 404
    assert "no-such-model" in str(err.value)


def test_unknown_model_is_not_found_async_stream_and_embedding(server_url):
    async def go():
        stream = await litellm.acompletion(model="dmr/ai/no-such-model", messages=MSGS,
                                           api_base=server_url, max_tokens=2, stream=True)
        return [c async for c in stream]

    with pytest.raises(litellm.NotFoundError):
        asyncio.run(go())
    with pytest.raises(litellm.NotFoundError):
        litellm.embedding(model="docker_model_runner/ai/no-such-model", input="x",
                          api_base=server_url)


def test_bad_request(server_url):
    with pytest.raises(litellm.BadRequestError) as err:
        litellm.completion(model="docker_model_runner/ai/smollm2", messages=MSGS,
                           api_base=server_url, max_tokens=2, temperature="hot")
    assert err.value.status_code == 400
    assert "temperature" in str(err.value)


def test_connection_refused_names_the_url():
    """A server that cannot be reached is a 503 ServiceUnavailableError (not LiteLLM's
    APIConnectionError, which its Router never cools a deployment down for)."""
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(litellm.ServiceUnavailableError) as err:
        litellm.completion(model="docker_model_runner/ai/smollm2", messages=MSGS, api_base=url,
                           max_tokens=2)
    assert f"{url}/engines/llama.cpp/v1/chat/completions" in str(err.value)
    # A sync stream sends its request before returning, so the call itself raises.
    assert err.value.status_code == 503
    with pytest.raises(litellm.ServiceUnavailableError, match="Cannot reach Docker Model Runner"):
        litellm.completion(model="docker_model_runner/ai/smollm2", messages=MSGS,
                           api_base=url, stream=True)
    with pytest.raises(litellm.ServiceUnavailableError,
                       match=f"{url}/engines/llama.cpp/v1/embed"):
        litellm.embedding(model="docker_model_runner/ai/smollm2", input="x", api_base=url)


def test_connection_refused_in_an_async_stream():
    """An async stream sends its request before acompletion() returns (LiteLLM calls the
    provider in an executor thread), so a dead server raises from the call itself, where
    LiteLLM's Router retries another deployment, rather than on the first chunk, where it
    would only try a fallback model group."""
    url = f"http://127.0.0.1:{free_port()}"

    async def go():
        stream = await litellm.acompletion(model="docker_model_runner/ai/smollm2",
                                           messages=MSGS, api_base=url, stream=True)
        return stream

    with pytest.raises(litellm.ServiceUnavailableError) as err:
        asyncio.run(go())
    assert f"{url}/engines/llama.cpp/v1/chat/completions" in str(err.value)
