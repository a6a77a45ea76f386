# distutils: extra_compile_args = -ffp-contract=off
# cython: binding=False
"""Queue-accounting primitives, native twin of ``proxy/accounting.py``.

Theory of operation
-------------------
Same classes, same behaviour, same float results as the pure module (which
documents the semantics in full); only the storage differs. Everything is
sans-IO: ``now`` is passed in (float seconds, monotonic), a ``now`` earlier
than one already seen counts as no elapsed time, and ``now`` must be finite.

* ``TokenBucket``: four doubles; tokens are refilled lazily from the time
  elapsed since the last refill, capped at ``burst``; ``take`` is the only
  mutating call.
* ``SlidingWindow``: a ring of ``buckets`` buckets in C arrays (requests,
  failures, slow, and a 64-bin log-spaced latency histogram per bucket) plus
  running totals over the live buckets, so totals and rates are O(1).
  Advancing time subtracts and zeroes the buckets that left the window; a
  gap of a whole window or more clears everything at once (O(buckets)).
* ``InFlight``: a counter and a limit (0 = unlimited).
* ``CodeCounts``: a C array of counts by code 0-999; ``Histogram``: C arrays
  of bucket bounds and counts, and a sum (binary search per observation).

Bit-for-bit agreement with the pure module is deliberate (the tests compare
the two on random operation sequences): every float expression is evaluated
in the same order as there, the histogram bounds are built by the same loop
of multiplications, and floating-point contraction (fused multiply-add) is
turned off for this file so the compiler cannot round differently.
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport ceil, floor, nextafter, INFINITY
from libc.string cimport memset
from operator import index

IMPLEMENTATION = "native"

cdef enum:
    BINS = 64
    CODES = 1000

TOKEN_EPSILON = 1e-9
LATENCY_BINS = BINS

cdef double _EPS = 1e-9
cdef double _RANK_SLACK = 1e-9
cdef int _WAIT_STEPS = 64
cdef double _INDEX_LIMIT = 9007199254740992.0  # 2**53
cdef long long _NO_BUCKET = -(1LL << 62)
cdef double _BOUNDS[BINS]


cdef void _init_bounds():
    cdef double b = 1e-4
    cdef int i
    for i in range(BINS):
        _BOUNDS[i] = b
        b = b * 1.25


_init_bounds()
LATENCY_BOUNDS = tuple([_BOUNDS[i] for i in range(BINS)])


cdef object _bad_now(double now):
    return ValueError(f"now must be a finite number of seconds, got {now!r}")


cdef inline bint _finite(double x):
    return x - x == 0.0


cdef class TokenBucket:
    """``rate`` tokens per second up to ``burst``; starts full at ``now``."""

    cdef double _rate
    cdef double _burst
    cdef double _tokens
    cdef double _last

    def __init__(self, double rate, double burst, double now):
        if not (0.0 <= rate < INFINITY):
            raise ValueError(f"rate must be a finite number >= 0, got {rate!r}")
        if not (0.0 < burst < INFINITY):
            raise ValueError(f"burst must be a finite number > 0, got {burst!r}")
        if not _finite(now):
            raise _bad_now(now)
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._last = now

    @property
    def rate(self):
        return self._rate

    @property
    def burst(self):
        return self._burst

    cdef double _level(self, double now) except? -1.0:
        cdef double t
        if not _finite(now):
            raise _bad_now(now)
        if now > self._last:
            t = self._tokens + (now - self._last) * self._rate
            return self._burst if t > self._burst else t
        return self._tokens

    cdef inline double _level_unchecked(self, double at):
        cdef double t
        if at > self._last:
            t = self._tokens + (at - self._last) * self._rate
            return self._burst if t > self._burst else t
        return self._tokens

    def take(self, double now, double n=1.0):
        """Refill up to ``now``, then take ``n`` tokens if they are there."""
        cdef double t
        if not _finite(now):
            raise _bad_now(now)
        if not (n >= 0.0):
            raise ValueError(f"n must be >= 0, got {n!r}")
        t = self._tokens
        if now > self._last:
            t = t + (now - self._last) * self._rate
            if t > self._burst:
                t = self._burst
            self._last = now
        if n > self._burst or t < n - _EPS:
            self._tokens = t
            return False
        t = t - n
        self._tokens = t if t > 0.0 else 0.0
        return True

    def wait_time(self, double now, double n=1.0):
        """Seconds from ``now`` until ``n`` tokens are there: 0.0 if they are,
        ``inf`` if they never will be (``n > burst``, or a zero rate)."""
        cdef double t, target, need, w
        cdef int _
        if not (n >= 0.0):
            raise ValueError(f"n must be >= 0, got {n!r}")
        t = self._level(now)
        if n > self._burst:
            return INFINITY
        if t >= n - _EPS:
            return 0.0
        if self._rate <= 0.0:
            return INFINITY
        target = (now if now > self._last else self._last) + (n - t) / self._rate
        # Round up to what take(now + w, n) will really see (see the pure
        # module): a few ulps at most; the bound only guards the loop.
        need = n - _EPS
        w = target - now
        for _ in range(_WAIT_STEPS):
            w = target - now
            if self._level_unchecked(now + w) >= need:
                break
            target = nextafter(target, INFINITY)
        return w

    def tokens(self, double now):
        return self._level(now)

    def __repr__(self):
        return (f"{type(self).__name__}(rate={self._rate!r}, burst={self._burst!r}, "
                f"tokens={self._tokens!r}, last={self._last!r})")


cdef inline Py_ssize_t _slot(long long k, Py_ssize_t n):
    cdef long long r = k % n  # C remainder: may be negative
    if r < 0:
        r += n
    return <Py_ssize_t>r


def _check_count(value, what, minimum):
    if isinstance(value, float) or int(value) != value or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


cdef class SlidingWindow:
    """Request, failure and slow counts plus a latency histogram over the
    last ``window`` seconds, in ``buckets`` ring buckets."""

    cdef double _window
    cdef double _per_second
    cdef Py_ssize_t _n
    cdef long long _cur
    cdef long long *_req
    cdef long long *_fail
    cdef long long *_slow
    cdef long long *_hist
    cdef long long _req_total
    cdef long long _fail_total
    cdef long long _slow_total
    cdef long long _hist_total[BINS]

    def __init__(self, double window, buckets):
        cdef Py_ssize_t n
        cdef size_t size
        if not (0.0 < window < INFINITY):
            raise ValueError(f"window must be a finite number > 0, got {window!r}")
        n = _check_count(buckets, "buckets", 1)
        self._free()
        size = <size_t>n * sizeof(long long)
        self._req = <long long *>PyMem_Malloc(size)
        self._fail = <long long *>PyMem_Malloc(size)
        self._slow = <long long *>PyMem_Malloc(size)
        self._hist = <long long *>PyMem_Malloc(size * BINS)
        if self._req == NULL or self._fail == NULL or self._slow == NULL or self._hist == NULL:
            self._free()
            raise MemoryError()
        self._window = window
        self._n = n
        self._per_second = <double>n / window
        self._clear()
        self._cur = _NO_BUCKET

    def __dealloc__(self):
        self._free()

    cdef void _free(self):
        PyMem_Free(self._req)
        PyMem_Free(self._fail)
        PyMem_Free(self._slow)
        PyMem_Free(self._hist)
        self._req = self._fail = self._slow = self._hist = NULL
        self._n = 0

    cdef void _clear(self):
        cdef size_t size = <size_t>self._n * sizeof(long long)
        memset(self._req, 0, size)
        memset(self._fail, 0, size)
        memset(self._slow, 0, size)
        memset(self._hist, 0, size * BINS)
        memset(self._hist_total, 0, sizeof(self._hist_total))
        self._req_total = self._fail_total = self._slow_total = 0

    @property
    def window(self):
        return self._window

    @property
    def buckets(self):
        return self._n

    cdef long long _bucket(self, double now) except? -1:
        """Absolute bucket number for ``now``, after expiring what left the window."""
        cdef double x = now * self._per_second
        cdef long long k
        if self._n == 0:
            raise RuntimeError("SlidingWindow was not initialised")
        if not (-_INDEX_LIMIT < x < _INDEX_LIMIT):
            raise _bad_now(now)
        k = <long long>floor(x)
        if k > self._cur:
            self._advance(k)
            return k
        return self._cur

    cdef void _advance(self, long long k):
        cdef long long cur = self._cur
        cdef long long j
        cdef Py_ssize_t s, b, base
        cdef long long c
        self._cur = k
        if self._req_total == 0:
            return
        if k - cur >= self._n:
            self._clear()
            return
        for j in range(cur + 1, k + 1):
            s = _slot(j, self._n)
            if self._req[s]:
                self._req_total -= self._req[s]
                self._fail_total -= self._fail[s]
                self._slow_total -= self._slow[s]
                self._req[s] = 0
                self._fail[s] = 0
                self._slow[s] = 0
                base = s * BINS
                for b in range(BINS):
                    c = self._hist[base + b]
                    if c:
                        self._hist_total[b] -= c
                        self._hist[base + b] = 0

    def record(self, double now, bint ok, double latency, bint slow=False):
        """Count one finished request at ``now``."""
        cdef int lo = 0
        cdef int hi = BINS - 1
        cdef int mid
        cdef Py_ssize_t s
        # First bound >= latency; a nan latency compares false everywhere
        # and lands in bin 0 (as in the pure module).
        while lo < hi:
            mid = (lo + hi) >> 1
            if _BOUNDS[mid] < latency:
                lo = mid + 1
            else:
                hi = mid
        s = _slot(self._bucket(now), self._n)
        self._req[s] += 1
        self._req_total += 1
        if not ok:
            self._fail[s] += 1
            self._fail_total += 1
        if slow:
            self._slow[s] += 1
            self._slow_total += 1
        self._hist[s * BINS + lo] += 1
        self._hist_total[lo] += 1

    def totals(self, double now):
        """``(requests, failures, slow)`` within the window ending at ``now``."""
        self._bucket(now)
        return (self._req_total, self._fail_total, self._slow_total)

    def failure_rate(self, double now):
        self._bucket(now)
        if self._req_total == 0:
            return 0.0
        return <double>self._fail_total / <double>self._req_total

    def slow_rate(self, double now):
        self._bucket(now)
        if self._req_total == 0:
            return 0.0
        return <double>self._slow_total / <double>self._req_total

    def quantile(self, double now, double q):
        """Upper bound of the latency bin holding the nearest-rank ``q``-th
        sample in the window (``0 <= q <= 1``); 0.0 when empty."""
        cdef long long rank, seen = 0
        cdef int b
        if not (0.0 <= q <= 1.0):
            raise ValueError(f"q must be within [0, 1], got {q!r}")
        self._bucket(now)
        if self._req_total == 0:
            return 0.0
        rank = <long long>ceil(q * <double>self._req_total - _RANK_SLACK)
        if rank < 1:
            rank = 1
        for b in range(BINS):
            seen += self._hist_total[b]
            if seen >= rank:
                return _BOUNDS[b]
        return _BOUNDS[BINS - 1]

    def reset(self):
        """Forget every sample (and the time last seen)."""
        if self._n == 0:
            raise RuntimeError("SlidingWindow was not initialised")
        self._clear()
        self._cur = _NO_BUCKET

    def __repr__(self):
        return (f"{type(self).__name__}(window={self._window!r}, buckets={self._n!r}, "
                f"requests={self._req_total}, failures={self._fail_total}, slow={self._slow_total})")


cdef class InFlight:
    """A counter of things in progress, capped at ``limit`` (0 = unlimited)."""

    def __init__(self, limit):
        self._limit = _check_count(limit, "limit", 0)
        self._count = 0

    @property
    def count(self):
        return self._count

    @property
    def limit(self):
        return self._limit

    def set_limit(self, limit):
        """Change the limit; acquisitions already made are kept."""
        self._limit = _check_count(limit, "limit", 0)

    cpdef bint try_acquire(self):
        if self._limit and self._count >= self._limit:
            return False
        self._count += 1
        return True

    cpdef release(self):
        if self._count > 0:
            self._count -= 1

    def __repr__(self):
        return f"{type(self).__name__}(count={self._count}, limit={self._limit})"


cdef class CodeCounts:
    """Event counts by code, 0-999 (an HTTP status; the metrics' per-route and
    per-upstream status counters). ``add`` is the per-request call."""

    def __init__(self):
        memset(self._counts, 0, sizeof(self._counts))

    cpdef add(self, code):
        cdef long c
        if type(code) is not int:  # (a C long parameter would truncate floats)
            c = index(code)  # TypeError for a non-integer, as the pure twin
        else:
            c = code
        if c < 0 or c >= CODES:
            raise ValueError(f"code must be in 0..{CODES - 1}, got {code!r}")
        self._counts[c] += 1

    def items(self):
        """``[(code, count), ...]`` for the codes counted at least once, by code."""
        cdef Py_ssize_t i
        return [(i, self._counts[i]) for i in range(CODES) if self._counts[i]]

    def __repr__(self):
        return f"{type(self).__name__}({dict(self.items())!r})"


cdef class Histogram:
    """Observation counts per bucket of fixed upper bounds, plus their sum:
    a Prometheus histogram's state. A value lands in the first bucket whose
    bound is >= it (bounds are inclusive, as Prometheus's ``le``), past the
    last bound in the overflow (+Inf) bucket."""

    def __init__(self, bounds):
        cdef Py_ssize_t i, n
        values = _check_bounds(bounds)
        n = len(values)
        self._free()
        self._bounds = <double *>PyMem_Malloc(<size_t>(n if n else 1) * sizeof(double))
        self._counts = <long long *>PyMem_Malloc(<size_t>(n + 1) * sizeof(long long))
        if self._bounds == NULL or self._counts == NULL:
            self._free()
            raise MemoryError()
        for i in range(n):
            self._bounds[i] = values[i]
        memset(self._counts, 0, <size_t>(n + 1) * sizeof(long long))
        self._n = n
        self._sum = 0.0

    def __dealloc__(self):
        self._free()

    cdef void _free(self):
        PyMem_Free(self._bounds)
        PyMem_Free(self._counts)
        self._bounds = NULL
        self._counts = NULL
        self._n = 0

    cpdef observe(self, double value):
        cdef Py_ssize_t lo = 0, hi = self._n, mid
        if value != value:
            raise ValueError("cannot observe NaN")
        while lo < hi:  # first bound >= value
            mid = (lo + hi) >> 1
            if self._bounds[mid] < value:
                lo = mid + 1
            else:
                hi = mid
        self._counts[lo] += 1
        self._sum += value

    @property
    def bounds(self):
        cdef Py_ssize_t i
        return tuple([self._bounds[i] for i in range(self._n)])

    def counts(self):
        """Per-bucket counts (not cumulative), the overflow bucket last."""
        cdef Py_ssize_t i
        if self._counts == NULL:
            return []
        return [self._counts[i] for i in range(self._n + 1)]

    @property
    def sum(self):
        return self._sum

    def __repr__(self):
        return f"{type(self).__name__}(bounds={self.bounds!r}, counts={self.counts()!r}, sum={self._sum!r})"


def _check_bounds(bounds):
    values = [float(b) for b in bounds]
    for i, b in enumerate(values):
        if not (-INFINITY < b < INFINITY) or (i and b <= values[i - 1]):
            raise ValueError(f"bounds must be finite and increasing, got {tuple(bounds)!r}")
    return values
