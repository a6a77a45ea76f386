"""Choosing a server of a cluster for one attempt.

Theory of operation
-------------------
A balancer sees the cluster's ``ServerState`` list and a set of servers to
skip (already tried by this request, or unavailable). It never does I/O.

* ``RoundRobin``: smooth weighted round robin (the nginx algorithm): each
  pick adds every eligible server's weight to its running score, takes the
  highest score and subtracts the eligible total from it. With weights 5,1,1
  the order is a a b a c a a, spread out rather than bursty. Equal weights
  reduce to plain rotation.
* ``LeastRequest``: power of two choices: two distinct eligible servers are
  drawn at random (weighted by ``weight``) and the one with fewer in-flight
  requests per unit of weight wins. O(1) per pick and free of the herd that
  "always the global least" causes when many pickers see the same counts.
"""

from __future__ import annotations

import random
from typing import Callable, Optional, Sequence

try:
    import cython
except ImportError:  # Cython absent: this module runs as plain Python
    class cython:  # noqa: N801
        compiled = False

from .breaker import State


class ServerState:
    """What the proxy knows about one upstream server right now."""

    if not cython.compiled:  # compiled (balancer.pxd), the fields are typed slots
        __slots__ = ("host", "port", "name", "weight", "active", "connect_failed", "current", "breaker", "clock",
                     "healthy", "check_failing", "served", "peak_active", "last_error")

    def __init__(self, host: str, port: int, weight: int = 1, breaker=None, clock: Callable[[], float] = None):
        self.host = host
        self.port = port
        self.name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.weight = weight
        self.active = 0  # in-flight requests (attempts) on this server
        self.connect_failed = False  # last connect attempt failed, no success since
        self.current = 0  # smooth round-robin score
        self.breaker = breaker  # the server's circuit breaker (None: always available)
        self.clock = clock  # monotonic time source, injected (tests pass a fake)
        self.healthy = True  # active health checks say it is up (always True without them)
        self.check_failing = False  # its latest active health check failed (still healthy until the fall)
        self.served = 0  # attempts started, ever (sampled once a second for the rate)
        self.peak_active = 0  # highest ``active`` since the last sample
        self.last_error = None  # the last failure seen on this server (diagnostics)

    def available(self) -> bool:
        """Whether new requests may be sent here: healthy, and its breaker would admit one.

        A breaker that is not closed gets no live trial request while the
        server's latest health check failed: the checks probe it, and a trial
        waits for one to pass (a hung server would hold the trial request for
        a whole response timeout).
        """
        if not self.healthy:
            return False
        b = self.breaker
        if b is None:
            return True
        if self.check_failing and b.state is not State.CLOSED:
            return False
        return b.peek(self.clock())

    def __repr__(self) -> str:  # pragma: no cover
        return f"ServerState({self.name})"


class Balancer:
    """What a cluster holds: ``pick`` one of ``servers`` (compiled, an extension
    type whose ``pick`` the cluster calls in C; the kinds below override it)."""

    if not cython.compiled:
        __slots__ = ("servers",)

    def __init__(self, servers: Sequence[ServerState]):
        self.servers = list(servers)

    def pick(self, exclude=()) -> Optional[ServerState]:
        raise NotImplementedError


class RoundRobin(Balancer):
    if not cython.compiled:
        __slots__ = ()

    def pick(self, exclude=()) -> Optional[ServerState]:
        s: ServerState
        if len(self.servers) == 1:
            s = self.servers[0]
            return s if s not in exclude and s.available() else None
        best: ServerState = None
        total = 0
        for s in self.servers:
            if s in exclude or not s.available():
                continue
            s.current += s.weight
            total += s.weight
            if best is None or s.current > best.current:
                best = s
        if best is not None:
            best.current -= total
        return best


class LeastRequest(Balancer):
    if not cython.compiled:
        __slots__ = ("_rng",)

    def __init__(self, servers: Sequence[ServerState], rng: Callable[[], float] = random.random):
        Balancer.__init__(self, servers)
        self._rng = rng

    def _draw(self, cands, total):
        x = self._rng() * total
        s: ServerState
        for s in cands:
            x -= s.weight
            if x < 0:
                return s
        return cands[-1]

    def pick(self, exclude=()) -> Optional[ServerState]:
        cands = []
        total = 0
        s: ServerState
        a: ServerState
        b: ServerState
        for s in self.servers:
            if s not in exclude and s.available():
                cands.append(s)
                total += s.weight
        if not cands:
            return None
        if len(cands) == 1:
            return cands[0]
        a = self._draw(cands, total)
        cands.remove(a)
        b = self._draw(cands, total - a.weight)
        # fewer in-flight per unit of weight wins; ties go to the first draw
        if b.active * a.weight < a.active * b.weight:
            return b
        return a


def make_balancer(kind: str, servers: Sequence[ServerState]) -> Balancer:
    if kind == "least_request":
        return LeastRequest(servers)
    return RoundRobin(servers)
