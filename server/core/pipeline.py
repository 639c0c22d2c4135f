"""The request pipeline: from a dialect-free request to a stream of events.

start_chat/start_completion do everything that can fail on bad input (model lookup, template,
tokenization, context check, grammar) before returning, so a dialect can still answer with a
4xx; only then are events generated. Per choice the raw tokens flow through:

    UTF-8 decoding -> stop sequences -> the model's chat format (reasoning, tool calls) -> events

Around it: the prompt is prompting.py's, one choice's events choice_events.py's, thinking
first thinking_first.py's, a run's stream and cleanup run.py's, token facts tokens.py's,
embeddings embeddings.py's; the chat formats are chat_formats/.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

from . import defaults, reasoning, test_hooks
from .budget import Structured, check_budget, check_grammar_fields, counter
from .choice_events import choice_events
from .embeddings import Embeddings, embed
from .engine import GenerationJob
from .errors import ContextTooLong, InvalidRequest
from .postprocess import Choice
from .prompting import build_prompt
from .run import EventStream, Run, releaser
from .runtime import Lease, Runtime
from .thinking_first import start_thinking_first
from .tokens import check_token_ids, preserved_tokens, tokenize_prompt
from .types import (
    ChatRequest,
    ChoiceDone,
    CompletionRequest,
    Done,
    Event,
    Sampling,
    TextDelta,
    Usage,
)

__all__ = ["Embeddings", "EventStream", "Run", "build_prompt", "count_chat_tokens", "embed",
           "preserved_tokens", "start_chat", "start_completion", "tokenize_prompt"]


# ------------------------------------------------------------------------------ prompts


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
        choice = Choice(
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
            return start_thinking_first(runtime, lease, req, prompt, tokens, choice, source,
                                         grammar, preserve)
        return _start(runtime, lease, req.model, tokens, req.sampling, req.n, choice,
                      grammar, preserve)
    except BaseException:
        runtime.release(lease)
        raise


def start_completion(runtime: Runtime, req: CompletionRequest) -> Run:
    lease = runtime.acquire(req.model, req.engine, req.keep_alive)
    try:
        req = defaults.completion(req, runtime.model_defaults(lease.stored).defaults)
        model = lease.model
        if isinstance(req.prompt, str):
            tokens = tokenize_prompt(model, req.prompt)
            prompt_text = req.prompt
        else:
            tokens = check_token_ids(req.prompt, model.info, "prompt")
            prompt_text = model.detokenize(tokens)
        if not tokens:
            raise InvalidRequest("prompt is empty", param="prompt")
        structured = Structured.of(req.response_schema, req.schema_param)
        check_grammar_fields(req.grammar, structured)
        choice = Choice(req.sampling.stop, False, [], None, req.sampling.logprobs is not None,
                         structured=structured)
        run = _start(runtime, lease, req.model, tokens, req.sampling, req.n, choice,
                     req.grammar)
        if req.echo:
            run.events = EventStream(_echo(prompt_text, req.n, run.events), run.events.close)
        return run
    except BaseException:
        runtime.release(lease)
        raise


def _echo(text: str, n: int, events: Iterator[Event]) -> Iterator[Event]:
    started: set[int] = set()
    for event in events:
        choice = getattr(event, "choice", None)
        if choice is not None and choice not in started:
            started.add(choice)
            yield TextDelta(text, choice)
        yield event


def _start(runtime: Runtime, lease: Lease, name: str, tokens: list[int], sampling: Sampling,
           n: int, choice: Choice, grammar: str | None = None,
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
    return Run(name, len(tokens), EventStream(events, releaser(runtime, lease, streams)))


def _events(lease: Lease, streams, n: int, n_prompt: int, choice: Choice,
            count: Callable[[str], int], budget: int) -> Iterator[Event]:
    usage = Usage(prompt_tokens=n_prompt, load_seconds=lease.load_seconds)
    if not streams:
        for i in range(n):
            yield ChoiceDone(i, "length")
    for i, stream in enumerate(streams):
        yield from choice_events(i, stream, choice, usage, count, budget)
    yield Done(usage)
