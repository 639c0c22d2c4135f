"""Bad input gets a 4xx in OpenAI's error shape with a message that says what to fix."""

import openai
import pytest
import requests

CHAT = "/engines/v1/chat/completions"
OK = {"model": "ai/smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def post(server_url, path, **kwargs):
    return requests.post(server_url + path, **kwargs)


def assert_openai_error(r, status, *words):
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    for word in words:
        assert word in error["message"]
    return error


@pytest.mark.parametrize("path", [CHAT, "/v1/completions", "/v1/embeddings"])
def test_malformed_json(server_url, path):
    assert_openai_error(post(server_url, path, data=b"{not json"), 400, "invalid JSON")


@pytest.mark.parametrize("path", [CHAT, "/v1/completions", "/v1/embeddings"])
def test_non_object_and_empty_bodies(server_url, path):
    assert_openai_error(post(server_url, path, json=[1, 2]), 400, "JSON object")
    assert_openai_error(post(server_url, path, data=b""), 400, "empty")


@pytest.mark.parametrize("body,param", [
    ({"messages": OK["messages"]}, None),
    ({"model": "ai/smollm2"}, None),
    ({**OK, "messages": []}, "messages"),
    ({**OK, "messages": "hi"}, "messages"),
    ({**OK, "max_tokens": "ten"}, "max_tokens"),
    ({**OK, "max_tokens": 0}, "max_tokens"),
    ({**OK, "temperature": -1}, "temperature"),
    ({**OK, "n": 100}, "n"),
    ({**OK, "top_logprobs": 2}, "top_logprobs"),
    ({**OK, "tool_choice": "required"}, "tool_choice"),
    ({**OK, "response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "bogus"}}}}, "response_format"),
])
def test_invalid_chat_fields(server_url, body, param):
    error = assert_openai_error(post(server_url, CHAT, json=body), 400)
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_unknown_model_is_404_through_the_sdk(openai_client):
    with pytest.raises(openai.NotFoundError) as info:
        openai_client.chat.completions.create(model="ai/no-such-model", messages=OK["messages"])
    assert "no-such-model" in info.value.body["message"]


def test_unknown_and_missing_engines(server_url):
    r = post(server_url, "/engines/vllm/v1/chat/completions", json=OK)
    assert_openai_error(r, 412, 'backend "vllm" is not installed')
    r = post(server_url, "/engines/bogus/v1/chat/completions", json=OK)
    assert_openai_error(r, 404, "backend not found")


def test_body_over_10_mib_is_413(server_url):
    r = post(server_url, CHAT, data=b"x" * (10 * 1024 * 1024 + 10),
             headers={"Content-Type": "application/json"})
    assert_openai_error(r, 413, "too large")


def test_prompt_longer_than_context(server_url):
    long = {**OK, "messages": [{"role": "user", "content": "hello " * 5000}]}
    error = assert_openai_error(post(server_url, CHAT, json=long), 400, "context size")
    assert error["type"] == "exceed_context_size_error"
    assert error["n_ctx"] == 4096 and error["n_prompt_tokens"] > 4096


def test_token_ids_out_of_vocabulary(server_url):
    r = post(server_url, "/v1/completions", json={"model": "ai/smollm2", "prompt": [10**9]})
    assert_openai_error(r, 400, "out of range")


def test_wrong_method_is_not_a_500(server_url):
    assert requests.get(server_url + CHAT).status_code == 405


def test_image_generation_needs_the_diffusers_engine(server_url):
    body = {"model": "ai/some-diffusion-model", "prompt": "a cat"}
    for path in ("/engines/diffusers/v1/images/generations", "/v1/images/generations"):
        assert_openai_error(post(server_url, path, json=body), 412, 'backend "diffusers"')
    r = post(server_url, "/engines/llama.cpp/v1/images/generations", json=body)
    assert_openai_error(r, 400, "does not generate images")
