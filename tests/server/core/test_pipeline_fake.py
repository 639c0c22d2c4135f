"""The pipeline's edge cases, in process, on the fake engine (server/engines/fake.py).

The real model cannot be made to split a stop sequence across tokens or to answer each seed
differently on demand; the fake engine answers what the test scripts, through the real app,
routes, codecs and pipeline (`app.test_client()`), so these run in milliseconds.
"""

from __future__ import annotations

import json

from server.core import reasoning
from tests.server.core.conftest import FAKE_MODEL as MODEL

USER = [{"role": "user", "content": "hi"}]
WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def chat(client, **body):
    response = client.post("/v1/chat/completions", json={"model": MODEL, "messages": USER,
                                                         **body})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def sse_events(response) -> list[dict]:
    lines = response.get_data(as_text=True).splitlines()
    return [json.loads(line[6:]) for line in lines
            if line.startswith("data: ") and line != "data: [DONE]"]


def test_stop_sequence_split_across_tokens(make_app):
    client, _ = make_app(["Hel", "lo EN", "D never", " seen"])
    body = chat(client, stop=["END"])
    choice = body["choices"][0]
    assert choice["message"]["content"] == "Hello "
    assert choice["finish_reason"] == "stop"


def test_stop_sequence_split_across_tokens_streamed(make_app):
    client, _ = make_app(["a", "bS", "T", "OPc", "d"])
    response = client.post("/v1/chat/completions", json={
        "model": MODEL, "messages": USER, "stop": ["STOP"], "stream": True})
    chunks = sse_events(response)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "ab"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"


def test_utf8_character_split_across_tokens(make_app):
    client, _ = make_app([b"caf", b"\xc3", b"\xa9", b"!"])
    assert chat(client)["choices"][0]["message"]["content"] == "café!"


def test_forced_tool_call(make_app):
    def script(prompt, job):
        assert prompt.endswith('"arguments": ')  # the call's start is prefilled
        assert job.json_schema["required"] == ["city"]
        return ['{"city": ', '"Paris"}']

    client, _ = make_app(script)
    body = chat(client, tools=WEATHER,
                tool_choice={"type": "function", "function": {"name": "get_weather"}})
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}


def test_forced_tool_call_closed_at_the_budget(make_app):
    client, _ = make_app(['{"city": "Pa', 'ris and on', ' and on and on"}'])
    body = chat(client, tools=WEATHER, tool_choice="required", max_tokens=20)
    (call,) = body["choices"][0]["message"]["tool_calls"]
    assert set(json.loads(call["function"]["arguments"])) == {"city"}  # valid JSON, closed


def test_n_choices_get_consecutive_seeds(make_app):
    client, engine = make_app(lambda prompt, job: [f"seed {job.sampling.seed}"])
    body = chat(client, n=3, seed=7)
    assert [c["message"]["content"] for c in body["choices"]] == ["seed 7", "seed 8", "seed 9"]
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    prompts = {tuple(job.prompt) for job in engine.models[0].jobs}
    assert len(prompts) == 1  # one prompt for every choice


def test_completion_echo_prefixes_each_choice(make_app):
    client, _ = make_app([" there", "!"])
    response = client.post("/v1/completions", json={
        "model": MODEL, "prompt": "Hello", "echo": True, "n": 2, "max_tokens": 5})
    assert response.status_code == 200, response.get_data(as_text=True)
    texts = [c["text"] for c in response.get_json()["choices"]]
    assert texts == ["Hello there!", "Hello there!"]


def test_max_tokens_cuts_the_script(make_app):
    client, _ = make_app(list("abcdefgh"))
    choice = chat(client, max_tokens=3)["choices"][0]
    assert choice["message"]["content"] == "abc"
    assert choice["finish_reason"] == "length"


def test_prompt_longer_than_the_context_is_a_400(make_app):
    client, _ = make_app(["x"], n_ctx=64)
    response = client.post("/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": "y" * 200}]})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert "context" in error["message"]


def test_answer_stops_where_the_context_ends(make_app):
    client, engine = make_app(list("z" * 100), n_ctx=64)
    body = chat(client)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length"
    assert body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"] == 64
    assert engine.models[0].jobs[0].max_new_tokens == 64 - body["usage"]["prompt_tokens"]


def test_thinking_first_then_the_answer(make_app):
    def script(prompt, job):
        if prompt.endswith(reasoning.LEAD_IN):  # phase 1: thinking, ended by its stop
            return [" It is", " a greeting.", "</think>", "ignored"]
        assert " It is a greeting." in prompt  # phase 2 sees the thinking
        return ["Hi", " back"]

    client, _ = make_app(script)
    response = client.post("/v1/messages", json={
        "model": MODEL, "max_tokens": 200, "messages": USER,
        "thinking": {"type": "enabled", "budget_tokens": 50}})
    assert response.status_code == 200, response.get_data(as_text=True)
    blocks = response.get_json()["content"]
    assert [b["type"] for b in blocks] == ["thinking", "text"]
    assert blocks[0]["thinking"].endswith("It is a greeting.")
    assert blocks[1]["text"] == "Hi back"


def test_thinking_budget_bounds_the_first_phase(make_app):
    def script(prompt, job):
        if prompt.endswith(reasoning.LEAD_IN):
            return list("m" * 100)
        return ["done"]

    client, engine = make_app(script)
    response = client.post("/v1/messages", json={
        "model": MODEL, "max_tokens": 200, "messages": USER,
        "thinking": {"type": "enabled", "budget_tokens": 20}})
    assert response.status_code == 200, response.get_data(as_text=True)
    think_job = engine.models[0].jobs[0]
    assert think_job.max_new_tokens <= 20
    assert response.get_json()["content"][-1]["text"] == "done"


def test_logprobs_come_from_the_tokens(make_app):
    client, _ = make_app(["a", "b"])
    choice = chat(client, logprobs=True, top_logprobs=1)["choices"][0]
    assert [t["token"] for t in choice["logprobs"]["content"]] == ["a", "b"]


def test_ollama_chat_on_the_fake_engine(make_app):
    client, _ = make_app(["Hel", "lo"])
    response = client.post("/api/chat", json={"model": MODEL, "messages": USER,
                                              "stream": False})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["message"]["content"] == "Hello"
    assert body["done"] is True


def messages(client, **body):
    response = client.post("/v1/messages", json={"model": MODEL, "max_tokens": 50,
                                                  "messages": USER, **body})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_anthropic_stop_reasons(make_app):
    client, _ = make_app(["Hi", " th", "ere", "!"])
    cut = messages(client, stop_sequences=["the"])
    assert cut["stop_reason"] == "stop_sequence" and cut["stop_sequence"] == "the"
    assert cut["content"][0]["text"] == "Hi "
    assert messages(client)["stop_reason"] == "end_turn"
    assert messages(client, max_tokens=2)["stop_reason"] == "max_tokens"


def test_anthropic_context_window_exceeded_before_max_tokens(make_app):
    client, _ = make_app(list("w" * 100), n_ctx=48)
    body = messages(client, max_tokens=200)
    assert body["stop_reason"] == "model_context_window_exceeded"


def test_a_timeout_ends_like_max_tokens(make_app):
    client, _ = make_app(["slow"], end="timeout")
    body = messages(client, max_tokens=200)
    assert body["stop_reason"] == "max_tokens"  # not "end_turn", though few tokens came
    choice = chat(client)["choices"][0]
    assert choice["finish_reason"] == "length"


def test_streamed_choices_of_n_keep_their_index(make_app):
    client, _ = make_app(lambda prompt, job: ["seed", f" {job.sampling.seed}"])
    response = client.post("/v1/chat/completions", json={
        "model": MODEL, "messages": USER, "n": 2, "seed": 1, "stream": True})
    texts: dict[int, str] = {}
    for chunk in sse_events(response):
        for choice in chunk["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + (
                choice["delta"].get("content") or "")
    assert texts == {0: "seed 1", 1: "seed 2"}


def test_json_schema_output_is_closed_at_the_budget(make_app):
    schema = {"type": "object", "properties": {"items": {"type": "array",
                                                         "items": {"type": "string"}}},
              "required": ["items"]}
    script = list('{"items": ["aaaa", "bbbb", "cccc", "dddd"]}')  # 43 tokens
    client, _ = make_app(script)
    response_format = {"type": "json_schema", "json_schema": {"name": "list", "schema": schema}}
    body = chat(client, max_tokens=20, response_format=response_format)
    content = body["choices"][0]["message"]["content"]
    assert content != "".join(script)  # cut short of the script's own ending...
    parsed = json.loads(content)  # ...and closed: still valid
    assert isinstance(parsed["items"], list) and parsed["items"][0].startswith("a")
    assert body["usage"]["completion_tokens"] <= 20
    too_small = client.post("/v1/chat/completions", json={
        "model": MODEL, "messages": USER, "max_tokens": 6, "response_format": response_format})
    assert too_small.status_code == 400  # not even {"items":[]} fits in 6 tokens
    assert too_small.get_json()["error"]["param"] == "max_tokens"


def test_a_client_that_goes_cancels_the_generation_and_frees_the_model(make_app):
    client, engine = make_app(list("x" * 400))
    response = client.post("/v1/chat/completions", buffered=False, json={
        "model": MODEL, "messages": USER, "stream": True, "max_tokens": 300})
    chunks = iter(response.response)
    assert next(chunks)  # the stream has started
    response.close()  # the client disconnects
    (stream,) = engine.models[0].streams
    assert stream.cancelled
    runtime = client.application.extensions["dmr"].runtime
    (entry,) = runtime.loaded()
    assert entry.in_use == 0
