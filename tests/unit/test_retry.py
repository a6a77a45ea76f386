"""The Envoy-style retry budget: a share of the requests in flight, with a floor."""

from __future__ import annotations

import pytest

from proxy.config import LimitsConfig
from proxy.retry import RetryBudget

CASES = [
    # (id, percent, min_concurrent, active_requests, retries granted before the first refusal)
    ("floor on a quiet cluster", 20, 3, 0, 3),
    ("floor above the share", 20, 3, 10, 3),  # 20% of 10 = 2 < 3
    ("share at 20 of 100", 20, 3, 100, 20),
    ("share rounds up: 20% of 12 = 2.4", 20, 0, 12, 3),
    ("share exact: 20% of 15 = 3", 20, 0, 15, 3),
    ("no floor, no traffic: nothing", 20, 0, 0, 0),
    ("no floor, small share", 20, 0, 1, 1),  # 0 < 0.2
    ("percent 0 leaves the floor", 0, 2, 1000, 2),
    ("percent 0, no floor: never", 0, 0, 1000, 0),
    ("percent 100", 100, 0, 7, 7),
    ("fractional percent", 12.5, 0, 16, 2),
    ("negative active treated as 0", 20, 1, -5, 1),
]


@pytest.mark.parametrize(("percent", "floor", "active", "granted"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_budget(percent, floor, active, granted):
    budget = RetryBudget(percent, floor)
    results = [budget.try_acquire(active) for _ in range(granted + 3)]
    assert results == [True] * granted + [False] * 3
    assert budget.active == granted and budget.refused == 3


def test_release_frees_a_slot_and_never_goes_negative():
    budget = RetryBudget(20, 3)
    assert all(budget.try_acquire(0) for _ in range(3)) and not budget.try_acquire(0)
    budget.release()
    assert budget.active == 2 and budget.try_acquire(0)
    for _ in range(10):
        budget.release()
    assert budget.active == 0


def test_budget_follows_traffic():
    budget = RetryBudget(20, 1)
    assert [budget.try_acquire(50) for _ in range(11)] == [True] * 10 + [False]
    # traffic drops: the retries already out are kept, new ones wait until the count falls
    assert not budget.try_acquire(5)
    for _ in range(9):
        budget.release()
    assert budget.active == 1 and not budget.try_acquire(5)  # limit max(1, ceil(1.0)) = 1
    budget.release()
    assert budget.try_acquire(5)


def test_from_config_defaults():
    budget = RetryBudget.from_config(LimitsConfig())
    assert (budget.percent, budget.min_concurrent) == (20.0, 3)
    assert budget.limit(100) == 20 and budget.limit(0) == 3


@pytest.mark.parametrize(("percent", "floor"), [(-1, 3), (101, 3), (20, -1), (20, 1.5)])
def test_refuses_nonsense(percent, floor):
    with pytest.raises(ValueError):
        RetryBudget(percent, floor)
