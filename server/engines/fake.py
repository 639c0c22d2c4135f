"""A test double of an engine: scripted tokens, a character tokenizer, a context of any size.

The real engine needs a model file and a runner process, so the pipeline's edge cases (a stop
sequence split across tokens, a forced call, `n` choices with seeds, echo, thinking first, the
context check) would only be reachable through a model whose answers cannot be chosen. This
engine implements the same port (core/engine.py) in process and answers what a test scripts:

    engine = FakeEngine(script=["Hel", "lo", " wor", "ld"])          # the same for every job
    engine = FakeEngine(script=lambda prompt, job: [f"seed {job.sampling.seed}"])

A script's pieces are the generated tokens (str, or bytes to split a UTF-8 character); when
they run out the sequence ends with `end` ("stop", an end-of-generation token, by default;
"timeout" plays the request timeout), and at the job's `max_new_tokens` with "length". Prompts are tokenized one character per token, except the
special tokens (ChatML's markers), which are one token each when special text is parsed.
It knows nothing of llama.cpp: use it with `create_app(settings, engines={...})`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.engine import (
    EngineStats,
    GenerationEnd,
    GenerationJob,
    ModelInfo,
    PreparedJob,
    Token,
)

#: ChatML, as SmolLM2 writes it (its system default left out).
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
#: The special tokens, by id (the characters' ids follow them).
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
EOS_ID = 2
_FIRST_CHAR = len(SPECIALS)

Pieces = Sequence["str | bytes"]
Script = "Pieces | Callable[[str, GenerationJob], Pieces]"


def char_id(ch: str) -> int:
    return _FIRST_CHAR + ord(ch)


class FakeTokenizer:
    """One token per character; SPECIALS are one token each when `parse_special` is set."""

    n_vocab = _FIRST_CHAR + 0x110000

    def tokenize(self, text: str, *, add_special: bool = False,
                 parse_special: bool = False) -> list[int]:
        ids: list[int] = []
        i = 0
        while i < len(text):
            if parse_special:
                special = next((s for s in SPECIALS if text.startswith(s, i)), None)
                if special is not None:
                    ids.append(SPECIALS.index(special))
                    i += len(special)
                    continue
            ids.append(char_id(text[i]))
            i += 1
        return ids

    def detokenize(self, tokens: list[int]) -> str:
        return "".join(SPECIALS[t] if t < _FIRST_CHAR else chr(t - _FIRST_CHAR) for t in tokens)


class FakeStream:
    """The scripted pieces of one job, then a GenerationEnd."""

    def __init__(self, model: FakeModel, job: GenerationJob, pieces: Pieces, end: str):
        self._model, self._job, self._pieces, self._end = model, job, list(pieces), end
        self._cancelled = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def __iter__(self) -> Iterator[Token | GenerationEnd]:
        n = 0
        reason = self._end
        with self._model.running():
            for piece in self._pieces:
                if self._cancelled.is_set():
                    reason = "cancelled"
                    break
                if n >= self._job.max_new_tokens:
                    reason = "length"
                    break
                data = piece.encode() if isinstance(piece, str) else bytes(piece)
                token_id = char_id(data.decode(errors="replace")[:1] or "\0")
                logprob = (-0.5, [(data, -0.5)]) if self._job.sampling.logprobs else None
                n += 1
                yield Token(token_id, data, logprob)
            else:
                if self._cancelled.is_set():
                    reason = "cancelled"
        yield GenerationEnd(reason, n, 0, 0.0, 0.0)

    def cancel(self) -> None:
        self._cancelled.set()

    def close(self) -> None:
        self._cancelled.set()


@dataclass(eq=False)  # hashable by identity, as the pipeline's per-model caches need
class FakeModel:
    """A loaded fake model; `jobs` records every job it was given (prompt, sampling...) and
    `streams` their token streams (a test sees which were cancelled)."""

    info: ModelInfo
    script: Any
    end: str = "stop"
    tokenizer: FakeTokenizer = field(default_factory=FakeTokenizer)
    jobs: list[GenerationJob] = field(default_factory=list)
    streams: list[FakeStream] = field(default_factory=list)
    loaded: bool = True
    _active: int = 0

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        ids = self.tokenizer.tokenize(text, parse_special=parse_special)
        return ([SPECIALS.index(self.info.bos_token)] if add_special and self.info.add_bos
                else []) + ids

    def detokenize(self, tokens: list[int]) -> str:
        return self.tokenizer.detokenize(tokens)

    def prepare(self, job: GenerationJob) -> PreparedJob:
        return PreparedJob(job, job.grammar)

    def generate(self, prepared: PreparedJob) -> FakeStream:
        job = prepared.job
        script = self.script
        pieces = script(self.detokenize(job.prompt), job) if callable(script) else script
        self.jobs.append(job)
        self.streams.append(FakeStream(self, job, pieces, self.end))
        return self.streams[-1]

    def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        """A vector per input from its tokens (same input, same vector)."""
        return [[float(len(ids)), float(sum(ids) % 997), float(ids[0]), 1.0][: self.info.n_embd]
                for ids in inputs]

    def running(self) -> _Active:
        return _Active(self)

    def busy(self) -> bool:
        return self._active > 0

    def stats(self) -> EngineStats:
        return EngineStats()

    def alive(self) -> bool:
        return self.loaded

    def unload(self) -> None:
        self.loaded = False


class _Active:
    def __init__(self, model: FakeModel):
        self._model = model

    def __enter__(self) -> None:
        self._model._active += 1

    def __exit__(self, *_exc: object) -> None:
        self._model._active -= 1


class FakeEngine:
    """Loads any stored model as a FakeModel answering `script`; `n_ctx` is its context."""

    name = "fake"

    def __init__(self, script: Any = ("Hello", "!"), *, n_ctx: int = 512,
                 chat_template: str | None = CHATML, end: str = "stop"):
        self.script = script
        self.end = end
        self.n_ctx = n_ctx
        self.chat_template = chat_template
        #: Every model this engine loaded, in order (a test inspects their jobs).
        self.models: list[FakeModel] = []

    def load(self, path: str, *, name: str | None = None, context_size: int | None = None,
             **_options: Any) -> FakeModel:
        info = ModelInfo(
            architecture="fake", chat_template=self.chat_template, bos_token=SPECIALS[1],
            eos_token=SPECIALS[2], add_bos=False, n_ctx=context_size or self.n_ctx,
            n_ctx_train=self.n_ctx, n_embd=4, n_params=0, size_bytes=0,
            n_vocab=FakeTokenizer.n_vocab)
        model = FakeModel(info, self.script, self.end)
        self.models.append(model)
        return model

    def status(self) -> str:
        return "fake engine (scripted tokens)"
