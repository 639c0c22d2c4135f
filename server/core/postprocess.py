"""One choice's decoded text into events: text, thinking and tool calls.

The model's chat format parses the text (reasoning, native tool calls, markers); a forced call
is read as the grammar made the model write it: its arguments stream when the tool is known
in advance, otherwise the call is read back whole at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .budget import Structured
from .chat_formats.base import Call, Item, Reasoning
from .chat_formats.families import ChatFormat
from .chat_formats.forced import ForcedCall
from .tools import new_call_id
from .types import Event, TextDelta, ThinkingDelta, TokenLogprob, Tool, ToolCallDelta


@dataclass
class Choice:
    """How one choice's text is post-processed."""

    stops: list[str]
    #: Reasoning is parsed out of the text (off for an answer after a thinking phase).
    split_thinking: bool
    tools: list[Tool]
    forced: ForcedCall | None
    logprobs: bool
    #: The model's chat format; None: plain text (completions, a thinking phase).
    fmt: ChatFormat | None = None
    #: The prompt the output continues, and how the output begins (prompting.Prompt.start).
    prompt: str = ""
    start: str = "auto"
    #: JSON output that must parse and validate whatever the budget (budget.py).
    structured: Structured | None = None


class PostProcessor:
    def __init__(self, index: int, choice: Choice):
        self.index = index
        self.forced = choice.forced
        self.parser = None
        if choice.fmt is not None and choice.forced is None:
            self.parser = choice.fmt.parser(choice.tools, choice.prompt, start=choice.start,
                                            parse_reasoning=choice.split_thinking)
        self.logprobs: list[TokenLogprob] = []
        self.n_calls = 0
        self._forced_text = ""
        self._forced_sent = 0
        self._forced_id = new_call_id()

    @property
    def in_thinking(self) -> bool:
        """Whether the model is writing reasoning now (its tokens count as reasoning)."""
        return self.parser is not None and self.parser.in_reasoning

    def feed(self, text: str) -> Iterator[Event]:
        if not text:
            return
        if self.forced is not None:
            yield from self._feed_forced(text)
        elif self.parser is not None:
            yield from self._items(self.parser.feed(text))
        else:
            yield self._text(text)

    def flush(self) -> Iterator[Event]:
        if self.forced is not None:
            call = self.forced.parse(self._forced_text)
            if self.forced.name is None:
                if call is not None:
                    yield self._call_event(call)
            elif call is None:
                self.n_calls = 0  # cut off: the arguments are not valid JSON
            return
        if self.parser is not None:
            yield from self._items(self.parser.flush())

    def _feed_forced(self, text: str) -> Iterator[Event]:
        self._forced_text += text
        if self.forced.name is None:
            return  # the call is read back whole at the end
        if not self.n_calls:
            self.n_calls = 1
            yield ToolCallDelta(0, self._forced_id, self.forced.name, "", self.index)
        # The grammar allows white space after the JSON; hold it back until more JSON follows.
        ready = self._forced_text.rstrip()
        if len(ready) > self._forced_sent:
            yield ToolCallDelta(0, arguments=ready[self._forced_sent:], choice=self.index)
            self._forced_sent = len(ready)

    def _items(self, items: list[Item]) -> Iterator[Event]:
        for item in items:
            if isinstance(item, Call):
                yield self._call_event(item)
            elif isinstance(item, Reasoning):
                if item.text:
                    yield ThinkingDelta(item.text, self.index)
            elif item.text:
                yield self._text(item.text)

    def _call_event(self, call: Call) -> ToolCallDelta:
        self.n_calls += 1
        return ToolCallDelta(self.n_calls - 1, new_call_id(), call.name, call.arguments,
                             self.index)

    def _text(self, text: str) -> TextDelta:
        logprobs, self.logprobs = (self.logprobs or None), []
        return TextDelta(text, self.index, logprobs)
