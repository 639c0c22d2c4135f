"""What LiteLLM hands the handler -> the HTTP request sent to DMR (pure, no server)."""

from __future__ import annotations

import litellm

from litellm_dmr.naming import ENV_API_BASE, ENV_API_KEY
from litellm_dmr.payload import (
    caller_api_base,
    chat_request,
    embedding_request,
    image_request,
    jsonable,
    server_params,
)

MSGS = [{"role": "user", "content": "hi"}]


def test_internal_params_dropped_and_extra_body_merged():
    params = {"temperature": 0.2, "max_tokens": 5, "max_retries": 0, "top_k": 40,
              "seed": 1, "tools": [{"type": "function", "function": {"name": "f"}}],
              "extra_body": {"min_p": 0.1, "temperature": 0.3}, "stream": True,
              "stream_options": {"include_usage": True}, "logprobs": None}
    body = server_params(params)
    assert body == {"temperature": 0.3, "max_tokens": 5, "top_k": 40, "seed": 1,
                    "tools": [{"type": "function", "function": {"name": "f"}}], "min_p": 0.1}


def test_chat_request_shape():
    req = chat_request("llama.cpp/ai/smollm2", MSGS, {"max_tokens": 3, "max_retries": 2},
                       {"custom_llm_provider": "dmr"}, "http://h:1", None,
                       {"X-Trace": "abc"}, stream=False, env={})
    assert req.url == "http://h:1/engines/llama.cpp/v1/chat/completions"
    assert req.body == {"model": "ai/smollm2", "messages": MSGS, "max_tokens": 3}
    assert req.headers["Authorization"] == "Bearer dummy-key"
    assert req.headers["X-Trace"] == "abc"
    assert req.provider == "dmr" and req.model == "llama.cpp/ai/smollm2"
    assert not req.stream and not req.text_completion


def test_stream_always_asks_for_usage():
    req = chat_request("ai/smollm2", MSGS, {"stream_options": {"include_usage": False}},
                       {}, "http://h:1", "k", None, stream=True, env={})
    assert req.body["stream"] is True
    assert req.body["stream_options"] == {"include_usage": True}
    assert req.headers["Authorization"] == "Bearer k"


def test_text_completion_goes_to_completions_with_the_prompt():
    req = chat_request("ai/smollm2", [{"role": "user", "content": "Once upon"}],
                       {"max_tokens": 4, "echo": False}, {"text_completion": True},
                       "http://h:1/engines/v1", None, None, stream=False, env={})
    assert req.url == "http://h:1/engines/llama.cpp/v1/completions"
    assert req.body == {"model": "ai/smollm2", "prompt": "Once upon", "max_tokens": 4,
                        "echo": False}
    assert req.text_completion


def test_text_completion_with_several_prompts():
    msgs = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    req = chat_request("ai/smollm2", msgs, {}, {"text_completion": True}, "http://h:1",
                       None, None, stream=False, env={})
    assert req.body["prompt"] == ["a", "b"]


def test_key_from_env():
    req = chat_request("ai/smollm2", MSGS, {}, {}, None, None, None, stream=False,
                       env={ENV_API_KEY: "from-env", ENV_API_BASE: "http://e:2"})
    assert req.headers["Authorization"] == "Bearer from-env"
    assert req.url == "http://e:2/engines/llama.cpp/v1/chat/completions"


def test_pydantic_messages_are_serialised():
    tool_call = litellm.ChatCompletionMessageToolCall(
        id="call_1", type="function",
        function=litellm.Function(name="get_weather", arguments='{"city": "Paris"}'))
    assistant = litellm.Message(role="assistant", content=None, tool_calls=[tool_call])
    out = jsonable([assistant, {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}])
    assert out[0]["role"] == "assistant"
    assert out[0]["tool_calls"][0]["function"] == {"name": "get_weather",
                                                    "arguments": '{"city": "Paris"}'}
    assert out[1] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}


def test_builtin_default_base_is_ignored_unless_the_env_set_it():
    injected = "http://localhost:22088/engines/llama.cpp"
    assert caller_api_base(injected, env={}) is None
    assert caller_api_base(injected, env={ENV_API_BASE: injected}) == injected
    assert caller_api_base("http://h:1", env={}) == "http://h:1"
    assert caller_api_base(None, env={}) is None


def test_embedding_request():
    req = embedding_request("ai/embeddinggemma", ["a", "b"],
                            {"encoding_format": "base64", "dimensions": 8},
                            {"custom_llm_provider": "docker_model_runner"},
                            "http://h:1/engines/llama.cpp/v1", None, env={})
    assert req.url == "http://h:1/engines/llama.cpp/v1/embeddings"
    assert req.body == {"model": "ai/embeddinggemma", "input": ["a", "b"],
                        "encoding_format": "base64", "dimensions": 8}


def test_image_request():
    req = image_request("ai/stable-diffusion", "a cat", {"size": "256x256", "n": 1},
                        "http://h:1", None, env={})
    assert req.url == "http://h:1/engines/diffusers/v1/images/generations"
    assert req.body == {"model": "ai/stable-diffusion", "prompt": "a cat",
                        "size": "256x256", "n": 1}
