"""Structured output without a model: the schema normal form, number ranges and patterns, the
closer (every prefix of a valid document can be finished validly) and the budget guard."""

from __future__ import annotations

import json
import random
import re
from decimal import Decimal

import jsonschema
import pytest

from server.core import numbers, regex
from server.core.budget import BudgetGuard
from server.core.errors import InvalidRequest
from server.core.schema import normalize
from server.core.structured import Closer

PERSON = {"type": "object", "required": ["name", "age", "breed", "color"],
          "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0},
                         "breed": {"type": "string"}, "color": {"type": "string"}}}
NESTED = {"type": "object", "required": ["a", "z"], "properties": {
    "a": {"type": "object", "required": ["b"], "properties": {
        "b": {"type": "object", "required": ["c"], "properties": {
            "c": {"type": "array", "items": {"type": "integer"}, "minItems": 1}}}}},
    "z": {"type": "boolean"}}}

#: (schema, documents as a model would write them): every prefix of each must close validly.
CASES = [
    (PERSON, ['{"name": "Tom", "age": 3, "breed": "Sia\\"mese", "color": "grey"}']),
    ({"type": "object"}, ['{"a": [1, 2.5e-3, {"b": null}], "c": true, "d\\u0041": "x\\n"}',
                          "{}"]),
    ({"type": "object", "required": ["x"],
      "properties": {"x": {"type": "number", "minimum": 0.5, "maximum": 0.9}}},
     ['{"x": 0.75}', '{"x": 0.5}']),
    ({"type": "object", "required": ["tags"], "properties": {"tags": {
        "type": "array", "items": {"type": "string", "minLength": 2}, "minItems": 2}}},
     ['{"tags": ["ab", "cde", "f g"]}']),
    ({"type": "object", "required": ["p"], "properties": {"p": {
        "type": "array", "prefixItems": [{"type": "string"},
                                         {"type": "integer", "minimum": 10, "maximum": 20}],
        "items": {"type": "boolean"}}}}, ['{"p": ["a", 15, true, false]}']),
    ({"type": "object", "required": ["code", "when"], "properties": {
        "code": {"type": "string", "pattern": "^[A-Z]{3}-\\d{2}$"},
        "when": {"type": "string", "format": "date-time"}}},
     ['{"code": "ABC-12", "when": "2024-05-06T12:30:00Z"}']),
    ({"type": "object", "required": ["kind", "n"], "properties": {
        "kind": {"enum": ["cat", "dog"]}, "n": {"type": ["integer", "null"]}}},
     ['{"kind": "dog", "n": null}', '{"kind": "cat", "n": -12}']),
    (NESTED, ['{"a": {"b": {"c": [1, 2, 3]}}, "z": false}']),
    ({"anyOf": [
        {"type": "object", "required": ["t", "x"],
         "properties": {"t": {"const": "a"}, "x": {"type": "integer"}}},
        {"type": "object", "required": ["t", "y"],
         "properties": {"t": {"const": "b"}, "y": {"type": "string"}}}]},
     ['{"t": "b", "y": "hi"}', '{"t": "a", "x": 5}']),
    ({"type": "object", "required": ["req"], "properties": {
        "opt": {"type": "string"}, "req": {"type": "integer", "exclusiveMinimum": 100}}},
     ['{"req": 150, "opt": "zz"}']),
    ({"$defs": {"pt": {"type": "object", "required": ["x", "y"],
                       "properties": {"x": {"type": "number"}, "y": {"type": "number"}}}},
      "type": "object", "required": ["from", "to"],
      "properties": {"from": {"$ref": "#/$defs/pt"}, "to": {"$ref": "#/$defs/pt"}}},
     ['{"from": {"x": 1, "y": -2.5}, "to": {"x": 0, "y": 1e3}}']),
]


@pytest.mark.parametrize("schema,docs", CASES, ids=[str(i) for i in range(len(CASES))])
def test_every_prefix_closes_into_a_valid_document(schema, docs):
    normalized = normalize(schema)
    for doc in docs:
        jsonschema.validate(json.loads(doc), schema)  # the case itself is right
        closer = Closer(schema, normalized)
        assert closer.minimal() is not None
        for i, ch in enumerate(doc):
            closer.feed(ch)
            closing = closer.closing()
            assert closing is not None, doc[:i + 1]
            jsonschema.validate(json.loads(doc[:i + 1] + closing), schema)
        assert closer.closing() == ""


def test_minimal_documents_are_short_and_valid():
    assert Closer(PERSON, normalize(PERSON)).minimal() == \
        '{"name":"","age":0,"breed":"","color":""}'
    assert Closer(NESTED, normalize(NESTED)).minimal() == '{"a":{"b":{"c":[0]}},"z":true}'
    bounded = {"type": "integer", "minimum": 1000, "maximum": 2000}
    assert Closer(bounded, normalize(bounded)).minimal() == "1000"


# ------------------------------------------------------------------------------ the guard


def _tokens(text: str, rng: random.Random) -> list[str]:
    """Split text into 1-4 character "tokens", as a model's pieces would."""
    out, i = [], 0
    while i < len(text):
        n = rng.randint(1, 4)
        out.append(text[i:i + n])
        i += n
    return out


def _guarded(schema, doc: str, budget: int, seed: int) -> tuple[str, int, bool]:
    count = lambda text: (len(text) + 2) // 3  # noqa: E731 - a tokenizer of ~3 chars a token
    guard = BudgetGuard(Closer(schema, normalize(schema)), budget, count)
    sent = ""
    pieces = _tokens(doc, random.Random(seed))
    for piece in pieces[:budget]:
        sent += guard.feed(piece)
    ending = guard.end()
    return sent + ending.text, ending.tokens, ending.closed


def _budget_cases():
    """(name, schema, document, budget) for budgets the shortest valid answer fits in (the
    pipeline refuses smaller ones with a 400 before generating)."""
    out = []
    for name, i in (("flat", 0), ("array", 3), ("pattern", 5), ("nested", 7)):
        schema, docs = CASES[i]
        cost = (len(Closer(schema, normalize(schema)).minimal()) + 2) // 3
        out += [(name, schema, docs[0], b) for b in (9, 12, 16, 20, 25, 30, 60) if b >= cost]
    return out


@pytest.mark.parametrize("name,schema,doc,budget", _budget_cases(),
                         ids=[f"{c[0]}-{c[3]}" for c in _budget_cases()])
def test_guard_output_is_valid_within_every_budget(name, schema, doc, budget):
    for seed in range(5):
        text, tokens, closed = _guarded(schema, doc, budget, seed)
        jsonschema.validate(json.loads(text), schema)
        assert tokens <= budget
        if not closed:
            assert text == doc  # finished by the "model" itself, untouched


def test_guard_breaks_a_loop_and_holds_back_nothing_far_from_the_budget():
    schema = {"type": "object"}
    guard = BudgetGuard(Closer(schema, normalize(schema)), 1000, len)
    sent = guard.feed('{"traits": [')
    for _ in range(12):
        sent += guard.feed('"loyalty", ')
        if guard.looping:
            break
    assert guard.looping
    ending = guard.end()
    assert json.loads(sent + ending.text)["traits"][0] == "loyalty"


def test_guard_closes_after_a_stop_sequence_cut():
    guard = BudgetGuard(Closer(PERSON, normalize(PERSON)), 100, len)
    sent = guard.feed('{"name": "Tom", "ag')
    ending = guard.cut(len('{"name": "To'))
    jsonschema.validate(json.loads(sent[:len('{"name": "To')] + ending.text), PERSON)


# ------------------------------------------------------------------------------ numbers


def _number_texts() -> list[str]:
    out = ["0"]
    for i in range(0, 125):
        out.append(str(i))
        out += [f"{i}.{f}" for f in ("0", "5", "05", "50", "9", "99", "1", "25", "125", "001")]
    return out + ["-" + x for x in out if x != "0"]


def test_range_patterns_match_exactly_the_numbers_in_range():
    texts = _number_texts()
    rng = random.Random(7)
    values = [0, 0.5, 0.9, 1, 2, 2.5, -1, -0.5, 10, 99, 100, 12.25, 0.05, -12.5, 7, 0.125]
    tried = 0
    while tried < 120:
        schema = {k: rng.choice(values) for k in
                  ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
                  if rng.random() < 0.4}
        integer = rng.random() < 0.4
        try:
            pattern = numbers.range_pattern(schema, integer)
        except numbers.EmptyRange:
            continue
        tried += 1
        compiled, automaton = re.compile(pattern), regex.matcher(pattern)
        lo, lo_strict, hi, hi_strict = numbers.bounds(schema)
        for text in texts:
            value = Decimal(text)
            if text.startswith("-") and value == 0:
                continue  # negative zero is never written
            want = (lo is None or (value > lo if lo_strict else value >= lo)) and \
                (hi is None or (value < hi if hi_strict else value <= hi)) and \
                not (integer and "." in text)
            assert bool(compiled.fullmatch(text)) == want, (schema, integer, text, pattern)
            assert automaton.matches(text) == want, (schema, integer, text)


def test_empty_ranges_are_refused():
    with pytest.raises(numbers.EmptyRange):
        numbers.range_pattern({"minimum": 0.5, "maximum": 0.9}, integer=True)
    with pytest.raises(numbers.EmptyRange):
        numbers.range_pattern({"exclusiveMinimum": 1, "maximum": 1}, integer=False)


# ------------------------------------------------------------------------------ patterns

PATTERNS = [
    ("^[A-Z]{3}-\\d{2}$", ["ABC-12", "AB-12", "ABC-1", "abc-12", "ABC-123"]),
    ("^(cat|dog)s?$", ["cat", "dogs", "cow", "cats!", ""]),
    ("^a.c$", ["abc", "a\nc", "ac", "a-c"]),
    ("^[^0-9]+$", ["abc", "a1", "", "  "]),
    ("^\\w+@\\w+\\.com$", ["me@x.com", "me@x.org", "@x.com"]),
    ("^(?:ab){2,3}$", ["ab", "abab", "ababab", "abababab"]),
    ('^say "hi"\\\\$', ['say "hi"\\', 'say "hi"']),
]


@pytest.mark.parametrize("pattern,texts", PATTERNS)
def test_patterns_match_as_python_does_and_complete(pattern, texts):
    automaton = regex.matcher(pattern)
    for text in texts:
        assert automaton.matches(text) == bool(re.fullmatch(pattern[1:-1], text)), text
        if automaton.viable(text):
            rest = automaton.completion(text)
            assert rest is not None and re.fullmatch(pattern[1:-1], text + rest)


# ------------------------------------------------------------------------------ the schema


@pytest.mark.parametrize("keyword,schema", [
    ("multipleOf", {"type": "integer", "multipleOf": 3}),
    ("not", {"not": {"type": "string"}}),
    ("uniqueItems", {"type": "array", "uniqueItems": True}),
    ("patternProperties", {"type": "object", "patternProperties": {"^x": {}}}),
    ("minProperties", {"type": "object", "minProperties": 2}),
    ("format", {"type": "string", "format": "email"}),
    ("pattern", {"type": "string", "pattern": "(?=a)b"}),
    ("if", {"if": {"type": "string"}, "then": {"minLength": 1}}),
])
def test_unenforceable_keywords_are_refused_by_name(keyword, schema):
    with pytest.raises(InvalidRequest) as err:
        normalize({"type": "object", "properties": {"x": schema}, "required": ["x"]}, "format")
    assert f"'{keyword}'" in err.value.message and err.value.param == "format"


def test_normal_form():
    assert normalize({"type": ["string", "null"], "maxLength": 3}) == {
        "anyOf": [{"type": "string", "maxLength": 3}, {"type": "null", "maxLength": 3}]}
    merged = normalize({"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}},
                                  {"required": ["a"], "properties": {"b": {"type": "string"}}}]})
    assert merged["required"] == ["a"] and set(merged["properties"]) == {"a", "b"}
    tuple_form = normalize({"type": "array", "items": [{"type": "integer"}],
                            "additionalItems": False})
    assert tuple_form["prefixItems"] == [{"type": "integer"}] and tuple_form["items"] is False
    assert normalize({"type": "string", "pattern": "ab"})["pattern"] == "^.*ab.*$"
    assert normalize({"type": "string", "pattern": "^a|b$"})["pattern"] == "^a|b$"
    assert normalize({"type": "object", "required": ["k"]})["properties"] == {"k": {}}
    assert normalize({"type": "number", "minimum": 1, "exclusiveMinimum": True}) == {
        "type": "number", "exclusiveMinimum": 1}
    with pytest.raises(InvalidRequest):
        normalize({"type": "array", "minItems": 3, "maxItems": 2})
