"""Prompt lookup drafts and when they are worth their batch rows (no model; fast)."""

from server.engines.llamacpp.speculative import MAX_DRAFT, Drafter, worth

TEXT = list(range(1, 41))  # 40 distinct tokens, e.g. a passage to be repeated


def test_a_repeated_passage_is_drafted_from_where_it_appeared():
    drafter = Drafter(TEXT + [99] + TEXT[:8])  # the answer has started repeating the text
    draft = drafter.draft(limit=16, rows=1, cost=1.3)
    assert draft and draft == TEXT[8:8 + len(draft)]


def test_no_draft_without_a_long_enough_match():
    assert Drafter(TEXT + [99] + TEXT[:3]).draft(16, 1, 1.3) == []  # 3 tokens: shorter than an n-gram
    assert Drafter(list(range(100))).draft(16, 1, 1.3) == []  # nothing repeats


def test_sync_follows_the_sequence_and_misses_pause_drafting():
    drafter = Drafter(TEXT + [99])
    drafter.sync(TEXT + [99], TEXT[:10])
    assert drafter.tokens == TEXT + [99] + TEXT[:10]
    assert drafter.draft(8, 1, 1.3)
    for _ in range(3):
        drafter.record(drafted=4, accepted=0)
    assert drafter.draft(8, 1, 1.3) == []  # paused after three rounds with nothing accepted


def test_drafts_shrink_as_the_batch_widens():
    assert worth(0.99, 1) >= worth(0.99, 8) > 0
    assert worth(0.6, 8) == 0  # with 8 streams a likely-wrong token costs more than it saves
    assert worth(1.0, 1) == MAX_DRAFT < 63  # one sequence's rows stay below 64 (see the module)


def test_step_cost_is_fitted_from_decode_steps():
    from server.engines.llamacpp.speculative import STEP_COST, StepCost

    cost = StepCost()
    assert cost.ratio() == STEP_COST  # nothing measured yet
    for rows in [1, 2, 5, 9, 1, 3] * 5:
        cost.add(rows, 0.010 + 0.005 * rows)  # a = 10 ms, b = 5 ms
    assert abs(cost.ratio() - 2.0) < 0.01
