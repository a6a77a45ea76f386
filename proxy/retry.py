"""Retry budget of one cluster (sans-IO), Envoy style.

Theory of operation
-------------------
Retries help when one server has a hiccup and hurt when the whole cluster is
struggling: every failed request then becomes two or three, and the load that
caused the failures multiplies. A budget caps the retries in flight at a
share of the requests in flight, so retries scale with traffic but can never
dominate it.

Before sending a retry the engine calls ``try_acquire(active_requests)``
with the cluster's requests in flight (first attempts and retries, as Envoy
counts them); when the retry ends, whatever its outcome, it calls
``release()``. A retry is allowed while

    active_retries < max(min_concurrent, percent / 100 * active_requests)

so ``min_concurrent`` retries are always allowed (a quiet cluster can still
retry) and beyond that ``percent`` of the traffic. A refused retry is not
queued: the request ends with the failure it had.

The count is an ``accounting.InFlight`` whose limit is set from the current
traffic on every acquisition; the limit is the smallest whole number of
retries the inequality refuses (``ceil``), and a limit of 0 (no retry
allowed) is refused here since ``InFlight`` reads 0 as unlimited. Nothing
here reads a clock.
"""

from __future__ import annotations

import math

from .accounting import InFlight

__all__ = ["RetryBudget"]


class RetryBudget:
    def __init__(self, percent: float, min_concurrent: int):
        if not 0.0 <= percent <= 100.0:
            raise ValueError(f"percent must be within [0, 100], got {percent!r}")
        if isinstance(min_concurrent, float) or int(min_concurrent) != min_concurrent or min_concurrent < 0:
            raise ValueError(f"min_concurrent must be an integer >= 0, got {min_concurrent!r}")
        self.percent = float(percent)
        self.min_concurrent = int(min_concurrent)
        self._retries = InFlight(0)
        self.refused = 0  # retries refused so far (for metrics)

    @classmethod
    def from_config(cls, cfg) -> "RetryBudget":
        """From a ``config.LimitsConfig`` (``retry_budget``, ``retry_budget_min``)."""
        return cls(cfg.retry_budget, cfg.retry_budget_min)

    @property
    def active(self) -> int:
        """Retries in flight."""
        return self._retries.count

    def limit(self, active_requests: int) -> int:
        """Retries allowed in flight with ``active_requests`` requests in flight."""
        # percent * n / 100 (multiplying first) is exact for whole percents and sane n.
        share = math.ceil(self.percent * max(active_requests, 0) / 100.0)
        return max(self.min_concurrent, share)

    def try_acquire(self, active_requests: int) -> bool:
        """Take a retry slot if the budget allows one now."""
        limit = self.limit(active_requests)
        if limit <= 0:
            self.refused += 1
            return False
        self._retries.set_limit(limit)
        if self._retries.try_acquire():
            return True
        self.refused += 1
        return False

    def release(self) -> None:
        """A retry ended (never goes below zero)."""
        self._retries.release()

    def __repr__(self) -> str:
        return f"RetryBudget({self.percent:g}%, min {self.min_concurrent}, active {self.active})"
