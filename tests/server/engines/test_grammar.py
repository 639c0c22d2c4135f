"""The JSON Schema -> GBNF converter, judged by llama.cpp itself: each grammar compiles, and
llama.cpp's grammar sampler accepts exactly the texts the schema allows (fed token by token
through the bundled model's vocabulary, then asked whether the text may end there)."""

from __future__ import annotations

import ctypes
import json
import math

import llama_cpp as L
import pytest

from server.core.errors import Field, InvalidRequest
from server.core.schema import normalize
from server.engines.llamacpp.grammar import schema_grammar
from server.engines.llamacpp.sampling import check_grammar
from server.store.bundled import bundled_gguf


@pytest.fixture(scope="module")
def vocab():
    L.llama_backend_init()
    params = L.llama_model_default_params()
    params.vocab_only = True
    model = L.llama_model_load_from_file(str(bundled_gguf()).encode(), params)
    assert model
    yield L.llama_model_get_vocab(model)
    L.llama_model_free(model)


def _allowed(sampler, token: int) -> bool:
    data = (L.llama_token_data * 1)(L.llama_token_data(token, 0.0, 0.0))
    array = L.llama_token_data_array(data, 1, -1, False)
    L.llama_sampler_apply(sampler, ctypes.byref(array))
    return not math.isinf(data[0].logit)


def accepts(vocab, grammar: str, text: str) -> bool:
    """Whether llama.cpp's grammar lets the model write `text` and then stop."""
    sampler = L.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    assert sampler, grammar
    try:
        raw = text.encode()
        tokens = (L.llama_token * (len(raw) + 8))()
        n = L.llama_tokenize(vocab, raw, len(raw), tokens, len(raw) + 8, False, False)
        for token in tokens[:n]:
            if not _allowed(sampler, token):
                return False
            L.llama_sampler_accept(sampler, token)
        return _allowed(sampler, L.llama_vocab_eos(vocab))
    finally:
        L.llama_sampler_free(sampler)


def grammar_of(schema) -> str:
    return schema_grammar(normalize(schema))


@pytest.mark.parametrize("schema,good,bad", [
    ({"type": "number", "minimum": 0.5, "maximum": 0.9},
     ["0.5", "0.75", "0.9", "0.8999"], ["1", "0.4", "0.91", "0.95", "1e-1"]),
    ({"type": "integer", "minimum": -5, "exclusiveMaximum": 1000},
     ["-5", "0", "999", "42"], ["-6", "1000", "1.5", "01"]),
    ({"type": "integer", "exclusiveMinimum": 100}, ["101", "12345"], ["100", "99", "-1"]),
    ({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}],
      "items": {"type": "boolean"}, "maxItems": 3},
     ['["a", 1]', '["a", 1, true]'], ['["a"]', '["a", 1, true, false]', '[1, "a"]']),
    ({"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 3},
     ["[1, 2]", "[1,2,3]"], ["[1]", "[1, 2, 3, 4]", "[]"]),
    ({"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"}, ['"AB-123"'], ['"AB-12"', '"ab-123"']),
    ({"type": "string", "pattern": 'a"b'}, ['"xa\\"by"'], ['"xa"by"', '"ab"']),
    ({"type": "string", "format": "date"}, ['"2024-02-29"'], ['"2024-13-01"', '"24-01-01"']),
    ({"type": "string"}, ['"line\\nbreak"', '"tab\\t"'], ['"raw\nbreak"', '"raw\ttab"']),
    ({"type": "string", "minLength": 2, "maxLength": 3}, ['"ab"', '"abc"'], ['"a"', '"abcd"']),
    ({"type": ["integer", "null"], "minimum": 3}, ["3", "null"], ["2", '"3"']),
    ({"type": "object", "required": ["a"]}, ['{"a": 1}', '{"a": "x"}'], ["{}"]),
])
def test_grammar_accepts_what_the_schema_allows(vocab, schema, good, bad):
    grammar = grammar_of(schema)
    for text in good:
        assert accepts(vocab, grammar, text), (text, grammar)
        assert json.loads(text) is not None or text == "null"
    for text in bad:
        assert not accepts(vocab, grammar, text), (text, grammar)


def test_raw_grammars_are_checked_by_llama_cpp(vocab):
    check_grammar(vocab, 'root ::= "yes" | "no"')
    with pytest.raises(InvalidRequest) as err:
        check_grammar(vocab, "root ::= [oops")
    assert err.value.field is Field.GRAMMAR  # neutral; OpenAI names it "grammar"
