"""Structured output that is valid whatever the token budget: hold back, then close.

After every token, `BudgetGuard` asks the `Closer` (structured.py) for the shortest text that
would finish the document validly, and whether it still fits: tokens used so far plus the
closing's own tokens within the budget. Such a point is *safe*: everything up to it is
released to the client at once, because a later cut can only be further on. Text after the
last safe point is held back. When generation ends without the document being finished (the
budget ran out, the request timed out, a stop sequence cut it), the held text is dropped and
the last safe point's closing is appended instead, so the answer parses and validates and the
tokens reported (kept tokens plus the closing's) never exceed the budget.

Most of the time every point is safe and nothing is held: a closing of n bytes costs at most
n tokens, so the tokenizer is asked only when the budget is close. The guard also notices a
degenerate loop (the same few items over and over) and ends the document there.

Before generating, `check_budget` refuses a budget in which not even the schema's shortest
valid answer fits (a 400 that says how many tokens it needs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from . import schema as schemas
from .errors import InvalidRequest
from .structured import Closer, JsonStateError

log = logging.getLogger(__name__)

#: A loop is a unit of at least this many characters, holding a string and a comma...
_LOOP_UNIT = 4
#: ...written this many times in a row at the end of the text.
_LOOP_REPEATS = 8


@dataclass
class _Safe:
    tokens: int
    length: int
    closing: str


@dataclass
class Ending:
    """How a guarded output ends: text to send after what was released, and its tokens."""

    text: str
    tokens: int
    #: The guard closed the document (it was not finished by the model).
    closed: bool


@dataclass
class Structured:
    """A JSON Schema the output must satisfy: as the request gave it (what the answer is
    validated against) and in normal form (what the grammar and the closer work from)."""

    original: dict
    normalized: dict

    @classmethod
    def of(cls, schema: dict | None, param: str) -> Structured | None:
        if schema is None:
            return None
        original = schema or {"type": "object"}
        return cls(original, schemas.normalize(original, param))


def check_grammar_fields(grammar: str | None, structured: Structured | None) -> None:
    if grammar is not None and structured is not None:
        raise InvalidRequest("give either a grammar or a JSON schema (response_format, "
                             "json_schema, a forced tool), not both", param="grammar")


def counter(model) -> Callable[[str], int]:
    """Tokens a text costs in this model (for closings appended to structured output)."""
    return lambda text: len(model.tokenize(text, add_special=False, parse_special=False))


def check_budget(model, structured: Structured, max_new: int) -> None:
    """Refuse a budget in which not even the shortest valid answer fits."""
    shortest = Closer(structured.original, structured.normalized).minimal()
    if shortest is None:
        return
    cost = counter(model)(shortest)
    if cost > max_new:
        raise InvalidRequest(
            f"the token limit of {max_new} is too small for the requested JSON schema: its "
            f"shortest valid answer, {shortest}, takes {cost} tokens; allow at least {cost} "
            "(max_tokens, or Ollama's num_predict)",
            param="max_tokens", min_tokens=cost)


class BudgetGuard:
    def __init__(self, closer: Closer, budget: int, count_tokens: Callable[[str], int]):
        self.closer = closer
        self.budget = budget
        self._count = count_tokens
        self._costs: dict[str, int] = {}
        self.text = ""
        self.released = 0
        self.tokens = 0
        self.looping = False
        self.broken = False
        minimal = closer.minimal()
        if minimal is None:  # nothing to fall back on: pass the text through as it comes
            self.broken = True
            self._safe = _Safe(0, 0, "")
        else:
            self._safe = _Safe(0, 0, minimal)

    def cost(self, text: str) -> int:
        if text not in self._costs:
            self._costs[text] = self._count(text) if text else 0
        return self._costs[text]

    def _fits(self, closing: str, tokens: int) -> bool:
        room = self.budget - tokens
        return len(closing.encode()) <= room or self.cost(closing) <= room

    def feed(self, piece: str) -> str:
        """One more token's text; returns the text that may be sent now."""
        self.tokens += 1
        self.text += piece
        if self.broken:
            return self._release(len(self.text))
        try:
            self.closer.feed(piece)
        except JsonStateError as exc:
            log.warning("structured output not followed (%s); passing it through", exc)
            self.broken = True
            return self._release(len(self.text))
        closing = self.closer.closing()
        if closing is not None and self._fits(closing, self.tokens):
            self._safe = _Safe(self.tokens, len(self.text), closing)
            if closing == "" or not self.looping:
                self.looping = closing != "" and _loops(self.text)
            return self._release(len(self.text))
        return ""

    def _release(self, length: int) -> str:
        out = self.text[self.released:length]
        self.released = max(self.released, length)
        return out

    def end(self) -> Ending:
        """Generation stopped: close the document at the last safe point if it is open."""
        if self.broken:
            return Ending(self._release(len(self.text)), self.tokens, False)
        safe = self._safe
        if safe.length == len(self.text) and safe.closing == "":
            return Ending(self._release(len(self.text)), self.tokens, False)
        kept = self.text[self.released:safe.length]
        return Ending(kept + safe.closing, safe.tokens + self.cost(safe.closing), True)

    def cut(self, length: int) -> Ending:
        """A stop sequence ended the text at `length` characters: close it there."""
        if self.broken or length >= len(self.text):
            return self.end()
        closer = self.closer.restarted()
        try:
            closer.feed(self.text[:length])
        except JsonStateError:
            return self.end()
        closing = closer.closing()
        if closing is None:
            return self.end()
        # Only released text reaches the stop matcher, so nothing held back is kept.
        return Ending(closing, self.tokens + self.cost(closing), True)


def _loops(text: str) -> bool:
    """The end of `text` is one unit repeated _LOOP_REPEATS times (`"a", "a", "a", ...`)."""
    tail = text.rstrip()
    for unit in range(_LOOP_UNIT, len(tail) // _LOOP_REPEATS + 1):
        piece = tail[-unit:]
        if '"' in piece and "," in piece and tail.endswith(piece * _LOOP_REPEATS):
            return True
        if unit > 64:
            break
    return False
