import json

import pytest

from server.core.errors import InvalidRequest
from server.core.tools import ToolCallParser, forced_call, parse_forced
from server.core.types import Tool, ToolCall, ToolChoice

WEATHER = Tool("get_weather", "Weather for a city",
               {"type": "object", "properties": {"city": {"type": "string"}}})
TIME = Tool("get_time", "", {"type": "object", "properties": {}})


def parse(pieces: list[str], tools=(WEATHER,)) -> list:
    parser = ToolCallParser(list(tools))
    out = []
    for piece in pieces:
        out += parser.feed(piece)
    return out + parser.flush()


def test_tagged_call_split_across_pieces():
    items = parse(["Sure. <tool", '_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}',
                   "\n</tool_call>"])
    assert items[0] == "Sure. "
    call = items[1]
    assert isinstance(call, ToolCall) and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}


def test_bare_json_call_is_recognised():
    [call] = parse(['{"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}'])
    assert json.loads(call.arguments) == {"city": "Oslo"}


def test_json_that_is_not_a_known_tool_stays_text():
    assert "".join(parse(['{"name": "other", "arguments": {}}'])) == \
        '{"name": "other", "arguments": {}}'


def test_plain_text_streams_through():
    assert "".join(parse(["Hello ", "there <b>"])) == "Hello there <b>"


def test_forced_named_tool_outputs_arguments_only():
    call = forced_call([WEATHER, TIME], ToolChoice("function", "get_weather"))
    assert call.name == "get_weather" and call.prefill.endswith('"arguments": ')
    parsed = parse_forced(call, '{"city": "Rome"}')
    assert parsed.name == "get_weather" and json.loads(parsed.arguments) == {"city": "Rome"}


def test_forced_required_with_several_tools_names_one():
    call = forced_call([WEATHER, TIME], ToolChoice("required"))
    assert call.name is None and len(call.schema["anyOf"]) == 2
    parsed = parse_forced(call, '{"name": "get_time", "arguments": {}}')
    assert parsed.name == "get_time"


def test_cut_off_forced_output_is_no_call():
    call = forced_call([WEATHER], ToolChoice("required"))
    assert parse_forced(call, '{"city": "Ro') is None


def test_forcing_an_unknown_tool_is_a_bad_request():
    with pytest.raises(InvalidRequest, match="not in tools"):
        forced_call([WEATHER], ToolChoice("function", "nope"))


def test_history_calls_and_results_are_written_in_the_convention():
    from server.core.tools import inline_tool_markup
    from server.core.types import Message

    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    assistant = inline_tool_markup(Message("assistant", "Let me check.", tool_calls=[call]))
    assert assistant.tool_calls == []
    assert assistant.content == ('Let me check.\n<tool_call>\n{"name": "get_weather", '
                                 '"arguments": {"city": "Paris"}}\n</tool_call>')
    result = inline_tool_markup(Message("tool", '{"temp": 21}', tool_call_id="call_1"))
    assert result.content == '<tool_response>\n{"temp": 21}\n</tool_response>'
    plain = Message("user", "hi")
    assert inline_tool_markup(plain) is plain
