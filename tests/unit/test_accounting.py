"""Queue-accounting primitives (token bucket, sliding window, in-flight cap)
driven with a fake clock, over every implementation that imports.

``pure`` always exists; ``native`` (the Cython twin, ``proxy._accounting``)
is a parameter only when it imports, so no per-case skips are generated. A
hypothesis test replays random operation sequences on both and requires
identical results.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy import accounting

ROOT = Path(__file__).resolve().parents[2]

PURE = SimpleNamespace(
    NAME="pure",
    TokenBucket=accounting.PureTokenBucket,
    SlidingWindow=accounting.PureSlidingWindow,
    InFlight=accounting.PureInFlight,
    CodeCounts=accounting.PureCodeCounts,
    Histogram=accounting.PureHistogram,
)
try:
    from proxy import _accounting as _native_module
except ImportError:
    NATIVE = None
else:
    NATIVE = SimpleNamespace(
        NAME="native",
        TokenBucket=_native_module.TokenBucket,
        SlidingWindow=_native_module.SlidingWindow,
        InFlight=_native_module.InFlight,
        CodeCounts=_native_module.CodeCounts,
        Histogram=_native_module.Histogram,
    )

IMPLS = [PURE] + ([NATIVE] if NATIVE is not None else [])
BOUNDS = accounting.LATENCY_BOUNDS
INF = math.inf


@pytest.fixture(params=IMPLS, ids=[m.NAME for m in IMPLS])
def impl(request):
    return request.param


def bin_of(latency: float) -> int:
    """Index of the histogram bin holding ``latency`` (reference lookup)."""
    for i, b in enumerate(BOUNDS):
        if latency <= b:
            return i
    return len(BOUNDS) - 1


# --------------------------------------------------------------------------
# Module surface and the import switch


def test_module_surface():
    assert accounting.IMPLEMENTATION in ("native", "pure")
    if accounting.IMPLEMENTATION == "pure":
        assert accounting.TokenBucket is accounting.PureTokenBucket
        assert accounting.SlidingWindow is accounting.PureSlidingWindow
        assert accounting.InFlight is accounting.PureInFlight
        assert accounting.CodeCounts is accounting.PureCodeCounts
        assert accounting.Histogram is accounting.PureHistogram
    forced = os.environ.get("EDGEPROXY_PURE", "").strip().lower() not in ("", "0", "false", "no")
    if NATIVE is not None and not forced:
        assert accounting.IMPLEMENTATION == "native"
        assert accounting.TokenBucket is NATIVE.TokenBucket
        assert accounting.SlidingWindow is NATIVE.SlidingWindow
        assert accounting.InFlight is NATIVE.InFlight
        assert accounting.CodeCounts is NATIVE.CodeCounts
        assert accounting.Histogram is NATIVE.Histogram
        assert _native_module.LATENCY_BOUNDS == BOUNDS


@pytest.mark.parametrize("value, expected", [
    ("1", "pure"), ("true", "pure"), ("yes", "pure"),
    ("", None), ("0", None), ("false", None), ("no", None),
])
def test_edgeproxy_pure_switch(value, expected):
    env = dict(os.environ, EDGEPROXY_PURE=value)
    script = (
        "import importlib.util as u\n"
        "from proxy import accounting as a\n"
        "print(a.IMPLEMENTATION, a.TokenBucket is a.PureTokenBucket,"
        " u.find_spec('proxy._accounting') is not None)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    if expected is None:  # not forced: native when it was built
        expected = "native" if out[2] == "True" else "pure"
    assert out[:2] == [expected, str(expected == "pure")]


def test_latency_bounds():
    assert len(BOUNDS) == accounting.LATENCY_BINS == 64
    assert BOUNDS[0] == pytest.approx(100e-6)
    for lo, hi in zip(BOUNDS, BOUNDS[1:]):
        assert hi / lo == pytest.approx(1.25)
    assert 100.0 < BOUNDS[-1] < 130.0


# --------------------------------------------------------------------------
# TokenBucket


def run_bucket(bucket, script):
    """Run (op, now, n, expected) steps; ops: take, wait, tokens."""
    for i, (op, now, n, expected) in enumerate(script):
        if op == "take":
            got = bucket.take(now, n)
            assert got is expected, f"step {i}: take({now}, {n}) -> {got}"
        elif op == "wait":
            got = bucket.wait_time(now, n)
            assert got == pytest.approx(expected, abs=1e-12), f"step {i}: wait_time({now}, {n}) -> {got}"
        elif op == "tokens":
            got = bucket.tokens(now)
            assert got == pytest.approx(expected, abs=1e-12), f"step {i}: tokens({now}) -> {got}"
        else:  # pragma: no cover
            raise AssertionError(op)


BUCKET_CASES = {
    "starts full, burst then refused": (10.0, 5.0, 0.0, [
        ("tokens", 0.0, None, 5.0),
        *[("take", 0.0, 1.0, True)] * 5,
        ("take", 0.0, 1.0, False),
        ("tokens", 0.0, None, 0.0),
    ]),
    "refills at rate": (10.0, 5.0, 0.0, [
        ("take", 0.0, 5.0, True),
        ("take", 0.05, 1.0, False),  # half a token
        ("take", 0.1, 1.0, True),
        ("take", 0.1, 1.0, False),
        ("tokens", 0.25, None, 1.5),
        ("take", 0.3, 2.0, True),
    ]),
    "refill capped at burst": (10.0, 5.0, 0.0, [
        ("take", 0.0, 5.0, True),
        ("tokens", 3600.0, None, 5.0),
        ("take", 3600.0, 5.0, True),
        ("take", 3600.0, 0.5, False),
    ]),
    "fractional rate (one token per two seconds)": (0.5, 1.0, 0.0, [
        ("take", 0.0, 1.0, True),
        ("take", 1.0, 1.0, False),
        ("tokens", 1.5, None, 0.75),
        ("take", 2.0, 1.0, True),
        ("take", 3.99, 1.0, False),
        ("take", 4.0, 1.0, True),
    ]),
    "rate 0.1 with rounding in between still yields at 10 s": (0.1, 1.0, 0.0, [
        ("take", 0.0, 1.0, True),
        ("take", 3.0, 1.0, False),
        ("take", 7.0, 1.0, False),
        ("take", 9.9, 1.0, False),
        ("take", 10.0, 1.0, True),
    ]),
    "fractional amounts": (1.0, 2.5, 0.0, [
        ("take", 0.0, 1.25, True),
        ("take", 0.0, 1.25, True),
        ("take", 0.0, 0.25, False),
        ("take", 0.25, 0.25, True),
        ("tokens", 0.25, None, 0.0),
    ]),
    "more than burst never succeeds": (100.0, 2.0, 0.0, [
        ("take", 0.0, 2.5, False),
        ("wait", 0.0, 2.5, INF),
        ("take", 1e6, 2.5, False),
        ("take", 1e6, 2.0, True),
    ]),
    "zero amount always succeeds": (1.0, 1.0, 0.0, [
        ("take", 0.0, 1.0, True),
        ("take", 0.0, 0.0, True),
        ("wait", 0.0, 0.0, 0.0),
    ]),
    "zero rate never refills": (0.0, 2.0, 0.0, [
        ("take", 0.0, 2.0, True),
        ("take", 1e9, 1.0, False),
        ("wait", 1e9, 1.0, INF),
        ("tokens", 1e9, None, 0.0),
    ]),
    "wait_time": (10.0, 5.0, 0.0, [
        ("wait", 0.0, 5.0, 0.0),
        ("take", 0.0, 5.0, True),
        ("wait", 0.0, 1.0, 0.1),
        ("wait", 0.0, 5.0, 0.5),
        ("wait", 0.05, 1.0, 0.05),
        ("wait", 0.5, 5.0, 0.0),
        ("wait", 0.5, 6.0, INF),
    ]),
    "reads do not move the clock": (10.0, 5.0, 0.0, [
        ("take", 0.0, 5.0, True),
        ("tokens", 100.0, None, 5.0),
        ("wait", 100.0, 5.0, 0.0),
        ("take", 0.05, 1.0, False),  # still only half a token since t=0
        ("take", 0.1, 1.0, True),
    ]),
    "time going backwards is no elapsed time": (10.0, 5.0, 10.0, [
        ("take", 10.0, 5.0, True),
        ("take", 5.0, 1.0, False),
        ("tokens", 5.0, None, 0.0),
        ("wait", 5.0, 1.0, 5.1),  # counted from the caller's now: tokens are there at 10.1
        ("take", 10.05, 1.0, False),  # refills from 10.0, not from 5.0
        ("take", 10.1, 1.0, True),
        ("take", 9.0, 0.0, True),
        ("tokens", 10.2, None, 1.0),
    ]),
    "starts at an arbitrary monotonic time": (2.0, 4.0, 123456.75, [
        ("take", 123456.75, 4.0, True),
        ("take", 123457.75, 2.0, True),
        ("take", 123457.75, 0.5, False),
    ]),
}


@pytest.mark.parametrize("case", list(BUCKET_CASES), ids=list(BUCKET_CASES))
def test_token_bucket(impl, case):
    rate, burst, start, script = BUCKET_CASES[case]
    bucket = impl.TokenBucket(rate, burst, start)
    assert (bucket.rate, bucket.burst) == (rate, burst)
    run_bucket(bucket, script)


def test_token_bucket_takes_numbers_only(impl):
    for args in (("1", 1.0, 0.0), (1.0, "1", 0.0), (1.0, 1.0, "0"), (None, 1.0, 0.0)):
        with pytest.raises(TypeError):
            impl.TokenBucket(*args)
    bucket = impl.TokenBucket(2, 3, 1)  # ints are fine
    assert (bucket.rate, bucket.burst, bucket.tokens(1)) == (2.0, 3.0, 3.0)
    assert type(bucket.rate) is float


def test_token_bucket_properties_are_read_only(impl):
    bucket = impl.TokenBucket(1.0, 2.0, 0.0)
    with pytest.raises(AttributeError):
        bucket.rate = 5.0
    with pytest.raises(AttributeError):
        bucket.burst = 5.0


@pytest.mark.parametrize("rate, burst, now", [
    (-1.0, 1.0, 0.0), (INF, 1.0, 0.0), (math.nan, 1.0, 0.0),
    (1.0, 0.0, 0.0), (1.0, -1.0, 0.0), (1.0, INF, 0.0), (1.0, math.nan, 0.0),
    (1.0, 1.0, INF), (1.0, 1.0, math.nan),
])
def test_token_bucket_rejects_bad_construction(impl, rate, burst, now):
    with pytest.raises(ValueError):
        impl.TokenBucket(rate, burst, now)


@pytest.mark.parametrize("call", [
    lambda b: b.take(INF), lambda b: b.take(math.nan), lambda b: b.take(-INF),
    lambda b: b.tokens(INF), lambda b: b.wait_time(math.nan),
    lambda b: b.take(1.0, -1.0), lambda b: b.take(1.0, math.nan),
    lambda b: b.wait_time(1.0, -0.5),
])
def test_token_bucket_rejects_bad_calls_without_damage(impl, call):
    bucket = impl.TokenBucket(1.0, 2.0, 0.0)
    assert bucket.take(0.0, 2.0)
    with pytest.raises(ValueError):
        call(bucket)
    assert bucket.tokens(1.0) == 1.0
    assert bucket.take(2.0, 2.0)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rate=st.floats(0.001, 1e5),
    burst=st.floats(0.01, 1e4),
    start=st.one_of(st.floats(0.0, 1e9), st.just(0.0)),
    spend=st.floats(0.0, 1.0),
    want=st.floats(0.0, 1.0),
    ask_at=st.one_of(st.just(0.0), st.floats(-5.0, 5.0)),
)
def test_waiting_wait_time_is_enough(impl, rate, burst, start, spend, want, ask_at):
    """take(now + wait_time(now, n), n) succeeds, whatever the float rounding
    at large clock values, and also when asked with a stale ``now``."""
    bucket = impl.TokenBucket(rate, burst, start)
    assert bucket.take(start, spend * burst)
    n = want * burst
    now = start + ask_at
    w = bucket.wait_time(now, n)
    assert 0.0 <= w < INF
    assert bucket.take(now + w, n)


# --------------------------------------------------------------------------
# SlidingWindow


def run_window(win, script):
    """Run steps: ("rec", now, ok, latency, slow) or ("tot", now, (req, fail, slow))."""
    for i, step in enumerate(script):
        if step[0] == "rec":
            _, now, ok, latency, slow = step
            assert win.record(now, ok, latency, slow) is None
        elif step[0] == "tot":
            _, now, expected = step
            got = win.totals(now)
            assert got == expected, f"step {i}: totals({now}) -> {got}, expected {expected}"
        elif step[0] == "reset":
            win.reset()
        else:  # pragma: no cover
            raise AssertionError(step)


def rec(now, ok=True, latency=0.01, slow=False):
    return ("rec", now, ok, latency, slow)


def tot(now, req, fail=0, slow=0):
    return ("tot", now, (req, fail, slow))


def wrap_script(seconds):
    """Two samples per 1 s bucket (the second one fails in odd seconds),
    with the totals checked at the end of every bucket."""
    script = []
    for t in range(seconds):
        script += [rec(t + 0.5), rec(t + 0.75, ok=(t % 2 == 0))]
        live = range(max(0, t - 3), t + 1)
        script.append(tot(t + 0.9, 2 * len(live), sum(k % 2 for k in live)))
    return script


WINDOW_CASES = {
    "empty": (10.0, 10, [tot(0.0, 0), tot(100.0, 0)]),
    "expiry at bucket boundaries (1 s buckets)": (10.0, 10, [
        rec(0.0), rec(0.5), rec(0.999), rec(1.0),
        tot(1.0, 4), tot(9.999, 4),
        tot(10.0, 1),  # bucket [0, 1) left the window
        tot(10.999, 1),
        tot(11.0, 0),
    ]),
    "expiry at bucket boundaries (0.25 s buckets)": (1.0, 4, [
        rec(0.0), rec(0.24), rec(0.25), rec(0.5), rec(0.75),
        tot(0.99, 5), tot(1.0, 3), tot(1.25, 2), tot(1.5, 1), tot(1.75, 0),
    ]),
    "a single bucket": (5.0, 1, [
        rec(0.0), rec(4.9), tot(4.99, 2), tot(5.0, 0), rec(5.0), tot(9.9, 1), tot(10.0, 0),
    ]),
    "gap of exactly one window clears everything": (10.0, 10, [
        *[rec(float(t)) for t in range(10)],
        tot(9.5, 10), tot(19.0, 0), rec(19.0), tot(19.0, 1),
    ]),
    "gap one bucket short of a window keeps the newest bucket": (10.0, 10, [
        *[rec(float(t)) for t in range(10)],
        tot(18.0, 1), tot(18.99, 1), tot(19.0, 0),
    ]),
    "long gaps: nothing resurrects": (30.0, 30, [
        rec(1.0), rec(2.0, ok=False), tot(2.0, 2, 1),
        tot(1e6, 0),
        rec(1e6 + 0.5), tot(1e6 + 29.0, 1), tot(1e6 + 30.0, 0),
        tot(1e9, 0), rec(1e9, ok=False), tot(1e9, 1, 1),
    ]),
    "ring wraps around for several windows": (4.0, 4, wrap_script(16)),
    "failures and slow counted separately": (10.0, 10, [
        rec(1.0, ok=False), rec(1.0, slow=True), rec(1.0, ok=False, slow=True), rec(2.0),
        tot(2.0, 4, 2, 2), tot(10.5, 4, 2, 2), tot(11.0, 1, 0, 0),
    ]),
    "time going backwards lands in the newest bucket": (10.0, 10, [
        rec(5.5), rec(3.0), rec(-100.0),  # all count in bucket [5, 6)
        tot(3.0, 3), tot(5.5, 3), tot(14.99, 3), tot(15.0, 0),
        tot(4.0, 0),  # still the window ending at 15
    ]),
    "backwards within one bucket": (10.0, 10, [
        rec(7.9), rec(7.1), tot(7.0, 2), tot(16.9, 2), tot(17.0, 0),
    ]),
    "negative times (fake clocks may start anywhere)": (2.0, 4, [
        rec(-2.5), rec(-1.9), rec(-1.6), rec(-0.1),  # buckets -5, -4, -4, -1
        tot(-0.1, 3), tot(-1.0, 3), tot(-0.5, 3),
        tot(0.0, 1), tot(1.0, 1), tot(1.5, 0),
    ]),
    "reset forgets samples and time": (10.0, 10, [
        rec(100.0, ok=False), tot(100.0, 1, 1), ("reset",),
        rec(50.0), tot(50.0, 1), tot(59.0, 1), tot(60.0, 0), tot(100.0, 0),
    ]),
}


@pytest.mark.parametrize("case", list(WINDOW_CASES), ids=list(WINDOW_CASES))
def test_sliding_window(impl, case):
    window, buckets, script = WINDOW_CASES[case]
    win = impl.SlidingWindow(window, buckets)
    assert (win.window, win.buckets) == (window, buckets)
    run_window(win, script)


@pytest.mark.parametrize("oks, slows, failure_rate, slow_rate", [
    ([], [], 0.0, 0.0),
    ([True] * 4, [False] * 4, 0.0, 0.0),
    ([False] * 4, [True] * 4, 1.0, 1.0),
    ([True, False, True, True], [False, False, True, False], 0.25, 0.25),
    ([False] * 3 + [True] * 7, [True] * 5 + [False] * 5, 0.3, 0.5),
])
def test_failure_and_slow_rates(impl, oks, slows, failure_rate, slow_rate):
    win = impl.SlidingWindow(30.0, 30)
    for i, (ok, slow) in enumerate(zip(oks, slows)):
        win.record(10.0 + i * 0.1, ok, 0.01, slow)
    now = 12.0
    assert win.failure_rate(now) == pytest.approx(failure_rate)
    assert win.slow_rate(now) == pytest.approx(slow_rate)
    assert win.failure_rate(now + 30.0) == 0.0
    assert win.slow_rate(now + 30.0) == 0.0


def ms(values):
    return [v / 1000.0 for v in values]


QUANTILE_CASES = {
    # name: (latencies, q, latency that the returned bin must contain)
    "1..100 ms p95": (ms(range(1, 101)), 0.95, 0.095),
    "1..100 ms p50": (ms(range(1, 101)), 0.50, 0.050),
    "1..100 ms p99": (ms(range(1, 101)), 0.99, 0.099),
    "1..100 ms p100": (ms(range(1, 101)), 1.0, 0.100),
    "1..100 ms p0 is the minimum": (ms(range(1, 101)), 0.0, 0.001),
    "1..100 ms p7 (rank not pushed up by rounding)": (ms(range(1, 101)), 0.07, 0.007),
    "shuffled 1..100 ms p90": (ms([(i * 37) % 100 + 1 for i in range(100)]), 0.90, 0.090),
    "bimodal 90x1ms 10x2s p90": (ms([1] * 90 + [2000] * 10), 0.90, 0.001),
    "bimodal 90x1ms 10x2s p91": (ms([1] * 90 + [2000] * 10), 0.91, 2.0),
    "single sample": ([0.25], 0.5, 0.25),
    "below the lowest bound": ([10e-6] * 3, 0.5, 100e-6),
    "negative latency counts as the lowest bin": ([-1.0], 0.5, 100e-6),
    "above the top bound saturates": ([1000.0] * 3, 0.99, BOUNDS[-1]),
    "exactly on a bound stays in that bin": ([BOUNDS[10]], 1.0, BOUNDS[10]),
}


@pytest.mark.parametrize("case", list(QUANTILE_CASES), ids=list(QUANTILE_CASES))
def test_quantile(impl, case):
    latencies, q, contains = QUANTILE_CASES[case]
    win = impl.SlidingWindow(30.0, 30)
    for i, lat in enumerate(latencies):
        win.record(100.0 + (i % 10), True, lat)
    got = win.quantile(110.0, q)
    b = bin_of(contains)
    assert got == BOUNDS[b]
    if 0 < b < len(BOUNDS) - 1:  # an inner bin: at most 25% above the value
        assert contains <= got < contains * 1.25


def test_quantile_empty_and_expiry(impl):
    win = impl.SlidingWindow(10.0, 10)
    assert win.quantile(0.0, 0.5) == 0.0
    for i in range(50):
        win.record(0.5, True, 2.0)  # slow samples, bucket [0, 1)
    for i in range(50):
        win.record(5.5, True, 0.002)  # fast samples, bucket [5, 6)
    assert win.quantile(9.0, 0.99) == BOUNDS[bin_of(2.0)]
    assert win.quantile(10.0, 0.99) == BOUNDS[bin_of(0.002)]  # slow ones expired
    assert win.quantile(16.0, 0.99) == 0.0
    win.record(16.0, True, 0.3)
    win.reset()
    assert win.quantile(16.0, 0.5) == 0.0


def test_quantile_matches_nearest_rank_reference(impl):
    lats = ms([(i * 7919) % 5000 + 1 for i in range(1000)])
    win = impl.SlidingWindow(60.0, 60)
    for i, lat in enumerate(lats):
        win.record(i * 0.05, True, lat)
    ranked = sorted(lats)
    for q in (0.0, 0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0):
        rank = max(1, math.ceil(round(q * len(ranked), 9)))
        assert win.quantile(50.0, q) == BOUNDS[bin_of(ranked[rank - 1])], q


@pytest.mark.parametrize("window, buckets", [
    (0.0, 10), (-1.0, 10), (INF, 10), (math.nan, 10),
    (10.0, 0), (10.0, -1), (10.0, 1.5),
])
def test_sliding_window_rejects_bad_construction(impl, window, buckets):
    with pytest.raises(ValueError):
        impl.SlidingWindow(window, buckets)


@pytest.mark.parametrize("call", [
    lambda w: w.record(INF, True, 0.1), lambda w: w.record(math.nan, True, 0.1),
    lambda w: w.totals(-INF), lambda w: w.failure_rate(math.nan),
    lambda w: w.slow_rate(INF), lambda w: w.quantile(INF, 0.5),
    lambda w: w.quantile(1.0, 1.5), lambda w: w.quantile(1.0, -0.1),
    lambda w: w.quantile(1.0, math.nan), lambda w: w.totals(1e300),
])
def test_sliding_window_rejects_bad_calls_without_damage(impl, call):
    win = impl.SlidingWindow(10.0, 10)
    win.record(1.0, False, 0.1)
    with pytest.raises(ValueError):
        call(win)
    assert win.totals(1.0) == (1, 1, 0)
    assert win.totals(11.0) == (0, 0, 0)


def test_sliding_window_properties_are_read_only(impl):
    win = impl.SlidingWindow(10.0, 10)
    with pytest.raises(AttributeError):
        win.window = 5.0
    with pytest.raises(AttributeError):
        win.buckets = 5


class WindowModel:
    """Reference: every sample kept with its bucket number, window by filter."""

    def __init__(self, window, buckets):
        self.n = buckets
        self.per_second = buckets / window
        self.cur = None
        self.samples = []  # (bucket, ok, slow, latency)

    def bucket(self, now):
        k = math.floor(now * self.per_second)
        if self.cur is None or k > self.cur:
            self.cur = k
        return self.cur

    def record(self, now, ok, latency, slow):
        self.samples.append((self.bucket(now), ok, slow, latency))

    def live(self, now):
        k = self.bucket(now)
        return [s for s in self.samples if k - self.n < s[0] <= k]

    def totals(self, now):
        live = self.live(now)
        return (len(live), sum(not s[1] for s in live), sum(bool(s[2]) for s in live))

    def quantile(self, now, q):
        lats = sorted(s[3] for s in self.live(now))
        if not lats:
            return 0.0
        rank = max(1, math.ceil(q * len(lats) - 1e-9))
        return BOUNDS[bin_of(lats[rank - 1])]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    window=st.sampled_from([1.0, 2.5, 10.0, 30.0]),
    buckets=st.integers(1, 12),
    start=st.floats(0.0, 1e5),
    steps=st.lists(st.tuples(
        st.one_of(st.floats(0.0, 1.0), st.floats(0.0, 40.0), st.just(0.0), st.floats(-2.0, 0.0)),
        st.booleans(), st.booleans(), st.floats(0.0, 200.0), st.sampled_from([0.0, 0.5, 0.95, 1.0]),
    ), max_size=60),
)
def test_sliding_window_against_reference(impl, window, buckets, start, steps):
    win = impl.SlidingWindow(window, buckets)
    model = WindowModel(window, buckets)
    now = start
    for dt, ok, slow, latency, q in steps:
        now += dt
        win.record(now, ok, latency, slow)
        model.record(now, ok, latency, slow)
        probe = now + dt / 2
        assert win.totals(probe) == model.totals(probe)
        assert win.quantile(probe, q) == model.quantile(probe, q)


# --------------------------------------------------------------------------
# InFlight


INFLIGHT_CASES = {
    "limit caps acquisitions": (2, [
        ("acquire", True), ("acquire", True), ("acquire", False), ("count", 2),
        ("release", None), ("count", 1), ("acquire", True), ("acquire", False),
    ]),
    "release never goes below zero": (3, [
        ("release", None), ("count", 0), ("acquire", True),
        ("release", None), ("release", None), ("release", None), ("count", 0),
        ("acquire", True), ("acquire", True), ("acquire", True), ("acquire", False),
    ]),
    "zero is unlimited": (0, [
        *[("acquire", True)] * 1000, ("count", 1000),
    ]),
    "lowering the limit keeps what was acquired": (5, [
        *[("acquire", True)] * 4, ("set_limit", 2), ("count", 4), ("limit", 2),
        ("acquire", False), ("release", None), ("release", None), ("acquire", False),
        ("release", None), ("acquire", True), ("acquire", False),
    ]),
    "raising the limit, then unlimited": (1, [
        ("acquire", True), ("acquire", False), ("set_limit", 2), ("acquire", True),
        ("acquire", False), ("set_limit", 0), ("limit", 0), ("acquire", True), ("count", 3),
    ]),
}


@pytest.mark.parametrize("case", list(INFLIGHT_CASES), ids=list(INFLIGHT_CASES))
def test_in_flight(impl, case):
    limit, script = INFLIGHT_CASES[case]
    inflight = impl.InFlight(limit)
    assert (inflight.count, inflight.limit) == (0, limit)
    for i, (op, expected) in enumerate(script):
        if op == "acquire":
            assert inflight.try_acquire() is expected, f"step {i}"
        elif op == "release":
            assert inflight.release() is None
        elif op == "set_limit":
            assert inflight.set_limit(expected) is None
        elif op == "count":
            assert inflight.count == expected, f"step {i}"
        elif op == "limit":
            assert inflight.limit == expected, f"step {i}"


def test_in_flight_validation_and_read_only(impl):
    for bad in (-1, 1.5, 2.0):
        with pytest.raises(ValueError):
            impl.InFlight(bad)
    inflight = impl.InFlight(3)
    with pytest.raises(ValueError):
        inflight.set_limit(-2)
    assert inflight.limit == 3
    with pytest.raises(AttributeError):
        inflight.limit = 4
    with pytest.raises(AttributeError):
        inflight.count = 4


# --------------------------------------------------------------------------
# CodeCounts and Histogram (the metrics' per-request state)


def test_code_counts(impl):
    counts = impl.CodeCounts()
    assert counts.items() == []
    for code in (200, 503, 200, 0, 999, 200, True):
        counts.add(code)
    assert counts.items() == [(0, 1), (1, 1), (200, 3), (503, 1), (999, 1)]


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (1000, ValueError), (1 << 70, OverflowError),
                                        (200.0, TypeError), ("200", TypeError), (None, TypeError)])
def test_code_counts_refuse_what_is_not_a_code_without_damage(impl, bad, error):
    counts = impl.CodeCounts()
    counts.add(404)
    with pytest.raises((error, ValueError) if error is OverflowError else error):
        counts.add(bad)
    assert counts.items() == [(404, 1)]


def test_histogram_buckets_are_inclusive_upper_bounds(impl):
    hist = impl.Histogram((0.5, 1, 2.5))
    assert hist.bounds == (0.5, 1.0, 2.5)
    assert hist.counts() == [0, 0, 0, 0] and hist.sum == 0.0
    for value in (-3.0, 0.0, 0.5, 0.5000001, 1.0, 2.5, 2.6, 1e300, INF):
        hist.observe(value)
    #              <=0.5       <=1          <=2.5  +Inf
    assert hist.counts() == [3, 2, 1, 3]
    assert hist.sum == INF
    got = hist.counts()
    got[0] = 99  # a copy, not the state
    assert hist.counts()[0] == 3


def test_histogram_sum_and_nan(impl):
    hist = impl.Histogram(metrics_buckets())
    for value in (0.0004, 0.003, 0.2, 70.0):
        hist.observe(value)
    assert hist.sum == 0.0004 + 0.003 + 0.2 + 70.0
    with pytest.raises(ValueError):
        hist.observe(math.nan)
    assert sum(hist.counts()) == 4 and hist.sum == 0.0004 + 0.003 + 0.2 + 70.0


@pytest.mark.parametrize("bounds", [(1.0, 1.0), (2.0, 1.0), (0.1, INF), (math.nan,), (-INF, 0.0), ("x",)])
def test_histogram_rejects_bad_bounds(impl, bounds):
    with pytest.raises(ValueError):
        impl.Histogram(bounds)


def test_histogram_without_bounds_counts_everything_in_overflow(impl):
    hist = impl.Histogram(())
    hist.observe(1.0)
    assert hist.bounds == () and hist.counts() == [1]


def metrics_buckets():
    from proxy.metrics import REQUEST_DURATION_BUCKETS

    return REQUEST_DURATION_BUCKETS


@pytest.mark.skipif(NATIVE is None, reason="native extension proxy._accounting not built")
@settings(max_examples=200, deadline=None)
@given(
    bounds=st.lists(st.floats(-1e6, 1e6, allow_nan=False), max_size=20, unique=True).map(sorted),
    values=st.lists(st.one_of(st.floats(-2e6, 2e6), st.sampled_from([0.0, 1.0, -0.0])), max_size=60),
    codes=st.lists(st.integers(-5, 1005), max_size=60),
)
def test_code_counts_and_histogram_pure_and_native_agree(bounds, values, codes):
    hists = [m.Histogram(bounds) for m in (PURE, NATIVE)]
    counts = [m.CodeCounts() for m in (PURE, NATIVE)]
    for value in values:
        assert len({_outcome(h.observe, value) for h in hists}) == 1
    for code in codes:
        assert len({_outcome(c.add, code) for c in counts}) == 1
    assert hists[0].counts() == hists[1].counts()
    assert hists[0].sum == hists[1].sum
    assert counts[0].items() == counts[1].items()


# --------------------------------------------------------------------------
# Pure and native agree exactly


def _outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except ValueError as exc:
        return ("error", type(exc).__name__)


time_steps = st.one_of(
    st.floats(0.0, 0.5),
    st.floats(0.0, 3.0),
    st.just(0.0),
    st.floats(-0.05, 0.0),
    st.floats(-3.0, 0.0),
    st.floats(20.0, 100.0),
    st.sampled_from([0.25, 0.5, 1.0]),
)

operations = st.one_of(
    st.tuples(st.just("take"), time_steps, st.floats(0.0, 20.0)),
    st.tuples(st.just("wait_time"), time_steps, st.floats(0.0, 20.0)),
    st.tuples(st.just("tokens"), time_steps),
    st.tuples(st.just("record"), time_steps, st.booleans(), st.floats(-0.01, 300.0), st.booleans()),
    st.tuples(st.just("totals"), time_steps),
    st.tuples(st.just("failure_rate"), time_steps),
    st.tuples(st.just("slow_rate"), time_steps),
    st.tuples(st.just("quantile"), time_steps, st.floats(0.0, 1.0)),
    st.tuples(st.just("reset"), st.just(0.0)),
    st.tuples(st.just("acquire"), st.just(0.0)),
    st.tuples(st.just("release"), st.just(0.0)),
    st.tuples(st.just("set_limit"), st.just(0.0), st.integers(0, 5)),
)


@pytest.mark.skipif(NATIVE is None, reason="native extension proxy._accounting not built")
@settings(max_examples=300, deadline=None)
@given(
    rate=st.one_of(st.floats(0.0, 1000.0), st.sampled_from([0.0, 0.1, 0.5, 1.0, 3.0])),
    burst=st.one_of(st.floats(0.01, 20.0), st.sampled_from([1.0, 2.5, 10.0])),
    window=st.one_of(st.floats(0.1, 60.0), st.sampled_from([1.0, 10.0, 30.0])),
    buckets=st.integers(1, 40),
    limit=st.integers(0, 5),
    start=st.one_of(st.floats(0.0, 1e6), st.just(0.0)),
    ops=st.lists(operations, max_size=80),
)
def test_pure_and_native_agree(rate, burst, window, buckets, limit, start, ops):
    objs = {
        m.NAME: (m.TokenBucket(rate, burst, start), m.SlidingWindow(window, buckets), m.InFlight(limit))
        for m in (PURE, NATIVE)
    }
    now = start
    for op in ops:
        now += op[1]
        results = {}
        for name, (bucket, win, inflight) in objs.items():
            if op[0] == "take":
                r = (_outcome(bucket.take, now, op[2]), bucket.tokens(now))
            elif op[0] == "wait_time":
                r = _outcome(bucket.wait_time, now, op[2])
            elif op[0] == "tokens":
                r = _outcome(bucket.tokens, now)
            elif op[0] == "record":
                r = (_outcome(win.record, now, op[2], op[3], op[4]), win.totals(now))
            elif op[0] in ("totals", "failure_rate", "slow_rate"):
                r = _outcome(getattr(win, op[0]), now)
            elif op[0] == "quantile":
                r = _outcome(win.quantile, now, op[2])
            elif op[0] == "reset":
                r = win.reset()
            elif op[0] == "acquire":
                r = (inflight.try_acquire(), inflight.count)
            elif op[0] == "release":
                inflight.release()
                r = inflight.count
            elif op[0] == "set_limit":
                inflight.set_limit(op[2])
                r = (inflight.count, inflight.limit)
            results[name] = r
        assert results["pure"] == results["native"], (op, now)
