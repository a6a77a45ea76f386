"""Queue-accounting primitives: token bucket, sliding window, in-flight cap.

Theory of operation
-------------------
These are the counters behind admission control (a token bucket on new
connections), circuit breakers (a sliding window of outcomes and latencies)
and concurrency caps (an in-flight counter). They are sans-IO: nothing here
reads a clock or touches asyncio; every time-dependent call takes ``now``,
float seconds on a monotonic clock, so tests drive them with a fake clock.

Time only moves forward. A ``now`` earlier than one already seen is treated
as no elapsed time (the bucket does not refill, a sample lands in the newest
window bucket), so a clock hiccup can never corrupt or double-count state.
``now`` must be finite (``ValueError`` otherwise).

``TokenBucket`` holds up to ``burst`` tokens, starts full and refills at
``rate`` tokens per second, computed lazily from the time elapsed since the
last refill. ``take`` is the only mutating call; ``tokens`` and ``wait_time``
are read-only views at ``now``. Comparisons allow ``TOKEN_EPSILON`` of float
slack, and ``wait_time(now, n)`` is rounded up to the float resolution of the
clock, so ``take(now + wait_time(now, n), n)`` always succeeds (a stale
``now``, before the last refill, gets the wait counted from that ``now``).
Asking for more than ``burst`` never succeeds; ``wait_time`` says ``inf``.

``SlidingWindow`` splits ``window`` seconds into ``buckets`` equal buckets in
a ring. Absolute bucket ``k`` covers ``[k, k + 1) * window / buckets``; the
window ending at ``now`` is the bucket holding ``now`` plus the
``buckets - 1`` before it (so it spans between ``window - window / buckets``
and ``window`` seconds). Each bucket counts requests, failures, slow
requests and a latency histogram, and running totals over the live buckets
are kept, so ``totals`` and the rates are O(1). Moving time forward expires
the buckets that left the window (subtracting them from the totals); a gap
of a whole window or more clears everything at once, so any jump costs
O(buckets) at most.

Latencies go into a fixed histogram of ``LATENCY_BINS`` (64) log-spaced
bins: bin ``i`` holds ``(LATENCY_BOUNDS[i-1], LATENCY_BOUNDS[i]]`` with
bounds from 100 us growing by a factor of 1.25 up to about 127 s; bin 0
also takes anything smaller (negative latencies included) and the top bin
anything larger. ``quantile(now, q)`` returns the upper bound of the bin
holding the nearest-rank ``q``-th sample, i.e. at most 25% above the true
value.

``InFlight`` counts acquisitions against a limit (0 means unlimited).
``release`` never goes below zero. Lowering the limit below the current count
does not revoke anything; new acquisitions fail until the count drops.

``CodeCounts`` and ``Histogram`` hold the metrics' per-request event state:
counts by code (0-999, HTTP statuses) and observation counts per bucket of
fixed upper bounds with their sum (a value lands in the first bucket whose
bound is >= it, past the last bound in the overflow bucket). ``add`` and
``observe`` are the per-request calls; the metrics read ``items()``,
``counts()`` and ``sum`` only when scraped.

The classes exist twice with identical behaviour, down to float rounding:
here in plain Python (``PureTokenBucket``, ``PureSlidingWindow``,
``PureInFlight``, ``PureCodeCounts``, ``PureHistogram``) and as a Cython
extension, ``proxy._accounting``. The names ``TokenBucket``,
``SlidingWindow``, ``InFlight``, ``CodeCounts`` and ``Histogram`` are the
native ones when that extension imports and ``EDGEPROXY_PURE`` is not set to
a true value, otherwise the pure ones; ``IMPLEMENTATION`` says which
("native" or "pure").
"""

from __future__ import annotations

import math
import os
from operator import index as _index
from bisect import bisect_left as _bisect_left

__all__ = [
    "CODES",
    "CodeCounts",
    "Histogram",
    "IMPLEMENTATION",
    "LATENCY_BINS",
    "LATENCY_BOUNDS",
    "TOKEN_EPSILON",
    "InFlight",
    "PureCodeCounts",
    "PureHistogram",
    "PureInFlight",
    "PureSlidingWindow",
    "PureTokenBucket",
    "SlidingWindow",
    "TokenBucket",
]

TOKEN_EPSILON = 1e-9
LATENCY_BINS = 64
_LATENCY_MIN = 1e-4
_LATENCY_FACTOR = 1.25


def _bounds() -> tuple[float, ...]:
    # Built by repeated multiplication (not pow) so that the native module,
    # which runs the same loop, gets bit-identical bounds.
    out = []
    b = _LATENCY_MIN
    for _ in range(LATENCY_BINS):
        out.append(b)
        b = b * _LATENCY_FACTOR
    return tuple(out)


LATENCY_BOUNDS: tuple[float, ...] = _bounds()

_INF = math.inf
# Bucket numbers must stay exact as floats (and fit a C long long).
_INDEX_LIMIT = 9007199254740992.0  # 2**53
_NO_BUCKET = -(2**62)  # "no bucket yet": older than any reachable bucket
_RANK_SLACK = 1e-9
_WAIT_STEPS = 64
_nextafter = math.nextafter
_floor = math.floor
_ceil = math.ceil


def _bad_now(now) -> ValueError:
    return ValueError(f"now must be a finite number of seconds, got {now!r}")


class PureTokenBucket:
    """``rate`` tokens per second up to ``burst``; starts full at ``now``."""

    __slots__ = ("_rate", "_burst", "_tokens", "_last")

    def __init__(self, rate: float, burst: float, now: float):
        if not 0.0 <= rate < _INF:
            raise ValueError(f"rate must be a finite number >= 0, got {rate!r}")
        if not 0.0 < burst < _INF:
            raise ValueError(f"burst must be a finite number > 0, got {burst!r}")
        if now - now != 0.0:
            raise _bad_now(now)
        # "+ 0.0" makes floats of ints, as the native twin's C doubles do.
        self._rate = rate + 0.0
        self._burst = burst + 0.0
        self._tokens = burst + 0.0
        self._last = now + 0.0

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def burst(self) -> float:
        return self._burst

    def _level(self, now) -> float:
        """Tokens at ``now`` (no state change)."""
        if now - now != 0.0:  # inf or nan
            raise _bad_now(now)
        last = self._last
        if now > last:
            t = self._tokens + (now - last) * self._rate
            burst = self._burst
            return burst if t > burst else t
        return self._tokens

    def _level_unchecked(self, at: float) -> float:
        last = self._last
        if at > last:
            t = self._tokens + (at - last) * self._rate
            burst = self._burst
            return burst if t > burst else t
        return self._tokens

    def take(self, now: float, n: float = 1.0) -> bool:
        """Refill up to ``now``, then take ``n`` tokens if they are there."""
        if now - now != 0.0:  # inf or nan
            raise _bad_now(now)
        if not n >= 0.0:
            raise ValueError(f"n must be >= 0, got {n!r}")
        last = self._last
        t = self._tokens
        burst = self._burst
        if now > last:
            t = t + (now - last) * self._rate
            if t > burst:
                t = burst
            self._last = now + 0.0  # a float, as in the native twin
        if n > burst or t < n - TOKEN_EPSILON:
            self._tokens = t
            return False
        t = t - n
        self._tokens = t if t > 0.0 else 0.0
        return True

    def wait_time(self, now: float, n: float = 1.0) -> float:
        """Seconds from ``now`` until ``n`` tokens are there: 0.0 if they are,
        ``inf`` if they never will be (``n > burst``, or a zero rate)."""
        if not n >= 0.0:
            raise ValueError(f"n must be >= 0, got {n!r}")
        t = self._level(now)
        if n > self._burst:
            return _INF
        if t >= n - TOKEN_EPSILON:
            return 0.0
        rate = self._rate
        if rate <= 0.0:
            return _INF
        last = self._last
        target = (now if now > last else last) + (n - t) / rate
        # Round up to what ``take(now + w, n)`` will really see: at large
        # clock values one ulp of time can be worth more than the slack.
        # A few ulps at most; the bound only guards the loop.
        need = n - TOKEN_EPSILON
        for _ in range(_WAIT_STEPS):
            w = target - now
            if self._level_unchecked(now + w) >= need:
                break
            target = _nextafter(target, _INF)
        return w

    def tokens(self, now: float) -> float:
        return self._level(now)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(rate={self._rate!r}, burst={self._burst!r}, "
                f"tokens={self._tokens!r}, last={self._last!r})")


class PureSlidingWindow:
    """Request, failure and slow counts plus a latency histogram over the
    last ``window`` seconds, in ``buckets`` ring buckets."""

    __slots__ = ("_window", "_n", "_per_second", "_cur", "_req", "_fail", "_slow", "_hist",
                 "_req_total", "_fail_total", "_slow_total", "_hist_total")

    def __init__(self, window: float, buckets: int):
        if not 0.0 < window < _INF:
            raise ValueError(f"window must be a finite number > 0, got {window!r}")
        if isinstance(buckets, float) or int(buckets) != buckets or buckets < 1:
            raise ValueError(f"buckets must be an integer >= 1, got {buckets!r}")
        n = int(buckets)
        self._window = window + 0.0
        self._n = n
        self._per_second = n / window  # buckets per second
        self._req = [0] * n
        self._fail = [0] * n
        self._slow = [0] * n
        self._hist = [0] * (n * LATENCY_BINS)
        self._hist_total = [0] * LATENCY_BINS
        self._cur = _NO_BUCKET
        self._req_total = 0
        self._fail_total = 0
        self._slow_total = 0

    @property
    def window(self) -> float:
        return self._window

    @property
    def buckets(self) -> int:
        return self._n

    def _bucket(self, now) -> int:
        """Absolute bucket number for ``now``, after expiring what left the window."""
        x = now * self._per_second
        if not -_INDEX_LIMIT < x < _INDEX_LIMIT:
            raise _bad_now(now)
        k = _floor(x)
        if k > self._cur:
            self._advance(k)
            return k
        return self._cur  # same bucket, or time went backwards

    def _advance(self, k: int) -> None:
        n = self._n
        cur = self._cur
        self._cur = k
        if not self._req_total:
            return  # nothing live to expire; stale buckets are all zero
        if k - cur >= n:
            self._clear()
            return
        req = self._req
        hist = self._hist
        tot = self._hist_total
        for j in range(cur + 1, k + 1):
            s = j % n
            if req[s]:
                self._req_total -= req[s]
                self._fail_total -= self._fail[s]
                self._slow_total -= self._slow[s]
                req[s] = self._fail[s] = self._slow[s] = 0
                base = s * LATENCY_BINS
                for b in range(LATENCY_BINS):
                    c = hist[base + b]
                    if c:
                        tot[b] -= c
                        hist[base + b] = 0

    def _clear(self) -> None:
        n = self._n
        self._req = [0] * n
        self._fail = [0] * n
        self._slow = [0] * n
        self._hist = [0] * (n * LATENCY_BINS)
        self._hist_total = [0] * LATENCY_BINS
        self._req_total = self._fail_total = self._slow_total = 0

    def record(self, now: float, ok: bool, latency: float, slow: bool = False) -> None:
        """Count one finished request at ``now``."""
        # Bin: first bound >= latency, the top bin if none (the native twin
        # runs the same bisection; a nan latency lands in bin 0).
        lo = _bisect_left(LATENCY_BOUNDS, latency, 0, LATENCY_BINS - 1)
        x = now * self._per_second
        if not -_INDEX_LIMIT < x < _INDEX_LIMIT:
            raise _bad_now(now)
        k = _floor(x)
        if k > self._cur:
            self._advance(k)
        else:
            k = self._cur  # same bucket, or time went backwards
        s = k % self._n
        self._req[s] += 1
        self._req_total += 1
        if not ok:
            self._fail[s] += 1
            self._fail_total += 1
        if slow:
            self._slow[s] += 1
            self._slow_total += 1
        self._hist[s * LATENCY_BINS + lo] += 1
        self._hist_total[lo] += 1

    def totals(self, now: float) -> tuple[int, int, int]:
        """``(requests, failures, slow)`` within the window ending at ``now``."""
        self._bucket(now)
        return (self._req_total, self._fail_total, self._slow_total)

    def failure_rate(self, now: float) -> float:
        self._bucket(now)
        r = self._req_total
        return self._fail_total / r if r else 0.0

    def slow_rate(self, now: float) -> float:
        self._bucket(now)
        r = self._req_total
        return self._slow_total / r if r else 0.0

    def quantile(self, now: float, q: float) -> float:
        """Upper bound of the latency bin holding the nearest-rank ``q``-th
        sample in the window (``0 <= q <= 1``); 0.0 when empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be within [0, 1], got {q!r}")
        self._bucket(now)
        total = self._req_total
        if not total:
            return 0.0
        rank = _ceil(q * total - _RANK_SLACK)
        if rank < 1:
            rank = 1
        seen = 0
        tot = self._hist_total
        for b in range(LATENCY_BINS):
            seen += tot[b]
            if seen >= rank:
                return LATENCY_BOUNDS[b]
        return LATENCY_BOUNDS[LATENCY_BINS - 1]  # unreachable: counts add up to total

    def reset(self) -> None:
        """Forget every sample (and the time last seen)."""
        self._clear()
        self._cur = _NO_BUCKET

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(window={self._window!r}, buckets={self._n!r}, "
                f"requests={self._req_total}, failures={self._fail_total}, slow={self._slow_total})")


class PureInFlight:
    """A counter of things in progress, capped at ``limit`` (0 = unlimited)."""

    __slots__ = ("_count", "_limit")

    def __init__(self, limit: int):
        self._limit = self._check(limit)
        self._count = 0

    @staticmethod
    def _check(limit) -> int:
        if isinstance(limit, float) or int(limit) != limit or limit < 0:
            raise ValueError(f"limit must be an integer >= 0, got {limit!r}")
        return int(limit)

    @property
    def count(self) -> int:
        return self._count

    @property
    def limit(self) -> int:
        return self._limit

    def set_limit(self, limit: int) -> None:
        """Change the limit; acquisitions already made are kept."""
        self._limit = self._check(limit)

    def try_acquire(self) -> bool:
        limit = self._limit
        if limit and self._count >= limit:
            return False
        self._count += 1
        return True

    def release(self) -> None:
        if self._count > 0:
            self._count -= 1

    def __repr__(self) -> str:
        return f"{type(self).__name__}(count={self._count}, limit={self._limit})"


CODES = 1000  # CodeCounts counts codes 0..CODES-1


class PureCodeCounts:
    """Event counts by code, 0-999 (an HTTP status). ``add`` is the per-request call."""

    __slots__ = ("_counts",)

    def __init__(self):
        self._counts: dict[int, int] = {}

    def add(self, code: int) -> None:
        code = _index(code)  # TypeError for a non-integer, as the native twin
        if code < 0 or code >= CODES:
            raise ValueError(f"code must be in 0..{CODES - 1}, got {code!r}")
        counts = self._counts
        counts[code] = counts.get(code, 0) + 1

    def items(self) -> list[tuple[int, int]]:
        """``[(code, count), ...]`` for the codes counted at least once, by code."""
        return sorted(self._counts.items())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self.items())!r})"


def _check_bounds(bounds) -> list[float]:
    values = [float(b) for b in bounds]
    for i, b in enumerate(values):
        if not (-_INF < b < _INF) or (i and b <= values[i - 1]):
            raise ValueError(f"bounds must be finite and increasing, got {tuple(bounds)!r}")
    return values


class PureHistogram:
    """Observation counts per bucket of fixed upper bounds, plus their sum (a
    Prometheus histogram's state). A value lands in the first bucket whose
    bound is >= it (Prometheus's inclusive ``le``), past the last bound in
    the overflow (+Inf) bucket."""

    __slots__ = ("_bounds", "_counts", "_sum")

    def __init__(self, bounds):
        self._bounds = tuple(_check_bounds(bounds))
        self._counts = [0] * (len(self._bounds) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        value = float(value)
        if value != value:
            raise ValueError("cannot observe NaN")
        self._counts[_bisect_left(self._bounds, value)] += 1
        self._sum += value

    @property
    def bounds(self) -> tuple[float, ...]:
        return self._bounds

    def counts(self) -> list[int]:
        """Per-bucket counts (not cumulative), the overflow bucket last."""
        return list(self._counts)

    @property
    def sum(self) -> float:
        return self._sum

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bounds={self.bounds!r}, counts={self.counts()!r}, sum={self._sum!r})"


def _load():
    if os.environ.get("EDGEPROXY_PURE", "").strip().lower() not in ("", "0", "false", "no"):
        return None
    try:
        from . import _accounting  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _accounting


_native = _load()
if _native is not None:
    TokenBucket = _native.TokenBucket
    SlidingWindow = _native.SlidingWindow
    InFlight = _native.InFlight
    CodeCounts = _native.CodeCounts
    Histogram = _native.Histogram
    IMPLEMENTATION: str = "native"
else:
    TokenBucket = PureTokenBucket  # type: ignore[misc]
    SlidingWindow = PureSlidingWindow  # type: ignore[misc]
    InFlight = PureInFlight  # type: ignore[misc]
    CodeCounts = PureCodeCounts  # type: ignore[misc]
    Histogram = PureHistogram  # type: ignore[misc]
    IMPLEMENTATION = "pure"
del _native
