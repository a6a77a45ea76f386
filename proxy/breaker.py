"""Circuit breaker of one upstream server (sans-IO).

Theory of operation
-------------------
The engine reports, the breaker judges. Before sending a request to a server
the engine asks ``allow(now)``; after every attempt it reports what happened
with ``record(now, outcome, latency)``; an admitted request that never reached
the server (an overflow, a client gone before the connect) is handed back
with ``cancel(now)``, which judges nothing. Nothing here reads a clock:
``now`` is monotonic float seconds, passed in; randomness (the jitter) comes
from an injectable ``rng`` returning floats in ``[0, 1)``.

Three states, one transition function (``_transition``) guarded by
``_TRANSITIONS``; anything else is a bug and raises::

    CLOSED    --trip-->          OPEN       failure rate, consecutive failures or slow calls
    OPEN      --open elapsed-->  HALF_OPEN  lazily, on the first allow() at or after open_until
    HALF_OPEN --trials passed--> CLOSED     half_open_successes trial successes in a row
    HALF_OPEN --trial failed-->  OPEN       with the next backoff step

CLOSED: every request is allowed. Outcomes go into an
``accounting.SlidingWindow`` (``window`` seconds in ``window_buckets``
buckets) plus a count of failures in a row. After each record the breaker
trips when (checked in this order, the first that holds is the reason):

* ``consecutive_failures`` failures in a row (0 turns this off);
* the window holds at least ``min_requests`` requests and its failure rate
  is at least ``failure_rate``; fewer requests never trip by rate;
* slow calls are on (``slow_call_threshold`` > 0), the window holds at least
  ``min_requests`` requests, the share of calls slower than the threshold
  is at least ``slow_call_rate`` and the window's p95 latency exceeds the
  threshold.

Any outcome but ``SUCCESS`` is a failure; a response whose status is in
``failure_statuses`` is ``HTTP_FAILURE`` (see ``outcome_for_status``). A call
of any outcome is slow when its latency exceeds the threshold.

OPEN: ``allow`` says False until ``open_until``. The wait of backoff step
``k`` is ``min(open_duration * 2**k, max_open_duration)``, then jittered to
``wait * (1 + jitter * (2u - 1))`` with ``u = rng()``, so it lies within
``wait * (1 +- jitter)`` (jitter applies to the capped wait: with jitter a
wait may exceed ``max_open_duration`` by that fraction, which keeps servers
of a fleet that opened together from probing together). The step starts at
0, grows by one on each reopen from HALF_OPEN (not beyond the cap) and goes
back to 0 when the breaker closes. Results of requests admitted before the
trip that arrive while OPEN are stale and ignored.

HALF_OPEN: at most ``half_open_requests`` trial requests are in flight; each
``allow`` that returns True takes a trial slot, each ``record`` or ``cancel``
of a trial frees one. ``half_open_successes`` trial successes in a row close
the breaker (window and failure count start afresh); any trial failure
reopens it. A request admitted while CLOSED that finishes during HALF_OPEN
held no trial slot: the engine passes ``trial_slot_released=False`` and the
result is ignored (it says how the server was before the trip). The engine
knows which kind it holds: ``allow`` is synchronous, so the admission was a
trial exactly when ``state`` is ``HALF_OPEN`` right after ``allow`` returned
True. A trial result arriving when no trial slot is taken (a trial of an
earlier half-open period, outlived by a reopen) is ignored too. Trials must
always be recorded or cancelled (the engine's timeouts
guarantee an outcome), otherwise HALF_OPEN keeps its slots taken.

``peek(now)`` says what ``allow`` would answer without taking a slot or
moving state, for balancers that look at several servers before picking one.

Every transition calls ``on_transition(from_state, to_state, now, reason)``
exactly once and bumps ``transitions[(from_state, to_state)]``; nothing is
reported per request. ``retry_after(now)`` is the time to the next probe
(for a Retry-After header), 0 unless OPEN.

``NullBreaker`` has the same interface and never opens (``enabled = false``);
``make_breaker`` picks one of the two from a policy.
"""

from __future__ import annotations

import enum
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional

from .accounting import SlidingWindow

__all__ = [
    "Breaker", "BreakerPolicy", "NullBreaker", "Outcome", "State", "make_breaker",
    "REASON_CONSECUTIVE", "REASON_FAILURE_RATE", "REASON_SLOW_CALLS", "REASON_OPEN_ELAPSED",
    "REASON_TRIALS_PASSED", "REASON_TRIAL_FAILED",
]


class State(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class Outcome(enum.Enum):
    SUCCESS = "success"
    HTTP_FAILURE = "http_failure"  # a response status in failure_statuses
    CONNECT_FAILED = "connect_failed"  # refused, unreachable, DNS, ...
    CONNECT_TIMEOUT = "connect_timeout"
    RESPONSE_TIMEOUT = "response_timeout"
    RESET = "reset"  # the connection closed or reset before a response head

    @property
    def failed(self) -> bool:
        return self is not Outcome.SUCCESS


REASON_CONSECUTIVE = "consecutive_failures"
REASON_FAILURE_RATE = "failure_rate"
REASON_SLOW_CALLS = "slow_calls"
REASON_OPEN_ELAPSED = "open_elapsed"
REASON_TRIALS_PASSED = "trials_passed"
REASON_TRIAL_FAILED = "trial_failed"

# Enum member access is a descriptor call (~80 ns); the hot path compares module constants.
_CLOSED, _HALF_OPEN, _OPEN = State.CLOSED, State.HALF_OPEN, State.OPEN
_SUCCESS, _HTTP_FAILURE = Outcome.SUCCESS, Outcome.HTTP_FAILURE

# (from, to) -> what the transition is; anything absent is refused.
_TRANSITIONS: dict[tuple[State, State], str] = {
    (State.CLOSED, State.OPEN): "trip",
    (State.OPEN, State.HALF_OPEN): "probe",
    (State.HALF_OPEN, State.CLOSED): "close",
    (State.HALF_OPEN, State.OPEN): "reopen",
}

_SLOW_QUANTILE = 0.95
_DEFAULT_FAILURE_STATUSES = frozenset({502, 503, 504})

OnTransition = Callable[[State, State, float, str], None]


@dataclass(frozen=True)
class BreakerPolicy:
    enabled: bool = True
    failure_statuses: frozenset[int] = field(default=_DEFAULT_FAILURE_STATUSES)
    window: float = 30.0
    window_buckets: int = 30
    failure_rate: float = 0.5
    min_requests: int = 20
    consecutive_failures: int = 5  # 0 = off
    slow_call_threshold: float = 0.0  # 0 = off
    slow_call_rate: float = 0.5
    open_duration: float = 1.0
    max_open_duration: float = 60.0
    jitter: float = 0.2
    half_open_requests: int = 1
    half_open_successes: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "failure_statuses", frozenset(self.failure_statuses))
        problems = []
        if not 0.0 < self.window < math.inf:
            problems.append("window must be > 0")
        if self.window_buckets < 1:
            problems.append("window_buckets must be >= 1")
        if not 0.0 < self.failure_rate <= 1.0:
            problems.append("failure_rate must be in (0, 1]")
        if not 0.0 < self.slow_call_rate <= 1.0:
            problems.append("slow_call_rate must be in (0, 1]")
        if self.min_requests < 1:
            problems.append("min_requests must be >= 1")
        if self.consecutive_failures < 0:
            problems.append("consecutive_failures must be >= 0")
        if not self.slow_call_threshold >= 0.0:
            problems.append("slow_call_threshold must be >= 0")
        if not 0.0 < self.open_duration <= self.max_open_duration < math.inf:
            problems.append("need 0 < open_duration <= max_open_duration")
        if not 0.0 <= self.jitter <= 1.0:
            problems.append("jitter must be in [0, 1]")
        if self.half_open_requests < 1 or self.half_open_successes < 1:
            problems.append("half_open_requests and half_open_successes must be >= 1")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_config(cls, cfg) -> "BreakerPolicy":
        """From a ``config.BreakerConfig``."""
        return cls(
            enabled=cfg.enabled,
            failure_statuses=frozenset(cfg.failure_statuses),
            window=cfg.window,
            window_buckets=cfg.window_buckets,
            failure_rate=cfg.failure_rate,
            min_requests=cfg.min_requests,
            consecutive_failures=cfg.consecutive_failures,
            slow_call_threshold=cfg.slow_call_threshold,
            slow_call_rate=cfg.slow_call_rate,
            open_duration=cfg.open_duration,
            max_open_duration=cfg.max_open_duration,
            jitter=cfg.jitter,
            half_open_requests=cfg.half_open_requests,
            half_open_successes=cfg.half_open_successes,
        )

    def outcome_for_status(self, status: int) -> Outcome:
        return _HTTP_FAILURE if status in self.failure_statuses else _SUCCESS

    def base_wait(self, step: int) -> float:
        """Un-jittered open duration of backoff ``step``."""
        wait = self.open_duration
        cap = self.max_open_duration
        for _ in range(step):
            if wait >= cap:
                break
            wait *= 2.0
        return min(wait, cap)

    def max_step(self) -> int:
        """First step whose wait is the cap (steps stop growing there)."""
        step, wait = 0, self.open_duration
        while wait < self.max_open_duration:
            wait *= 2.0
            step += 1
        return step


class Breaker:
    """Circuit breaker of one server; see the module docstring."""

    def __init__(self, policy: BreakerPolicy, now: float, rng: Callable[[], float] = random.random,
                 on_transition: Optional[OnTransition] = None):
        self.policy = policy
        # the policy is frozen: the fields read per request are copied to typed slots
        self._failure_statuses = policy.failure_statuses
        self._slow_threshold = policy.slow_call_threshold
        self._min_requests = policy.min_requests
        self._failure_rate = policy.failure_rate
        self._consecutive_limit = policy.consecutive_failures
        self._rng = rng
        self._on_transition = on_transition
        self._window = SlidingWindow(policy.window, policy.window_buckets)
        self._state = _CLOSED
        self._since = now
        self._consecutive = 0  # failures in a row while CLOSED
        self._trials = 0  # trial requests in flight while HALF_OPEN
        self._trial_successes = 0  # trial successes in a row while HALF_OPEN
        self._open_until = 0.0
        self._step = 0
        self._max_step = policy.max_step()
        self.transitions: Counter = Counter()  # (from_state, to_state) -> count

    # ----------------------------------------------------------------- views

    @property
    def state(self) -> State:
        return self._state

    def half_open(self) -> bool:
        """``state is HALF_OPEN``, as one call (the exchange asks on every attempt)."""
        return self._state is _HALF_OPEN

    @property
    def since(self) -> float:
        """When the current state was entered."""
        return self._since

    @property
    def open_until(self) -> float:
        """When OPEN, the earliest time of the next probe (else the last one set)."""
        return self._open_until

    @property
    def backoff_step(self) -> int:
        """Backoff step of the current (or next) open period: 0 after a clean close."""
        return self._step

    @property
    def trials_in_flight(self) -> int:
        return self._trials

    def window_totals(self, now: float) -> tuple[int, int, int]:
        """``(requests, failures, slow)`` in the window ending at ``now``."""
        return self._window.totals(now)

    def outcome_for_status(self, status) -> Outcome:  # status: int (a C int compiled)
        return _HTTP_FAILURE if status in self._failure_statuses else _SUCCESS

    def retry_after(self, now: float) -> float:
        """Seconds until the next half-open probe; 0.0 unless OPEN."""
        if self._state is _OPEN:
            return max(0.0, self._open_until - now)
        return 0.0

    def peek(self, now: float) -> bool:
        """What ``allow(now)`` would answer, with no side effect."""
        state = self._state
        if state is _CLOSED:
            return True
        if state is _OPEN and now < self._open_until:
            return False
        trials = self._trials if state is _HALF_OPEN else 0
        return trials < self.policy.half_open_requests

    # ----------------------------------------------------------------- events

    def allow(self, now: float) -> bool:
        """May a request go to this server now? True in HALF_OPEN takes a trial slot."""
        state = self._state
        if state is _CLOSED:
            return True
        if state is _OPEN:
            if now < self._open_until:
                return False
            self._transition(_HALF_OPEN, now, REASON_OPEN_ELAPSED)
        if self._trials < self.policy.half_open_requests:
            self._trials += 1
            return True
        return False

    def record(self, now: float, outcome: Outcome, latency: float, trial_slot_released: bool = True) -> None:
        """Judge the outcome of one attempt that reached (or tried to reach) the server."""
        state = self._state
        if state is _CLOSED:
            self._record_closed(now, outcome, latency)
        elif state is _HALF_OPEN:
            if not trial_slot_released:
                return  # admitted before the trip: no slot held, not evidence about now
            if self._trials == 0:
                return  # no trial in flight: a stale trial of an earlier half-open period
            self._trials -= 1
            if outcome is not _SUCCESS:
                self._transition(_OPEN, now, REASON_TRIAL_FAILED)
                return
            self._trial_successes += 1
            if self._trial_successes >= self.policy.half_open_successes:
                self._transition(_CLOSED, now, REASON_TRIALS_PASSED)
        # OPEN: a late result of a request admitted before the trip; ignored

    def cancel(self, now: float, trial_slot_released: bool = True) -> None:
        """An admitted request never reached the server: free its trial slot, judge nothing."""
        if self._state is _HALF_OPEN and trial_slot_released and self._trials > 0:
            self._trials -= 1

    # ----------------------------------------------------------------- internals

    def _record_closed(self, now: float, outcome: Outcome, latency: float) -> None:
        failed = outcome is not _SUCCESS
        threshold = self._slow_threshold
        slow = threshold > 0.0 and latency > threshold
        window = self._window
        window.record(now, not failed, latency, slow)
        if failed:
            self._consecutive += 1
            if self._consecutive_limit and self._consecutive >= self._consecutive_limit:
                self._transition(_OPEN, now, REASON_CONSECUTIVE)
                return
        else:
            self._consecutive = 0
        requests, failures, slows = window.totals(now)
        if requests < self._min_requests:
            return
        p = self.policy
        # Rates by division: n / m is correctly rounded, so 3 of 10 meets a failure_rate of 0.3 exactly.
        if failures / requests >= self._failure_rate:
            self._transition(_OPEN, now, REASON_FAILURE_RATE)
        elif (threshold > 0.0 and slows / requests >= p.slow_call_rate
              and window.quantile(now, _SLOW_QUANTILE) > threshold):
            self._transition(_OPEN, now, REASON_SLOW_CALLS)

    def _open_wait(self) -> float:
        p = self.policy
        base = p.base_wait(self._step)
        if p.jitter:
            base *= 1.0 + p.jitter * (2.0 * self._rng() - 1.0)
        return base

    def _transition(self, to: State, now: float, reason: str) -> None:
        """The only place state changes: guarded by ``_TRANSITIONS``, reported once."""
        frm = self._state
        if (frm, to) not in _TRANSITIONS:
            raise RuntimeError(f"breaker: no transition {frm.name} -> {to.name} ({reason})")
        if to is _OPEN:
            if frm is _HALF_OPEN and self._step < self._max_step:
                self._step += 1
            self._open_until = now + self._open_wait()
            self._trials = 0
            self._trial_successes = 0
        elif to is _HALF_OPEN:
            self._trials = 0
            self._trial_successes = 0
        else:  # CLOSED: a clean start
            self._step = 0
            self._trials = 0
            self._trial_successes = 0
            self._consecutive = 0
            self._window.reset()
        self._state = to
        self._since = now
        self.transitions[(frm, to)] += 1
        if self._on_transition is not None:
            self._on_transition(frm, to, now, reason)

    def __repr__(self) -> str:
        return (f"Breaker(state={self._state.name}, step={self._step}, open_until={self._open_until!r}, "
                f"trials={self._trials})")


class NullBreaker(Breaker):
    """The breaker of ``enabled = false``: always CLOSED, allows everything, judges nothing.

    A subclass only so that a server's breaker is one type (compiled, a C
    type the exchange calls directly); it overrides every view and event."""

    def __init__(self, policy: Optional[BreakerPolicy] = None, now: float = 0.0,
                 rng: Callable[[], float] = random.random, on_transition: Optional[OnTransition] = None):
        self.policy = policy if policy is not None else BreakerPolicy(enabled=False)
        self.transitions: Counter = Counter()

    @property
    def state(self) -> State:
        return _CLOSED

    def half_open(self) -> bool:
        return False

    @property
    def since(self) -> float:
        return 0.0

    @property
    def open_until(self) -> float:
        return 0.0

    @property
    def backoff_step(self) -> int:
        return 0

    @property
    def trials_in_flight(self) -> int:
        return 0

    def window_totals(self, now: float) -> tuple[int, int, int]:
        return (0, 0, 0)

    def outcome_for_status(self, status) -> Outcome:  # status: int (a C int compiled)
        return self.policy.outcome_for_status(status)

    def retry_after(self, now: float) -> float:
        return 0.0

    def peek(self, now: float) -> bool:
        return True

    def allow(self, now: float) -> bool:
        return True

    def record(self, now: float, outcome: Outcome, latency: float, trial_slot_released: bool = True) -> None:
        pass

    def cancel(self, now: float, trial_slot_released: bool = True) -> None:
        pass

    def __repr__(self) -> str:
        return "NullBreaker()"


def make_breaker(policy: BreakerPolicy, now: float, rng: Callable[[], float] = random.random,
                 on_transition: Optional[OnTransition] = None):
    """A ``Breaker``, or a ``NullBreaker`` when the policy is disabled."""
    if not policy.enabled:
        return NullBreaker(policy, now, rng, on_transition)
    return Breaker(policy, now, rng, on_transition)
