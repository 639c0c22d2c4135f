"""The request pipeline: from a dialect-free request to a stream of events.

start_chat/start_completion do everything that can fail on bad input (model lookup, template,
tokenization, context check, grammar) before returning, so a dialect can still answer with a
4xx; only then are events generated. Per choice the raw tokens flow through:

    UTF-8 decoding -> stop sequences -> the model's chat format (reasoning, tool calls) -> events

The prompt itself is prompting.py's; the chat formats are chat_formats/.
"""

from __future__ import annotations

import codecs
import dataclasses
import functools
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from . import defaults, reasoning, test_hooks
from .budget import BudgetGuard, Structured, check_budget, check_grammar_fields, counter
from .engine import GenerationEnd, GenerationJob, ModelInfo, Token
from .errors import ContextTooLong, InvalidRequest
from .postprocess import Choice as _Choice
from .postprocess import PostProcessor as _PostProcessor
from .prompting import Prompt, build_prompt
from .runtime import Lease, Runtime
from .stops import StopMatcher
from .structured import Closer
from .types import (
    ChatRequest,
    ChoiceDone,
    CompletionRequest,
    Done,
    EmbeddingRequest,
    Event,
    Sampling,
    TextDelta,
    TokenLogprob,
    Usage,
)


class EventStream:
    """The events of one run. close() cancels its sequences and releases the model, whether
    or not iteration ever started (a client may disconnect before the first event); it runs
    once, by the end of iteration, an error, or an explicit close."""

    def __init__(self, events: Iterator[Event], cleanup: Callable[[], None]):
        self._events = events
        self._cleanup = cleanup
        self._closed = False
        self._lock = threading.Lock()

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> Event:
        try:
            return next(self._events)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._events.close()
        except ValueError:
            pass  # being iterated on another thread (a heartbeat pump): the cleanup stops it
        finally:
            self._cleanup()


def _releaser(runtime: Runtime, lease: Lease, streams: list) -> Callable[[], None]:
    def cleanup() -> None:
        for stream in streams:
            stream.close()
        runtime.release(lease)

    return cleanup


@dataclass
class Run:
    """A validated request whose generation has started; iterate `events` exactly once and
    close() it when done (closing is what frees the model's slots)."""

    model: str
    prompt_tokens: int
    events: EventStream

    def close(self) -> None:
        self.events.close()


# ------------------------------------------------------------------------------ prompts


def tokenize_prompt(model, text: str) -> list[int]:
    info: ModelInfo = model.info
    add_bos = info.add_bos and not (info.bos_token and text.startswith(info.bos_token))
    return model.tokenize(text, add_special=add_bos, parse_special=True)


def count_chat_tokens(runtime: Runtime, req: ChatRequest) -> int:
    with runtime.use(req.model, req.engine) as lease:
        prompt = build_prompt(lease.model.info, _configured(runtime, lease, req),
                              lease.chat_template(req.tools))
        return len(tokenize_prompt(lease.model, prompt.text))


# ------------------------------------------------------------------------------ generation


def _configured(runtime: Runtime, lease: Lease, req: ChatRequest) -> ChatRequest:
    """The request as the model shapes it: its default settings where the request has none
    (core/defaults.py), and its runner configuration (reasoning budget, assistant prefill)."""
    req = defaults.chat(req, runtime.model_defaults(lease.stored).defaults)
    config = runtime.configs.get(lease.stored.id) if runtime.configs else None
    budget = config.reasoning() if config is not None else None
    thinking = reasoning.with_configured_budget(req.thinking, budget,
                                                lease.chat_template(req.tools))
    prefill = config.prefill_assistant if config is not None else True
    if thinking == req.thinking and prefill == req.prefill_assistant:
        return req
    return dataclasses.replace(req, thinking=thinking, prefill_assistant=prefill)


def start_chat(runtime: Runtime, req: ChatRequest) -> Run:
    lease = runtime.acquire(req.model, req.engine, req.keep_alive)
    try:
        req = _configured(runtime, lease, req)
        model = lease.model
        source = lease.chat_template(req.tools)
        prompt = build_prompt(model.info, req, source)
        tokens = tokenize_prompt(model, prompt.text)
        forced = prompt.forced
        # JSON output (a forced call's arguments, or response_format) closes within the
        # budget (budget.py); a forced call in a native syntax of its own has a grammar.
        if forced is not None:
            structured = Structured.of(forced.schema, "tools") if forced.grammar is None \
                else None
            grammar = forced.grammar
        else:
            structured = Structured.of(req.response_schema, req.schema_param)
            grammar = req.grammar
        check_grammar_fields(req.grammar, structured)
        if (hooked := test_hooks.output_grammar(req.model)) is not None:
            forced, structured, grammar = None, None, hooked
        preserve = preserved_tokens(model, prompt.fmt)
        choice = _Choice(
            stops=req.sampling.stop,
            split_thinking=True,
            tools=[] if req.tool_choice.mode == "none" else req.tools,
            forced=forced,
            logprobs=req.sampling.logprobs is not None,
            fmt=prompt.fmt,
            prompt=prompt.text,
            start=prompt.start,
            structured=structured,
        )
        if prompt.answer_prefix is not None:
            return _start_thinking_first(runtime, lease, req, prompt, tokens, choice, source,
                                         grammar, preserve)
        return _start(runtime, lease, req.model, tokens, req.sampling, req.n, choice,
                      grammar, preserve)
    except BaseException:
        runtime.release(lease)
        raise


#: Per loaded model: the control-token ids of each chat format's markers.
_PRESERVED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def preserved_tokens(model, fmt) -> tuple[int, ...]:
    """The control tokens among `fmt`'s markers (tokens a marker has only when special text is
    parsed), which the engine must emit as text for the format's parser to see them."""
    per_model = _PRESERVED.setdefault(model, {})
    if fmt.name not in per_model:
        ids: set[int] = set()
        for marker in sorted(fmt.markers()):
            special = model.tokenize(marker, add_special=False, parse_special=True)
            plain = model.tokenize(marker, add_special=False, parse_special=False)
            ids |= set(special) - set(plain)
        per_model[fmt.name] = tuple(sorted(ids))
    return per_model[fmt.name]


def start_completion(runtime: Runtime, req: CompletionRequest) -> Run:
    lease = runtime.acquire(req.model, req.engine, req.keep_alive)
    try:
        req = defaults.completion(req, runtime.model_defaults(lease.stored).defaults)
        model = lease.model
        if isinstance(req.prompt, str):
            tokens = tokenize_prompt(model, req.prompt)
            prompt_text = req.prompt
        else:
            tokens = _check_token_ids(req.prompt, model.info, "prompt")
            prompt_text = model.detokenize(tokens)
        if not tokens:
            raise InvalidRequest("prompt is empty", param="prompt")
        structured = Structured.of(req.response_schema, req.schema_param)
        check_grammar_fields(req.grammar, structured)
        choice = _Choice(req.sampling.stop, False, [], None, req.sampling.logprobs is not None,
                         structured=structured)
        run = _start(runtime, lease, req.model, tokens, req.sampling, req.n, choice,
                     req.grammar)
        if req.echo:
            run.events = EventStream(_echo(prompt_text, req.n, run.events), run.events.close)
        return run
    except BaseException:
        runtime.release(lease)
        raise


# ------------------------------------------------------------------------------ thinking first


def _start_thinking_first(runtime: Runtime, lease: Lease, req: ChatRequest, prompt: Prompt,
                          tokens: list[int], choice: _Choice, source: str | None,
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
    think = _Choice([marks.stop], False, [], None, False)
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
        return _choice_events(i, streams[-1], answer if is_answer else think, usage,
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

    return Run(req.model, len(tokens), EventStream(events(), _releaser(runtime, lease, streams)))


def _echo(text: str, n: int, events: Iterator[Event]) -> Iterator[Event]:
    started: set[int] = set()
    for event in events:
        choice = getattr(event, "choice", None)
        if choice is not None and choice not in started:
            started.add(choice)
            yield TextDelta(text, choice)
        yield event


def _start(runtime: Runtime, lease: Lease, name: str, tokens: list[int], sampling: Sampling,
           n: int, choice: _Choice, grammar: str | None = None,
           preserve: tuple[int, ...] = ()) -> Run:
    model = lease.model
    n_ctx = model.info.n_ctx
    if sampling.context_limit:
        n_ctx = min(n_ctx, sampling.context_limit)
    if len(tokens) >= n_ctx:
        raise ContextTooLong(len(tokens), n_ctx)
    room = n_ctx - len(tokens)
    max_new = room if sampling.max_tokens is None else min(sampling.max_tokens, room)
    schema = choice.structured.normalized if choice.structured else None
    if grammar is not None:
        schema = None
    if choice.structured is not None and max_new > 0:
        check_budget(model, choice.structured, max_new)
    prepared = []
    for i in range(n):
        s = sampling if i == 0 or sampling.seed is None else dataclasses.replace(
            sampling, seed=sampling.seed + i)
        prepared.append(model.prepare(GenerationJob(tokens, s, max_new, schema,
                                                    grammar=grammar, preserve=preserve)))
    streams = []
    try:
        for job in prepared if max_new > 0 else []:
            streams.append(model.generate(job))
    except BaseException:
        for stream in streams:
            stream.close()
        raise
    events = _events(lease, streams, n, len(tokens), choice, counter(model), max_new)
    return Run(name, len(tokens), EventStream(events, _releaser(runtime, lease, streams)))


def _events(lease: Lease, streams, n: int, n_prompt: int, choice: _Choice,
            count: Callable[[str], int], budget: int) -> Iterator[Event]:
    usage = Usage(prompt_tokens=n_prompt, load_seconds=lease.load_seconds)
    if not streams:
        for i in range(n):
            yield ChoiceDone(i, "length")
    for i, stream in enumerate(streams):
        yield from _choice_events(i, stream, choice, usage, count, budget)
    yield Done(usage)


def _logprob(token: Token) -> TokenLogprob:
    lp, top = token.logprob
    return TokenLogprob(
        token=token.piece.decode(errors="replace"), bytes=list(token.piece), logprob=lp,
        top=[(p.decode(errors="replace"), list(p), v) for p, v in top],
    )


def _choice_events(i: int, stream, choice: _Choice, usage: Usage,
                   count: Callable[[str], int] | None = None,
                   budget: int | None = None) -> Iterator[Event]:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    stopper = StopMatcher(choice.stops)
    post = _PostProcessor(i, choice)
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


# ------------------------------------------------------------------------------ embeddings


@dataclass
class Embeddings:
    model: str
    vectors: list[list[float]]
    prompt_tokens: int
    load_seconds: float
    seconds: float


def _check_token_ids(tokens: list[int], info: ModelInfo, param: str) -> list[int]:
    bad = [t for t in tokens if not 0 <= t < info.n_vocab]
    if bad:
        raise InvalidRequest(f"token ids out of range [0, {info.n_vocab}): {bad[:5]}", param=param)
    return tokens


def embed(runtime: Runtime, req: EmbeddingRequest) -> Embeddings:
    if not req.inputs:
        raise InvalidRequest("input must not be empty", param="input")
    started = time.monotonic()
    with runtime.use(req.model, req.engine, req.keep_alive) as lease:
        model = lease.model
        info: ModelInfo = model.info
        if req.dimensions is not None and not 0 < req.dimensions <= info.n_embd:
            raise InvalidRequest(f"dimensions must be between 1 and {info.n_embd}",
                                 param="dimensions")
        lists = []
        for item in req.inputs:
            if isinstance(item, str):
                tokens = model.tokenize(item, add_special=True, parse_special=False)
            else:
                tokens = _check_token_ids(item, info, "input")
            if not tokens:
                raise InvalidRequest("input must not contain empty strings", param="input")
            if len(tokens) > info.n_ctx:
                if not req.truncate:
                    raise ContextTooLong(len(tokens), info.n_ctx)
                tokens = tokens[: info.n_ctx]
            lists.append(tokens)
        vectors = model.embed(lists)
    if req.dimensions is not None:
        vectors = [v[: req.dimensions] for v in vectors]
    if req.normalize:
        vectors = [_normalized(v) for v in vectors]
    return Embeddings(lease.stored.name, vectors, sum(len(t) for t in lists), lease.load_seconds,
                      time.monotonic() - started)


def _normalized(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else vector
