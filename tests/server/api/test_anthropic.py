"""The Anthropic Messages API through the official `anthropic` SDK against the real server and
model: the seed examples, streaming, thinking, tools, stop sequences, count_tokens, errors.

SmolLM2-135M is tiny, so these tests assert structure, statuses and usage, never wording.
"""

import base64
import json

import anthropic
import jsonschema
import llama_cpp
import pytest
import requests

from server.core import reasoning
from server.store.bundled import bundled_gguf
from tests.conftest import MODEL, NO_EOS

HELLO = [{"role": "user", "content": "Hi, how are you?"}]
GREEDY = {"temperature": 0, "top_k": 1}
WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"},
                       "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"],
    },
}
TIME = {
    "name": "get_time",
    "description": "Get the local time in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                     "required": ["city"]},
}


@pytest.fixture(scope="module")
def sdk(server_url):
    """The SDK pointed at the server root, as Claude Code is (ANTHROPIC_BASE_URL)."""
    return anthropic.Anthropic(base_url=server_url, api_key="any", max_retries=0)


@pytest.fixture(scope="module")
def prefixed(server_url):
    """The SDK pointed at .../anthropic, DMR's Anthropic prefix."""
    return anthropic.Anthropic(base_url=server_url + "/anthropic", api_key="any", max_retries=0)


@pytest.fixture(scope="module", params=["root", "anthropic"])
def client(request, sdk, prefixed):
    """Both ways of pointing the SDK at us, for the tests that are quick to run twice."""
    return sdk if request.param == "root" else prefixed


@pytest.fixture(scope="module")
def tokenizer():
    return llama_cpp.Llama(model_path=str(bundled_gguf()), vocab_only=True, verbose=False)


def assert_message(message, model="ai/smollm2"):
    assert message.id.startswith("msg_") and message.type == "message"
    assert message.role == "assistant" and message.model == model
    assert message.stop_reason in ("end_turn", "max_tokens", "stop_sequence", "tool_use")
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message.usage.cache_read_input_tokens <= message.usage.input_tokens
    assert message.usage.cache_creation_input_tokens == 0


def assert_thinking_first(message):
    kinds = [b.type for b in message.content]
    assert kinds[0] == "thinking" and "thinking" not in kinds[1:]
    assert message.content[0].thinking.startswith(reasoning.LEAD_IN)
    assert message.content[0].signature
    assert len(kinds) >= 2


# ------------------------------------------------------------------------------ seed examples
# ../shared/seeds/000_*.txt and 003_*.txt, with base_url, model and (for test time) max_tokens
# changed; the printing code is theirs.


def test_seed_basic_message_prints_text(client, capsys):
    message = client.messages.create(
        model="ai/smollm2",
        max_tokens=48,
        system="You are a helpful assistant.",
        messages=[{"role": "user", "content": "Hi, how are you?"}]
    )
    for block in message.content:
        if block.type == "thinking":
            print(f"Thinking:\n{block.thinking}\n")
        elif block.type == "text":
            print(f"Text:\n{block.text}\n")
    assert_message(message)
    assert [b.type for b in message.content] == ["text"]
    assert capsys.readouterr().out.startswith("Text:\n")
    print(message.content[0].text)  # the DMR blog's way of reading the answer


def test_seed_thinking_budget_200(sdk, capsys, tokenizer):
    message = sdk.messages.create(
        model="ai/smollm2",
        max_tokens=216,
        thinking={
            "type": "enabled",
            "budget_tokens": 200
        },
        messages=[{"role": "user", "content": "Explain quantum computing"}]
    )
    for block in message.content:
        if block.type == "thinking":
            print(f"π Thinking: {block.thinking}")
        elif block.type == "text":
            print(f"π Response: {block.text}")
    assert_message(message)
    assert_thinking_first(message)
    assert message.usage.output_tokens <= 216
    generated = message.content[0].thinking[len(reasoning.LEAD_IN):]
    assert len(tokenizer.tokenize(generated.encode(), add_bos=False, special=True)) <= 200 + 1
    out = capsys.readouterr().out
    assert "π Thinking: " in out and "π Response: " in out


def test_thinking_never_exceeds_a_small_budget(sdk, tokenizer):
    message = sdk.messages.create(
        model="ai/smollm2", max_tokens=24, thinking={"type": "enabled", "budget_tokens": 8},
        messages=[{"role": "user", "content": "Write a long essay about the history of Rome."}])
    assert_thinking_first(message)
    generated = message.content[0].thinking[len(reasoning.LEAD_IN):]
    assert len(tokenizer.tokenize(generated.encode(), add_bos=False, special=True)) <= 8 + 1
    assert message.usage.output_tokens <= 24


def test_seed_streaming_with_thinking(prefixed, capsys):
    with prefixed.messages.stream(
        model="ai/smollm2",
        max_tokens=128,
        thinking={"type": "enabled", "budget_tokens": 100},
        messages=[{"role": "user", "content": "Hello!"}]
    ) as stream:
        for event in stream:
            if hasattr(event, 'type'):
                if event.type == 'content_block_start':
                    print(f"\n[{event.content_block.type}]", end=" ")
                elif event.type == 'content_block_delta':
                    if hasattr(event.delta, 'thinking'):
                        print(event.delta.thinking, end="")
                    elif hasattr(event.delta, 'text'):
                        print(event.delta.text, end="")
        final = stream.get_final_message()
    out = capsys.readouterr().out
    assert out.startswith(f"\n[thinking] {reasoning.LEAD_IN}")
    assert "\n[text] " in out and out.index("[text]") > out.index("[thinking]")
    assert_thinking_first(final)


def test_seed_multi_turn_with_thinking_history(prefixed):
    client = prefixed
    messages = [{"role": "user", "content": "What is 2+2?"}]
    response = client.messages.create(
        model="ai/smollm2",
        max_tokens=128,
        thinking={"type": "enabled", "budget_tokens": 100},
        messages=messages
    )
    messages.append({
        "role": "assistant",
        "content": response.content  # Includes both thinking and text blocks
    })
    messages.append({"role": "user", "content": "Now multiply that by 3"})
    response2 = client.messages.create(
        model="ai/smollm2",
        max_tokens=128,
        thinking={"type": "enabled", "budget_tokens": 100},
        messages=messages
    )
    assert_thinking_first(response)
    assert_thinking_first(response2)
    assert response2.usage.input_tokens > response.usage.input_tokens


def test_seed_dev_to_prod_helper_pattern(server_url):
    # 003's get_client(): only base_url, api_key and model differ from production.
    client = anthropic.Anthropic(base_url=server_url, api_key="not-needed", max_retries=0)
    conversation = [{"role": "user", "content": "What is Kubernetes?"}]
    response = client.messages.create(model="ai/smollm2", max_tokens=32, messages=conversation)
    conversation.append({"role": "assistant", "content": response.content[0].text})
    conversation.append({"role": "user", "content": "How does it relate to Docker?"})
    response = client.messages.create(model="ai/smollm2", max_tokens=32, messages=conversation)
    assert_message(response)


# ------------------------------------------------------------------------------ streaming


def test_sdk_stream_helpers(client):
    with client.messages.stream(model="ai/smollm2", max_tokens=32, extra_body=GREEDY,
                                messages=[{"role": "user", "content": "Write a haiku."}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert_message(final)
    assert text and text == final.content[0].text
    assert final.usage.output_tokens <= 32


def raw_stream(server_url, body, path="/v1/messages"):
    reply = requests.post(server_url + path, json={"stream": True, **body}, stream=True,
                          headers={"anthropic-version": "2023-06-01", "x-api-key": "k"},
                          timeout=120)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = []
    for frame in reply.text.split("\n\n"):
        if not frame.strip():
            continue
        head, data = frame.split("\n")
        payload = json.loads(data.removeprefix("data: "))
        assert head == f"event: {payload['type']}"
        events.append(payload)
    return events


def check_claude_stream(events):
    """The event grammar Claude streams and the SDK's accumulator relies on."""
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    assert events[-2]["type"] == "message_delta"
    start = events[0]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] > 0
    assert "ping" in [e["type"] for e in events]
    open_index, next_index, kinds = None, 0, []
    for i, e in enumerate(events[1:-2], 1):
        if e["type"] == "content_block_start":
            assert open_index is None and e["index"] == next_index  # previous block closed
            open_index, next_index = e["index"], next_index + 1
            kinds.append(e["content_block"]["type"])
        elif e["type"] == "content_block_delta":
            assert e["index"] == open_index
        elif e["type"] == "content_block_stop":
            assert e["index"] == open_index
            if kinds[open_index] == "thinking":
                assert events[i - 1]["delta"]["type"] == "signature_delta"
            open_index = None
        else:
            assert e["type"] == "ping"
    assert open_index is None
    delta = events[-2]
    assert delta["delta"]["stop_reason"] in ("end_turn", "max_tokens", "stop_sequence",
                                             "tool_use")
    return kinds, delta


def test_stream_event_order_with_thinking(server_url):
    events = raw_stream(server_url, {
        "model": "ai/smollm2", "max_tokens": 40,
        "thinking": {"type": "enabled", "budget_tokens": 16},
        "messages": [{"role": "user", "content": "What is 2+2?"}]})
    kinds, delta = check_claude_stream(events)
    assert kinds[0] == "thinking" and kinds[1:] == ["text"]
    assert 0 < delta["usage"]["output_tokens"] <= 40
    thinking = "".join(e["delta"].get("thinking", "") for e in events
                       if e["type"] == "content_block_delta")
    assert thinking.startswith(reasoning.LEAD_IN)


def test_stream_tool_use_json_deltas_build_the_input(server_url):
    events = raw_stream(server_url, {
        "model": "ai/smollm2", "max_tokens": 48, "tools": [WEATHER], **GREEDY,
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "messages": [{"role": "user", "content": "Weather in Oslo?"}]}, "/anthropic/v1/messages")
    kinds, delta = check_claude_stream(events)
    assert kinds == ["tool_use"] and delta["delta"]["stop_reason"] == "tool_use"
    start = next(e for e in events if e["type"] == "content_block_start")
    assert start["content_block"]["input"] == {} and start["content_block"]["id"].startswith(
        "toolu_")
    parts = [e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta"]
    assert len(parts) > 1  # streamed as it is generated
    jsonschema.validate(json.loads("".join(parts)), WEATHER["input_schema"])


# ------------------------------------------------------------------------------ stop sequences


def test_stop_sequence_is_reported_as_claude_does(client):
    message = client.messages.create(
        model="ai/smollm2", max_tokens=48, stop_sequences=["e", "xyzzy"], extra_body=GREEDY,
        messages=[{"role": "user", "content": "Describe the weather in three sentences."}])
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "e"
    assert "e" not in message.content[0].text


def test_stop_sequence_in_a_stream(sdk):
    with sdk.messages.stream(model="ai/smollm2", max_tokens=48, stop_sequences=["e"],
                             extra_body=GREEDY,
                             messages=[{"role": "user", "content": "Tell me about trees."}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == "e"
    assert "e" not in text


def test_no_stop_sequence_means_null(sdk):
    message = sdk.messages.create(model="ai/smollm2", max_tokens=4, messages=HELLO)
    assert message.stop_reason == "max_tokens" and message.stop_sequence is None
    assert message.usage.output_tokens == 4


# ------------------------------------------------------------------------------ tools


def test_forced_tool_input_validates_against_input_schema(client):
    message = client.messages.create(
        model="ai/smollm2", max_tokens=48, tools=[WEATHER, TIME], extra_body=GREEDY,
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "What's the weather in Paris?"}])
    assert_message(message)
    assert message.stop_reason == "tool_use"
    [call] = message.content
    assert call.type == "tool_use" and call.name == "get_weather" and call.id.startswith("toolu_")
    jsonschema.validate(call.input, WEATHER["input_schema"])


def test_tool_choice_any_calls_one_of_the_tools(sdk):
    message = sdk.messages.create(
        model="ai/smollm2", max_tokens=48, tools=[WEATHER, TIME], tool_choice={"type": "any"},
        extra_body=GREEDY,
        messages=[{"role": "user", "content": "What time is it in Tokyo?"}])
    assert message.stop_reason == "tool_use"
    calls = [b for b in message.content if b.type == "tool_use"]
    assert len(calls) == 1
    schema = {"get_weather": WEATHER, "get_time": TIME}[calls[0].name]["input_schema"]
    jsonschema.validate(calls[0].input, schema)


def test_tool_choice_none_never_calls(sdk):
    message = sdk.messages.create(
        model="ai/smollm2", max_tokens=24, tools=[WEATHER], tool_choice={"type": "none"},
        messages=[{"role": "user", "content": "Call get_weather for Rome."}])
    assert all(b.type == "text" for b in message.content)
    assert message.stop_reason in ("end_turn", "max_tokens")


def test_tool_result_round_trip(prefixed):
    question = {"role": "user", "content": "What's the weather in Paris?"}
    first = prefixed.messages.create(model="ai/smollm2", max_tokens=48, tools=[WEATHER],
                                     tool_choice={"type": "tool", "name": "get_weather"},
                                     messages=[question], extra_body=GREEDY)
    call = first.content[-1]
    follow_up = [question, {"role": "assistant", "content": first.content}, {
        "role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": "18 degrees and sunny"},
            {"type": "text", "text": "Summarise that."}]}]
    second = prefixed.messages.create(model="ai/smollm2", max_tokens=24, tools=[WEATHER],
                                      messages=follow_up)
    assert_message(second)
    assert second.usage.input_tokens > first.usage.input_tokens
    error_result = [question, {"role": "assistant", "content": first.content}, {
        "role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                     "is_error": True,
                                     "content": [{"type": "text", "text": "service down"}]}]}]
    assert_message(prefixed.messages.create(model="ai/smollm2", max_tokens=16, tools=[WEATHER],
                                            messages=error_result))


def test_thinking_comes_before_each_tool_use_turn(sdk):
    """Interleaved: every assistant turn of a tool loop opens with its own thinking."""
    kwargs = {"model": "ai/smollm2", "max_tokens": 64, "tools": [WEATHER],
              "thinking": {"type": "enabled", "budget_tokens": 24}}
    messages = [{"role": "user", "content": "Use get_weather to get the weather in Paris."}]
    first = sdk.messages.create(messages=messages, **kwargs)
    assert_thinking_first(first)
    calls = [b for b in first.content if b.type == "tool_use"]
    call_id = calls[0].id if calls else "toolu_manual"
    if not calls:  # the model answered in text; continue the loop as a client would have
        first.content.append(anthropic.types.ToolUseBlock(
            type="tool_use", id=call_id, name="get_weather",
            input={"city": "Paris", "unit": "celsius"}))
    messages += [{"role": "assistant", "content": first.content},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id,
                                               "content": "18 C"}]}]
    second = sdk.messages.create(messages=messages, **kwargs)  # thinking blocks passed back
    assert_thinking_first(second)


# ------------------------------------------------------------------------------ output format


def test_output_config_json_schema_is_honoured(client):
    schema = {"type": "object",
              "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                             "role": {"enum": ["admin", "user"]}},
              "required": ["name", "age", "role"], "additionalProperties": False}
    message = client.messages.create(
        model="ai/smollm2", max_tokens=48, extra_body=GREEDY,
        output_config={"format": {"type": "json_schema", "schema": schema}},
        messages=[{"role": "user", "content": "Invent a person."}])
    assert message.stop_reason == "end_turn"
    jsonschema.validate(json.loads(message.content[0].text), schema)


# ------------------------------------------------------------------------------ count_tokens


@pytest.mark.parametrize("extra", [
    {},
    {"system": "Be brief.", "tools": [WEATHER, TIME]},
    {"system": [{"type": "text", "text": "Be brief."}],
     "thinking": {"type": "enabled", "budget_tokens": 10}},
], ids=["plain", "system-tools", "thinking"])
def test_count_tokens_equals_usage_input_tokens(client, extra):
    messages = [{"role": "user", "content": "What's the weather in Paris?"},
                {"role": "assistant", "content": "Let me check."},
                {"role": "user", "content": "Thanks, go ahead."}]
    counted = client.messages.count_tokens(model="ai/smollm2", messages=messages, **extra)
    message = client.messages.create(model="ai/smollm2", max_tokens=12, messages=messages,
                                     **extra)
    assert counted.input_tokens == message.usage.input_tokens > 0
    assert counted.model_dump() == {"input_tokens": counted.input_tokens}


def test_count_tokens_grows_with_the_prompt(sdk):
    short = sdk.messages.count_tokens(model="ai/smollm2", messages=HELLO).input_tokens
    longer = sdk.messages.count_tokens(model="ai/smollm2", messages=HELLO,
                                       tools=[WEATHER]).input_tokens
    assert longer > short > 0


@pytest.mark.parametrize("prefix", ["/v1", "/anthropic/v1", "/engines/v1",
                                    "/engines/llama.cpp/v1"])
def test_every_route_serves_messages_and_count_tokens(server_url, prefix):
    body = {"model": "ai/smollm2", "messages": HELLO}
    counted = requests.post(f"{server_url}{prefix}/messages/count_tokens", json=body, timeout=60)
    assert counted.status_code == 200 and counted.json()["input_tokens"] > 0
    reply = requests.post(f"{server_url}{prefix}/messages", json={**body, "max_tokens": 3},
                          timeout=60)
    assert reply.status_code == 200 and reply.headers["request-id"].startswith("req_")
    assert reply.json()["usage"]["input_tokens"] == counted.json()["input_tokens"]


# ------------------------------------------------------------------------------ request fields


def test_newer_sdk_fields_and_headers_are_accepted(sdk):
    message = sdk.messages.create(
        model="ai/smollm2", max_tokens=8, messages=HELLO, metadata={"user_id": "u-1"},
        service_tier="auto", extra_headers={"anthropic-beta": "some-beta-2025-01-01"},
        extra_body={"speed": "standard", "inference_geo": "us", "cache_control": {
            "type": "ephemeral"}, "container": None, "a_field_from_the_future": {"x": [1]}})
    assert_message(message)


def test_sampling_fields_via_extra_body(sdk):
    replies = [sdk.messages.create(model="ai/smollm2", max_tokens=12, messages=HELLO,
                                   extra_body={"temperature": 0, "top_p": 0.9, "top_k": 1})
               for _ in range(2)]
    assert replies[0].content[0].text == replies[1].content[0].text  # greedy is deterministic


def test_prefill_is_continued(sdk):
    message = sdk.messages.create(
        model="ai/smollm2", max_tokens=12, extra_body=GREEDY,
        messages=[{"role": "user", "content": "What is the capital of France?"},
                  {"role": "assistant", "content": "The capital of France is"}])
    assert_message(message)
    assert not message.content[0].text.startswith("The capital of France is")


def test_thinking_display_omitted_still_signs_and_round_trips(sdk):
    kwargs = {"model": "ai/smollm2", "max_tokens": 32,
              "thinking": {"type": "enabled", "budget_tokens": 12, "display": "omitted"}}
    first = sdk.messages.create(messages=HELLO, **kwargs)
    assert first.content[0].type == "thinking" and first.content[0].thinking == ""
    assert first.content[0].signature
    second = sdk.messages.create(messages=[*HELLO, {"role": "assistant", "content": first.content},
                                           {"role": "user", "content": "Tell me more."}],
                                 **kwargs)
    assert second.content[0].type == "thinking"


# ------------------------------------------------------------------------------ errors


def assert_claude_error(exc_info, status, kind):
    error = exc_info.value
    assert error.status_code == status
    assert error.body["type"] == "error" and error.body["error"]["type"] == kind
    assert error.body["error"]["message"]
    assert error.body["request_id"].startswith("req_")


@pytest.mark.parametrize("body, needle", [
    ({"messages": HELLO, "max_tokens": 5}, "model"),
    ({"model": "ai/smollm2", "messages": HELLO}, "max_tokens"),
    ({"model": "ai/smollm2", "max_tokens": 5}, "messages"),
    ({"model": "ai/smollm2", "max_tokens": 5, "messages": []}, "messages"),
], ids=["no-model", "no-max_tokens", "no-messages", "empty-messages"])
def test_missing_required_fields(sdk, body, needle):
    with pytest.raises(anthropic.BadRequestError) as info:
        sdk.post("/v1/messages", body=body, cast_to=object)
    assert_claude_error(info, 400, "invalid_request_error")
    assert needle in info.value.body["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/messages", "/anthropic/v1/messages",
                                  "/v1/messages/count_tokens"])
def test_malformed_json(server_url, path):
    reply = requests.post(server_url + path, data=b'{"model": "ai/smollm2",',
                          headers={"content-type": "application/json"}, timeout=30)
    assert reply.status_code == 400
    body = reply.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "JSON" in body["error"]["message"]


@pytest.mark.parametrize("kwargs, needle", [
    ({"messages": [{"role": "robot", "content": "hi"}]}, "role"),
    ({"messages": [{"role": "user", "content": 42}]}, "content"),
    ({"messages": HELLO, "extra_body": {"temperature": "hot"}}, "temperature"),
    ({"messages": HELLO, "stop_sequences": "STOP"}, "stop_sequences"),
    ({"messages": HELLO, "tool_choice": {"type": "sometimes"}}, "tool_choice"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "text"),
], ids=["role", "content", "temperature", "stop_sequences", "tool_choice", "block"])
def test_wrong_types_are_bad_requests(sdk, kwargs, needle):
    kwargs = {"model": "ai/smollm2", "max_tokens": 5, **kwargs}
    with pytest.raises(anthropic.BadRequestError) as info:
        sdk.messages.create(**kwargs)
    assert_claude_error(info, 400, "invalid_request_error")
    assert needle in info.value.body["error"]["message"]


def test_max_tokens_of_the_wrong_type(sdk):
    # messages.create() itself computes with max_tokens, so send the body as it is.
    with pytest.raises(anthropic.BadRequestError) as info:
        sdk.post("/v1/messages", cast_to=object,
                 body={"model": "ai/smollm2", "max_tokens": "many", "messages": HELLO})
    assert_claude_error(info, 400, "invalid_request_error")
    assert "max_tokens" in info.value.body["error"]["message"]


def test_unknown_model_is_not_found(client):
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="ai/no-such-model", max_tokens=5, messages=HELLO)
    assert_claude_error(info, 404, "not_found_error")
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="ai/no-such-model", messages=HELLO)


def test_unknown_engine_is_not_found(server_url):
    client = anthropic.Anthropic(base_url=server_url + "/engines/no-such-engine",
                                 api_key="x", max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="ai/smollm2", max_tokens=5, messages=HELLO)
    assert_claude_error(info, 404, "not_found_error")


def test_budget_tokens_not_below_max_tokens(client):
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="ai/smollm2", max_tokens=100, messages=HELLO,
                               thinking={"type": "enabled", "budget_tokens": 100})
    assert_claude_error(info, 400, "invalid_request_error")
    assert "budget_tokens" in info.value.body["error"]["message"]


def test_tampered_thinking_signature(sdk):
    first = sdk.messages.create(model="ai/smollm2", max_tokens=24, messages=HELLO,
                                thinking={"type": "enabled", "budget_tokens": 8})
    thinking = first.content[0]
    for edited in ({"thinking": thinking.thinking + " (edited)", "signature": thinking.signature},
                   {"thinking": thinking.thinking, "signature": "forged"}):
        history = [*HELLO, {"role": "assistant", "content": [{"type": "thinking", **edited}]},
                   {"role": "user", "content": "And?"}]
        with pytest.raises(anthropic.BadRequestError) as info:
            sdk.messages.create(model="ai/smollm2", max_tokens=8, messages=history,
                                thinking={"type": "enabled", "budget_tokens": 4})
        assert_claude_error(info, 400, "invalid_request_error")
        assert "signature" in info.value.body["error"]["message"]


def test_image_on_a_non_vision_model(client):
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(32)).decode()
    content = [{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                            "data": png}},
               {"type": "text", "text": "What is in this picture?"}]
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="ai/smollm2", max_tokens=5,
                               messages=[{"role": "user", "content": content}])
    assert_claude_error(info, 400, "invalid_request_error")
    assert "image" in info.value.body["error"]["message"]


def test_oversize_body_is_request_too_large(sdk):
    with pytest.raises(anthropic.RequestTooLargeError) as info:
        sdk.messages.create(model="ai/smollm2", max_tokens=5, messages=HELLO,
                            extra_body={"padding": "x" * (11 * 1024 * 1024)})
    assert_claude_error(info, 413, "request_too_large")


def test_thinking_with_a_forced_tool_is_refused_as_claude_does(sdk):
    with pytest.raises(anthropic.BadRequestError) as info:
        sdk.messages.create(model="ai/smollm2", max_tokens=40, messages=HELLO, tools=[WEATHER],
                            tool_choice={"type": "any"},
                            thinking={"type": "enabled", "budget_tokens": 10})
    assert "tool_choice" in info.value.body["error"]["message"]


def test_logit_bias_extension_bans_the_end_token(client):
    """`logit_bias` (ours, as OpenAI's): with the end-of-turn tokens banned, the answer runs
    to max_tokens; a bias out of range is a 400 in Anthropic's shape."""
    message = client.messages.create(model=MODEL, max_tokens=24, messages=[
        {"role": "user", "content": "Say hi."}], extra_body={"logit_bias": NO_EOS})
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 24
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model=MODEL, max_tokens=4, messages=[
            {"role": "user", "content": "Say hi."}], extra_body={"logit_bias": {"2": -500}})
    assert err.value.body["type"] == "error"
    assert err.value.body["error"]["type"] == "invalid_request_error"
