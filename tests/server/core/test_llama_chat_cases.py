"""Our chat-format parsers against llama.cpp's own expectations (tests/test-chat.cpp).

The cases are read at test time from the llama-cpp-python sdist (llama_chat_cases.py). For
each: the template is rendered with the case's conversation and options to get the prompt the
model would continue, the format is detected from the template, and the model output is parsed
in one piece, split in two at every byte, and one character at a time; every way must give the
same items, and those must be the message test-chat.cpp expects (content and reasoning compared
without surrounding white space, arguments as JSON, IDs when the format writes them).

Three kinds of case are left out, each for a reason of design (`left_out` says which); a test
checks that every case left out really does differ, so nothing that passes hides among them.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import pytest

from server.core import template_caps
from server.core.chat_formats.base import Call, Reasoning, Text
from server.core.chat_formats.detect import detect
from server.core.types import Message, Tool, ToolCall

from .llama_chat_cases import Case, Msg, load_cases, sdist_dir

PARTIAL_CALL = ("a half-written call: our stream gives a call only once it is complete, because "
                "a call the client has seen cannot be taken back if the rest does not parse")
FENCED_JSON = ("a response_format answer in a ```json block: llama.cpp's grammar starts lazily "
               "and lets the model fence its JSON; ours constrains the answer from its first "
               "token, so it cannot be fenced")
INLINE_REASONING = ("reasoning_format none with reasoning in the output: llama.cpp then returns "
                    "the reasoning inline, with the opening tag the prompt wrote; our server "
                    "always separates reasoning (there is no such option)")

_REASONING_TAGS = ("<think>", "<|START_THINKING|>", "<|channel|>analysis", "[THINK]")


def left_out(case: Case) -> str | None:
    """Why a case is not one our parsers should pass, or None."""
    if case.is_partial and case.expect.tool_calls:
        return PARTIAL_CALL
    if case.json_schema and "```" in case.input:
        return FENCED_JSON
    if case.reasoning_format == "NONE" and any(
            t in case.expect.content and t not in case.input for t in _REASONING_TAGS):
        return INLINE_REASONING
    if case.reasoning_format == "NONE" and "<|channel|>analysis" in case.expect.content:
        return INLINE_REASONING
    return None


def _root() -> Path:
    return sdist_dir()


def _cases() -> list[Case]:
    extraction = load_cases(_root())
    assert not extraction.skipped, f"test statements not understood: {extraction.skipped}"
    return extraction.cases


def pytest_generate_tests(metafunc):
    """The cases we parse as llama.cpp does; the few left out by rule (left_out: each with
    its reason) are checked apart, by test_left_out_cases_really_differ."""
    if "case" in metafunc.fixturenames:
        cases = [c for c in _cases() if left_out(c) is None]
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])


def _message(m: Msg) -> Message:
    calls = [ToolCall(c.get("id") or f"call_{i}", c["name"], c["arguments"])
             for i, c in enumerate(m.tool_calls)]
    return Message(m.role, m.content, tool_calls=calls, tool_call_id=m.tool_call_id or None,
                   name=m.tool_name or None, reasoning=m.reasoning or None)


def _source(case: Case) -> str:
    return (_root() / "models" / "templates" / Path(case.template).name).read_text()


def _setup(case: Case):
    source = _source(case)
    fmt = detect(source)
    tools = [Tool(t["name"], t.get("description", ""), t.get("parameters") or {})
             for t in case.tools]
    messages = list(case.messages) or [Msg("user", "Hey there!")]
    start, prefill = "auto", Msg("assistant")
    if case.continuation != "NONE":
        prefill, messages = messages[-1], messages[:-1]
        start = "reasoning" if case.continuation == "REASONING" else "content"
    prompt = template_caps.render(source, [_message(m) for m in messages], tools=tools,
                                  bos_token="<s>", eos_token="</s>",
                                  extra={"enable_thinking": case.enable_thinking},
                                  call_text=fmt.call_text)
    return fmt, tools, prompt, start, prefill


def _parse(case: Case, pieces: list[str], *, flush: bool = True):
    fmt, tools, prompt, start, _ = _setup(case)
    parser = fmt.parser(tools, prompt, start=start,
                        parse_reasoning=case.reasoning_format != "NONE")
    items = []
    for piece in pieces:
        items += parser.feed(piece)
    if flush:
        items += parser.flush()
    return _summary(items)


def _summary(items) -> tuple[str, str, list[tuple[str, str, str | None]]]:
    content = "".join(i.text for i in items if isinstance(i, Text))
    reasoning = "".join(i.text for i in items if isinstance(i, Reasoning))
    calls = [(i.name, i.arguments, i.native_id) for i in items if isinstance(i, Call)]
    return content, reasoning, calls


def _byte_splits(text: str):
    data = text.encode()
    for k in range(1, len(data)):
        dec = codecs.getincrementaldecoder("utf-8")()
        yield [dec.decode(data[:k]), dec.decode(data[k:], final=True)]


def _json(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None  # partial arguments compare equal, as in test-chat.cpp


def _check(case: Case, result) -> None:
    _, _, _, _, prefill = _setup(case)
    content, reasoning, calls = result
    expect = case.expect
    # A continued answer counts its prefilled part; its prefilled reasoning counts when
    # reasoning is parsed at all.
    prefill_reasoning = prefill.reasoning if case.reasoning_format != "NONE" else ""
    assert (prefill.content + content).strip() == expect.content.strip(), "content"
    assert (prefill_reasoning + reasoning).strip() == expect.reasoning.strip(), "reasoning"
    assert [c[0] for c in calls] == [c["name"] for c in expect.tool_calls], "call names"
    for (name, arguments, native_id), want in zip(calls, expect.tool_calls, strict=True):
        assert _json(arguments) == _json(want["arguments"]), f"arguments of {name}"
        if want["id"]:
            assert native_id == want["id"], f"id of {name}"


def test_case(case: Case):
    whole = _parse(case, [case.input], flush=not case.is_partial)
    _check(case, whole)
    by_char = _parse(case, list(case.input), flush=not case.is_partial)
    assert by_char == whole, "one character at a time"
    for pieces in _byte_splits(case.input):
        assert _parse(case, pieces, flush=not case.is_partial) == whole, \
            f"split at byte {len(pieces[0].encode())}"


def test_left_out_cases_really_differ():
    """Every case left out fails our check (none is left out that would pass), and each has
    its reason; there are as few as docs/models.md says."""
    left = [(case, left_out(case)) for case in _cases() if left_out(case) is not None]
    assert len(left) <= 14, [case.id for case, _ in left]
    for case, reason in left:
        assert reason
        with pytest.raises(AssertionError):
            _check(case, _parse(case, [case.input], flush=not case.is_partial))
