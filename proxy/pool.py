"""Idle upstream connection bookkeeping for one cluster (sans-IO).

Theory of operation
-------------------
The pool only decides; the caller closes what the pool hands back. It holds
idle connections (opaque hashable objects) per server, most recently used
last, plus one cluster-wide list in idle order.

How the two caps interact (the classic trap, spelled out):

* ``max_idle_per_server`` bounds the idle connections kept for one server;
* ``max_idle_total`` bounds the idle connections kept for the whole cluster.

A connection coming back is kept only if its server is below the per-server
cap. If the cluster is then at its total cap, the connection idle the longest
anywhere in the cluster is closed to make room (so a busy server keeps warm
connections and a quiet one gives them up), unless the returning connection
would itself be that oldest, which cannot happen, or the total cap is 0, in
which case nothing is kept. So when ``max_idle_total`` is lower than
servers x ``max_idle_per_server``, the per-server cap is never reached by all
servers at once: each server averages ``max_idle_total / servers`` idle
connections. ``edgeproxy check`` warns about exactly that.

``take`` hands out the most recently used idle connection (warm in the
server's and the kernel's caches, and it lets the oldest ones age out).
``expire(now)`` returns connections idle longer than ``idle_timeout``; the
caller runs it from a periodic timer (once a second), so an idle connection
lives at most about ``idle_timeout`` + 1s. A connection that the server
closes while idle is removed at once with ``remove``.

The end of the module holds the deciders of the adaptive idle timeout and of
connection warm-up (``RateMeter``, ``IdleTiers``, ``WarmupPlanner``), with
their own notes.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Hashable

from .accounting import SlidingWindow


class Pool:
    def __init__(self, max_idle_per_server: int, max_idle_total: int, idle_timeout: float,
                 max_requests_per_connection: int):
        self.max_idle_per_server = max_idle_per_server
        self.max_idle_total = max_idle_total
        self.idle_timeout = idle_timeout
        self.max_requests = max_requests_per_connection
        self._by_server: dict[Hashable, OrderedDict] = {}
        self._all: OrderedDict = OrderedDict()  # conn -> (server, since), oldest first

    @classmethod
    def from_config(cls, cfg) -> "Pool":
        return cls(cfg.max_idle_per_server, cfg.max_idle_total, cfg.idle_timeout, cfg.max_requests_per_connection)

    def idle_count(self, server=None) -> int:
        if server is None:
            return len(self._all)
        d = self._by_server.get(server)
        return len(d) if d else 0

    def take(self, server):
        """Most recently used idle connection of ``server``, or None."""
        d = self._by_server.get(server)
        if not d:
            return None
        conn, _ = d.popitem()  # the last one
        del self._all[conn]
        return conn

    def give(self, server, conn, requests_served, now: float) -> list:
        """Offer ``conn`` back; returns the connections the caller must close."""
        if requests_served >= self.max_requests or self.max_idle_total <= 0:
            return [conn]
        d = self._by_server.get(server)
        if d is None:
            d = self._by_server[server] = OrderedDict()
        if len(d) >= self.max_idle_per_server:
            return [conn]
        closed = []
        if len(self._all) >= self.max_idle_total:
            old, (old_server, _) = self._all.popitem(last=False)
            del self._by_server[old_server][old]
            closed.append(old)
        d[conn] = now
        self._all[conn] = (server, now)
        return closed

    def remove(self, server, conn) -> bool:
        """Forget an idle connection that closed; False if it was not idle."""
        if self._all.pop(conn, None) is None:
            return False
        del self._by_server[server][conn]
        return True

    def expire(self, now: float) -> list:
        """Idle connections older than ``idle_timeout``, removed from the pool."""
        out = []
        limit = now - self.idle_timeout
        all_ = self._all
        while all_:
            conn, (server, since) = next(iter(all_.items()))
            if since > limit:
                break
            all_.popitem(last=False)
            del self._by_server[server][conn]
            out.append(conn)
        return out

    def expire_each(self, now: float, timeout_of) -> list:
        """Like ``expire``, with each server's own idle timeout (``timeout_of(server)``)."""
        out = []
        for server, d in self._by_server.items():
            limit = now - timeout_of(server)
            while d:
                conn, since = next(iter(d.items()))
                if since > limit:
                    break
                d.popitem(last=False)
                del self._all[conn]
                out.append(conn)
        return out

    def drain(self) -> list:
        """Every idle connection, removed (shutdown)."""
        out = list(self._all)
        self._all.clear()
        self._by_server.clear()
        return out


# --------------------------------------------------------------------------- adaptive idle timeout and warm-up
#
# Theory of operation
# -------------------
# Three small deciders the engine consults; none opens or closes anything and
# none reads a clock (``now`` is passed in, monotonic float seconds).
#
# ``RateMeter`` counts requests of a cluster in two ``accounting.SlidingWindow``
# rings: a short one (default 10s in 1s buckets) for "the rate now" and a long
# one (default 60s) for "the 1-minute average". A rate is the window's count
# over the time the window really covers: its live buckets span from the start
# of the oldest one to ``now``, never more than the time since the meter was
# created, and never less than one bucket (so the first request after boot
# does not read as a huge rate).
#
# ``IdleTiers`` maps that rate to the pool's idle timeout: the first tier whose
# ``max_rate`` is above the rate wins, ``above`` applies past the last tier. A
# quiet cluster lets idle connections go soon (servers and NATs forget them
# anyway); a busy one keeps them long, since it will reuse them. With
# ``adaptive_idle = false`` there are no tiers and ``above`` is the fixed
# ``idle_timeout``. The engine sets ``pool.idle_timeout`` from it on its
# periodic timer; there is no hysteresis because a timeout flapping between
# two tiers only changes when idle connections expire.
#
# ``WarmupPlanner`` says how many connections to start opening to one server
# now. Its target is ``min_idle`` at all times (kept warm: the engine asks on
# its timer after ``expire`` and when a server's connection closes), and on
# top of that, when the engine passes ``starting`` (boot) or ``recovering``
# (the server's breaker closed or its health check rose), the caller's
# ``target``; during a surge (``rate >= surge_factor * avg_rate`` and at least
# ``min_surge_rate`` req/s) the caller's target scaled by ``rate / avg_rate``
# (by Little's law the connections needed grow with the rate at a constant
# latency). The caller's ``target`` is its estimate of the connections the
# server needs at the average rate, e.g. its peak of concurrent requests over
# the last minute, or the average rate x mean latency. The target is capped by
# ``cap`` (the engine passes ``max_idle_per_server``: more would be closed as
# soon as they went idle). Connections idle or already opening count toward
# the target, and never more than ``parallel`` are opening at once.


class IdleTiers:
    """Idle timeout by request rate: ``tiers`` of ``(max_rate, idle_timeout)``, rising."""

    def __init__(self, tiers, above: float):
        tiers = [(float(rate), float(timeout)) for rate, timeout in tiers]
        for i, (rate, timeout) in enumerate(tiers):
            if not rate > 0.0 or not timeout > 0.0:
                raise ValueError(f"tier {i}: max_rate and idle_timeout must be > 0, got {(rate, timeout)!r}")
            if i and rate <= tiers[i - 1][0]:
                raise ValueError(f"tier {i}: max_rate {rate!r} must be above the previous tier's")
        if not above > 0.0:
            raise ValueError(f"above must be > 0, got {above!r}")
        self.tiers = tuple(tiers)
        self.above = float(above)

    @classmethod
    def from_config(cls, cfg) -> "IdleTiers":
        """From a ``config.PoolConfig``; no tiers (the fixed idle_timeout) when adaptive_idle is off."""
        if not cfg.adaptive_idle:
            return cls((), cfg.idle_timeout)
        return cls([(t.below, t.idle_timeout) for t in cfg.idle_tiers], cfg.idle_timeout_above)

    def timeout_for(self, rate: float) -> float:
        for max_rate, timeout in self.tiers:
            if rate < max_rate:
                return timeout
        return self.above

    def __repr__(self) -> str:
        return f"IdleTiers({list(self.tiers)!r}, above={self.above!r})"


class RateMeter:
    """Requests per second over the last ``window`` seconds, and over ``long_window`` (the average)."""

    def __init__(self, now: float, window: float = 10.0, buckets: int = 10, long_window: float = 60.0,
                 long_buckets: int = 60):
        self._start = now
        self._short = SlidingWindow(window, buckets)
        self._long = SlidingWindow(long_window, long_buckets)

    def record(self, now: float) -> None:
        """One request started."""
        self._short.record(now, True, 0.0)
        self._long.record(now, True, 0.0)

    def _rate(self, w, now: float) -> float:
        count = w.totals(now)[0]
        if not count:
            return 0.0
        width = w.window / w.buckets
        oldest = (math.floor(now / width) - w.buckets + 1) * width
        span = min(now - oldest, now - self._start)
        return count / max(span, width)

    def rate(self, now: float) -> float:
        return self._rate(self._short, now)

    def average(self, now: float) -> float:
        return self._rate(self._long, now)


class WarmupPlanner:
    """How many connections to start opening to one server now (see the notes above)."""

    def __init__(self, min_idle: int, parallel: int, surge_factor: float, cap: int = 0,
                 min_surge_rate: float = 1.0):
        if min_idle < 0 or parallel < 1 or not surge_factor >= 1.0 or cap < 0 or not min_surge_rate >= 0.0:
            raise ValueError("need min_idle >= 0, parallel >= 1, surge_factor >= 1, cap >= 0, min_surge_rate >= 0")
        self.min_idle = min_idle
        self.parallel = parallel
        self.surge_factor = surge_factor
        self.cap = cap  # 0 = no cap
        self.min_surge_rate = min_surge_rate

    @classmethod
    def from_config(cls, cfg) -> "WarmupPlanner":
        """From a ``config.PoolConfig``; capped at ``max_idle_per_server``."""
        return cls(cfg.min_idle, cfg.warmup_parallel, cfg.surge_factor, cap=cfg.max_idle_per_server)

    def surging(self, rate: float, avg_rate: float) -> bool:
        return rate >= self.min_surge_rate and rate >= self.surge_factor * avg_rate

    def target(self, target: int, rate: float, avg_rate: float, recovering: bool, starting: bool) -> int:
        """Connections wanted (idle or opening) for the server now."""
        want = self.min_idle
        if starting or recovering:
            want = max(want, target)
        if target > 0 and self.surging(rate, avg_rate):
            scaled = target if avg_rate <= 0.0 else math.ceil(target * rate / avg_rate)
            want = max(want, scaled)
        if self.cap and want > self.cap:
            want = self.cap
        return want

    def to_open(self, now: float, idle: int, opening: int, target: int, rate: float, avg_rate: float,
                recovering: bool, starting: bool) -> int:
        """Connections to start opening now (``now`` is unused by this policy, kept for the engine's call)."""
        need = self.target(target, rate, avg_rate, recovering, starting) - idle - opening
        room = self.parallel - opening
        return max(0, min(need, room))

    def __repr__(self) -> str:
        return (f"WarmupPlanner(min_idle={self.min_idle}, parallel={self.parallel}, "
                f"surge_factor={self.surge_factor!r}, cap={self.cap})")


class LoadSampler:
    """One server's load, sampled once a second by the engine (sans-IO).

    The hot path only counts (requests started, peak in-flight); this turns
    the counts into the figures the pool policies need: the request rate over
    the last ``short`` seconds, its average over the last ``long`` seconds,
    and the peak concurrency seen over ``long`` seconds (the warm-up target:
    connections the server needed recently).
    """

    def __init__(self, now: float, short: int = 10, long: int = 60):
        from collections import deque

        self.short = short
        self._counts = deque(maxlen=long)  # requests per sample
        self._peaks = deque(maxlen=long)  # peak in-flight per sample
        self._spans = deque(maxlen=long)  # seconds covered by each sample
        self._last_total = 0
        self._last_at = now

    def sample(self, now: float, total: int, peak: int) -> None:
        span = now - self._last_at
        if span <= 0:
            return
        self._counts.append(max(0, total - self._last_total))
        self._peaks.append(peak)
        self._spans.append(span)
        self._last_total = total
        self._last_at = now

    def _rate(self, n: int) -> float:
        counts = list(self._counts)[-n:]
        spans = list(self._spans)[-n:]
        t = sum(spans)
        return sum(counts) / t if t > 0 else 0.0

    def rate(self) -> float:
        return self._rate(self.short)

    def average(self) -> float:
        return self._rate(len(self._counts))

    def peak(self) -> int:
        return max(self._peaks, default=0)
