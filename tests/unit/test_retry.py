"""The retry budget: retries per second as a share of the attempts of the second before, with a floor."""

from __future__ import annotations

import pytest

from proxy.config import LimitsConfig
from proxy.retry import RetryBudget

CASES = [
    # (id, percent, min_per_second, attempts in the second before, retries granted before the first refusal)
    ("floor on a quiet cluster", 20, 3, 0, 3),
    ("floor above the share", 20, 3, 10, 3),  # 20% of 10 = 2 < 3
    ("share at 20 of 100", 20, 3, 100, 20),
    ("share rounds up: 20% of 12 = 2.4", 20, 0, 12, 3),
    ("share exact: 20% of 15 = 3", 20, 0, 15, 3),
    ("no floor, no traffic: nothing", 20, 0, 0, 0),
    ("no floor, small share", 20, 0, 1, 1),
    ("percent 0 leaves the floor", 0, 2, 1000, 2),
    ("percent 0, no floor: never", 0, 0, 1000, 0),
    ("percent 100", 100, 0, 7, 7),
    ("fractional percent", 12.5, 0, 16, 2),
    ("negative attempts treated as 0", 20, 1, -5, 1),
    ("a busy cluster absorbs a burst of retries", 20, 3, 18000, 3600),
]


@pytest.mark.parametrize(("percent", "floor", "attempts", "granted"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_budget(percent, floor, attempts, granted):
    budget = RetryBudget(percent, floor)
    budget.tick(attempts)
    results = [budget.try_acquire() for _ in range(granted + 3)]
    assert results == [True] * granted + [False] * 3
    assert budget.used == granted and budget.refused == 3


def test_before_the_first_tick_only_the_floor():
    budget = RetryBudget(20, 2)
    assert [budget.try_acquire() for _ in range(3)] == [True, True, False]


def test_each_second_gets_a_fresh_allowance_from_the_one_before():
    budget = RetryBudget(20, 1)
    budget.tick(50)  # 10 retries allowed in the next second
    assert sum(budget.try_acquire() for _ in range(15)) == 10
    budget.tick(5)  # traffic dropped: max(1, ceil(1.0)) = 1
    assert [budget.try_acquire() for _ in range(2)] == [True, False]
    budget.tick(0)
    assert budget.try_acquire() and not budget.try_acquire()  # the floor
    assert budget.refused == 5 + 1 + 1


def test_from_config_defaults():
    budget = RetryBudget.from_config(LimitsConfig())
    assert (budget.percent, budget.min_per_second) == (20.0, 3)
    assert budget.limit(100) == 20 and budget.limit(0) == 3


@pytest.mark.parametrize(("percent", "floor"), [(-1, 0), (101, 0), (20, -1), (20, 1.5)])
def test_invalid(percent, floor):
    with pytest.raises(ValueError):
        RetryBudget(percent, floor)
