"""The Anthropic dialect's translation code with plain dicts and scripted core events, plus the
SDK's view of errors the real model cannot be made to produce (overload, failure mid-stream)."""

import json
import threading
import time
from types import SimpleNamespace

import anthropic
import httpx2
import pytest
from flask import Flask

from server.api import anthropic as api
from server.api import anthropic_codec as codec
from server.api import anthropic_encoder as encoder
from server.api.keepalive import HEARTBEAT, with_heartbeats
from server.core import pipeline
from server.core.errors import InvalidRequest, Overloaded
from server.core.signing import ThinkingSigner
from server.core.types import (
    ChoiceDone,
    Done,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    Usage,
)

SIGNER = ThinkingSigner(b"k" * 32)
USER = [{"role": "user", "content": "hi"}]


def parse(**body):
    body = {"model": "ai/smollm2", "max_tokens": 50, "messages": USER, **body}
    return codec.parse_messages(body, None, SIGNER)


# ------------------------------------------------------------------------------ requests


def test_content_blocks_become_core_messages():
    req, _ = parse(system=[{"type": "text", "text": "Be brief."}], messages=[
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "call it", "signature": SIGNER.sign("call it")},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"},
            {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
             "content": [{"type": "text", "text": "timeout"}]},
            {"type": "text", "text": "And tomorrow?"}]},
    ])
    roles = [m.role for m in req.messages]
    assert roles == ["system", "user", "assistant", "tool", "tool", "user"]
    assistant = req.messages[2]
    assert assistant.content == "Let me check." and assistant.reasoning == "call it"
    assert assistant.tool_calls[0].name == "weather"
    assert json.loads(assistant.tool_calls[0].arguments) == {"city": "Oslo"}
    assert req.messages[3].content == "18 C" and req.messages[3].name == "weather"
    assert req.messages[4].content == "Error: timeout"
    assert req.messages[5].content == "And tomorrow?"


def test_consecutive_turns_of_one_role_are_merged():
    req, _ = parse(messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    assert [(m.role, m.content) for m in req.messages] == [("user", "a\n\nb")]


def test_sampling_defaults_are_llama_servers_and_explicit_values_win():
    req, _ = parse()
    s = req.sampling
    assert (s.temperature, s.top_k, s.top_p, s.min_p, s.max_tokens) == (0.8, 40, 0.95, 0.05, 50)
    req, _ = parse(temperature=0, top_k=1, top_p=0.5, stop_sequences=["END"])
    s = req.sampling
    assert (s.temperature, s.top_k, s.top_p, s.stop) == (0, 1, 0.5, ["END"])


def test_tools_tool_choice_and_output_format():
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    tools = [{"name": "f", "input_schema": schema},
             {"type": "web_search_20250305", "name": "web_search"}]
    for choice, mode in [({"type": "auto"}, "auto"), ({"type": "any"}, "required"),
                         ({"type": "none"}, "none"), ({"type": "tool", "name": "f"}, "function")]:
        req, options = parse(tools=tools, tool_choice=choice)
        assert [t.name for t in req.tools] == ["f"] and req.tools[0].parameters == schema
        assert req.tool_choice.mode == mode
    assert req.tool_choice.name == "f"
    _, options = parse(tools=tools, tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert options.single_call
    req, _ = parse(output_config={"format": {"type": "json_schema", "schema": schema}})
    assert req.response_schema == schema


def test_thinking_settings():
    req, options = parse(thinking={"type": "enabled", "budget_tokens": 20})
    assert (req.thinking.enabled, req.thinking.budget_tokens) == (True, 20) and options.thinking
    req, options = parse(thinking={"type": "enabled", "budget_tokens": 20, "display": "omitted"})
    assert options.omit_thinking
    req, options = parse()
    assert req.thinking.enabled is False and not options.thinking
    req, _ = parse(thinking={"type": "adaptive"})
    assert req.thinking.enabled and req.thinking.budget_tokens is None


@pytest.mark.parametrize("body, needle", [
    ({"thinking": {"type": "enabled", "budget_tokens": 50}}, "greater than `thinking.budget"),
    ({"thinking": {"type": "enabled", "budget_tokens": 10}, "tools": [
        {"name": "f", "input_schema": {"type": "object"}}],
      "tool_choice": {"type": "any"}}, "forces tool use"),
    ({"thinking": {"type": "enabled", "budget_tokens": 10}, "temperature": 0.5}, "temperature"),
    ({"thinking": {"type": "enabled", "budget_tokens": 10}, "top_k": 5}, "top_k"),
    ({"thinking": {"type": "enabled", "budget_tokens": 10}, "messages": [
        *USER, {"role": "assistant", "content": "Sure"}]}, "prefilling"),
    ({"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}]},
     "non-empty content"),
    ({"messages": [*USER, {"role": "assistant", "content": "x "}]}, "trailing whitespace"),
    ({"messages": [{"role": "assistant", "content": [
        {"type": "thinking", "thinking": "edited", "signature": SIGNER.sign("original")}]},
        *USER]}, "Invalid `signature`"),
    ({"messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "data": "x"}}]}]}, "not supported"),
    ({"messages": [{"role": "user", "content": [
        {"type": "tool_use", "id": "a", "name": "f", "input": {}}]}]}, "user messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {
        "type": "base64", "media_type": "image/png", "data": "%%%"}}]}]}, "base64"),
    ({"max_tokens": "50"}, "max_tokens"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "role"),
])
def test_bad_requests_are_rejected_with_a_message_that_says_why(body, needle):
    with pytest.raises(InvalidRequest) as info:
        parse(**body)
    assert needle in info.value.message


def test_count_tokens_needs_no_max_tokens_and_ignores_unknown_fields():
    req = codec.parse_count_tokens({"model": "m", "messages": USER, "future_field": 1,
                                  "thinking": {"type": "enabled", "budget_tokens": 10}},
                                 None, SIGNER)
    assert req.thinking.budget_tokens == 10 and req.messages[-1].content == "hi"


# ------------------------------------------------------------------------------ responses


def encode(events, **options):
    blocks = encoder.Blocks(codec.Options(**options), SIGNER)
    out = [e for event in events for e in blocks.feed(event)] + list(blocks.finish())
    return out, blocks


def check_block_order(out):
    """Claude's rules: indices 0, 1, 2...; each block stopped before the next starts; deltas
    only to the open block; signature_delta right before a thinking block stops."""
    open_index, next_index, kinds = None, 0, {}
    for i, e in enumerate(out):
        if e["type"] == "content_block_start":
            assert open_index is None and e["index"] == next_index
            open_index, next_index = e["index"], next_index + 1
            kinds[e["index"]] = e["content_block"]["type"]
        elif e["type"] == "content_block_delta":
            assert e["index"] == open_index
        else:
            assert e["type"] == "content_block_stop" and e["index"] == open_index
            if kinds[open_index] == "thinking":
                assert out[i - 1]["delta"]["type"] == "signature_delta"
            open_index = None
    assert open_index is None
    return [kinds[i] for i in range(next_index)]


def test_thinking_text_and_tool_use_blocks_in_order():
    out, blocks = encode([
        ThinkingDelta("hmm"), ThinkingDelta(" ok"), TextDelta("\n"), TextDelta("Calling."),
        ToolCallDelta(0, "call_ab", "f", ""), ToolCallDelta(0, arguments='{"x": '),
        ToolCallDelta(0, arguments="1}"), TextDelta("\n"), ToolCallDelta(1, "call_cd", "g", "{}"),
        ChoiceDone(0, "tool_calls"), Done(Usage(prompt_tokens=5, completion_tokens=9,
                                                cached_tokens=4))], thinking=True)
    assert check_block_order(out) == ["thinking", "text", "tool_use", "tool_use"]
    content = encoder.accumulate(out)
    assert content[0] == {"type": "thinking", "thinking": "hmm ok",
                          "signature": SIGNER.sign("hmm ok")}
    assert content[1] == {"type": "text", "text": "\nCalling."}
    assert content[2] == {"type": "tool_use", "id": "toolu_ab", "name": "f", "input": {"x": 1}}
    assert content[3]["input"] == {} and content[3]["name"] == "g"
    assert blocks.stop_reason == "tool_use"
    assert encoder.usage_json(blocks.usage) == {"input_tokens": 5, "cache_creation_input_tokens": 0,
                                            "cache_read_input_tokens": 4, "output_tokens": 9}


def test_thinking_on_always_leads_with_a_thinking_block_and_an_answer_block():
    out, _ = encode([ChoiceDone(0, "length")], thinking=True)
    assert check_block_order(out) == ["thinking", "text"]
    out, _ = encode([TextDelta("  "), ChoiceDone(0, "stop")])
    assert encoder.accumulate(out) == [{"type": "text", "text": ""}]


def test_omitted_thinking_sends_only_a_signature():
    out, _ = encode([ThinkingDelta("secret"), TextDelta("hi")], thinking=True,
                    omit_thinking=True)
    assert encoder.accumulate(out)[0] == {"type": "thinking", "thinking": "",
                                      "signature": SIGNER.sign("")}
    assert "secret" not in json.dumps(out)


def test_disable_parallel_tool_use_keeps_the_first_call():
    out, _ = encode([ToolCallDelta(0, "call_1", "f", "{}"), ToolCallDelta(1, "call_2", "g", "{}"),
                     ChoiceDone(0, "tool_calls")], single_call=True)
    assert [b["name"] for b in encoder.accumulate(out)] == ["f"]


@pytest.mark.parametrize("done, completion, reason", [
    (ChoiceDone(0, "stop"), 3, "end_turn"),
    (ChoiceDone(0, "stop", "END"), 3, "stop_sequence"),
    (ChoiceDone(0, "length"), 10, "max_tokens"),
    (ChoiceDone(0, "length"), 4, "model_context_window_exceeded"),
    (ChoiceDone(0, "tool_calls"), 3, "tool_use"),
])
def test_stop_reasons(done, completion, reason):
    _, blocks = encode([TextDelta("x"), done, Done(Usage(completion_tokens=completion))],
                       max_tokens=10)
    assert blocks.stop_reason == reason
    assert blocks.stop_sequence == done.stop_sequence


def sse_events(chunks):
    out = []
    for chunk in chunks:
        head, data = chunk.strip().split("\n")
        assert head.startswith("event: ") and data.startswith("data: ")
        payload = json.loads(data[len("data: "):])
        assert payload["type"] == head[len("event: "):]
        out.append(payload)
    return out


def fake_run(events):
    return pipeline.Run("ai/smollm2", 7, iter(events))


def failing(events, exc):
    yield from events
    raise exc


def test_stream_framing_and_an_error_after_the_200():
    run = pipeline.Run("m", 7, failing([TextDelta("partial")], Overloaded()))
    out = sse_events(encoder.message_stream(run, "m", encoder.Blocks(codec.Options(), SIGNER), "req_1"))
    assert [e["type"] for e in out] == ["message_start", "ping", "content_block_start",
                                        "content_block_delta", "error"]
    assert out[0]["message"]["usage"]["input_tokens"] == 7
    assert out[0]["message"]["stop_reason"] is None and out[0]["message"]["content"] == []
    assert out[-1] == {"type": "error", "request_id": "req_1", "error": {
        "type": "overloaded_error", "message": "server is overloaded, retry later"}}


def test_stream_ends_with_cumulative_usage_and_message_stop():
    run = fake_run([TextDelta("hi"), ChoiceDone(0, "stop", "END"),
                    Done(Usage(prompt_tokens=7, completion_tokens=2, cached_tokens=6))])
    out = sse_events(encoder.message_stream(run, "m", encoder.Blocks(codec.Options(), SIGNER), "req_1"))
    assert [e["type"] for e in out][-2:] == ["message_delta", "message_stop"]
    assert out[-2]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
    assert out[-2]["usage"]["output_tokens"] == 2
    assert out[-2]["usage"]["cache_read_input_tokens"] == 6


# ------------------------------------------------------------------------------ keep-alive


def test_heartbeats_while_the_model_is_silent():
    def slow():
        yield 1
        time.sleep(0.35)
        yield 2

    items = list(with_heartbeats(slow(), 0.1))
    assert items[0] == 1 and items[-1] == 2
    assert 1 <= items.count(HEARTBEAT) <= 6  # about 3; the machine may be busy


def test_heartbeats_pass_errors_on_and_close_the_source():
    closed = threading.Event()

    def source():
        try:
            yield 1
            yield 2
            raise ValueError("boom")
        finally:
            closed.set()

    with pytest.raises(ValueError, match="boom"):
        list(with_heartbeats(source(), 5))
    assert closed.wait(2)

    closed.clear()

    def endless():
        try:
            while True:
                yield 0
                time.sleep(0.01)
        finally:
            closed.set()

    stream = with_heartbeats(endless(), 5)
    assert next(stream) == 0
    stream.close()  # client gone: the model's generation is closed too
    assert closed.wait(2)


# ------------------------------------------------------------------------------ via the SDK


@pytest.fixture
def wsgi_client(tmp_path, monkeypatch):
    """The SDK talking to the dialect in-process, with the pipeline replaced by `start`."""
    app = Flask(__name__)
    app.extensions["dmr"] = SimpleNamespace(store=SimpleNamespace(root=tmp_path),
                                            runtime=SimpleNamespace(remotes={}))
    api.register(app)
    state = {}
    monkeypatch.setattr(pipeline, "start_chat", lambda runtime, req: state["start"](req))
    client = anthropic.Anthropic(
        base_url="http://test", api_key="x", max_retries=0,
        http_client=httpx2.Client(transport=httpx2.WSGITransport(app=app)))
    return client, state


def test_overload_is_a_529_the_sdk_raises_as_overloaded_error(wsgi_client):
    client, state = wsgi_client

    def start(req):
        raise Overloaded(retry_after=3)

    state["start"] = start
    with pytest.raises(anthropic.OverloadedError) as info:
        client.messages.create(model="m", max_tokens=5, messages=USER)
    assert info.value.status_code == 529
    assert info.value.response.headers["retry-after"] == "3"
    assert info.value.body["error"]["type"] == "overloaded_error"
    assert info.value.body["request_id"] == info.value.response.headers["request-id"]


def test_a_server_fault_is_a_500_api_error(wsgi_client):
    client, state = wsgi_client

    def start(req):
        raise RuntimeError("bug")

    state["start"] = start
    with pytest.raises(anthropic.InternalServerError) as info:
        client.messages.create(model="m", max_tokens=5, messages=USER)
    assert info.value.body["error"]["type"] == "api_error"


def test_an_error_event_mid_stream_raises_in_the_sdk(wsgi_client):
    client, state = wsgi_client
    state["start"] = lambda req: fake_run(failing([TextDelta("so far")], Overloaded()))
    with pytest.raises(anthropic.APIStatusError) as info:
        with client.messages.stream(model="m", max_tokens=5, messages=USER) as stream:
            for _ in stream:
                pass
    assert info.value.body["error"]["type"] == "overloaded_error"
