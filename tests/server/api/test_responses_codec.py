"""The Responses codec without a server: requests to core messages, core events to OpenAI's
stream events and response object, and the core's oldest-turn truncation. The live tests
(test_responses.py) run the same paths through the real model and the official SDKs."""

from __future__ import annotations

import pytest

from server.api import responses_input as inputs
from server.api.responses_codec import ResponseEncoder, new_response
from server.core.errors import DMRError, InvalidRequest, NotSupported
from server.core.truncation import drop_oldest_turn
from server.core.types import (
    ChoiceDone,
    Done,
    Message,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    Usage,
)

BODY = {"model": "m", "input": "hi"}


def encode(events, options=None, body=BODY):
    encoder = ResponseEncoder(new_response(body, "resp_1", "in_progress"), options)
    out = list(encoder.start())
    for event in events:
        out += encoder.feed(event)
    out += encoder.finish()
    return out, encoder.response


def accumulate(events):
    """What a client builds from the stream: the item list from added/delta/done events."""
    output = []
    for e in events:
        if e["type"] == "response.output_item.added":
            output.append({**e["item"], "content": list(e["item"].get("content", []))}
                          if "content" in e["item"] else dict(e["item"]))
        elif e["type"] == "response.content_part.added":
            output[e["output_index"]]["content"].append(dict(e["part"]))
        elif e["type"] in ("response.output_text.delta", "response.reasoning_text.delta"):
            output[e["output_index"]]["content"][e["content_index"]]["text"] += e["delta"]
        elif e["type"] == "response.function_call_arguments.delta":
            output[e["output_index"]]["arguments"] += e["delta"]
        elif e["type"] == "response.output_item.done":
            output[e["output_index"]] = e["item"]
    return output


def test_text_events_in_openai_order_and_numbered():
    usage = Usage(prompt_tokens=5, completion_tokens=2, cached_tokens=3)
    events, response = encode([TextDelta("Hel"), TextDelta("lo"), ChoiceDone(0, "stop"),
                               Done(usage)])
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert response["status"] == "completed" and response["completed_at"]
    assert response["output"][0]["content"][0]["text"] == "Hello"
    assert response["output"][0]["id"].startswith("msg_")
    assert response["usage"] == {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 3},
                                 "output_tokens": 2,
                                 "output_tokens_details": {"reasoning_tokens": 0},
                                 "total_tokens": 7}
    assert events[-1]["response"] == response
    assert accumulate(events) == response["output"]
    assert events[0]["response"]["output"] == [] and events[0]["response"]["usage"] is None


def test_reasoning_then_text_then_calls():
    events, response = encode([
        ThinkingDelta("think"), TextDelta("ok "), ToolCallDelta(0, "call_1", "f", '{"a"'),
        ToolCallDelta(0, arguments=": 1}"), ToolCallDelta(1, "call_2", "g", "{}"),
        ChoiceDone(0, "tool_calls"), Done(Usage(completion_tokens=9, reasoning_tokens=4))])
    kinds = [item["type"] for item in response["output"]]
    assert kinds == ["reasoning", "message", "function_call", "function_call"]
    assert response["output"][0]["content"] == [{"type": "reasoning_text", "text": "think"}]
    assert response["output"][2]["arguments"] == '{"a": 1}'
    assert response["output"][2]["call_id"] == "call_1" and response["output"][2]["status"] == \
        "completed"
    assert response["usage"]["output_tokens_details"]["reasoning_tokens"] == 4
    assert accumulate(events) == response["output"]
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [(e["name"], e["arguments"]) for e in done] == [("f", '{"a": 1}'), ("g", "{}")]


def test_parallel_tool_calls_false_and_max_tool_calls_keep_the_first_call():
    calls = [ToolCallDelta(0, "call_1", "f", "{}"), ToolCallDelta(1, "call_2", "g", "{}"),
             ChoiceDone(0, "tool_calls"), Done(Usage())]
    for options in (inputs.Options(parallel_tool_calls=False), inputs.Options(max_tool_calls=1)):
        _, response = encode(calls, options)
        assert [item["name"] for item in response["output"]] == ["f"]


def test_white_space_before_a_call_makes_no_message_and_empty_output_makes_one():
    _, response = encode([TextDelta("\n "), ToolCallDelta(0, "call_1", "f", "{}"),
                          ChoiceDone(0, "tool_calls"), Done(Usage())])
    assert [item["type"] for item in response["output"]] == ["function_call"]
    _, response = encode([ChoiceDone(0, "stop"), Done(Usage())])
    assert response["output"][0]["type"] == "message"
    assert response["output"][0]["content"][0]["text"] == ""


def test_length_is_incomplete():
    events, response = encode([TextDelta("cut"), ChoiceDone(0, "length"), Done(Usage())])
    assert events[-1]["type"] == "response.incomplete"
    assert response["status"] == "incomplete" and response["completed_at"] is None
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete"


def test_failure_mid_stream_is_an_error_event_then_response_failed():
    encoder = ResponseEncoder(new_response(BODY, "resp_1", "in_progress"))
    list(encoder.start())
    list(encoder.feed(TextDelta("a")))
    out = list(encoder.fail(DMRError("boom"), "server_error"))
    assert [e["type"] for e in out][-2:] == ["error", "response.failed"]
    assert encoder.response["status"] == "failed"
    assert encoder.response["error"] == {"code": "server_error", "message": "boom"}


def test_replay_rebuilds_the_same_response():
    events, response = encode([ThinkingDelta("t"), TextDelta("x"),
                               ToolCallDelta(0, "call_1", "f", "{}"),
                               ChoiceDone(0, "tool_calls"), Done(Usage(completion_tokens=3))])
    started = {**response, "output": [], "status": "in_progress", "usage": None,
               "completed_at": None}
    replayed = list(ResponseEncoder(started).replay(response))
    assert replayed[-1]["type"] == "response.completed"
    assert replayed[-1]["response"] == response
    assert accumulate(replayed) == response["output"]
    assert [e["sequence_number"] for e in replayed] == list(range(len(replayed)))


def test_response_object_echoes_the_request():
    body = {"model": "m", "input": "x", "instructions": "be brief", "temperature": 0.5,
            "max_output_tokens": 9, "metadata": {"k": "v"}, "store": False,
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
            "tool_choice": "required", "text": {"format": {"type": "json_object"}},
            "reasoning": {"effort": "low"}, "truncation": "auto", "user": "u"}
    response = new_response(body, "resp_1", "queued")
    assert response["status"] == "queued" and response["store"] is False
    assert response["tools"] == [{"type": "function", "name": "f", "description": None,
                                  "parameters": {"type": "object"}, "strict": True}]
    for key in ("instructions", "temperature", "max_output_tokens", "metadata", "tool_choice",
                "truncation", "user"):
        assert response[key] == body[key]
    assert response["text"]["format"] == {"type": "json_object"}
    assert response["reasoning"]["effort"] == "low"


# ------------------------------------------------------------------------------ requests


def test_items_become_core_messages():
    items = inputs.normalize_input([
        {"role": "developer", "content": "rules"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "q"}]},
        {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "r"}]},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "let me see"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "42"},
    ])
    messages = inputs.to_messages(items, "be brief")
    assert [m.role for m in messages] == ["system", "system", "user", "assistant", "tool"]
    assistant = messages[3]
    assert assistant.content == "let me see" and assistant.reasoning == "r"
    assert [c.id for c in assistant.tool_calls] == ["c1", "c2"]
    assert messages[4].tool_call_id == "c1" and messages[4].name == "f"
    assert all(item["id"] for item in items)
    assert items[1]["content"][0]["type"] == "input_text"


def test_string_input_is_one_user_message_with_an_id():
    [item] = inputs.normalize_input("hello")
    assert item["type"] == "message" and item["role"] == "user"
    assert item["content"] == [{"type": "input_text", "text": "hello"}]
    assert item["id"].startswith("msg_") and len(item["id"]) == 52


def test_item_references_resolve_from_the_conversation():
    history = [{"id": "fc_1", "type": "function_call", "call_id": "c", "name": "f",
                "arguments": "{}"}]
    resolved = inputs.resolve_references([{"type": "item_reference", "id": "fc_1"}], history)
    assert resolved == history
    with pytest.raises(InvalidRequest, match="no item with id"):
        inputs.resolve_references([{"type": "item_reference", "id": "nope"}], history)


@pytest.mark.parametrize(("body", "error", "needle"), [
    ({"tools": [{"type": "web_search"}]}, NotSupported, "only 'function' tools"),
    ({"tool_choice": {"type": "file_search"}}, NotSupported, "file_search"),
    ({"conversation": "conv_1"}, NotSupported, "previous_response_id"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
     NotSupported, "data: URL"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
     NotSupported, "input_file"),
])
def test_unsupported_features_are_clear_400s(body, error, needle):
    body = {"model": "m", "input": "x", **body}
    with pytest.raises(error, match=needle) as info:
        inputs.build(body, None, inputs.normalize_input(body["input"]))
    assert info.value.status == 400


def test_settings_map_to_the_core():
    tool = {"type": "function", "name": "f", "parameters": {"type": "object"}}
    body = {"model": "m", "input": "x", "max_output_tokens": 7, "temperature": 0, "seed": 3,
            "reasoning": {"effort": "low"}, "tools": [tool, {**tool, "name": "g"}],
            "tool_choice": {"type": "allowed_tools", "mode": "required",
                            "tools": [{"type": "function", "name": "g"}]},
            "text": {"format": {"type": "json_schema", "name": "s",
                                "schema": {"type": "object"}}},
            "parallel_tool_calls": False}
    req, options = inputs.build(body, None, inputs.normalize_input("x"))
    assert (req.sampling.max_tokens, req.sampling.temperature, req.sampling.seed) == (7, 0, 3)
    assert req.thinking.enabled and req.thinking.budget_tokens == inputs.EFFORT_BUDGETS["low"]
    assert [t.name for t in req.tools] == ["g"] and req.tool_choice.mode == "required"
    assert req.response_schema == {"type": "object"}
    assert options.parallel_tool_calls is False
    none, _ = inputs.build({**body, "reasoning": {"effort": "none"}}, None,
                           inputs.normalize_input("x"))
    assert none.thinking.enabled is False


def test_drop_oldest_turn_keeps_instructions_and_the_last_turn():
    def m(role):
        return Message(role, role)

    convo = [m("system"), m("user"), m("assistant"), m("tool"), m("user"), m("assistant"),
             m("user")]
    shorter = drop_oldest_turn(convo)
    assert [x.role for x in shorter] == ["system", "user", "assistant", "user"]
    assert [x.role for x in drop_oldest_turn(shorter)] == ["system", "user"]
    assert drop_oldest_turn([m("system"), m("user"), m("assistant")]) is None
    assert [x.role for x in drop_oldest_turn([m("assistant"), m("user")])] == ["user"]
