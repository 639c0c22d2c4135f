"""Thinking for every model (server/core/reasoning.py): prompts, budgets and the two phases,
with scripted generations instead of a model."""

from server.core import pipeline, reasoning
from server.core.engine import ModelInfo
from server.core.types import (
    ChatRequest,
    ChoiceDone,
    Message,
    TextDelta,
    Thinking,
    ThinkingDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
)

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# A Qwen3-like template that reasons natively and opens the block itself when asked to think.
NATIVE = CHATML.replace(
    "{{ '<|im_start|>assistant\\n' }}",
    "{{ '<|im_start|>assistant\\n' }}{% if enable_thinking is defined and not enable_thinking %}"
    "{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}")


def info(template: str) -> ModelInfo:
    return ModelInfo(architecture="llama", chat_template=template, bos_token="", eos_token="",
                     add_bos=False, n_ctx=4096, n_ctx_train=4096, n_embd=8, n_params=1,
                     size_bytes=1)


def request(**kwargs) -> ChatRequest:
    return ChatRequest(model="m", messages=[Message("user", "What is 2+2?")], **kwargs)


def test_native_models_are_recognised_by_their_template():
    assert reasoning.native(NATIVE) and not reasoning.native(CHATML)
    assert not reasoning.native(None)


def test_two_phases_when_prompting_is_needed_or_a_budget_must_hold():
    assert reasoning.two_phase(CHATML, Thinking(True, None))
    assert reasoning.two_phase(CHATML, Thinking(True, 100))
    assert reasoning.two_phase(NATIVE, Thinking(True, 100))
    assert not reasoning.two_phase(NATIVE, Thinking(True, None))  # the splitter parses it
    assert not reasoning.two_phase(CHATML, Thinking(False, 100))
    assert not reasoning.two_phase(CHATML, Thinking(None, None))


def test_thinking_limit_is_the_budget_within_max_tokens():
    assert reasoning.thinking_limit(Thinking(True, 100), 1024) == 100
    assert reasoning.thinking_limit(Thinking(True, 100), 40) == 40
    assert reasoning.thinking_limit(Thinking(True, None), 100) == 50
    assert reasoning.thinking_limit(Thinking(True, None), None) == reasoning.DEFAULT_BUDGET


def test_prompt_of_a_non_native_model_opens_the_thinking_with_the_lead_in():
    prompt = pipeline.build_prompt(info(CHATML), request(thinking=Thinking(True, 50)))
    assert prompt.text.endswith(f"<|im_start|>assistant\n<think>\n{reasoning.LEAD_IN}")
    assert prompt.answer_prefix == ""
    plain = pipeline.build_prompt(info(CHATML), request())
    assert plain.answer_prefix is None and plain.text.endswith("<|im_start|>assistant\n")


def test_prompt_of_a_native_model_opens_the_block_without_a_lead_in():
    prompt = pipeline.build_prompt(info(NATIVE), request(thinking=Thinking(True, 50)))
    assert prompt.text.endswith("<|im_start|>assistant\n<think>\n")
    # thinking off: the template closes an empty block, and nothing is split or prompted
    off = pipeline.build_prompt(info(NATIVE), request(thinking=Thinking(False, None)))
    assert off.answer_prefix is None and off.text.endswith("</think>\n\n")


def test_prefill_and_forced_call_start_the_answer_after_the_thinking():
    tool = Tool("f", "", {"type": "object", "properties": {"x": {"type": "integer"}}})
    req = ChatRequest(model="m", thinking=Thinking(True, 20),
                      messages=[Message("user", "hi"), Message("assistant", "The answer is")])
    prompt = pipeline.build_prompt(info(CHATML), req)
    assert prompt.answer_prefix == "The answer is" and "The answer is" not in prompt.text
    req = request(thinking=Thinking(True, 20), tools=[tool],
                  tool_choice=ToolChoice("function", "f"))
    prompt = pipeline.build_prompt(info(CHATML), req)
    assert prompt.answer_prefix.startswith('<tool_call>\n{"name": "f"')
    assert prompt.forced is not None and prompt.forced.name == "f"


def test_history_shows_thinking_only_inside_the_current_tool_loop():
    call = ToolCall("call_1", "f", "{}")
    messages = [
        Message("user", "first"),
        Message("assistant", "", tool_calls=[call], reasoning="old reasoning"),
        Message("tool", "result", tool_call_id="call_1"),
        Message("assistant", "done", reasoning="old text reasoning"),
        Message("user", "second"),
        Message("assistant", "", tool_calls=[call], reasoning="current reasoning"),
        Message("tool", "result", tool_call_id="call_1"),
    ]
    out = reasoning.with_history(CHATML, messages)
    assert out[5].content == "<think>\ncurrent reasoning\n</think>\n\n"
    assert out[5].tool_calls == [call]
    assert [m.content for m in out[:5]] == [m.content for m in messages[:5]]
    assert reasoning.with_history(NATIVE, messages) is messages


def run(thinking_texts, answer_events, *, prefix="", max_new=100, think_tokens=None):
    """Drive think_then_answer with scripted phases; returns (events, answer calls, usage)."""
    think_usage = Usage(completion_tokens=think_tokens or len(thinking_texts), cached_tokens=7)
    thinking = iter([TextDelta(t) for t in thinking_texts] + [ChoiceDone(0, "stop")])
    calls = []

    def answer(text, limit, usage):
        calls.append((text, limit))
        usage.completion_tokens += 3
        yield from answer_events

    usage = Usage(prompt_tokens=11)
    events = list(reasoning.think_then_answer(0, thinking, think_usage, "PROMPT<think>\nLead.",
                                              "Lead.", prefix, max_new, answer, usage))
    return events, calls, usage


def test_thinking_then_answer_conditioned_on_it():
    events, calls, usage = run([" 2+2", " is 4.", "\n\n"],
                               [TextDelta("\n"), TextDelta("Four."), ChoiceDone(0, "stop")])
    thinking = "".join(e.text for e in events if isinstance(e, ThinkingDelta))
    assert thinking == "Lead. 2+2 is 4."  # trailing white space dropped
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Four."]
    assert isinstance(events[-1], ChoiceDone) and events[-1].finish_reason == "stop"
    assert calls == [("PROMPT<think>\nLead. 2+2 is 4.\n</think>\n\n", 97)]
    assert usage.prompt_tokens == 11 and usage.completion_tokens == 6 and usage.cached_tokens == 7
    # every thinking delta comes before the first answer event
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("TextDelta") > max(i for i, k in enumerate(kinds) if k == "ThinkingDelta")


def test_a_prefill_continuation_keeps_its_white_space():
    events, calls, _ = run(["x"], [TextDelta(" B)"), ChoiceDone(0, "stop")],
                           prefix="The answer is (")
    assert calls[0][0].endswith("</think>\n\nThe answer is (")
    assert [e.text for e in events if isinstance(e, TextDelta)] == [" B)"]


def test_tool_calls_of_the_answer_pass_through():
    call = ToolCallDelta(0, "call_1", "f", '{"x": 1}')
    events, _, _ = run(["plan"], [call, ChoiceDone(0, "tool_calls")])
    assert events[-2] is call and events[-1].finish_reason == "tool_calls"


def test_thinking_that_spends_max_tokens_leaves_no_answer():
    events, calls, _ = run(["a", "b"], [], max_new=2, think_tokens=2)
    assert calls == [] and events[-1] == ChoiceDone(0, "length")


def test_configured_reasoning_budget():
    apply = reasoning.with_configured_budget
    silent, on, off = Thinking(), Thinking(True, 500), Thinking(False)
    for budget in (None, -1):  # not configured, or unlimited: nothing changes
        assert apply(silent, budget, NATIVE) == silent and apply(on, budget, CHATML) == on
    # 0 turns thinking off unless the request asks for it.
    assert apply(silent, 0, NATIVE) == Thinking(False, None)
    assert apply(on, 0, NATIVE) == on
    # N caps a request's budget, and gives a native model's silent requests that budget...
    assert apply(on, 64, CHATML) == Thinking(True, 64)
    assert apply(Thinking(True, 10), 64, CHATML) == Thinking(True, 10)
    assert apply(Thinking(True, None), 64, CHATML) == Thinking(True, 64)
    assert apply(silent, 64, NATIVE) == Thinking(True, 64)
    # ...but does not make a model that does not reason by itself think, nor override "off".
    assert apply(silent, 64, CHATML) == silent
    assert apply(off, 64, NATIVE) == off
