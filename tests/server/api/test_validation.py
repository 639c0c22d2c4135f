import pytest

from server.api.validation import validate
from server.core.errors import InvalidRequest

OK = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("body,param,words", [
    ({}, None, "'model' is a required property"),
    ({**OK, "messages": [{"role": "bogus", "content": "x"}]}, "messages[0].role", "bogus"),
    ({**OK, "messages": [{"role": "user", "content": 5}]}, "messages[0].content",
     "expected null or string or array"),
    ({**OK, "messages": [{"role": "user", "content": [{"type": "text"}]}]},
     "messages[0].content[0]", "'text' is a required property"),
    ({**OK, "temperature": "hot"}, "temperature", "not of type"),
    ({**OK, "temperature": 3}, "temperature", "maximum"),
    ({**OK, "response_format": {"type": "sound"}}, "response_format.type", "'sound'"),
    ({**OK, "tool_choice": {"type": "function", "function": {}}}, "tool_choice.function",
     "'name' is a required property"),
    ({**OK, "logit_bias": {"abc": 1}}, "logit_bias", "does not match"),
])
def test_chat_errors_name_the_field_and_the_fix(body, param, words):
    with pytest.raises(InvalidRequest) as info:
        validate("openai_chat", body)
    assert info.value.param == param
    assert words in info.value.message


def test_unknown_fields_are_accepted():
    validate("openai_chat", {**OK, "store": True, "metadata": {"a": "b"}})
