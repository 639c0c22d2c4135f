"""Thinking first: a budgeted thinking phase, then the answer conditioned on it (the phases
themselves are reasoning.py's; this starts their generations on the engine)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator

from . import reasoning
from .budget import check_budget, counter
from .choice_events import choice_events
from .engine import GenerationJob
from .errors import ContextTooLong
from .postprocess import Choice
from .prompting import Prompt
from .run import EventStream, Run, releaser
from .runtime import Lease, Runtime
from .tokens import tokenize_prompt
from .types import ChatRequest, ChoiceDone, Done, Event, Usage


def start_thinking_first(runtime: Runtime, lease: Lease, req: ChatRequest, prompt: Prompt,
                          tokens: list[int], choice: Choice, source: str | None,
                          grammar: str | None, preserve: tuple[int, ...]) -> Run:
    """A budgeted thinking phase, then the answer conditioned on it (see reasoning.py)."""
    model = lease.model
    n_ctx = model.info.n_ctx
    schema = choice.structured.normalized if choice.structured else None
    if grammar is not None:
        schema = None
    if schema is not None or grammar is not None:  # compile now: a bad one is still a 4xx
        model.prepare(GenerationJob(tokens, req.sampling, 1, schema, grammar=grammar))
    marks = reasoning.tags(source)
    think = Choice([marks.stop], False, [], None, False)
    answer = dataclasses.replace(choice, split_thinking=False, start="content")
    think_sampling = dataclasses.replace(req.sampling, stop=[], logprobs=None)
    max_new = req.sampling.max_tokens
    streams: list = []  # closed when the run ends, whether or not their events were read

    def phase(i: int, is_answer: bool, text: str, limit: int | None,
              usage: Usage) -> Iterator[Event]:
        """Start one phase's generation now; its events follow as it is iterated."""
        ids = tokens if text == prompt.text else tokenize_prompt(model, text)
        room = n_ctx - len(ids)
        if not is_answer and room <= 0:
            raise ContextTooLong(len(ids), n_ctx)
        limit = room if limit is None else min(limit, room)
        if limit <= 0:
            return (event for event in [ChoiceDone(i, "length")])
        job = GenerationJob(ids, req.sampling if is_answer else think_sampling, limit,
                            schema if is_answer else None,
                            grammar=grammar if is_answer else None, preserve=preserve)
        if is_answer and choice.structured is not None:
            check_budget(model, choice.structured, limit)
        streams.append(model.generate(model.prepare(job)))
        return choice_events(i, streams[-1], answer if is_answer else think, usage,
                              counter(model), limit)

    def thinking(i: int) -> tuple[Iterator[Event], Usage]:
        usage = Usage()
        return phase(i, False, prompt.text, reasoning.thinking_limit(req.thinking, max_new),
                     usage), usage

    first = thinking(0)  # started before anything is sent: an overload is still a 5xx

    def events() -> Iterator[Event]:
        usage = Usage(prompt_tokens=len(tokens), load_seconds=lease.load_seconds)
        visible_start = reasoning.lead_in(source)
        for i in range(req.n):
            think_events, think_usage = first if i == 0 else thinking(i)
            yield from reasoning.think_then_answer(
                i, think_events, think_usage, prompt.text, visible_start,
                prompt.answer_prefix or "", max_new,
                functools.partial(phase, i, True), usage, marks.close)
        yield Done(usage)

    return Run(req.model, len(tokens), EventStream(events(), releaser(runtime, lease, streams)))
