"""Tool calls and structured output: grammar-constrained where the request forces them."""

import json

import jsonschema
import pytest

WEATHER_PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                                      "parameters": WEATHER_PARAMS}},
    {"type": "function", "function": {"name": "get_time", "description": "Current time",
                                      "parameters": {"type": "object", "properties": {
                                          "timezone": {"type": "string"}},
                                          "required": ["timezone"]}}},
]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def ask(client, **kwargs):
    kwargs.setdefault("max_tokens", 60)
    return client.chat.completions.create(model="ai/smollm2", messages=ASK, temperature=0,
                                          tools=TOOLS, **kwargs)


def test_named_tool_choice_gives_valid_arguments(openai_client):
    reply = ask(openai_client, tool_choice={"type": "function",
                                            "function": {"name": "get_weather"}})
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_PARAMS)


def test_required_tool_choice_picks_one_of_the_tools(openai_client):
    choice = ask(openai_client, tool_choice="required").choices[0]
    [call] = choice.message.tool_calls
    schema = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    jsonschema.validate(json.loads(call.function.arguments), schema[call.function.name])


def test_tool_call_streams_as_openai_deltas(openai_client):
    chunks = [c for c in ask(openai_client, stream=True, tool_choice={
        "type": "function", "function": {"name": "get_weather"}}) if c.choices]
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id and deltas[0].function.name == "get_weather"
    assert all(d.id is None and d.index == 0 for d in deltas[1:])
    arguments = "".join(d.function.arguments or "" for d in deltas)
    jsonschema.validate(json.loads(arguments), WEATHER_PARAMS)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_choice_none_answers_in_text(openai_client):
    choice = ask(openai_client, tool_choice="none", max_tokens=10).choices[0]
    assert not choice.message.tool_calls and choice.message.content


def test_auto_tool_choice_answers_with_text_or_a_valid_call(openai_client):
    message = ask(openai_client).choices[0].message
    if message.tool_calls:
        for call in message.tool_calls:
            assert call.function.name in {"get_weather", "get_time"}
            assert isinstance(json.loads(call.function.arguments), dict)
    else:
        assert message.content


def test_tool_result_round_trip(openai_client):
    first = ask(openai_client, tool_choice="required").choices[0].message
    call = first.tool_calls[0]
    messages = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 21})},
    ]
    reply = openai_client.chat.completions.create(model="ai/smollm2", messages=messages,
                                                  max_tokens=20, temperature=0, tools=TOOLS,
                                                  tool_choice="none")
    choice = reply.choices[0]
    assert not choice.message.tool_calls and choice.finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens > 100  # the call and its result were part of the prompt


def test_json_object_output_parses(openai_client):
    reply = openai_client.chat.completions.create(
        model="ai/smollm2", max_tokens=120, temperature=0,
        messages=[{"role": "user", "content":
                   "Reply with a JSON object describing a cat: its name and age."}],
        response_format={"type": "json_object"})
    assert reply.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_output_validates(openai_client, stream):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                               "age": {"type": "integer", "minimum": 0}},
              "required": ["name", "age"], "additionalProperties": False}
    kwargs = dict(model="ai/smollm2", max_tokens=60, temperature=0,
                  messages=[{"role": "user", "content": "Invent a person."}],
                  response_format={"type": "json_schema",
                                   "json_schema": {"name": "person", "schema": schema}})
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in
                       openai_client.chat.completions.create(stream=True, **kwargs) if c.choices)
    else:
        text = openai_client.chat.completions.create(**kwargs).choices[0].message.content
    jsonschema.validate(json.loads(text), schema)


def test_integer_bounds_are_enforced(openai_client):
    # llama-cpp-python's grammar converter ignores minimum/maximum; small ranges are enforced
    # by the engine as enums of the allowed values.
    schema = {"type": "object", "required": ["age", "stars"], "additionalProperties": False,
              "properties": {"age": {"type": "integer", "minimum": 18, "maximum": 120},
                             "stars": {"type": "integer", "exclusiveMinimum": 0,
                                       "exclusiveMaximum": 6}}}
    for seed in range(3):
        reply = openai_client.chat.completions.create(
            model="ai/smollm2", max_tokens=40, temperature=1.0, seed=seed,
            messages=[{"role": "user", "content": "Rate a movie as JSON."}],
            response_format={"type": "json_schema",
                             "json_schema": {"name": "rating", "schema": schema}})
        jsonschema.validate(json.loads(reply.choices[0].message.content), schema)
