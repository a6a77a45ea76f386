"""The retry budget: retries as a share of the attempts over a window of seconds, with a floor per second."""

from __future__ import annotations

import pytest

from proxy.config import LimitsConfig
from proxy.retry import WINDOW, RetryBudget

CASES = [
    # (id, percent, min_per_second, attempts per second over the window, retries granted before a refusal)
    ("floor on a quiet cluster", 20, 3, 0, 3 * WINDOW),
    ("floor above the share", 20, 3, 10, 3 * WINDOW),  # 20% of 100 = 20 < 30
    ("share of a busy window", 20, 3, 100, 200),
    ("share rounds up: 20% of 12 attempts", 20, 0, 1.2, 3),
    ("no floor, no traffic: nothing", 20, 0, 0, 0),
    ("percent 0 leaves the floor", 0, 2, 1000, 2 * WINDOW),
    ("percent 0, no floor: never", 0, 0, 1000, 0),
    ("percent 100", 100, 0, 7, 70),
    ("a busy cluster absorbs a burst of retries", 20, 3, 18000, 36000),
]


def filled(percent, floor, per_second) -> RetryBudget:
    budget = RetryBudget(percent, floor)
    total = int(per_second * WINDOW)
    for i in range(WINDOW):
        budget.tick(total // WINDOW + (1 if i < total % WINDOW else 0))
    return budget


@pytest.mark.parametrize(("percent", "floor", "per_second", "granted"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_budget(percent, floor, per_second, granted):
    budget = filled(percent, floor, per_second)
    results = [budget.try_acquire() for _ in range(granted + 3)]
    assert results == [True] * granted + [False] * 3
    assert budget.used == granted and budget.refused == 3


def test_traffic_that_stalls_still_pays_for_its_retries():
    """A hung server parks every client: the second before the timeouts saw
    almost no new attempts, but the window remembers the traffic."""
    budget = filled(20, 3, 1000)
    budget.tick(20)  # the stalled second
    assert all(budget.try_acquire() for _ in range(20))


def test_retries_granted_stay_in_the_window_until_it_slides_past_them():
    budget = filled(20, 0, 10)  # 100 attempts in the window: 20 retries
    assert sum(budget.try_acquire() for _ in range(25)) == 20
    budget.tick(10)  # the window still holds those 20 retries
    assert not budget.try_acquire()
    for _ in range(WINDOW - 1):
        budget.tick(10)
    assert not budget.try_acquire()  # still inside: the window is WINDOW seconds
    budget.tick(10)
    assert budget.try_acquire()  # they slid out
    assert budget.refused == 5 + 2


def test_before_the_first_tick_only_the_floor():
    budget = RetryBudget(20, 2)
    assert sum(budget.try_acquire() for _ in range(2 * WINDOW + 1)) == 2 * WINDOW


def test_from_config_defaults():
    budget = RetryBudget.from_config(LimitsConfig())
    assert (budget.percent, budget.min_per_second) == (20.0, 3)
    assert budget.limit(1000) == 200 and budget.limit(0) == 3 * WINDOW


@pytest.mark.parametrize(("percent", "floor"), [(-1, 0), (101, 0), (20, -1), (20, 1.5)])
def test_invalid(percent, floor):
    with pytest.raises(ValueError):
        RetryBudget(percent, floor)
