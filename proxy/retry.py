"""Retry budget of one cluster (sans-IO): retries as a share of the traffic, per second.

Theory of operation
-------------------
Retries help when one server has a hiccup and hurt when the whole cluster is
struggling: every failed request then becomes two or three, and the load that
caused the failures multiplies. A budget caps the retries at a share of the
traffic, so they scale with it but can never dominate it: in the worst case
(every attempt fails) the cluster sees at most ``1 + percent / 100`` times
its normal load.

The share is taken over time, not over the requests in flight (Finagle's
design rather than Envoy's): once a second the cluster reports how many
attempts it started in the second before (``tick``); the budget keeps the
last ``WINDOW`` seconds of those counts and of the retries it granted, and
allows a retry while the retries in the window stay under

    max(min_per_second * WINDOW, ceil(percent / 100 * attempts in the window))

A budget over requests in flight refuses most retries exactly when they
matter: when a hung server's requests all time out at once, the retries
they need outnumber a fifth of the requests then in flight (which have
stalled: the clients are waiting), though the traffic of the seconds before
could absorb them many times over. ``min_per_second`` lets a quiet cluster
retry at all. A refused retry is not queued: the request ends with the
failure it had.

Nothing here reads a clock; the cluster's once-a-second tick drives it.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["RetryBudget", "WINDOW"]

WINDOW = 10  # seconds of history the budget is computed over


class RetryBudget:
    def __init__(self, percent: float, min_per_second: int):
        if not 0.0 <= percent <= 100.0:
            raise ValueError(f"percent must be within [0, 100], got {percent!r}")
        if isinstance(min_per_second, float) or int(min_per_second) != min_per_second or min_per_second < 0:
            raise ValueError(f"min_per_second must be an integer >= 0, got {min_per_second!r}")
        self.percent = float(percent)
        self.min_per_second = int(min_per_second)
        self._seconds: deque = deque(maxlen=WINDOW)  # (attempts, retries) per past second
        self._attempts = 0  # in the window
        self._retries = 0  # granted in the window, the current second excluded
        self.used = 0  # retries granted in the current second
        self.refused = 0  # retries refused so far

    @classmethod
    def from_config(cls, cfg) -> "RetryBudget":
        """From a ``config.LimitsConfig`` (``retry_budget``, ``retry_budget_min``)."""
        return cls(cfg.retry_budget, cfg.retry_budget_min)

    def limit(self, attempts: int) -> int:
        """Retries allowed over a window holding ``attempts`` attempts."""
        # percent * n / 100 (multiplying first) is exact for whole percents and sane n.
        share = math.ceil(self.percent * max(attempts, 0) / 100.0)
        return max(self.min_per_second * WINDOW, share)

    def tick(self, attempts_last_second: int) -> None:
        """A second passed with ``attempts_last_second`` attempts started."""
        if len(self._seconds) == WINDOW:
            old_attempts, old_retries = self._seconds[0]
            self._attempts -= old_attempts
            self._retries -= old_retries
        n = max(attempts_last_second, 0)
        self._seconds.append((n, self.used))
        self._attempts += n
        self._retries += self.used
        self.used = 0

    def try_acquire(self) -> bool:
        """May a retry start now? Counts it when it may."""
        if self._retries + self.used < self.limit(self._attempts):
            self.used += 1
            return True
        self.refused += 1
        return False
