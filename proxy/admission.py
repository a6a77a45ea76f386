"""Admission control at accept time (sans-IO).

Theory of operation
-------------------
A proxy that accepts everything runs out of descriptors and memory and fails
everyone; one that limits after parsing has already paid for the
connection. So the decision is made around ``accept()``:

1. ``before_accept(now)`` — before taking a connection off the kernel queue:
   is there a slot (listener ``max_connections``, global
   ``server.max_connections``) and a token (``accept_rate`` /
   ``accept_burst``)? If not, the listener's ``on_limit`` says what to do:
   ``pause`` (stop accepting: connections wait in the kernel backlog, where
   ``http_server_accept_queue_len`` shows them, until a slot frees or a token
   arrives), ``reject`` (accept and reset at once) or ``respond`` (accept,
   answer a minimal 503 with Retry-After, close).
2. ``admit(ip)`` — after accept, when the peer is known: the per-IP cap
   (``max_connections_per_ip``). Pausing cannot single out one client, so
   over its cap a connection is rejected, or answered 503 with ``respond``.
3. ``release(ip)`` — when an admitted connection closes.

Every decision is returned as a ``Decision`` for the caller to count. Time
comes in as ``now``; the token bucket is ``accounting.TokenBucket``. This
module is compiled with the core (the accept loop's calls are C calls).
"""

from __future__ import annotations

import enum

from .accounting import TokenBucket


class Decision(enum.Enum):
    ACCEPTED = "accepted"
    PAUSED = "paused"
    REJECTED = "rejected"
    RESPONDED = "responded"
    PER_IP = "per_ip"


# Enum member access is a descriptor call (~80 ns); accepting a connection compares these
ACCEPTED, PAUSED = Decision.ACCEPTED, Decision.PAUSED

class Gate:
    """A count of open connections shared by every listener (global cap)."""

    def __init__(self, limit: int):
        self.limit = limit  # 0 = unlimited
        self.count = 0

    def full(self) -> bool:
        return bool(self.limit) and self.count >= self.limit


class ListenerAdmission:
    def __init__(self, cfg, gate: Gate, now: float):
        self.max_connections = cfg.max_connections
        self.per_ip = cfg.max_connections_per_ip
        self.on_limit = cfg.on_limit
        rate = cfg.accept_rate
        burst = cfg.accept_burst or max(1, int(rate))
        self.bucket = TokenBucket(rate, burst, now) if rate > 0 else None
        self.gate = gate
        self.count = 0
        self.by_ip = {}  # ip -> admitted connections

    def _refusal(self) -> Decision:
        return {"pause": Decision.PAUSED, "reject": Decision.REJECTED}.get(self.on_limit, Decision.RESPONDED)

    def full(self) -> bool:
        return (bool(self.max_connections) and self.count >= self.max_connections) or self.gate.full()

    def before_accept(self, now):
        """ACCEPTED when one more connection may be taken now. Nothing is
        spent: the token goes with ``admit`` once a connection was there."""
        if self.full():
            return self._refusal()
        bucket = self.bucket
        if bucket is not None and bucket.tokens(now) < 1.0:
            return self._refusal()
        return ACCEPTED

    def resume_in(self, now: float) -> float | None:
        """Seconds until accepting may resume on its own (a token), or None
        when only a freed slot can resume it."""
        if self.full():
            return None
        if self.bucket is not None:
            return self.bucket.wait_time(now)
        return 0.0

    def admit(self, ip: str, now):
        """After accept: spend the token, apply the per-IP cap; ACCEPTED counts
        the connection in."""
        if self.bucket is not None:
            self.bucket.take(now)
        if self.per_ip and self.by_ip.get(ip, 0) >= self.per_ip:
            return Decision.PER_IP
        self.count += 1
        self.gate.count += 1
        self.by_ip[ip] = self.by_ip.get(ip, 0) + 1
        return ACCEPTED

    def release(self, ip: str) -> None:
        self.count -= 1
        self.gate.count -= 1
        n = self.by_ip.get(ip, 0) - 1
        if n > 0:
            self.by_ip[ip] = n
        else:
            self.by_ip.pop(ip, None)
