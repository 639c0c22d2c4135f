"""Structured output beyond the budget: loops end, bounds hold, llama-server's `grammar` and
`json_schema` fields work, and what cannot be enforced is refused by name in every dialect."""

from __future__ import annotations

import json

import anthropic
import jsonschema
import ollama
import pytest
import requests

MODEL = "ai/smollm2"
CAT = [{"role": "user", "content": "Give me a JSON object describing a cat."}]


def test_json_object_cat_ends_by_itself(openai_client):
    """The issue's loop: temperature 0, 300 tokens; it used to repeat "loyalty" to the limit."""
    reply = openai_client.chat.completions.create(
        model=MODEL, messages=CAT, temperature=0, max_tokens=300,
        response_format={"type": "json_object"})
    choice = reply.choices[0]
    assert choice.finish_reason == "stop", choice.message.content
    assert isinstance(json.loads(choice.message.content), dict)
    assert reply.usage.completion_tokens < 300


def test_ollama_json_format_cat_ends_by_itself(server_url):
    reply = ollama.Client(host=server_url).chat(model=MODEL, messages=CAT, format="json",
                                                options={"temperature": 0, "num_predict": 300})
    assert reply.done_reason == "stop" and isinstance(json.loads(reply.message.content), dict)


def test_number_bounds_hold_at_any_temperature(openai_client):
    schema = {"type": "object", "required": ["ratio", "year"], "additionalProperties": False,
              "properties": {"ratio": {"type": "number", "minimum": 0.5, "maximum": 0.9},
                             "year": {"type": "integer", "minimum": 1900,
                                      "exclusiveMaximum": 2100}}}
    for seed in range(4):
        reply = openai_client.chat.completions.create(
            model=MODEL, max_tokens=40, temperature=1.0, seed=seed,
            messages=[{"role": "user", "content": "A ratio and a year, as JSON."}],
            response_format={"type": "json_schema",
                             "json_schema": {"name": "r", "schema": schema}})
        jsonschema.validate(json.loads(reply.choices[0].message.content), schema)


def test_pattern_and_tuple_items(openai_client):
    schema = {"type": "object", "required": ["code", "pair"], "properties": {
        "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{3}$"},
        "pair": {"type": "array", "items": [{"type": "string"}, {"type": "integer"}],
                 "additionalItems": False}}}
    for seed in range(3):
        reply = openai_client.chat.completions.create(
            model=MODEL, max_tokens=40, temperature=1.0, seed=seed,
            messages=[{"role": "user", "content": "A product code and a pair, as JSON."}],
            response_format={"type": "json_schema",
                             "json_schema": {"name": "p", "schema": schema}})
        # tuple-form items are draft 7's (the server judges them so too)
        jsonschema.Draft7Validator(schema).validate(json.loads(reply.choices[0].message.content))


@pytest.mark.parametrize("path,field", [("/engines/v1/chat/completions", "messages"),
                                        ("/engines/v1/completions", "prompt")])
def test_raw_grammar_field(server_url, path, field):
    ask = {"messages": [{"role": "user", "content": "Is the sky blue? Answer yes or no."}],
           "prompt": "Is the sky blue? Answer yes or no: "}[field]
    body = {"model": MODEL, field: ask, "max_tokens": 5, "temperature": 1, "seed": 1,
            "grammar": 'root ::= "yes" | "no"'}
    r = requests.post(server_url + path, json=body, timeout=60)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert (choice.get("text") if field == "prompt" else choice["message"]["content"]) \
        in ("yes", "no")
    bad = requests.post(server_url + path, json={**body, "grammar": "root ::= [oops"},
                        timeout=60)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "grammar"
    both = requests.post(server_url + path, json={**body, "json_schema": {"type": "object"}},
                         timeout=60)
    assert both.status_code == 400 and "not both" in both.json()["error"]["message"]


def test_top_level_json_schema_field(server_url):
    schema = {"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}}
    r = requests.post(server_url + "/engines/v1/chat/completions", timeout=60, json={
        "model": MODEL, "max_tokens": 20, "temperature": 0, "json_schema": schema,
        "messages": [{"role": "user", "content": "Are you ok? JSON."}]})
    jsonschema.validate(json.loads(r.json()["choices"][0]["message"]["content"]), schema)


UNENFORCEABLE = {"type": "object", "required": ["n"],
                 "properties": {"n": {"type": "integer", "multipleOf": 7}}}


def test_unenforceable_keywords_are_refused_in_every_dialect(server_url, openai_client):
    import openai

    with pytest.raises(openai.BadRequestError) as err:
        openai_client.chat.completions.create(
            model=MODEL, max_tokens=20, messages=[{"role": "user", "content": "n"}],
            response_format={"type": "json_schema",
                             "json_schema": {"name": "n", "schema": UNENFORCEABLE}})
    assert "'multipleOf'" in err.value.body["message"]
    assert err.value.body["param"] == "response_format"
    with pytest.raises(openai.BadRequestError) as err:
        openai_client.chat.completions.create(
            model=MODEL, max_tokens=20, messages=[{"role": "user", "content": "n"}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": UNENFORCEABLE}}],
            tool_choice="required")
    assert "'multipleOf'" in err.value.body["message"] and err.value.body["param"] == "tools"
    with pytest.raises(ollama.ResponseError) as err:
        ollama.Client(host=server_url).chat(model=MODEL, format=UNENFORCEABLE,
                                            messages=[{"role": "user", "content": "n"}])
    assert err.value.status_code == 400 and "'multipleOf'" in err.value.error
    assert err.value.error.startswith("format:")
    client = anthropic.Anthropic(base_url=server_url, api_key="x", max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model=MODEL, max_tokens=20,
                               messages=[{"role": "user", "content": "n"}],
                               extra_body={"output_config": {"format": {
                                   "type": "json_schema", "schema": UNENFORCEABLE}}})
    assert err.value.body["error"]["type"] == "invalid_request_error"
    assert "'multipleOf'" in err.value.body["error"]["message"]


def test_too_small_a_budget_is_a_clear_400(server_url):
    schema = {"type": "object", "required": ["first_name", "last_name", "city"],
              "properties": {k: {"type": "string"} for k in ("first_name", "last_name", "city")}}
    r = requests.post(server_url + "/engines/v1/chat/completions", timeout=60, json={
        "model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "p",
                                                                   "schema": schema}}})
    error = r.json()["error"]
    assert r.status_code == 400 and error["param"] == "max_tokens"
    assert error["min_tokens"] > 5 and "allow at least" in error["message"]
