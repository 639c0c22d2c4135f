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

A draft row is not free, and what it costs depends on the machine: StepCost measures what
steps of each size take, as the server runs. A draft of k tokens adds p + p^2 + ... + p^k
expected tokens to its step (p: the chance that a drafted token is kept given the one before
was, the sequence's own record so far, starting from a prior that grows with the length of
the match, since a long match is a copy in progress) and k rows to its cost; the scheduler
drafts the k that makes the step's expected tokens per second highest, none when no draft
beats the step without one. With 8 streams in a step its cost is shared by 8 tokens, so only
drafts that are nearly always right go in and the batch keeps its throughput; prose, where
long n-grams seldom repeat, seldom drafts at all. A sequence whose drafts keep failing stops
drafting for a while.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Tokens of the n-gram looked up.
NGRAM = 4
#: A match must extend at least this many tokens back before anything is drafted.
MIN_MATCH = 6
#: Most tokens drafted for one sequence in one step: its pending token and the draft stay
#: below 64 rows. With 64 or more rows of one sequence in a batch, llama.cpp's CPU attention
#: takes another path whose results differ in the last bits (measured: identical logits up
#: to 63 rows, not at 64), and temperature 0 would no longer give the same text as decoding
#: one token at a time.
MAX_DRAFT = 62
#: a / b before StepCost has measured it.
STEP_COST = 1.3
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
        self.rejected = 0  # rounds that ended in a mismatch
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
        """The chance that a drafted token is kept given that the one before it was: kept
        tokens over kept tokens plus rounds cut short by a mismatch (tokens after a mismatch
        were never tried), with the prior for this match length."""
        prior = 1.0 - 1.0 / match
        return (self.accepted + prior * PRIOR_WEIGHT) / (
            self.accepted + self.rejected + PRIOR_WEIGHT)

    def draft(self, limit: int, rows: int, cost, always: bool = False) -> list[int]:
        """Tokens likely to follow, at most `limit`; as many as make the expected tokens per
        second of a step that already holds `rows` rows highest (see worth; `cost(n)` is a
        step of n rows). `always`: as many as the match offers."""
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
            k = min(k, worth(self.acceptance(match), rows, cost))
        return seq[j:j + k] if k > 0 else []

    def record(self, drafted: int, accepted: int) -> None:
        """What the verification kept of the last draft."""
        if not drafted:
            return
        self.drafted += drafted
        self.accepted += accepted
        self.rejected += accepted < drafted
        if accepted == 0:
            self._misses += 1
            if self._misses >= MISS_LIMIT:
                self._pause, self._pause_len = self._pause_len, min(self._pause_len * 2, 256)
                self._misses = 0
        else:
            self._misses = 0
            if accepted == drafted:
                self._pause_len = 8


def worth(p: float, rows: int, cost) -> int:
    """How many drafted tokens to add to a step that already has `rows` rows (about as many
    tokens), each kept with probability p given the one before: the count that makes the
    step's expected tokens per second highest, `cost(n)` being what a step of n rows costs.
    0 when no draft beats the step without one."""
    best_k, best = 0, rows / cost(rows)
    tokens, gain = float(rows), 1.0
    for k in range(1, MAX_DRAFT + 1):
        gain *= p
        tokens += gain
        rate = tokens / cost(rows + k)
        if rate > best:
            best_k, best = k, rate
    return best_k


class StepCost:
    """What a decode step of n rows costs on this machine as it runs (its load included),
    measured: the recent mean time of the steps seen in each range of row counts (steps
    with prompt chunks left out). Where nothing was measured yet, `a + b x rows` with
    a / b = STEP_COST, scaled to the nearest measurement.

    Measured here: the shape is not a line. With one llama.cpp thread a second row costs as
    much as the first (decode is compute-bound), while 33 rows cost 17x one row, not 33x: so
    short drafts lose and long ones win, which a fitted line would not tell."""

    EDGES = (1, 2, 3, 5, 9, 17, 33, 65, 129, 257, 513)
    WEIGHT = 0.2  # of each new step in its range's mean

    def __init__(self):
        n = len(self.EDGES)
        self._rows = [0.0] * n
        self._secs = [0.0] * n
        self._count = [0] * n
        self._points: list[tuple[float, float]] | None = []

    def _bucket(self, rows: int) -> int:
        i = 0
        while i + 1 < len(self.EDGES) and rows >= self.EDGES[i + 1]:
            i += 1
        return i

    def add(self, rows: int, seconds: float) -> None:
        i = self._bucket(rows)
        self._count[i] += 1
        w = max(self.WEIGHT, 1.0 / self._count[i])
        self._rows[i] += w * (rows - self._rows[i])
        self._secs[i] += w * (seconds - self._secs[i])
        self._points = None

    def points(self) -> list[tuple[float, float]]:
        if self._points is None:
            self._points = [(r, t) for r, t, c in zip(self._rows, self._secs, self._count,
                                                       strict=True) if c >= 2 and t > 0]
        return self._points

    def __call__(self, n: int) -> float:
        points = self.points()
        if not points:
            return STEP_COST + n
        if n <= points[0][0] or len(points) == 1 or n >= points[-1][0]:
            r, t = points[0] if n <= points[0][0] else points[-1]
            return t * (STEP_COST + n) / (STEP_COST + r)
        for (r0, t0), (r1, t1) in zip(points, points[1:], strict=False):
            if r0 <= n <= r1:
                return t0 + (t1 - t0) * (n - r0) / max(1e-9, r1 - r0)
        return STEP_COST + n  # not reached
