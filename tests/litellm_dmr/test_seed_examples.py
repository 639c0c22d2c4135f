"""The SDK examples from LiteLLM's Docker Model Runner page, run against the test server.

Adapted only where the page has to be: the server URL is the test server's, the model is the
bundled `ai/smollm2`, and `max_tokens` is capped to keep the suite fast. The proxy examples
(config, OpenAI SDK, cURL, `litellm_proxy/`) are in test_proxy.py.
"""

from __future__ import annotations

import litellm
import pytest
from litellm import completion

import litellm_dmr  # noqa: F401

MESSAGES = [{"content": "Hello, how are you?", "role": "user"}]


@pytest.fixture
def env_base(server_url, monkeypatch):
    monkeypatch.setenv("DOCKER_MODEL_RUNNER_API_BASE", server_url)


def test_non_streaming(env_base, capsys):
    response = completion(model="docker_model_runner/ai/smollm2", messages=MESSAGES,
                          max_tokens=32)
    print(response)
    assert "ModelResponse" in capsys.readouterr().out
    assert response.choices[0].message.content.strip()


def test_streaming(env_base, capsys):
    response = completion(model="docker_model_runner/ai/smollm2", messages=MESSAGES,
                          stream=True, max_tokens=32)
    chunks = []
    for chunk in response:
        print(chunk)
        chunks.append(chunk)
    assert "ModelResponseStream" in capsys.readouterr().out
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip()


def test_custom_api_base(server_url, monkeypatch):
    monkeypatch.delenv("DOCKER_MODEL_RUNNER_API_BASE", raising=False)
    response = completion(model="docker_model_runner/ai/smollm2", messages=MESSAGES,
                          api_base=server_url, max_tokens=32)
    assert response.choices[0].message.content.strip()


def test_engine_name(env_base):
    # "This will use /engines/llama.cpp/v1/chat/completions"
    response = completion(model="docker_model_runner/llama.cpp/ai/smollm2", messages=MESSAGES,
                          max_tokens=32)
    assert response.choices[0].message.content.strip()
    assert response._hidden_params["dmr_url"].endswith("/engines/llama.cpp/v1/chat/completions")


def test_parameters(env_base):
    response = completion(
        model="docker_model_runner/ai/smollm2",
        messages=[{"content": "Explain quantum computing", "role": "user"}],
        temperature=0.7,
        max_tokens=32,
        top_p=0.9,
        frequency_penalty=0.2,
        presence_penalty=0.1,
    )
    assert response.choices[0].message.content.strip()
    assert 0 < response.usage.completion_tokens <= 32
    assert litellm.completion_cost(response) == 0.0
