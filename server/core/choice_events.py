"""One choice's tokens to events: UTF-8 decoding -> stop sequences -> the model's chat format
(reasoning, tool calls) -> events, with structured output kept within its token budget."""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Iterator

from .budget import BudgetGuard
from .engine import GenerationEnd, Token
from .postprocess import Choice, PostProcessor
from .stops import StopMatcher
from .structured import Closer
from .types import ChoiceDone, Event, TokenLogprob, Usage


def _logprob(token: Token) -> TokenLogprob:
    lp, top = token.logprob
    return TokenLogprob(
        token=token.piece.decode(errors="replace"), bytes=list(token.piece), logprob=lp,
        top=[(p.decode(errors="replace"), list(p), v) for p, v in top],
    )


def choice_events(i: int, stream, choice: Choice, usage: Usage,
                   count: Callable[[str], int] | None = None,
                   budget: int | None = None) -> Iterator[Event]:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    stopper = StopMatcher(choice.stops)
    post = PostProcessor(i, choice)
    guard = None
    if choice.structured is not None and count is not None and budget is not None:
        guard = BudgetGuard(Closer(choice.structured.original, choice.structured.normalized),
                            budget, count)
    started = time.monotonic()
    first_token = 0.0
    n_tokens = 0
    stop_sequence = None
    reason = "length"
    timed_out = False
    closed = False
    emitted = 0  # characters of (guarded) text that passed the stop matcher
    for item in stream:
        if isinstance(item, GenerationEnd):
            usage.cached_tokens = max(usage.cached_tokens, item.cached_tokens)
            if stop_sequence is None and reason != "loop":
                reason = "stop" if item.reason == "stop" else "length"
                timed_out = item.reason == "timeout"
            break
        if stop_sequence is not None or reason == "loop":
            continue  # tokens decoded after the end was decided, before the cancel took effect
        n_tokens += 1
        if not first_token:
            first_token = time.monotonic()
        if choice.logprobs and item.logprob is not None:
            post.logprobs.append(_logprob(item))
        piece = decoder.decode(item.piece)
        if guard is not None:
            piece = guard.feed(piece)
        text, stop_sequence = stopper.feed(piece)
        emitted += len(text)
        thinking = post.in_thinking
        yield from post.feed(text)
        if thinking or post.in_thinking:
            usage.reasoning_tokens += 1
        if stop_sequence is not None:
            reason = "stop"
            stream.cancel()
        elif guard is not None and guard.looping:
            reason = "loop"  # a degenerate loop: the document ends here, closed
            stream.cancel()
    if guard is not None:
        tail = decoder.decode(b"", final=True)
        if tail and stop_sequence is None:
            guard.text += tail  # a last partial character: held like any unsafe text
        ending = guard.cut(emitted) if stop_sequence is not None else guard.end()
        held = stopper.flush() if stop_sequence is None else ""
        yield from post.feed(held + ending.text)
        n_tokens, closed = ending.tokens, ending.closed
        if reason == "loop":
            reason = "stop"
    elif stop_sequence is None:
        yield from post.feed(decoder.decode(b"", final=True) + stopper.flush())
    yield from post.flush()
    now = time.monotonic()
    usage.completion_tokens += n_tokens
    usage.prompt_seconds += (first_token or now) - started
    usage.generation_seconds += now - (first_token or now)
    if post.n_calls and reason == "stop":
        reason = "tool_calls"
    yield ChoiceDone(i, reason, stop_sequence, timed_out, closed and reason == "length")
