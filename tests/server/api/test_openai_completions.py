"""Legacy /v1/completions through the openai SDK."""

import requests


def test_text_completion(openai_client):
    reply = openai_client.completions.create(model="ai/smollm2", prompt="The capital of France is",
                                             max_tokens=6, temperature=0)
    choice = reply.choices[0]
    assert reply.object == "text_completion" and choice.text
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens <= 6 and reply.usage.prompt_tokens > 0


def test_default_max_tokens_is_16(openai_client):
    reply = openai_client.completions.create(model="ai/smollm2", prompt="Once upon a time",
                                             temperature=0, logit_bias={"28": 100})
    assert reply.usage.completion_tokens == 16


def test_batch_of_prompts_and_n(openai_client):
    reply = openai_client.completions.create(model="ai/smollm2", prompt=["One", "Two"],
                                             n=2, max_tokens=3, temperature=0.8, seed=3)
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]


def test_token_array_prompt_and_echo(openai_client):
    text = openai_client.completions.create(model="ai/smollm2", prompt="Hello there",
                                            max_tokens=3, temperature=0, echo=True)
    assert text.choices[0].text.startswith("Hello there")
    tokens = openai_client.completions.create(model="ai/smollm2", prompt=[19556, 665],
                                              max_tokens=3, temperature=0, echo=True)
    assert tokens.choices[0].text and tokens.usage.prompt_tokens == 2


def test_logprobs(openai_client):
    reply = openai_client.completions.create(model="ai/smollm2", prompt="1, 2, 3,", max_tokens=4,
                                             temperature=0, logprobs=2)
    lp = reply.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 4
    assert "".join(lp.tokens) == reply.choices[0].text
    assert all(len(top) <= 2 for top in lp.top_logprobs)


def test_text_offsets_index_the_returned_text(openai_client):
    """text_offset counts the echoed prompt, and keeps counting across stream chunks."""
    reply = openai_client.completions.create(model="ai/smollm2", prompt="1, 2, 3,", max_tokens=3,
                                             temperature=0, logprobs=1, echo=True)
    text, lp = reply.choices[0].text, reply.choices[0].logprobs
    assert lp.text_offset[0] == len("1, 2, 3,")
    assert all(text.startswith(t, o) for t, o in zip(lp.tokens, lp.text_offset, strict=True))
    chunks = list(openai_client.completions.create(
        model="ai/smollm2", prompt="1, 2, 3,", max_tokens=3, temperature=0, logprobs=1,
        stream=True))
    offsets = [o for c in chunks if c.choices and c.choices[0].logprobs
               for o in c.choices[0].logprobs.text_offset]
    assert offsets == [o - len("1, 2, 3,") for o in lp.text_offset]  # same tokens, no echo


def test_stream(openai_client):
    chunks = list(openai_client.completions.create(
        model="ai/smollm2", prompt="Count: 1, 2,", max_tokens=5, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    assert len({c.id for c in chunks}) == 1
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 5


def test_suffix_is_refused_clearly(server_url):
    r = requests.post(server_url + "/v1/completions",
                      json={"model": "ai/smollm2", "prompt": "def f(", "suffix": "return x"})
    assert r.status_code == 400 and "suffix" in r.json()["error"]["message"]
