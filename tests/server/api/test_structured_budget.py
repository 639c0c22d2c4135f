"""Structured output is valid at any budget, in every dialect, with the real model and clients.

The matrix: schema (flat, nested, deep, bounded numbers, tuple + limited array, any object) x
token budget (8, 16, 30, and exactly the schema's shortest answer) x way of asking (OpenAI
chat, streamed chat, legacy completions and a forced tool; Ollama chat and generate `format`;
Anthropic `output_config.format` and a forced tool). Every answer must parse and validate with
usage within the budget; a budget below the schema's shortest valid answer must be refused
with a 400 that says how many tokens it needs. The matrix is printed (run with -s).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import anthropic
import jsonschema
import ollama
import openai
import pytest
import requests

MODEL = "ai/smollm2"
PERSON = {"type": "object", "required": ["name", "age", "breed", "color"],
          "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0},
                         "breed": {"type": "string"}, "color": {"type": "string"}}}
SCHEMAS = {
    "flat": PERSON,
    "nested": {"type": "object", "required": ["cat"], "properties": {"cat": {
        "type": "object", "required": ["name", "toys"], "properties": {
            "name": {"type": "string"},
            "toys": {"type": "array", "items": {"type": "string"}}}}}},
    "deep": {"type": "object", "required": ["owner", "pets"], "properties": {
        "owner": {"type": "object", "required": ["name", "address"], "properties": {
            "name": {"type": "string"},
            "address": {"type": "object", "required": ["city", "zip"], "properties": {
                "city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}}}}},
        "pets": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["kind", "age"], "properties": {
                "kind": {"enum": ["cat", "dog"]},
                "age": {"type": "integer", "minimum": 0, "maximum": 30}}}}}},
    "bounded": {"type": "object", "required": ["score", "ratio"], "properties": {
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
        "ratio": {"type": "number", "minimum": 0.5, "maximum": 0.9}}},
    "tuple": {"type": "object", "required": ["point", "tags"], "properties": {
        "point": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}],
                  "items": False},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3}}},
    "any": {},
}
BUDGETS = [8, 16, 30]
PROMPT = "Describe a cat and its owner as JSON."
TOOL = "record"


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _schema_for_tool(schema):
    return schema or {"type": "object"}


def openai_chat(url, schema, budget):
    client = openai.OpenAI(base_url=url + "/engines/v1", api_key="x", max_retries=0)
    fmt = ({"type": "json_object"} if not schema else
           {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}})
    try:
        r = client.chat.completions.create(model=MODEL, max_tokens=budget, temperature=0,
                                           messages=[{"role": "user", "content": PROMPT}],
                                           response_format=fmt)
    except openai.BadRequestError as exc:
        raise Refused(400, exc.body["message"]) from exc
    return r.choices[0].message.content, r.choices[0].finish_reason, r.usage.completion_tokens


def openai_stream(url, schema, budget):
    client = openai.OpenAI(base_url=url + "/engines/v1", api_key="x", max_retries=0)
    fmt = ({"type": "json_object"} if not schema else
           {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}})
    try:
        stream = client.chat.completions.create(
            model=MODEL, max_tokens=budget, temperature=0, stream=True,
            stream_options={"include_usage": True}, response_format=fmt,
            messages=[{"role": "user", "content": PROMPT}])
        text, finish, used = "", None, None
        for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage:
                used = chunk.usage.completion_tokens
    except openai.BadRequestError as exc:
        raise Refused(400, exc.body["message"]) from exc
    return text, finish, used


def openai_completion(url, schema, budget):
    """Legacy completions with llama-server's top-level json_schema field."""
    r = requests.post(url + "/engines/v1/completions", timeout=120, json={
        "model": MODEL, "prompt": PROMPT + "\n", "max_tokens": budget, "temperature": 0,
        "json_schema": schema or {"type": "object"}})
    if r.status_code != 200:
        raise Refused(r.status_code, r.json()["error"]["message"])
    choice = r.json()["choices"][0]
    return choice["text"], choice["finish_reason"], r.json()["usage"]["completion_tokens"]


def openai_tool(url, schema, budget):
    client = openai.OpenAI(base_url=url + "/engines/v1", api_key="x", max_retries=0)
    try:
        r = client.chat.completions.create(
            model=MODEL, max_tokens=budget, temperature=0,
            messages=[{"role": "user", "content": PROMPT}],
            tools=[{"type": "function", "function": {"name": TOOL,
                                                     "parameters": _schema_for_tool(schema)}}],
            tool_choice={"type": "function", "function": {"name": TOOL}})
    except openai.BadRequestError as exc:
        raise Refused(400, exc.body["message"]) from exc
    choice = r.choices[0]
    [call] = choice.message.tool_calls
    assert call.function.name == TOOL
    return call.function.arguments, choice.finish_reason, r.usage.completion_tokens


def ollama_chat(url, schema, budget):
    client = ollama.Client(host=url)
    try:
        r = client.chat(model=MODEL, messages=[{"role": "user", "content": PROMPT}],
                        format=schema or "json", options={"num_predict": budget,
                                                          "temperature": 0})
    except ollama.ResponseError as exc:
        raise Refused(exc.status_code, exc.error) from exc
    return r.message.content, r.done_reason, r.eval_count


def ollama_generate(url, schema, budget):
    client = ollama.Client(host=url)
    try:
        r = client.generate(model=MODEL, prompt=PROMPT, format=schema or "json",
                            options={"num_predict": budget, "temperature": 0})
    except ollama.ResponseError as exc:
        raise Refused(exc.status_code, exc.error) from exc
    return r.response, r.done_reason, r.eval_count


def anthropic_format(url, schema, budget):
    client = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0)
    try:
        m = client.messages.create(
            model=MODEL, max_tokens=budget, messages=[{"role": "user", "content": PROMPT}],
            extra_body={"temperature": 0, "output_config": {"format": {
                "type": "json_schema", "schema": schema or {"type": "object"}}}})
    except anthropic.BadRequestError as exc:
        raise Refused(400, exc.body["error"]["message"]) from exc
    return m.content[0].text, m.stop_reason, m.usage.output_tokens


def anthropic_tool(url, schema, budget):
    client = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0)
    try:
        m = client.messages.create(
            model=MODEL, max_tokens=budget, messages=[{"role": "user", "content": PROMPT}],
            tools=[{"name": TOOL, "input_schema": _schema_for_tool(schema)}],
            tool_choice={"type": "tool", "name": TOOL}, extra_body={"temperature": 0})
    except anthropic.BadRequestError as exc:
        raise Refused(400, exc.body["error"]["message"]) from exc
    [use] = [b for b in m.content if b.type == "tool_use"]
    return json.dumps(use.input), m.stop_reason, m.usage.output_tokens


WAYS = {"openai chat": openai_chat, "openai stream": openai_stream,
        "openai completions": openai_completion, "openai tool": openai_tool,
        "ollama chat": ollama_chat, "ollama generate": ollama_generate,
        "anthropic format": anthropic_format, "anthropic tool": anthropic_tool}
#: What ends a valid answer: the model finished it, or the budget did (and the server closed
#: the JSON).
FINISHED = {"stop", "tool_calls", "end_turn", "tool_use"}
BUDGET_END = {"length", "max_tokens"}


def _ask(url, way, schema_name, budget):
    try:
        return WAYS[way](url, SCHEMAS[schema_name], budget)
    except Refused as exc:
        return exc


def _min_tokens(message: str) -> int:
    return int(message.split("takes ")[1].split(" tokens")[0])


@pytest.fixture(scope="module")
def matrix(server_url):
    """Every cell of the matrix, asked 8 at a time (the server's slots)."""
    cells = [(way, name, b) for way in WAYS for name in SCHEMAS for b in BUDGETS]
    with ThreadPoolExecutor(8) as pool:
        results = dict(zip(cells, pool.map(lambda c: _ask(server_url, *c), cells),
                           strict=True))
    # Each schema at exactly its shortest answer's cost, where the smaller budgets were refused.
    extra = {}
    for (way, name, _), result in results.items():
        if isinstance(result, Refused) and "too small" in result.message:
            extra[(way, name, _min_tokens(result.message))] = None
    with ThreadPoolExecutor(8) as pool:
        results.update(zip(extra, pool.map(lambda c: _ask(server_url, *c), extra),
                           strict=True))
    _print(results)
    return results


def _print(results) -> None:
    budgets = sorted({b for _, _, b in results})
    print("\n| way | schema | " + " | ".join(str(b) for b in budgets) + " |")
    print("|---|---|" + "---|" * len(budgets))
    for way in WAYS:
        for name in SCHEMAS:
            row = []
            for b in budgets:
                r = results.get((way, name, b))
                if r is None:
                    row.append("")
                elif isinstance(r, Refused):
                    row.append(f"400 (needs {_min_tokens(r.message)})"
                               if "too small" in r.message else f"{r.status}")
                else:
                    row.append(f"{'ok' if r[1] in FINISHED else 'closed'} {r[2]}")
            print(f"| {way} | {name} | " + " | ".join(row) + " |")


@pytest.mark.parametrize("way", list(WAYS))
def test_every_answer_parses_and_validates_within_its_budget(matrix, way):
    answered = 0
    for (w, name, budget), result in matrix.items():
        if w != way:
            continue
        schema = SCHEMAS[name] or {"type": "object"}
        if isinstance(result, Refused):
            assert result.status == 400, result.message
            assert "too small" in result.message and _min_tokens(result.message) > budget
            continue
        text, finish, used = result
        value = json.loads(text)
        jsonschema.validate(value, schema)
        assert used <= budget, (name, budget, used)
        assert finish in FINISHED | BUDGET_END, finish
        answered += 1
    assert answered >= len(SCHEMAS)  # every schema answered at some budget


def test_a_refused_budget_is_answered_at_the_cost_it_names(matrix):
    for (way, name, _), result in matrix.items():
        if isinstance(result, Refused) and "too small" in result.message:
            needed = _min_tokens(result.message)
            answer = matrix[(way, name, needed)]
            assert not isinstance(answer, Refused), (way, name, needed, answer)
            jsonschema.validate(json.loads(answer[0]), SCHEMAS[name] or {"type": "object"})
