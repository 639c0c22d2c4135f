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

A draft row is not free. A step costs about a + b x rows: the weights are read once per
step, each row adds its own arithmetic and logits (a / b is ~1.3 on this CPU, see
docs/benchmarks.md; StepCost keeps measuring it on the machine as it is, load included). A
drafted token adds its chance of being kept (p^i for the i-th: p is the sequence's own
acceptance rate so far (kept given the one before was kept), starting from a prior that grows with the length of the match, since
a long match is a copy in progress) and one row of cost; it goes in only while that raises
the step's expected tokens per unit of time. With one stream that means drafts whose first
token is kept half of the time; with 8 streams in the batch (the step's cost is already
shared by 8 tokens) only drafts that are nearly always right, so speculation does not cost
the batch its throughput, and prose, where long n-grams seldom repeat, seldom drafts at all.
A sequence whose drafts keep failing stops drafting for a while.
"""

from __future__ import annotations

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

    def draft(self, limit: int, rows: int, cost: float, always: bool = False) -> list[int]:
        """Tokens likely to follow, at most `limit`; as many as raise the expected tokens per
        second of a step that already holds `rows` rows, a step costing `cost` rows more
        (see worth). `always`: as many as the match offers."""
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


def worth(p: float, rows: int, cost: float = STEP_COST) -> int:
    """How many drafted tokens, each kept with probability p given the one before, raise the
    expected tokens per unit of time of a step with `rows` rows (about as many tokens) that
    costs `cost` + rows: the i-th goes in while p^i beats the step's average."""
    tokens, k = float(rows), 0
    gain = 1.0
    while k < MAX_DRAFT:
        gain *= p
        if gain <= tokens / (cost + rows + k):
            break
        tokens += gain
        k += 1
    return k


class StepCost:
    """a / b of `step seconds = a + b x rows`, fitted on the decode steps seen lately (no
    prompt chunks in them), for drafts to be sized to the machine as it runs."""

    DECAY = 0.995  # each step's weight fades: the last ~200 steps count

    def __init__(self):
        self._s = [0.0] * 5  # sums of w, w n, w n^2, w t, w n t

    def add(self, rows: int, seconds: float) -> None:
        d = self.DECAY
        s = self._s
        n = float(rows)
        for i, value in enumerate((1.0, n, n * n, seconds, n * seconds)):
            s[i] = s[i] * d + value

    def ratio(self) -> float:
        w, sn, snn, st, snt = self._s
        spread = w * snn - sn * sn
        if w < 10 or spread <= 1e-9 * max(1.0, w * snn):  # too few steps, or all the same size
            return STEP_COST
        b = (w * snt - sn * st) / spread
        a = (st - b * sn) / w
        if b <= 0 or a <= 0:
            return STEP_COST
        return min(10.0, max(0.5, a / b))
