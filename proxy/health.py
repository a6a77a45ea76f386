"""Active health checking of one upstream server (sans-IO).

Theory of operation
-------------------
The engine does the I/O; this module decides when to check, what to send,
how to read the answer and whether the server is up. ``now`` is monotonic
float seconds passed in; the jitter draws from an injectable ``rng``
returning floats in ``[0, 1)``. No clock is read here.

One ``HealthState`` per server. The engine's timer asks ``due(now)``; when
it says True the engine calls ``begin(now)``, connects, writes
``request_bytes(host)``, reads the response (at most ``MAX_CHECK_BODY``
bytes of body) and calls ``record(now, ok)`` with ``ok = judge(status,
body)``, or ``ok = False`` for a refused connection, a reset or no answer
within ``policy.timeout``. ``due`` is False while a check is in flight, so
checks of one server never overlap; ``record`` schedules the next one.

Two states, one guarded transition function (``_transition``, table
``_TRANSITIONS``)::

    HEALTHY   --unhealthy_threshold failed checks in a row-->  UNHEALTHY  (fall)
    UNHEALTHY --healthy_threshold passed checks in a row-->    HEALTHY    (rise)

``record`` returns ``(old_healthy, new_healthy)`` when a check caused a
transition, None otherwise, so the engine reports each transition once.

A server starts HEALTHY, so traffic flows at boot without waiting for a
check, and its first check is due at once (``next_at`` is the creation
time): a server that is down at boot is found after ``unhealthy_threshold``
failed checks, meanwhile its circuit breaker guards the traffic.

Scheduling: checks are paced from the *start* of the previous one, as
HAProxy's ``inter``: ``record`` sets ``next_at = max(started + wait, now)``,
so a check that runs into its timeout does not stretch the cadence (with
interval 1s and timeout 1s a hung server is checked every second, not every
two). ``schedule(now)`` sets ``next_at = now + wait``. The wait is
``interval`` while healthy; while unhealthy ``unhealthy_interval``
doubled per failed check since the fall, capped at
``max_unhealthy_interval`` (the first check after the fall waits
``unhealthy_interval``; a passed check while unhealthy resets the doubling so
a recovering server is confirmed quickly). The wait is jittered to ``wait *
(1 + jitter * (2u - 1))``, i.e. within ``wait * (1 +- jitter)``.
"""

from __future__ import annotations

import enum
import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional

__all__ = ["Health", "HealthPolicy", "HealthState", "MAX_CHECK_BODY", "USER_AGENT"]

USER_AGENT = "edgeproxy-health"
# The engine reads at most this much of a check response's body before judging.
MAX_CHECK_BODY = 64 * 1024

_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TARGET_RE = re.compile(r"/[\x21-\x7e]*")
_HOST_RE = re.compile(r"[\x21-\x7e]+")


class Health(enum.IntEnum):
    HEALTHY = 0
    UNHEALTHY = 1


# (from, to) -> what the transition is; anything absent is refused.
_TRANSITIONS: dict[tuple[Health, Health], str] = {
    (Health.HEALTHY, Health.UNHEALTHY): "fall",
    (Health.UNHEALTHY, Health.HEALTHY): "rise",
}


@dataclass(frozen=True)
class HealthPolicy:
    enabled: bool = False
    method: str = "GET"
    path: str = "/healthz"
    expected_statuses: frozenset[int] = field(default=frozenset({200}))
    body_contains: bytes = b""  # a str is encoded as UTF-8
    interval: float = 5.0
    timeout: float = 2.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3
    unhealthy_interval: float = 2.0
    max_unhealthy_interval: float = 30.0
    jitter: float = 0.1
    host: str = ""  # Host header; "" = the server's address

    def __post_init__(self) -> None:
        object.__setattr__(self, "expected_statuses", frozenset(self.expected_statuses))
        if isinstance(self.body_contains, str):
            object.__setattr__(self, "body_contains", self.body_contains.encode("utf-8"))
        problems = []
        if not _TOKEN_RE.fullmatch(self.method):
            problems.append(f"bad method {self.method!r}")
        if not _TARGET_RE.fullmatch(self.path):
            problems.append(f"bad path {self.path!r}")
        if self.host and not _HOST_RE.fullmatch(self.host):
            problems.append(f"bad host {self.host!r}")
        if not self.expected_statuses:
            problems.append("expected_statuses is empty")
        for name in ("interval", "timeout", "unhealthy_interval"):
            if not 0.0 < getattr(self, name) < math.inf:
                problems.append(f"{name} must be > 0")
        if not self.unhealthy_interval <= self.max_unhealthy_interval < math.inf:
            problems.append("max_unhealthy_interval must be >= unhealthy_interval")
        if self.healthy_threshold < 1 or self.unhealthy_threshold < 1:
            problems.append("thresholds must be >= 1")
        if not 0.0 <= self.jitter <= 1.0:
            problems.append("jitter must be in [0, 1]")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_config(cls, cfg) -> "HealthPolicy":
        """From a ``config.HealthConfig``."""
        return cls(
            enabled=cfg.enabled,
            method=cfg.method,
            path=cfg.path,
            expected_statuses=frozenset(cfg.expected_statuses),
            body_contains=cfg.body_contains.encode("utf-8"),
            interval=cfg.interval,
            timeout=cfg.timeout,
            healthy_threshold=cfg.healthy_threshold,
            unhealthy_threshold=cfg.unhealthy_threshold,
            unhealthy_interval=cfg.unhealthy_interval,
            max_unhealthy_interval=cfg.max_unhealthy_interval,
            jitter=cfg.jitter,
            host=cfg.host,
        )

    def judge(self, status: int, body: bytes) -> bool:
        """Does this response mean healthy? Expected status, and the substring if one is set."""
        if status not in self.expected_statuses:
            return False
        return not self.body_contains or self.body_contains in body

    def request_bytes(self, host: str) -> bytes:
        """The check request; ``host`` (the server's "host:port") unless ``self.host`` is set."""
        host = self.host or host
        if not _HOST_RE.fullmatch(host):
            raise ValueError(f"bad Host header value {host!r}")
        return (f"{self.method} {self.path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
                "Connection: close\r\n\r\n").encode("ascii")

    def max_step(self) -> int:
        """First backoff step whose wait is the cap (steps stop growing there)."""
        step, wait = 0, self.unhealthy_interval
        while wait < self.max_unhealthy_interval:
            wait *= 2.0
            step += 1
        return step


class HealthState:
    """Health of one server; see the module docstring."""

    def __init__(self, policy: HealthPolicy, now: float, rng: Callable[[], float] = random.random):
        self.policy = policy
        self._rng = rng
        self._state = Health.HEALTHY
        self._since = now
        self._passed = 0  # passed checks in a row
        self._failed = 0  # failed checks in a row
        self._step = 0  # backoff step while unhealthy
        self._max_step = policy.max_step()
        self._in_flight = False
        self._started: float | None = None  # start of the check in flight
        self.next_at: float = now  # first check at once
        self.transitions: Counter = Counter()  # (from, to) -> count

    # ----------------------------------------------------------------- views

    @property
    def healthy(self) -> bool:
        return self._state is Health.HEALTHY

    @property
    def state(self) -> Health:
        return self._state

    @property
    def since(self) -> float:
        return self._since

    @property
    def in_flight(self) -> bool:
        return self._in_flight

    @property
    def backoff_step(self) -> int:
        return self._step

    def due(self, now: float) -> bool:
        """Should a check start now? (Never while one is in flight.)"""
        return not self._in_flight and now >= self.next_at

    def wait(self) -> float:
        """Un-jittered time from a result to the next check, in the current state."""
        p = self.policy
        if self._state is Health.HEALTHY:
            return p.interval
        w = p.unhealthy_interval
        for _ in range(self._step):
            w *= 2.0
        return min(w, p.max_unhealthy_interval)

    def judge(self, status: int, body: bytes) -> bool:
        return self.policy.judge(status, body)

    def request_bytes(self, host: str) -> bytes:
        return self.policy.request_bytes(host)

    # ----------------------------------------------------------------- events

    def begin(self, now: float) -> float:
        """A check starts; returns its deadline (``now + timeout``)."""
        self._in_flight = True
        self._started = now
        return now + self.policy.timeout

    def schedule(self, now: float) -> None:
        """Set ``next_at`` from ``now`` by the current state's wait, jittered."""
        self.next_at = now + self._jittered_wait()

    def _jittered_wait(self) -> float:
        w = self.wait()
        j = self.policy.jitter
        if j:
            w *= 1.0 + j * (2.0 * self._rng() - 1.0)
        return w

    def record(self, now: float, ok: bool) -> Optional[tuple[bool, bool]]:
        """A check finished; returns ``(old_healthy, new_healthy)`` on a transition, else None.

        Also ends the in-flight check and schedules the next one.
        """
        self._in_flight = False
        p = self.policy
        out = None
        if ok:
            self._passed += 1
            self._failed = 0
            if self._state is Health.UNHEALTHY:
                self._step = 0
                if self._passed >= p.healthy_threshold:
                    out = self._transition(Health.HEALTHY, now)
        else:
            self._failed += 1
            self._passed = 0
            if self._state is Health.HEALTHY:
                if self._failed >= p.unhealthy_threshold:
                    out = self._transition(Health.UNHEALTHY, now)
            elif self._step < self._max_step:
                self._step += 1
        started = now if self._started is None else self._started
        self._started = None
        self.next_at = max(started + self._jittered_wait(), now)
        return out

    def _transition(self, to: Health, now: float) -> tuple[bool, bool]:
        """The only place the state changes: guarded by ``_TRANSITIONS``."""
        frm = self._state
        if (frm, to) not in _TRANSITIONS:
            raise RuntimeError(f"health: no transition {frm.name} -> {to.name}")
        self._state = to
        self._since = now
        self._step = 0
        self._passed = 0
        self._failed = 0
        self.transitions[(frm, to)] += 1
        return (frm is Health.HEALTHY, to is Health.HEALTHY)

    def __repr__(self) -> str:
        return f"HealthState({self._state.name}, next_at={self.next_at!r}, step={self._step})"
