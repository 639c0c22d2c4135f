"""The memory budget's decisions, on fake loaded models (fast). End to end, with real runner
processes: tests/server/test_memory_budget.py."""

from types import SimpleNamespace

import pytest

from server.config import parse_size
from server.core.engine import MemoryEstimate
from server.core.memory import InsufficientMemory, MemoryBusy, plan

GIB = 1 << 30


def entry(name, gib, last_used, busy=False):
    return SimpleNamespace(stored=SimpleNamespace(name=name), last_used=last_used, busy=busy,
                           memory=MemoryEstimate({"weights": int(gib * GIB)}))


def idle(e):
    return not e.busy


def test_fits_without_unloading():
    assert plan("c", GIB, "1 GiB", 4 * GIB, [entry("a", 1, 1)], 0, idle) == []


def test_unloads_idle_models_least_recently_used_first():
    a, b, c = entry("a", 1, 3), entry("b", 1, 1), entry("c", 1, 2)
    assert plan("d", 2 * GIB, "2 GiB", 4 * GIB, [a, b, c], 0, idle) == [b]


def test_more_than_the_whole_budget_is_507_naming_need_and_budget():
    with pytest.raises(InsufficientMemory) as exc:
        plan("big", 5 * GIB, "5.0 GiB (weights 5.0 GiB)", 4 * GIB, [], 0, idle)
    assert exc.value.status == 507
    assert "5.0 GiB" in exc.value.message and "4.0 GiB" in exc.value.message


def test_held_by_busy_models_is_503_with_retry_after():
    with pytest.raises(MemoryBusy) as exc:
        plan("b", 3 * GIB, "3 GiB", 4 * GIB, [entry("a", 2, 1, busy=True)], 0, idle)
    assert exc.value.status == 503 and exc.value.retry_after > 0
    assert "a is in use" in exc.value.message


def test_no_budget_means_no_limit():
    assert plan("x", 100 * GIB, "", 0, [entry("a", 50, 1, busy=True)], 0, idle) == []


@pytest.mark.parametrize("text,size", [("512MiB", 512 << 20), ("2g", 2 << 30), ("1.5GB", 1_500_000_000),
                                       (1024, 1024), ("auto", -1), ("off", 0), ("0", 0)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["12 parsecs", "MiB", "-5MiB", "0%", True])
def test_bad_sizes(bad):
    with pytest.raises(ValueError):
        parse_size(bad)
