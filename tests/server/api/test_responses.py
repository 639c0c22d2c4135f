"""The Responses API against the real server and model, through the official `openai` SDK:
create, stream (accumulated by `client.responses.stream()`), retrieve, delete,
input_items.list, input_tokens.count, previous_response_id chains, a function-call round trip,
json_schema output, reasoning, background responses, and the errors of bad input."""

from __future__ import annotations

import json
import time

import jsonschema
import openai
import pytest
import requests
from pydantic import BaseModel

from tests.conftest import MODEL

GREEDY = {"temperature": 0, "extra_body": {"seed": 7}}
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"], "additionalProperties": False}}


@pytest.fixture(scope="module")
def client(server_url):
    return openai.OpenAI(base_url=server_url + "/v1", api_key="unused", max_retries=0)


def _items(response) -> list[dict]:
    """Output items without their ids (new for every response)."""
    out = []
    for item in response.output:
        data = item.model_dump(exclude_none=True)
        data.pop("id", None)
        data.pop("call_id", None)
        out.append(data)
    return out


def test_create_answers_an_openai_response_object(client):
    r = client.responses.create(model=MODEL, input="Say hello.", max_output_tokens=40, **GREEDY)
    assert r.id.startswith("resp_") and r.object == "response"
    assert r.status in ("completed", "incomplete") and r.model == MODEL
    message = r.output[0]
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_") and message.content[0].type == "output_text"
    assert r.output_text == message.content[0].text and r.output_text.strip()
    usage = r.usage
    assert usage.input_tokens > 0 and 0 < usage.output_tokens <= 40
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens >= 0
    assert usage.output_tokens_details.reasoning_tokens == 0
    if r.status == "incomplete":
        assert r.incomplete_details.reason == "max_output_tokens"


def test_stream_accumulates_to_the_non_streamed_answer(client):
    kwargs = {"model": MODEL, "input": "Name one colour.", "max_output_tokens": 60,
              "instructions": "Answer in one short sentence.", **GREEDY}
    with client.responses.stream(**kwargs) as stream:
        events = list(stream)
        final = stream.get_final_response()
    plain = client.responses.create(**kwargs)
    assert final.status == plain.status == "completed"
    assert _items(final) == _items(plain) and final.output_text == plain.output_text
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.usage.input_tokens == plain.usage.input_tokens
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text
    assert client.responses.retrieve(final.id).output_text == final.output_text


def test_max_output_tokens_makes_it_incomplete_in_both_forms(client):
    kwargs = {"model": MODEL, "input": "Write a long story about a cat.", "max_output_tokens": 3}
    r = client.responses.create(**kwargs, **GREEDY)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.output[0].status == "incomplete" and r.usage.output_tokens == 3
    events = list(client.responses.create(**kwargs, stream=True, **GREEDY))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.output_text == r.output_text


def test_retrieve_delete_and_input_items(client):
    r = client.responses.create(model=MODEL, input="Hi", max_output_tokens=2,
                                metadata={"purpose": "test"}, **GREEDY)
    got = client.responses.retrieve(r.id)
    assert got.model_dump() == r.model_dump()
    items = client.responses.input_items.list(r.id)
    assert len(items.data) == 1 and not items.has_more
    [item] = items.data
    assert item.type == "message" and item.role == "user" and item.id.startswith("msg_")
    assert item.content[0].type == "input_text" and item.content[0].text == "Hi"
    client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(r.id)


def test_input_items_pagination(client):
    turns = [{"role": "user", "content": f"Message {i}"} for i in range(5)]
    r = client.responses.create(model=MODEL, input=turns, max_output_tokens=1, **GREEDY)
    desc = client.responses.input_items.list(r.id, limit=2)
    assert [i.content[0].text for i in desc.data] == ["Message 4", "Message 3"]
    assert desc.has_more and desc.last_id == desc.data[-1].id
    rest = client.responses.input_items.list(r.id, order="asc", after=desc.data[0].id)
    assert rest.data == [] and not rest.has_more
    asc = client.responses.input_items.list(r.id, order="asc")
    assert [i.content[0].text for i in asc.data] == [f"Message {i}" for i in range(5)]
    # the SDK's auto-pagination walks every page
    assert len(list(client.responses.input_items.list(r.id, limit=2))) == 5


def test_store_false_is_never_kept(client):
    r = client.responses.create(model=MODEL, input="Hi", max_output_tokens=1, store=False)
    assert r.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model=MODEL, input="again", previous_response_id=r.id)
    assert info.value.body["code"] == "previous_response_not_found"


def test_previous_response_id_puts_the_earlier_turns_in_the_prompt(client):
    first = client.responses.create(model=MODEL, input="My name is Ada.", max_output_tokens=8,
                                    instructions="Be brief.", **GREEDY)
    second = client.responses.create(model=MODEL, input="What is my name?",
                                     previous_response_id=first.id, max_output_tokens=8,
                                     **GREEDY)
    assert second.previous_response_id == first.id
    alone = client.responses.input_tokens.count(model=MODEL, input="What is my name?")
    assert second.usage.input_tokens > alone.input_tokens + first.usage.output_tokens
    counted = client.responses.input_tokens.count(model=MODEL, input="What is my name?",
                                                  previous_response_id=first.id)
    assert counted.input_tokens == second.usage.input_tokens
    # the prefix cache serves the earlier turns
    assert second.usage.input_tokens_details.cached_tokens > 0
    # only the new input is this response's input items
    assert [i.content[0].text for i in client.responses.input_items.list(second.id).data] == [
        "What is my name?"]


def test_function_call_round_trip_through_previous_response_id(client):
    first = client.responses.create(model=MODEL, input="What is the weather in Paris?",
                                    tools=[WEATHER], tool_choice="required", **GREEDY)
    assert first.status == "completed"
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.id.startswith("fc_") and call.call_id and call.status == "completed"
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])
    second = client.responses.create(
        model=MODEL, previous_response_id=first.id, tools=[WEATHER], max_output_tokens=30,
        input=[{"type": "function_call_output", "call_id": call.call_id,
                "output": json.dumps({"city": "Paris", "sky": "sunny", "celsius": 21})}],
        **GREEDY)
    assert second.output[0].type == "message" and second.output_text
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens


def test_named_tool_choice_and_none(client):
    other = {**WEATHER, "name": "get_time", "description": "Current time in a city"}
    r = client.responses.create(model=MODEL, input="Weather in Rome?", tools=[WEATHER, other],
                                tool_choice={"type": "function", "name": "get_time"}, **GREEDY)
    assert [(i.type, i.name) for i in r.output] == [("function_call", "get_time")]
    r = client.responses.create(model=MODEL, input="Weather in Rome?", tools=[WEATHER],
                                tool_choice="none", max_output_tokens=10, **GREEDY)
    assert all(i.type == "message" for i in r.output)


def test_streamed_function_call_arguments(client):
    with client.responses.stream(model=MODEL, input="Weather in Oslo?", tools=[WEATHER],
                                 tool_choice="required", **GREEDY) as stream:
        events = list(stream)
        final = stream.get_final_response()
    added = [e for e in events if e.type == "response.output_item.added"]
    assert added[0].item.type == "function_call" and added[0].item.arguments == ""
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert deltas == done[0].arguments == final.output[0].arguments
    assert json.loads(deltas)["city"]


class Person(BaseModel):
    name: str
    age: int


def test_json_schema_text_format(client):
    schema = {"type": "object", "properties": {"name": {"type": "string"},
                                               "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    r = client.responses.create(model=MODEL, input="Invent a person.", max_output_tokens=80,
                                text={"format": {"type": "json_schema", "name": "person",
                                                 "schema": schema, "strict": True}}, **GREEDY)
    jsonschema.validate(json.loads(r.output_text), schema)
    assert r.text.format.type == "json_schema"
    parsed = client.responses.parse(model=MODEL, input="Invent a person.", text_format=Person,
                                    max_output_tokens=80, **GREEDY)
    assert isinstance(parsed.output_parsed, Person)
    obj = client.responses.create(model=MODEL, input="Give a JSON object.", max_output_tokens=40,
                                  text={"format": {"type": "json_object"}}, **GREEDY)
    if obj.status == "completed":
        assert isinstance(json.loads(obj.output_text), dict)


def test_reasoning_effort_thinks_first(client):
    with client.responses.stream(model=MODEL, input="What is 2 + 3?", max_output_tokens=40,
                                 reasoning={"effort": "minimal"}, **GREEDY) as stream:
        events = list(stream)
        final = stream.get_final_response() if events[-1].type == "response.completed" else None
    last = events[-1].response
    assert last.output[0].type == "reasoning" and last.output[0].content[0].text
    assert any(e.type == "response.reasoning_text.delta" for e in events)
    reasoning = last.usage.output_tokens_details.reasoning_tokens
    assert 0 < reasoning <= 64 and reasoning <= last.usage.output_tokens
    if final is not None:
        assert final.reasoning.effort == "minimal"


def test_background_response_is_polled_streamed_and_resumed(client):
    r = client.responses.create(model=MODEL, input="Say hi.", background=True,
                                max_output_tokens=12, **GREEDY)
    assert r.status == "queued" and r.background
    deadline = time.monotonic() + 60
    while r.status in ("queued", "in_progress") and time.monotonic() < deadline:
        time.sleep(0.2)
        r = client.responses.retrieve(r.id)
    assert r.status in ("completed", "incomplete") and r.output_text
    events = list(client.responses.retrieve(r.id, stream=True, starting_after=2))
    assert events[0].sequence_number == 3 and events[-1].response.output_text == r.output_text
    with client.responses.stream(response_id=r.id) as stream:
        assert [e.sequence_number for e in stream][0] == 0
    # a stream that drops out and resumes sees every event once
    with client.responses.create(model=MODEL, input="Count to five.", background=True,
                                 stream=True, max_output_tokens=12, **GREEDY) as first:
        head = []
        for event in first:
            head.append(event)
            if event.sequence_number == 4:
                break
    tail = list(client.responses.retrieve(head[0].response.id, stream=True, starting_after=4))
    numbers = [e.sequence_number for e in head + tail]
    assert numbers == list(range(len(numbers)))
    assert tail[-1].type in ("response.completed", "response.incomplete")


def test_cancel_a_background_response(client):
    r = client.responses.create(model=MODEL, input="Write a very long essay.", background=True,
                                max_output_tokens=2000, temperature=1)
    cancelled = client.responses.cancel(r.id)
    assert cancelled.status in ("cancelled", "completed", "incomplete")
    assert client.responses.retrieve(r.id).status == cancelled.status
    done = client.responses.create(model=MODEL, input="Hi", max_output_tokens=1)
    with pytest.raises(openai.BadRequestError, match="background"):
        client.responses.cancel(done.id)
    with pytest.raises(openai.BadRequestError, match="store"):
        client.responses.create(model=MODEL, input="Hi", background=True, store=False)


def test_instructions_and_tools_count_as_input(client):
    def count(**kwargs) -> int:
        kwargs.setdefault("input", "Hi")
        return client.responses.input_tokens.count(model=MODEL, **kwargs).input_tokens

    short = count(instructions="Be brief.")
    assert short < count(instructions="Be brief. " * 20)
    assert short < count(instructions="Be brief.", tools=[WEATHER], tool_choice="required")
    assert count(input=[{"role": "developer", "content": "Be brief."},
                        {"role": "user", "content": "Hi"}]) == short


@pytest.mark.parametrize("prefix", ["/v1", "/engines/v1", "/engines/llama.cpp/v1", "",
                                    "/engines"])
def test_every_route_prefix_serves_responses(server_url, prefix):
    url = f"{server_url}{prefix}/responses"
    r = requests.post(url, json={"model": MODEL, "input": "Hi", "max_output_tokens": 1},
                      timeout=60)
    assert r.status_code == 200, r.text
    rid = r.json()["id"]
    assert requests.get(f"{url}/{rid}", timeout=10).json()["id"] == rid
    assert requests.get(f"{url}/{rid}/input_items", timeout=10).json()["object"] == "list"
    count = requests.post(f"{url}/input_tokens", json={"model": MODEL, "input": "Hi"}, timeout=30)
    assert count.json() == {"object": "response.input_tokens",
                            "input_tokens": r.json()["usage"]["input_tokens"]}
    assert requests.delete(f"{url}/{rid}", timeout=10).json() == {
        "id": rid, "object": "response", "deleted": True}


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"input": 5}, "input"),
    ({"input": [{"type": "message", "role": "robot", "content": "x"}]}, "role"),
    ({"input": "x", "max_output_tokens": "ten"}, "max_output_tokens"),
    ({"input": "x", "temperature": 3}, "temperature"),
    ({"input": "x", "tools": [{"type": "web_search_preview"}]}, "only 'function' tools"),
    ({"input": "x", "tool_choice": {"type": "function"}}, "name"),
    ({"input": "x", "tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}},
     "not in tools"),
    ({"input": "x", "text": {"format": {"type": "json_schema", "name": "s"}}}, "schema"),
    ({"input": "x", "reasoning": {"effort": "extreme"}}, "effort"),
    ({"input": "x", "truncation": "sometimes"}, "truncation"),
    ({"input": "x", "metadata": {"k": 1}}, "metadata"),
    ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0]"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "call_id"),
])
def test_bad_input_is_a_400_in_openai_shape(client, kwargs, needle):
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model=MODEL, **kwargs)
    assert needle in info.value.body["message"], info.value.body
    assert info.value.body["type"] == "invalid_request_error"


def test_missing_input_and_model_and_malformed_json(server_url, client):
    for body in ({"model": MODEL}, {"input": "x"}):
        r = requests.post(server_url + "/v1/responses", json=body, timeout=10)
        assert r.status_code == 400 and "required" in r.json()["error"]["message"]
    r = requests.post(server_url + "/v1/responses", data="{oops", timeout=10,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="ai/no-such-model", input="x")
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model=MODEL, input="x", previous_response_id="resp_nope")
    assert info.value.body["param"] == "previous_response_id"
    r = requests.get(server_url + "/v1/responses/resp_nope/input_items?limit=0", timeout=10)
    assert r.status_code in (400, 404)


def test_unknown_fields_are_ignored(client):
    r = client.responses.create(model=MODEL, input="Hi", max_output_tokens=1,
                                extra_body={"service_tier": "flex", "prompt_cache_key": "k",
                                            "safety_identifier": "s", "brand_new_field": [1]})
    assert r.status in ("completed", "incomplete")
