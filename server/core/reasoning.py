"""Thinking for every model: a budgeted thinking phase, then the answer conditioned on it.

Clients ask for thinking with a token budget (Anthropic's `thinking.budget_tokens`). A model
whose chat template reasons natively (`<think>`) still has to be stopped at the budget, and a
model that was never trained to reason (SmolLM2) has to be prompted to. Both get the same two
phases, dialect-free:

1. Thinking. The assistant turn is opened with `<think>` (plus LEAD_IN for models that do not
   reason natively) and the model writes until it closes the block, ends its turn or spends
   the budget. Its text becomes ThinkingDelta events.
2. Answer. The prompt becomes phase 1's prompt + the thinking + `</think>`, and generation
   continues under the request's own stop sequences, tools and schema. Phase 1's prompt and
   output are a prefix of phase 2's prompt, so the prefix cache makes that prefill nearly free.

Both phases share `max_tokens` (thinking counts as output, as with Claude). Reasoning of
earlier assistant turns is kept only inside the current tool loop (see `with_history`), as
Claude does with thinking blocks; the chat template decides for natively reasoning models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .chat_formats.channels import HARMONY
from .chat_formats.detect import detect, supports_thinking
from .thinking import CLOSE, OPEN
from .types import ChoiceDone, Event, Message, TextDelta, Thinking, ThinkingDelta, Usage

#: Starts the thinking of models that do not reason natively; it is part of their thinking.
LEAD_IN = "Let me think step by step."
#: Thinking budget when the client enabled thinking without one.
DEFAULT_BUDGET = 1024

#: answer(prompt text, max new tokens or None for all the room left, usage to add to) -> the
#: events of the answer phase of one choice.
Answer = Callable[[str, "int | None", Usage], Iterator[Event]]


def native(chat_template: str | None) -> bool:
    """Whether the model reasons in its own format (its chat format has reasoning tags the
    template knows: `<think>`, `[THINK]`, gpt-oss's analysis channel...)."""
    return bool(chat_template) and supports_thinking(chat_template)


@dataclass(frozen=True)
class Tags:
    """How a thinking phase is opened and closed in the prompt: the model's own reasoning
    tags, or `<think>` for models prompted to think."""

    open: str
    #: What ends the thinking phase's generation (a stop sequence).
    stop: str
    #: What the answer's prompt puts between the thinking and the answer.
    close: str


def tags(chat_template: str | None) -> Tags:
    if native(chat_template):
        fmt = detect(chat_template)
        if fmt.channels is HARMONY:
            return Tags("<|channel|>analysis<|message|>", "<|end|>",
                        "<|end|><|start|>assistant<|channel|>final<|message|>")
        if fmt.syntax.think:
            opening, closing = fmt.syntax.think[0]
            if opening != OPEN:
                return Tags(opening, closing, closing)
    return Tags(f"{OPEN}\n", CLOSE, f"\n{CLOSE}\n\n")


def with_configured_budget(thinking: Thinking, budget: int | None,
                           chat_template: str | None) -> Thinking:
    """Apply a model's configured reasoning budget (`dmr configure --reasoning-budget`, as
    llama.cpp's flag): 0 turns thinking off and N caps it for requests that do not say
    otherwise; a request's own budget is capped by N; -1 or None changes nothing. A model that
    does not reason by itself is not made to think by a budget alone."""
    if budget is None or budget < 0:
        return thinking
    if budget == 0:
        return Thinking(False, None) if thinking.enabled is None else thinking
    if thinking.enabled:
        return Thinking(True, min(thinking.budget_tokens or budget, budget))
    if thinking.enabled is None and native(chat_template):
        return Thinking(True, budget)
    return thinking


def two_phase(chat_template: str | None, thinking: Thinking) -> bool:
    """Thinking enabled, and either the model needs prompting or a budget must be enforced.

    A natively reasoning model without a budget is left to think on its own (the core's
    `<think>` splitter parses it)."""
    if not thinking.enabled:
        return False
    return thinking.budget_tokens is not None or not native(chat_template)


def lead_in(chat_template: str | None) -> str:
    """The visible start of the thinking: none for a model that knows how to think."""
    return "" if native(chat_template) else LEAD_IN


def opening(chat_template: str | None, rendered: str) -> str:
    """What to append to the rendered prompt to start the thinking."""
    opening = tags(chat_template).open
    head = "" if rendered.rstrip().endswith(opening.strip()) else opening
    return head + lead_in(chat_template)


def thinking_limit(thinking: Thinking, max_new: int | None) -> int:
    """Most tokens the thinking phase may generate: its budget, within max_tokens."""
    if thinking.budget_tokens is not None:
        limit = thinking.budget_tokens
    else:
        limit = DEFAULT_BUDGET if max_new is None else max(1, min(DEFAULT_BUDGET, max_new // 2))
    return limit if max_new is None else min(limit, max_new)


def with_history(chat_template: str | None, messages: list[Message]) -> list[Message]:
    """Show a non-native model the thinking of its own turns in the current tool loop.

    Those turns' reasoning led to the tool calls whose results follow, so the model needs it
    to continue; older turns' reasoning is dropped, as Claude drops earlier thinking blocks.
    """
    if native(chat_template):
        return messages
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    out = []
    for i, m in enumerate(messages):
        if i > last_user and m.role == "assistant" and m.tool_calls and m.reasoning:
            content = f"{OPEN}\n{m.reasoning.strip()}\n{CLOSE}\n\n{m.content}"
            m = Message(m.role, content, m.images, m.tool_calls, m.tool_call_id, m.name)
        out.append(m)
    return out


class _Trim:
    """Streams text without its leading and (optionally) trailing white space."""

    def __init__(self, trailing: bool):
        self.trailing = trailing
        self.started = False
        self.held = ""

    def feed(self, text: str) -> str:
        if not self.started:
            text = text.lstrip()
            if not text:
                return ""
            self.started = True
        if not self.trailing:
            return text
        text = self.held + text
        kept = text.rstrip()
        self.held = text[len(kept):]
        return kept


def think_then_answer(choice: int, thinking: Iterator[Event], think_usage: Usage, prompt: str,
                      visible_start: str, answer_prefix: str, max_new: int | None,
                      answer: Answer, usage: Usage,
                      close: str = f"\n{CLOSE}\n\n") -> Iterator[Event]:
    """Events of one choice: its thinking, then its answer (text, tool calls, ChoiceDone).

    `thinking` is the (already started) thinking phase's generation from `prompt`, limited by
    thinking_limit and counted in `think_usage`; `prompt` ends with the opening of the
    thinking, whose visible part is `visible_start` (see lead_in). `answer_prefix` (a prefill,
    or the start of a forced tool call) follows the thinking.
    """
    thought = _Trim(trailing=True)
    generated = ""
    if text := thought.feed(visible_start):
        yield ThinkingDelta(text, choice)
    for event in thinking:
        if isinstance(event, TextDelta):
            generated += event.text
            if text := thought.feed(event.text):
                yield ThinkingDelta(text, choice)
    _add(usage, think_usage, cached=True)
    usage.reasoning_tokens += think_usage.completion_tokens

    left = None if max_new is None else max_new - think_usage.completion_tokens
    if left is not None and left <= 0:
        yield ChoiceDone(choice, "length")
        return
    answer_usage = Usage()
    shown = _Trim(trailing=False)
    shown.started = bool(answer_prefix)  # a prefill's continuation keeps its white space
    next_prompt = f"{prompt}{generated.rstrip()}{close}{answer_prefix}"
    for event in answer(next_prompt, left, answer_usage):
        if isinstance(event, TextDelta) and not shown.started:
            if not (text := shown.feed(event.text)):
                continue
            event = TextDelta(text, event.choice, event.logprobs)
        yield event
    _add(usage, answer_usage, cached=False)


def _add(total: Usage, part: Usage, *, cached: bool) -> None:
    """Add a phase's output to the request's usage; only phase 1's prompt is the request's."""
    total.completion_tokens += part.completion_tokens
    total.prompt_seconds += part.prompt_seconds
    total.generation_seconds += part.generation_seconds
    if cached:
        total.cached_tokens = max(total.cached_tokens, part.cached_tokens)
