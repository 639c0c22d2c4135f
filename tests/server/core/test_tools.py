"""Our own calling convention (Hermes `<tool_call>` JSON), for models whose template has none:
parsing, the reasoning around it, forced calls and how earlier calls are written back."""

import json

import pytest

from server.core import template_caps
from server.core.chat_formats.base import Call, Reasoning, Text
from server.core.chat_formats.detect import detect
from server.core.chat_formats.forced import forced_call
from server.core.errors import InvalidRequest
from server.core.types import Message, Tool, ToolCall, ToolChoice

WEATHER = Tool("get_weather", "Weather for a city",
               {"type": "object", "properties": {"city": {"type": "string"}}})
TIME = Tool("get_time", "", {"type": "object", "properties": {}})
FALLBACK = detect(None)


def parse(pieces: list[str], tools=(WEATHER,), prompt: str = "") -> list:
    parser = FALLBACK.parser(list(tools), prompt)
    out = []
    for piece in pieces:
        out += parser.feed(piece)
    return out + parser.flush()


def texts(items, kind) -> str:
    return "".join(i.text for i in items if isinstance(i, kind))


def test_the_fallback_is_ours_hermes_with_think():
    assert FALLBACK.name == "hermes-fallback" and not FALLBACK.native_tools
    assert FALLBACK.syntax.think == (("<think>", "</think>"),)


def test_tagged_call_split_across_pieces():
    items = parse(["Sure. <tool", '_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}',
                   "\n</tool_call>"])
    assert items[0] == Text("Sure. ")
    call = items[1]
    assert isinstance(call, Call) and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}


def test_bare_json_call_is_recognised():
    [call] = parse(['{"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}'])
    assert json.loads(call.arguments) == {"city": "Oslo"}


def test_json_that_is_not_a_known_tool_stays_text():
    assert texts(parse(['{"name": "other", "arguments": {}}']), Text) == \
        '{"name": "other", "arguments": {}}'


def test_a_call_that_does_not_parse_stays_text():
    broken = '<tool_call>\n{"name": "get_weather", "arguments": {"city": </tool_call>'
    assert texts(parse([broken]), Text) == broken


def test_plain_text_streams_through():
    assert texts(parse(["Hello ", "there <b>"]), Text) == "Hello there <b>"


def test_think_block_at_start_goes_to_reasoning():
    items = parse(["<thi", "nk>plan it</th", "ink>\nanswer"], tools=())
    assert (texts(items, Reasoning), texts(items, Text)) == ("plan it", "answer")


def test_prompt_that_opened_think_starts_in_reasoning():
    items = parse(["reasoning</think>done"], tools=(), prompt="<|im_start|>assistant\n<think>\n")
    assert (texts(items, Reasoning), texts(items, Text)) == ("reasoning", "done")


def test_think_tag_later_in_text_is_content():
    assert texts(parse(["Answer: <think>no</think>"], tools=()), Text) == \
        "Answer: <think>no</think>"


def test_unclosed_think_is_all_reasoning():
    assert texts(parse(["<think>still going"], tools=()), Reasoning) == "still going"


def test_forced_named_tool_outputs_arguments_only():
    call = forced_call(FALLBACK, [WEATHER, TIME], ToolChoice("function", "get_weather"), "")
    assert call.name == "get_weather" and call.prefill.endswith('"arguments": ')
    assert call.schema["type"] == "object" and call.grammar is None
    parsed = call.parse('{"city": "Rome"}')
    assert parsed.name == "get_weather" and json.loads(parsed.arguments) == {"city": "Rome"}


def test_forced_required_with_several_tools_names_one():
    call = forced_call(FALLBACK, [WEATHER, TIME], ToolChoice("required"), "")
    assert call.name is None and call.prefill == '<tool_call>\n{"name": "'
    assert 'call-get-weather' in call.grammar and 'call-get-time' in call.grammar
    parsed = call.parse('get_time", "arguments": {}}\n</tool_call>')
    assert parsed.name == "get_time"


def test_cut_off_forced_output_is_no_call():
    call = forced_call(FALLBACK, [WEATHER], ToolChoice("required"), "")
    assert call.parse('{"city": "Ro') is None


def test_forcing_an_unknown_tool_is_a_bad_request():
    with pytest.raises(InvalidRequest, match="not in tools"):
        forced_call(FALLBACK, [WEATHER], ToolChoice("function", "nope"), "")


def test_a_forced_call_after_opened_thinking_closes_it_first():
    call = forced_call(FALLBACK, [WEATHER], ToolChoice("required"), "assistant\n<think>\n")
    assert call.prefill.startswith("</think>\n<tool_call>")


def test_history_calls_and_results_are_written_in_the_convention():
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    caps = template_caps.Caps()  # a template that renders neither calls nor results
    [assistant, result] = template_caps.fit(
        [Message("assistant", "Let me check.", tool_calls=[call]),
         Message("tool", '{"temp": 21}', tool_call_id="call_1")], caps,
        call_text=FALLBACK.call_text)
    assert assistant.tool_calls == []
    assert assistant.content == ('Let me check.\n<tool_call>\n{"name": "get_weather", '
                                 '"arguments": {"city": "Paris"}}\n</tool_call>')
    assert result.role == "user"
    assert result.content == '<tool_response>\n{"temp": 21}\n</tool_response>'


def test_the_parser_says_when_the_model_is_reasoning():
    parser = FALLBACK.parser([], "<|im_start|>assistant\n<think>\n")
    assert parser.in_reasoning
    parser.feed("plan</think>")
    assert not parser.in_reasoning
