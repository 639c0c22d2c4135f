"""Ollama translation without a server: request bodies to core types, core events to the
objects Ollama streams."""

import json

import pytest

from server.api.ollama import ndjson
from server.api.ollama_codec import (
    Encoder,
    chat_request,
    generate_request,
    keep_alive,
    response_schema,
    sampling,
)
from server.api.ollama_models import capabilities, model_info
from server.core.errors import EngineFailure, InvalidRequest, NotSupported
from server.core.types import (
    ChatRequest,
    ChoiceDone,
    CompletionRequest,
    Done,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    Usage,
)


def test_sampling_defaults_are_ollamas():
    s = sampling(None)
    assert (s.temperature, s.top_k, s.top_p, s.repeat_last_n, s.repeat_penalty) == (
        0.8, 40, 0.9, 64, 1.0)
    assert s.max_tokens is None and s.seed is None and s.stop == [] and s.context_limit is None


def test_sampling_maps_options():
    s = sampling({"num_predict": 12, "temperature": 0, "top_k": 5.0, "top_p": 0.5, "min_p": 0.1,
                  "repeat_penalty": 1.2, "repeat_last_n": 32, "presence_penalty": 0.3,
                  "frequency_penalty": 0.4, "seed": 7, "stop": ["\n", ""], "num_ctx": 512,
                  "num_thread": 64, "mirostat": 2})
    assert s.max_tokens == 12 and s.temperature == 0 and s.top_k == 5 and s.top_p == 0.5
    assert s.min_p == 0.1 and s.repeat_penalty == 1.2 and s.repeat_last_n == 32
    assert s.presence_penalty == 0.3 and s.frequency_penalty == 0.4 and s.seed == 7
    assert s.stop == ["\n"] and s.context_limit == 512


@pytest.mark.parametrize("options, field, value", [
    ({"num_predict": -1}, "max_tokens", None),
    ({"num_predict": -2}, "max_tokens", None),
    ({"seed": -1}, "seed", None),
    ({"stop": "END"}, "stop", ["END"]),
    ({"num_ctx": 0}, "context_limit", None),
    ({"repeat_last_n": -1, "num_ctx": 256}, "repeat_last_n", 256),
])
def test_sampling_special_values(options, field, value):
    assert getattr(sampling(options), field) == value


@pytest.mark.parametrize("value, seconds", [
    (None, None), (0, 0.0), ("0", 0.0), (30, 30.0), ("5m", 300.0), ("1h30m", 5400.0),
    (-1, -1.0), ("-5m", -1.0),
])
def test_keep_alive(value, seconds):
    assert keep_alive(value) == seconds


def test_keep_alive_rejects_nonsense():
    with pytest.raises(InvalidRequest, match="keep_alive"):
        keep_alive("soon")


def test_format():
    assert response_schema(None) is None and response_schema("") is None
    assert response_schema("json") == {}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert response_schema(schema) is schema
    with pytest.raises(InvalidRequest, match="format"):
        response_schema({"type": "no-such-type"})


def test_chat_request_translates_messages_tools_think():
    body = {
        "model": "ai/smollm2",
        "messages": [
            {"role": "System", "content": "Be brief."},
            {"role": "user", "content": "Weather?", "images": ["aGVsbG8="]},
            {"role": "assistant", "content": "", "thinking": "hmm",
             "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "content": "sunny", "tool_name": "weather"},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}}}}],
        "format": "json", "think": "high", "keep_alive": "1m", "logprobs": True,
        "top_logprobs": 3,
    }
    req = chat_request(body)
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "tool"]
    assert req.messages[1].images[0].data == b"hello"
    call = req.messages[2].tool_calls[0]
    assert call.name == "weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert req.messages[2].reasoning == "hmm" and req.messages[3].name == "weather"
    assert req.tools[0].name == "weather" and req.response_schema == {}
    assert req.thinking.enabled is True and req.thinking.budget_tokens == 8192
    assert req.keep_alive == 60.0
    assert req.sampling.logprobs == 3


def test_chat_request_rejects_unknown_role():
    with pytest.raises(InvalidRequest, match="role"):
        chat_request({"model": "m", "messages": [{"role": "wizard", "content": "x"}]})


def test_generate_request_chat_turn_and_raw():
    req = generate_request({"model": "m", "prompt": "Hi", "system": "Be a pirate.",
                            "think": False})
    assert isinstance(req, ChatRequest)
    assert [(m.role, m.content) for m in req.messages] == [("system", "Be a pirate."),
                                                           ("user", "Hi")]
    assert req.thinking.enabled is False
    on = generate_request({"model": "m", "prompt": "Hi", "think": True}).thinking
    assert on.enabled is True and on.budget_tokens is None
    low = generate_request({"model": "m", "prompt": "Hi", "think": "low"}).thinking
    assert low.enabled is True and low.budget_tokens == 512
    raw = generate_request({"model": "m", "prompt": "<s>Hi", "raw": True, "format": "json"})
    assert isinstance(raw, CompletionRequest) and raw.prompt == "<s>Hi"
    assert raw.response_schema == {}


@pytest.mark.parametrize("extra, error", [
    ({"suffix": "end"}, NotSupported),
    ({"template": "{{ .Prompt }}"}, InvalidRequest),
    ({"context": [1, 2, 3]}, InvalidRequest),
    ({"raw": True, "system": "x"}, InvalidRequest),
    ({"raw": True, "images": ["aGVsbG8="]}, NotSupported),
    ({"images": ["not base64!"]}, InvalidRequest),
])
def test_generate_request_rejections(extra, error):
    with pytest.raises(error):
        generate_request({"model": "m", "prompt": "Hi", **extra})


USAGE = Usage(prompt_tokens=10, completion_tokens=3, load_seconds=0.5, prompt_seconds=0.25,
              generation_seconds=0.125)


def test_encoder_chat_stream_and_collect():
    events = [ThinkingDelta("plan"), TextDelta("Hel"), TextDelta("lo"),
              ChoiceDone(0, "length"), Done(USAGE)]
    chunks = list(Encoder("chat", "m", 0.0).chunks(events))
    assert [c["done"] for c in chunks] == [False, False, False, True]
    assert chunks[0]["message"] == {"role": "assistant", "content": "", "thinking": "plan"}
    assert chunks[1]["message"] == {"role": "assistant", "content": "Hel"}
    final = chunks[-1]
    assert final["done_reason"] == "length" and final["message"]["content"] == ""
    assert final["prompt_eval_count"] == 10 and final["eval_count"] == 3
    assert final["load_duration"] == 500_000_000 and final["prompt_eval_duration"] == 250_000_000
    assert final["eval_duration"] == 125_000_000 and final["total_duration"] > 0
    whole = Encoder("chat", "m", 0.0).collect(events)
    assert whole["message"] == {"role": "assistant", "content": "Hello", "thinking": "plan"}
    assert whole["done"] is True and whole["eval_count"] == 3


def test_encoder_tool_calls_have_object_arguments():
    events = [ToolCallDelta(0, "call_1", "weather", '{"city": '), ToolCallDelta(0, None, None,
              '"Paris"}'), ToolCallDelta(1, "call_2", "time", "{}"),
              ChoiceDone(0, "tool_calls"), Done(USAGE)]
    chunks = list(Encoder("chat", "m", 0.0).chunks(events))
    calls = chunks[0]["message"]["tool_calls"]
    assert calls == [
        {"id": "call_1", "function": {"index": 0, "name": "weather",
                                      "arguments": {"city": "Paris"}}},
        {"id": "call_2", "function": {"index": 1, "name": "time", "arguments": {}}},
    ]
    assert chunks[-1]["done_reason"] == "stop"
    assert Encoder("chat", "m", 0.0).collect(events)["message"]["tool_calls"] == calls


def test_encoder_generate_shape():
    events = [TextDelta("Paris"), ChoiceDone(0, "stop"), Done(USAGE)]
    chunks = list(Encoder("generate", "m", 0.0).chunks(events))
    assert chunks[0]["response"] == "Paris" and "message" not in chunks[0]
    assert chunks[-1]["response"] == "" and chunks[-1]["done_reason"] == "stop"
    assert Encoder("generate", "m", 0.0).collect(events)["response"] == "Paris"


def test_load_and_unload_status():
    out = Encoder("generate", "m", 0.0).status("load", 0.5)
    assert out["done"] is True and out["done_reason"] == "load" and out["response"] == ""
    assert out["load_duration"] == 500_000_000
    assert Encoder("chat", "m", 0.0).status("unload")["message"]["role"] == "assistant"


def test_ndjson_reports_a_failure_in_band_and_closes():
    closed = []

    def objects():
        yield {"a": 1}
        raise EngineFailure("the model crashed")

    lines = list(ndjson(objects(), lambda: closed.append(True)))
    assert [json.loads(line) for line in lines] == [{"a": 1}, {"error": "the model crashed"}]
    assert all(line.endswith("\n") for line in lines) and closed == [True]


def test_capabilities_from_gguf_metadata():
    chat = {"general.architecture": "llama", "tokenizer.chat_template": "{{ messages }}"}
    assert capabilities(chat) == ["completion"]
    tools_and_think = {"general.architecture": "qwen3", "tokenizer.chat_template":
                       "{% for t in tools %}{{ t.function.name }}{% endfor %}"
                       "{% for m in messages %}{{ m.content }}{% endfor %}<think>"}
    assert capabilities(tools_and_think) == ["completion", "tools", "thinking"]
    # A template that neither describes tools nor has a tool syntax: no "tools"
    # (calls still work through the instructions we add, but Ollama reports the template).
    think_only = {"general.architecture": "qwen3", "tokenizer.chat_template":
                  "{% if tools %}{% endif %}{{ messages[0].content }}<think>"}
    assert capabilities(think_only) == ["completion", "thinking"]
    assert capabilities({"general.architecture": "bert", "bert.pooling_type": 2}) == ["embedding"]


def test_model_info_types_and_long_arrays():
    meta = {"general.architecture": "llama", "general.name": "x", "llama.context_length": 8192,
            "tokenizer.chat_template": "t", "general.languages": ["en"],
            "some.list": [1, 2, 3, 4, 5, 6]}
    info = model_info(meta, 135, verbose=False)
    assert info["llama.context_length"] == 8192 and info["general.parameter_count"] == 135
    assert "general.name" not in info and "tokenizer.chat_template" not in info
    assert info["general.languages"] == ["en"] and info["some.list"] == []
    assert model_info(meta, 135, verbose=True)["some.list"] == [1, 2, 3, 4, 5, 6]
