"""Every chat format reads back what it writes, forced calls parse, grammars compile, and
templates with unusual rules still render ordinary conversations."""

from __future__ import annotations

import json

import llama_cpp
import pytest

from server.core import template_caps
from server.core.chat_formats import values
from server.core.chat_formats.base import Call, Reasoning, Text
from server.core.chat_formats.detect import detect
from server.core.chat_formats.families import FORMATS
from server.core.chat_formats.forced import forced_call
from server.core.types import Message, Tool, ToolCall, ToolChoice
from server.store.bundled import bundled_gguf

from .llama_chat_cases import sdist_dir

WEATHER = Tool("get_weather", "Weather", {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"]})
UNIT = Tool("set_unit", "Unit", {"type": "object", "properties": {"unit": {"enum": ["c", "f"]}},
                                 "required": ["unit"]})
TOOLS = [WEATHER, UNIT]
CALLS = [ToolCall("", "get_weather", '{"city": "Paris <b>&", "days": 2}'),
         ToolCall("", "set_unit", '{"unit": "c"}')]
#: What goes between two calls where a format writes each as a message of its own.
JOINERS = {"harmony": "<|call|><|start|>assistant", "muse": "<|eom|><|start|>assistant",
           "functionary-v3.2": ">>>"}


def _parse(fmt, text: str, pieces: int = 0) -> list:
    parser = fmt.parser(TOOLS)
    chunks = [text] if not pieces else [text[i:i + pieces] for i in range(0, len(text), pieces)]
    out = []
    for chunk in chunks:
        out += parser.feed(chunk)
    return out + parser.flush()


def _calls(items) -> list[tuple[str, dict]]:
    return [(i.name, json.loads(i.arguments)) for i in items if isinstance(i, Call)]


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_a_format_reads_back_the_calls_it_writes(name):
    fmt = FORMATS[name]
    text = JOINERS.get(name, "\n").join(fmt.call_text(c, t.parameters)
                                        for c, t in zip(CALLS, TOOLS, strict=True))
    want = [(c.name, json.loads(c.arguments)) for c in CALLS]
    for pieces in (0, 1, 7):
        items = _parse(fmt, text, pieces)
        assert _calls(items) == want, (pieces, text, items)
        assert not "".join(i.text for i in items if isinstance(i, Text)).strip()


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_a_forced_call_reads_back(name):
    fmt = FORMATS[name]
    for choice in (ToolChoice("required"), ToolChoice("function", "get_weather")):
        forced = forced_call(fmt, TOOLS, choice, "")
        call = CALLS[0] if choice.mode == "function" else CALLS[1]
        text = fmt.call_text(call, {t.name: t for t in TOOLS}[call.name].parameters)
        assert text.startswith(forced.prefill), (text, forced.prefill)
        rest = text[len(forced.prefill):]
        if forced.name is not None:  # JSON arguments only, the grammar stops after them
            rest = json.dumps(json.loads(call.arguments))
        parsed = forced.parse(rest)
        assert parsed is not None and parsed.name == call.name, (rest, parsed)
        assert json.loads(parsed.arguments) == json.loads(call.arguments)


@pytest.fixture(scope="module")
def vocab():
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(bundled_gguf()).encode(), params)
    yield llama_cpp.llama_model_get_vocab(model)
    llama_cpp.llama_model_free(model)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_forced_grammars_compile(name, vocab):
    fmt = FORMATS[name]
    for choice in (ToolChoice("required"), ToolChoice("function", "get_weather")):
        forced = forced_call(fmt, TOOLS, choice, "")
        if forced.grammar is None:
            assert forced.schema is not None
            continue
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, forced.grammar.encode(), b"root")
        assert sampler, forced.grammar
        llama_cpp.llama_sampler_free(sampler)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_an_almost_call_stays_text(name):
    fmt = FORMATS[name]
    head = fmt.convention.before("get_weather")
    text = f"Here: {head}{{not json at all"
    items = _parse(fmt, text)
    assert not _calls(items)
    shown = "".join(i.text for i in items if isinstance(i, (Text, Reasoning)))
    assert "not json at all" in shown


def test_detection_of_well_known_templates():
    root = sdist_dir() / "models" / "templates"
    expected = {
        "Qwen-Qwen2.5-7B-Instruct": "hermes", "Qwen3-Coder": "qwen3-coder",
        "openai-gpt-oss-120b": "harmony", "mistralai-Mistral-Nemo-Instruct-2407": "mistral-nemo",
        "unsloth-mistral-Devstral-Small-2507": "mistral", "meta-llama-Llama-3.1-8B-Instruct":
        "llama3", "deepseek-ai-DeepSeek-V3.1": "deepseek-v3.1", "deepseek-ai-DeepSeek-V3.2":
        "dsml", "Kimi-K2-Instruct": "kimi-k2", "MiniMax-M2": "minimax-m2",
        "GLM-4.6": "glm", "google-gemma-4-31B-it": "gemma4", "google-gemma-2-2b-it":
        "hermes-fallback", "CohereForAI-c4ai-command-r-plus-tool_use": "command-r-plus",
        "ibm-granite-granite-4.0": "hermes", "LFM2.5-Instruct": "lfm2",
    }
    for stem, name in expected.items():
        assert detect((root / f"{stem}.jinja").read_text()).name == name, stem


def test_no_system_role_and_alternation_are_worked_around():
    source = (sdist_dir() / "models" / "templates" / "google-gemma-2-2b-it.jinja").read_text()
    caps = template_caps.probe(source)
    assert not caps.system_role and caps.alternation
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    text = template_caps.render(source, [
        Message("system", "Be brief."), Message("user", "Weather?"),
        Message("assistant", "", tool_calls=[call]),
        Message("tool", '{"temp": 21}', tool_call_id="call_1"),
        Message("tool", '{"temp": 22}', tool_call_id="call_1")], call_text=detect(source).call_text)
    assert "Be brief.\n\nWeather?" in text and '"temp": 22' in text


def test_templates_that_take_one_call_per_turn_get_them_one_by_one():
    source = (sdist_dir() / "models" / "templates" /
              "meta-llama-Llama-3.1-8B-Instruct.jinja").read_text()
    assert not template_caps.probe(source).parallel_calls
    calls = [ToolCall("a", "get_weather", '{"city": "Paris"}'),
             ToolCall("b", "get_weather", '{"city": "Rome"}')]
    text = template_caps.render(source, [
        Message("user", "Weather?"), Message("assistant", "", tool_calls=calls),
        Message("tool", "21", tool_call_id="a"), Message("tool", "25", tool_call_id="b")])
    assert text.index("Paris") < text.index("21") < text.index("Rome") < text.index("25")


def test_values_by_schema():
    assert values.coerce("42", {"type": "integer"}) == 42
    assert values.coerce("42", {"type": "string"}) == "42"
    assert values.coerce("null", {"type": ["string", "null"]}) is None
    assert values.coerce("1abc", {"type": ["string", "integer"]}) == "1abc"
    assert values.coerce('{"a": 1}', {"type": ["string", "object"]}) == {"a": 1}
    assert values.python_calls('[f(a=1, b="x"), m.g(c=True, d=None)]') == [
        ("f", {"a": 1, "b": "x"}), ("m.g", {"c": True, "d": None})]
    assert values.python_calls("__import__('os').system('x')") is None
    args, end = values.gemma_object('{city:<|"|>Paris<|"|>,n:-1.5e2,t:[true,null]} rest')
    assert args == {"city": "Paris", "n": -150.0, "t": [True, None]} and end == 45
