"""Prompt lookup drafts and when they are worth their batch rows (no model; fast)."""

from server.engines.llamacpp.speculative import MAX_DRAFT, Drafter, worth

TEXT = list(range(1, 41))  # 40 distinct tokens, e.g. a passage to be repeated


def test_a_repeated_passage_is_drafted_from_where_it_appeared():
    drafter = Drafter(TEXT + [99] + TEXT[:8])  # the answer has started repeating the text
    draft = drafter.draft(limit=16, rows=1, cost=linear)
    assert draft and draft == TEXT[8:8 + len(draft)]


def test_no_draft_without_a_long_enough_match():
    assert Drafter(TEXT + [99] + TEXT[:3]).draft(16, 1, linear) == []  # 3 tokens: shorter than an n-gram
    assert Drafter(list(range(100))).draft(16, 1, linear) == []  # nothing repeats


def test_sync_follows_the_sequence_and_misses_pause_drafting():
    drafter = Drafter(TEXT + [99])
    drafter.sync(TEXT + [99], TEXT[:10])
    assert drafter.tokens == TEXT + [99] + TEXT[:10]
    assert drafter.draft(8, 1, linear)
    for _ in range(3):
        drafter.record(drafted=4, accepted=0)
    assert drafter.draft(8, 1, linear) == []  # paused after three rounds with nothing accepted


def linear(n):  # a step of n rows: a + b n, a / b = 1.3
    return 1.3 + n


def test_drafts_are_sized_to_what_steps_cost():
    assert worth(0.99, 1, linear) >= worth(0.99, 8, linear) > 0
    assert worth(0.6, 8, linear) == 0  # with 8 streams a likely-wrong token costs more
    assert worth(1.0, 1, linear) == MAX_DRAFT == 62  # one sequence's rows stay below 64

    measured = [(1, 1.0), (2, 1.97), (3, 2.91), (5, 4.23), (9, 6.31), (17, 10.5), (33, 17.5)]

    def compute_bound(n):  # one thread, measured: a 2nd row costs a 1st, 33 rows 17.5x
        for (r0, t0), (r1, t1) in zip(measured, measured[1:], strict=False):
            if r0 <= n <= r1:
                return t0 + (t1 - t0) * (n - r0) / (r1 - r0)
        return 17.5 + (n - 33) * 0.45

    assert worth(0.9, 1, compute_bound) == 0  # short drafts lose there
    assert worth(0.99, 1, compute_bound) > 16  # long drafts pay, short ones do not


def test_step_cost_follows_measured_steps():
    from server.engines.llamacpp.speculative import StepCost

    cost = StepCost()
    assert cost(2) / cost(1) == linear(2) / linear(1)  # nothing measured yet: the prior
    for _ in range(5):
        for rows, seconds in ((1, 0.035), (2, 0.069), (17, 0.367), (33, 0.614)):
            cost.add(rows, seconds)
    assert abs(cost(2) - 0.069) < 1e-6 and abs(cost(33) - 0.614) < 1e-6
    assert 0.367 < cost(25) < 0.614  # between measurements: interpolated
