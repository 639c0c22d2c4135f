"""Chat completions through the official openai SDK against the real server and model."""

from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import requests

HELLO = [{"role": "user", "content": "Say hello."}]


def greedy(client, messages=HELLO, **kwargs):
    return client.chat.completions.create(model="ai/smollm2", messages=messages,
                                          temperature=0, **kwargs)


@pytest.mark.parametrize("prefix", ["/engines/v1", "/engines/llama.cpp/v1", "/v1"])
def test_every_prefix_answers_dmr_ci_check(server_url, prefix):
    # DMR's own CI check: "Say hello." with top_k 1 and temperature 0 mentions hello.
    client = openai.OpenAI(base_url=server_url + prefix, api_key="x", max_retries=0)
    reply = greedy(client, max_tokens=24, extra_body={"top_k": 1})
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert "hello" in choice.message.content.lower()
    assert reply.usage.prompt_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


@pytest.mark.parametrize("name", ["smollm2", "ai/smollm2", "ai/smollm2:latest",
                                  "docker.io/ai/smollm2:latest"])
def test_model_name_forms(openai_client, name):
    reply = openai_client.chat.completions.create(model=name, messages=HELLO, max_tokens=2)
    assert reply.model == name and reply.choices[0].finish_reason == "length"


def test_max_tokens_and_max_completion_tokens_cut_at_the_limit(openai_client):
    for kwargs in ({"max_tokens": 5}, {"max_completion_tokens": 5}):
        reply = greedy(openai_client, messages=[{"role": "user", "content": "Tell a long story."}],
                       **kwargs)
        assert reply.choices[0].finish_reason == "length"
        assert reply.usage.completion_tokens == 5


def test_stream_shape(openai_client):
    stream = greedy(openai_client, max_tokens=8, stream=True,
                    stream_options={"include_usage": True})
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:] if c.choices)
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(final) == 1 and final[0].choices[0].finish_reason == "length"
    assert not final[0].choices[0].delta.content
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage.completion_tokens == 8
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_ends_with_done_marker(server_url):
    with requests.post(server_url + "/engines/v1/chat/completions", stream=True, json={
            "model": "ai/smollm2", "messages": HELLO, "max_tokens": 3, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == b"data: [DONE]"
    assert all(line.startswith(b"data: ") for line in lines)


def test_stream_and_non_stream_agree_with_seed(openai_client):
    messages = [{"role": "user", "content": "Name three fruits."}]
    kwargs = dict(model="ai/smollm2", messages=messages, max_tokens=20, seed=42, temperature=0)
    a = openai_client.chat.completions.create(**kwargs).choices[0].message.content
    b = openai_client.chat.completions.create(**kwargs).choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in
                       openai_client.chat.completions.create(stream=True, **kwargs) if c.choices)
    assert a == b == streamed


def test_same_seed_same_sample_at_high_temperature(openai_client):
    kwargs = dict(model="ai/smollm2", messages=[{"role": "user", "content": "Write a word."}],
                  max_tokens=12, seed=7, temperature=1.3)
    texts = {openai_client.chat.completions.create(**kwargs).choices[0].message.content
             for _ in range(2)}
    assert len(texts) == 1


def test_stop_sequence_is_excluded_and_reported(openai_client):
    messages = [{"role": "user", "content": "Describe the sun in two sentences."}]
    full = greedy(openai_client, messages=messages, max_tokens=30).choices[0].message.content
    words = full.split()
    assert len(words) > 3
    stop = " " + words[2]
    cut = greedy(openai_client, messages=messages, max_tokens=30, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == full[: full.index(stop)]


def test_sampling_parameters_are_accepted(openai_client):
    reply = openai_client.chat.completions.create(
        model="ai/smollm2", messages=HELLO, max_tokens=4, temperature=0.7, top_p=0.9,
        presence_penalty=0.5, frequency_penalty=0.5,
        extra_body={"top_k": 20, "min_p": 0.05, "repeat_penalty": 1.1})
    assert reply.usage.completion_tokens >= 1


def test_logit_bias_forces_a_token(openai_client):
    reply = greedy(openai_client, max_tokens=4, logit_bias={"1001": 100}, logprobs=True)
    tokens = [t.token for t in reply.choices[0].logprobs.content]
    assert len(tokens) == 4 and len(set(tokens)) == 1
    assert reply.choices[0].message.content == tokens[0] * 4


def test_logprobs_and_top_logprobs(openai_client):
    # Without the model's default repeat penalty, which moves the choice off the raw argmax.
    reply = greedy(openai_client, max_tokens=6, logprobs=True, top_logprobs=3,
                   extra_body={"repeat_penalty": 1.0})
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens == 6
    assert "".join(t.token for t in content) == reply.choices[0].message.content
    for item in content:
        assert item.logprob <= 0 and item.bytes and len(item.top_logprobs) == 3
        # greedy: the chosen token is the most likely one
        assert item.top_logprobs[0].token == item.token


def test_n_choices(openai_client):
    reply = openai_client.chat.completions.create(model="ai/smollm2", messages=HELLO,
                                                  max_tokens=5, n=3, seed=1, temperature=1.0)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert all(c.message.content for c in reply.choices)
    assert reply.usage.completion_tokens <= 15


def test_concurrent_requests_do_not_mix(openai_client):
    # Each request is forced onto its own token: any cross-talk between sequences in the
    # batch would show up as a foreign token.
    token_ids = [1001, 1500, 2002, 2503, 3004, 3505]

    def run(token_id):
        reply = greedy(openai_client, max_tokens=12, logit_bias={str(token_id): 100},
                       logprobs=True)
        return {t.token for t in reply.choices[0].logprobs.content}

    with ThreadPoolExecutor(len(token_ids)) as pool:
        seen = list(pool.map(run, token_ids))
    assert all(len(tokens) == 1 for tokens in seen)
    assert len({next(iter(tokens)) for tokens in seen}) == len(token_ids)


def test_reasoning_content_is_split_out(openai_client):
    # A prefilled "<think>" makes the answer start inside a reasoning block.
    reply = greedy(openai_client, max_tokens=10, messages=[
        {"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "<think>"}])
    message = reply.choices[0].message
    assert message.model_extra.get("reasoning_content")
    assert "<think>" not in (message.content or "")
