"""OpenAI's legacy text completions (/completions) <-> core types, without HTTP: a body to one
core request per prompt, core events to the completion object or its SSE chunks (with the
legacy logprobs: tokens, token_logprobs, top_logprobs, text_offset).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..core.errors import InvalidRequest
from ..core.types import ChoiceDone, CompletionRequest, Done, TextDelta, TokenLogprob, Usage
from .common import in_band
from .openai_codec import (
    SYSTEM_FINGERPRINT,
    error_body,
    new_id,
    sampling_from,
    schema_from,
    usage_json,
)
from .sse import sse_data
from .validation import validate

if TYPE_CHECKING:
    from ..core.pipeline import Run


def parse_completion(body: dict[str, Any], engine: str | None) -> list[CompletionRequest]:
    """One CompletionRequest per prompt (OpenAI accepts a batch of prompts)."""
    validate("openai_completion", body)
    if body.get("suffix"):
        raise InvalidRequest("suffix (fill-in-the-middle) is not supported by this model",
                             param="suffix")
    n = body.get("n") or 1
    if body.get("best_of") not in (None, n):
        raise InvalidRequest("best_of must equal n (or be omitted)", param="best_of")
    # 16 is the API's own default (not the model's): it counts as the request's choice.
    sampling = sampling_from(body, 16 if body.get("max_tokens") is None else body["max_tokens"])
    if body.get("logprobs") is not None:
        sampling.logprobs = body["logprobs"]
    prompt = body["prompt"]
    if isinstance(prompt, str) or isinstance(prompt[0], int):
        prompts = [prompt]
    else:
        prompts = prompt
    schema, schema_param = schema_from(body)
    return [CompletionRequest(model=body["model"], prompt=p, sampling=sampling, engine=engine,
                              n=n, echo=bool(body.get("echo")), response_schema=schema,
                              schema_param=schema_param, grammar=body.get("grammar"))
            for p in prompts]


def completion_json(runs: list[Run], model: str, n: int) -> dict[str, Any]:
    choices: dict[int, dict[str, Any]] = {}
    usage = Usage()
    for p, run in enumerate(runs):
        for event in run.events:
            if isinstance(event, Done):
                usage.add_tokens(event.usage)
                continue
            index = p * n + event.choice
            c = choices.setdefault(index, {"text": "", "index": index, "logprobs": None,
                                           "finish_reason": None})
            if isinstance(event, TextDelta):
                if event.logprobs:
                    c["logprobs"] = _merge_completion_logprobs(c["logprobs"], event.logprobs,
                                                               len(c["text"]))
                c["text"] += event.text
            elif isinstance(event, ChoiceDone):
                c["finish_reason"] = event.finish_reason
    return {"id": new_id("cmpl"), "object": "text_completion", "created": int(time.time()),
            "model": model, "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [choices[i] for i in sorted(choices)], "usage": usage_json(usage)}


def _merge_completion_logprobs(acc: dict | None, items: list[TokenLogprob],
                               offset: int) -> dict[str, Any]:
    """Legacy logprobs; `offset` is where the first of `items` starts in the choice's text
    (after an echoed prompt, and after earlier chunks of a stream)."""
    acc = acc or {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for lp in items:
        acc["tokens"].append(lp.token)
        acc["token_logprobs"].append(lp.logprob)
        acc["top_logprobs"].append({t: v for t, _, v in lp.top})
        acc["text_offset"].append(offset)
        offset += len(lp.token)
    return acc


def completion_stream(runs: list[Run], model: str, n: int,
                      include_usage: bool) -> Iterator[str]:
    head = {"id": new_id("cmpl"), "object": "text_completion", "created": int(time.time()),
            "model": model, "system_fingerprint": SYSTEM_FINGERPRINT}
    usage = Usage()
    sent: dict[int, int] = {}  # characters of text each choice has streamed so far
    try:
        for p, run in enumerate(runs):
            for event in run.events:
                if isinstance(event, Done):
                    usage.add_tokens(event.usage)
                    continue
                index = p * n + event.choice
                if isinstance(event, TextDelta):
                    logprobs = (_merge_completion_logprobs(None, event.logprobs,
                                                           sent.get(index, 0))
                                if event.logprobs else None)
                    sent[index] = sent.get(index, 0) + len(event.text)
                    choice = {"text": event.text, "index": index, "logprobs": logprobs,
                              "finish_reason": None}
                elif isinstance(event, ChoiceDone):
                    choice = {"text": "", "index": index, "logprobs": None,
                              "finish_reason": event.finish_reason}
                else:
                    continue
                yield sse_data({**head, "choices": [choice]})
        if include_usage:
            yield sse_data({**head, "choices": [], "usage": usage_json(usage)})
        yield "data: [DONE]\n\n"
    except Exception as exc:  # after the 200: report in-band, as OpenAI does
        yield sse_data(error_body(in_band(exc, "OpenAI")))
    finally:
        for run in runs:
            run.events.close()
