"""Model-free speculative decoding: prompt lookup drafts, verified in the scheduler's batch.

When an answer repeats its input (code edits, quoting, JSON re-emission), the tokens that
followed the last occurrence of the sequence's latest n-gram are a good guess for what comes
next. Those guesses (the draft) go into the step's batch behind the sequence's pending token,
each with its logits; the scheduler then samples each row with the sequence's own sampler
chain and keeps drafted tokens for as long as they equal what was sampled. Every kept token
is therefore a sample of the target distribution given the tokens before it (a point-mass
draft accepted when the sample matches is exactly speculative sampling's accept/reject rule),
so temperature 0 gives the same text with and without drafts, and seeded sampling draws the
same random numbers in the same order.

A draft row is not free: on this CPU a step costs about a + b x rows (a ~ 1.2 b, measured in
docs/benchmarks.md), so a drafted token is worth its row when the chance that it and all
before it are accepted, p^i, beats b / (b + a / B) with B sequences in the batch (a saved
step is shared by all of them). p is each sequence's own acceptance rate so far, starting
from a prior that grows with the length of the match (a long match is a copy in progress);
a sequence whose drafts keep failing stops drafting for a while.
With many streams (B = 8) only drafts that are nearly always right survive, so speculation
never costs the batch its throughput; prose, where few long n-grams repeat, rarely drafts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Tokens of the n-gram looked up.
NGRAM = 4
#: A match must extend at least this many tokens back before anything is drafted.
MIN_MATCH = 6
#: Most tokens drafted for one sequence in one step. It must stay below 63: with 64 or more
#: rows of one sequence in a batch, llama.cpp's CPU attention takes another path whose
#: results differ in the last bits (measured), and temperature 0 would no longer give the
#: same text as decoding one token at a time.
MAX_DRAFT = 32
#: Fixed cost of a step in units of one batch row (a / b above).
STEP_COST = 1.2
#: Weight, in drafted tokens, of the prior acceptance rate (1 - 1/match length: a long
#: match is a copy in progress) against what the sequence's drafts really achieved.
PRIOR_WEIGHT = 4.0
#: Rounds with nothing accepted before a sequence pauses drafting (the pause doubles).
MISS_LIMIT = 3


@dataclass
class SpecStats:
    drafted: int = 0
    accepted: int = 0
    rounds: int = 0


class Drafter:
    """Prompt lookup over one sequence's tokens (its prompt, then what it generated)."""

    def __init__(self, tokens: list[int]):
        self.tokens: list[int] = []
        self._index: dict[tuple[int, ...], int] = {}
        self.drafted = 0
        self.accepted = 0
        self._misses = 0
        self._pause = 0  # tokens to wait before drafting again
        self._pause_len = 8
        self.extend(tokens)

    def extend(self, tokens: list[int]) -> None:
        """Append tokens; index every n-gram that now has a next token (latest wins)."""
        seq = self.tokens
        index = self._index
        start = max(NGRAM, len(seq))
        seq.extend(tokens)
        for j in range(start, len(seq)):
            index[tuple(seq[j - NGRAM:j])] = j
        if self._pause:
            self._pause = max(0, self._pause - len(tokens))

    def sync(self, prompt: list[int], generated: list[int]) -> None:
        """Catch up with the sequence's history: its prompt, then what it generated."""
        known = len(self.tokens)
        if known >= len(prompt):
            if known < len(prompt) + len(generated):
                self.extend(generated[known - len(prompt):])
        else:
            self.extend((prompt + generated)[known:])

    def acceptance(self, match: int) -> float:
        prior = 1.0 - 1.0 / match
        return (self.accepted + prior * PRIOR_WEIGHT) / (self.drafted + PRIOR_WEIGHT)

    def draft(self, limit: int, batch_width: int, always: bool = False) -> list[int]:
        """Tokens likely to follow, at most `limit`; none when they are not worth their rows
        in a batch of `batch_width` sequences (`always`: whenever a match is found)."""
        seq = self.tokens
        if limit <= 0 or self._pause or len(seq) < NGRAM + 1:
            return []
        j = self._index.get(tuple(seq[-NGRAM:]))
        if j is None or j >= len(seq):
            return []
        match = NGRAM
        n = len(seq)
        while match < MAX_DRAFT and j - match > 0 and seq[j - match - 1] == seq[n - match - 1]:
            match += 1
        if match < MIN_MATCH and not always:
            return []
        k = min(limit, MAX_DRAFT, n - j)
        if not always:
            k = min(k, worth(self.acceptance(match), batch_width))
        return seq[j:j + k] if k > 0 else []

    def record(self, drafted: int, accepted: int) -> None:
        """What the verification kept of the last draft."""
        if not drafted:
            return
        self.drafted += drafted
        self.accepted += accepted
        if accepted == 0:
            self._misses += 1
            if self._misses >= MISS_LIMIT:
                self._pause, self._pause_len = self._pause_len, min(self._pause_len * 2, 256)
                self._misses = 0
        else:
            self._misses = 0
            if accepted == drafted:
                self._pause_len = 8


def worth(p: float, batch_width: int) -> int:
    """How many drafted tokens pay for their rows: the largest i with p^i > b / (b + a/B)."""
    threshold = 1.0 / (1.0 + STEP_COST / max(1, batch_width))
    if p <= threshold:
        return 0
    if p >= 0.999:
        return MAX_DRAFT
    return min(MAX_DRAFT, int(math.log(threshold) / math.log(p)))
