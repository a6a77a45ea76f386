"""The circuit breaker, driven with a fake clock and a scripted rng, over
every sliding-window implementation that imports (pure, and native when built)."""

from __future__ import annotations

import random

import pytest

from proxy import accounting, breaker as breaker_mod
from proxy.breaker import (
    REASON_CONSECUTIVE,
    REASON_FAILURE_RATE,
    REASON_OPEN_ELAPSED,
    REASON_SLOW_CALLS,
    REASON_TRIAL_FAILED,
    REASON_TRIALS_PASSED,
    Breaker,
    BreakerPolicy,
    NullBreaker,
    Outcome,
    State,
    make_breaker,
)
from proxy.config import BreakerConfig

try:
    from proxy import _accounting as _native
except ImportError:
    _native = None

WINDOWS = [accounting.PureSlidingWindow] + ([_native.SlidingWindow] if _native is not None else [])

C, H, O = State.CLOSED, State.HALF_OPEN, State.OPEN
OK, FAIL = Outcome.SUCCESS, Outcome.HTTP_FAILURE


@pytest.fixture(autouse=True, params=WINDOWS, ids=["pure", "native"][: len(WINDOWS)])
def window_impl(request, monkeypatch):
    monkeypatch.setattr(breaker_mod, "SlidingWindow", request.param)
    return request.param


def make(now=0.0, rng=lambda: 0.5, **kw):
    """A breaker with no jitter unless asked, and a transition log."""
    log = []
    kw.setdefault("jitter", 0.0)
    b = Breaker(BreakerPolicy(**kw), now, rng, lambda f, t, n, r: log.append((f, t, n, r)))
    return b, log


def run(b: Breaker, script):
    """Steps: ("allow", t, expected) | ("rec", t, outcome, latency, expected state)
    | ("cancel", t) | ("state", expected)."""
    for i, step in enumerate(script):
        op = step[0]
        if op == "allow":
            _, t, expected = step
            assert b.allow(t) is expected, f"step {i}: {step}"
        elif op == "rec":
            _, t, outcome, latency, expected = step
            b.record(t, outcome, latency)
            assert b.state is expected, f"step {i}: {step}: {b!r}"
        elif op == "cancel":
            b.cancel(step[1])
        elif op == "state":
            assert b.state is step[1], f"step {i}: {step}"
        else:  # pragma: no cover
            raise AssertionError(op)


def fails(n, t=0.0, outcome=FAIL, latency=0.01, last=C):
    """n failures at time t, the state staying CLOSED until the last, which leaves ``last``."""
    return [("rec", t, outcome, latency, C) for _ in range(n - 1)] + [("rec", t, outcome, latency, last)]


def oks(n, t=0.0, latency=0.01):
    return [("rec", t, OK, latency, C) for _ in range(n)]


# --------------------------------------------------------------------------- closed -> open

TRIPS = [
    # (id, policy kwargs, script, reason of the trip or None)
    ("5 consecutive failures trip", {}, fails(5, last=O), REASON_CONSECUTIVE),
    ("4 consecutive failures do not", {}, fails(4), None),
    ("a success resets the run", {}, fails(4) + oks(1) + fails(4), None),
    ("every failure kind counts", {},
     [("rec", 0, k, 0.01, C) for k in (Outcome.CONNECT_FAILED, Outcome.CONNECT_TIMEOUT, Outcome.RESPONSE_TIMEOUT,
                                       Outcome.RESET)] + [("rec", 0, FAIL, 0.01, O)], REASON_CONSECUTIVE),
    ("consecutive off", {"consecutive_failures": 0}, fails(19), None),
    ("rate at min_requests trips", {"consecutive_failures": 0},
     oks(10) + fails(9) + [("rec", 1, FAIL, 0.01, O)], REASON_FAILURE_RATE),
    ("rate below threshold", {"consecutive_failures": 0}, oks(11) + fails(9), None),
    ("rate reached by a success at min_requests", {"consecutive_failures": 0, "min_requests": 4},
     fails(3) + [("rec", 0, OK, 0.01, O)], REASON_FAILURE_RATE),
    ("fewer than min_requests never trip by rate", {"consecutive_failures": 0}, fails(19), None),
    ("min_requests 1 trips on one failure", {"consecutive_failures": 0, "min_requests": 1}, fails(1, last=O),
     REASON_FAILURE_RATE),
    ("rate 0.3 trips at exactly 3 of 10", {"consecutive_failures": 0, "min_requests": 10, "failure_rate": 0.3},
     oks(7) + fails(3, last=O), REASON_FAILURE_RATE),
    ("rate 1.0 needs every request failed", {"consecutive_failures": 0, "min_requests": 3, "failure_rate": 1.0},
     oks(1) + fails(5), None),
    ("old failures expire from the window", {"consecutive_failures": 0, "min_requests": 4},
     fails(3, t=0.0) + [("rec", 30.5, OK, 0.01, C)] + fails(2, t=30.5), None),
    ("failures inside the window still count", {"consecutive_failures": 0, "min_requests": 4},
     fails(3, t=0.0) + [("rec", 29.5, OK, 0.01, O)], REASON_FAILURE_RATE),
    ("slow calls trip", {"slow_call_threshold": 0.5, "min_requests": 4}, oks(3, latency=1.0) + [("rec", 0, OK, 1.0, O)],
     REASON_SLOW_CALLS),
    ("slow calls need min_requests", {"slow_call_threshold": 0.5, "min_requests": 4}, oks(3, latency=1.0), None),
    ("fast calls do not trip", {"slow_call_threshold": 0.5, "min_requests": 4}, oks(10, latency=0.4), None),
    ("slow rate below slow_call_rate", {"slow_call_threshold": 0.5, "min_requests": 4},
     oks(1, latency=1.0) + oks(4, latency=0.1), None),
    ("slow rate reached with p95 above", {"slow_call_threshold": 0.5, "min_requests": 4, "slow_call_rate": 0.25},
     oks(3, latency=0.1) + [("rec", 0, OK, 2.0, O)], REASON_SLOW_CALLS),
    ("slow calls off by default", {"min_requests": 4}, oks(10, latency=100.0), None),
    ("slow failures trip by rate first", {"slow_call_threshold": 0.5, "min_requests": 2, "consecutive_failures": 0},
     fails(1, latency=1.0) + [("rec", 0, FAIL, 1.0, O)], REASON_FAILURE_RATE),
]


@pytest.mark.parametrize(("kw", "script", "reason"), [c[1:] for c in TRIPS], ids=[c[0] for c in TRIPS])
def test_closed_to_open(kw, script, reason):
    b, log = make(**kw)
    run(b, script)
    if reason is None:
        assert b.state is C and log == []
    else:
        assert b.state is O
        assert [(f, t, r) for f, t, _, r in log] == [(C, O, reason)]
        assert b.transitions == {(C, O): 1}


def test_slow_call_p95_must_exceed_threshold():
    # slow_call_rate met (slow is "latency > threshold") but the p95 bin bound is the judge too:
    # with 1 of 20 slow, p95 is the fast bin and the rate 0.05 is met: no trip.
    b, log = make(slow_call_threshold=0.5, slow_call_rate=0.05, min_requests=20, consecutive_failures=0)
    run(b, oks(19, latency=0.001) + [("rec", 0, OK, 5.0, C)])
    assert log == []
    b.record(0.0, OK, 5.0)  # 2 of 21 slow: p95 is now the slow bin
    assert b.state is O and log[0][3] == REASON_SLOW_CALLS


# --------------------------------------------------------------------------- open -> half-open -> ...


def test_open_until_then_half_open_admits_one_trial():
    b, log = make()
    run(b, fails(5, t=10.0, last=O))
    assert b.open_until == 11.0 and b.retry_after(10.25) == 0.75
    run(b, [("allow", 10.0, False), ("allow", 10.999, False), ("state", O)])
    run(b, [("allow", 11.0, True), ("state", H), ("allow", 11.0, False), ("allow", 50.0, False)])
    assert b.retry_after(11.0) == 0.0
    assert [r for *_, r in log] == [REASON_CONSECUTIVE, REASON_OPEN_ELAPSED]
    assert log[1] == (O, H, 11.0, REASON_OPEN_ELAPSED)


@pytest.mark.parametrize("slots", [1, 2, 5])
def test_half_open_admits_exactly_half_open_requests(slots):
    b, _ = make(half_open_requests=slots, half_open_successes=100)
    run(b, fails(5, last=O))
    assert [b.allow(1.0) for _ in range(slots + 3)] == [True] * slots + [False] * 3
    assert b.trials_in_flight == slots
    b.record(1.5, OK, 0.01)  # one trial back: one slot free
    assert b.allow(1.5) is True and b.allow(1.5) is False
    b.cancel(1.6)  # one admitted trial never went out
    assert b.state is H and b.trials_in_flight == slots - 1
    assert b.allow(1.6) is True and b.allow(1.6) is False


def test_successes_in_a_row_close_and_reset_the_step():
    b, log = make()
    run(b, fails(5, last=O))
    for i in range(3):  # three sequential trials
        assert b.allow(1.0 + i) is True
        b.record(1.0 + i, OK, 0.01)
        assert b.state is (C if i == 2 else H)
    assert b.backoff_step == 0
    assert [(f, t, r) for f, t, _, r in log] == [(C, O, REASON_CONSECUTIVE), (O, H, REASON_OPEN_ELAPSED),
                                                 (H, C, REASON_TRIALS_PASSED)]
    # the window starts afresh: the old failures are forgotten
    assert b.window_totals(3.0) == (0, 0, 0)
    run(b, fails(4, t=3.0))


def test_trial_failure_reopens_with_doubled_capped_waits():
    b, log = make(open_duration=1.0, max_open_duration=5.0)
    run(b, fails(5, t=0.0, last=O))
    waits, steps = [b.open_until - 0.0], [b.backoff_step]
    t = b.open_until
    for _ in range(5):
        assert b.allow(t) is True
        b.record(t, Outcome.RESET, 0.01)
        assert b.state is O
        waits.append(b.open_until - t)
        steps.append(b.backoff_step)
        t = b.open_until
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert steps == [0, 1, 2, 3, 3, 3]
    assert sum(1 for *_, r in log if r == REASON_TRIAL_FAILED) == 5


def test_one_success_then_failure_reopens():
    b, _ = make()
    run(b, fails(5, last=O) + [("allow", 1.0, True), ("rec", 1.0, OK, 0.01, H), ("allow", 1.0, True),
                                ("rec", 1.0, FAIL, 0.01, O)])
    assert b.open_until == 3.0  # step 1: 2s


def test_clean_close_resets_backoff_to_first_step():
    b, _ = make(half_open_successes=1)
    run(b, fails(5, last=O))
    t = 1.0
    for _ in range(3):  # reopen three times: step 3, 8s
        b.allow(t)
        b.record(t, FAIL, 0.01)
        t = b.open_until
    assert b.backoff_step == 3
    b.allow(t)
    b.record(t, OK, 0.01)
    assert b.state is C and b.backoff_step == 0
    run(b, fails(5, t=t, last=O))
    assert b.open_until == t + 1.0


@pytest.mark.parametrize(
    ("u", "expected"),
    [(0.0, 0.8), (0.5, 1.0), (0.999999, 1.2 - 0.4 * 0.000001), (0.25, 0.9)],
)
def test_jitter_is_a_fraction_either_way(u, expected):
    b, _ = make(jitter=0.2, rng=lambda: u)
    run(b, fails(5, t=100.0, last=O))
    assert b.open_until - 100.0 == pytest.approx(expected)


def test_jittered_waits_stay_within_bounds():
    rng = random.Random(7)
    b, _ = make(jitter=0.2, open_duration=1.0, max_open_duration=8.0, rng=rng.random,
                half_open_successes=1)
    t = 0.0
    run(b, fails(5, t=t, last=O))
    seen = []
    for cycle in range(200):
        step = b.backoff_step
        wait = b.open_until - t
        base = min(1.0 * 2**step, 8.0)
        assert base * 0.8 - 1e-9 <= wait <= base * 1.2 + 1e-9
        seen.append(wait / base)
        t = b.open_until
        assert b.allow(t)
        if cycle % 7 == 6:  # now and then a clean close and a fresh trip
            b.record(t, OK, 0.01)
            run(b, fails(5, t=t, last=O))
        else:
            b.record(t, FAIL, 0.01)
    assert min(seen) < 0.85 and max(seen) > 1.15  # the spread is really used


def test_on_transition_once_per_transition_not_per_request():
    b, log = make(half_open_requests=3)
    run(b, fails(5, last=O))
    for _ in range(10):
        b.allow(0.5)  # refused while open: no report
    assert b.allow(1.0) and b.allow(1.0) and b.allow(1.0) and not b.allow(1.0)
    b.record(1.1, OK, 0.01)
    b.record(1.1, FAIL, 0.01)  # reopen
    b.record(1.2, FAIL, 0.01)  # the third trial comes back while OPEN: ignored, no report
    assert [(f, t) for f, t, *_ in log] == [(C, O), (O, H), (H, O)]
    assert b.transitions == {(C, O): 1, (O, H): 1, (H, O): 1}
    assert b.state is O and b.open_until == pytest.approx(1.1 + 2.0)


def test_stale_results_are_ignored():
    b, log = make(half_open_successes=1)
    run(b, fails(5, last=O))
    b.record(0.5, OK, 0.01)  # admitted before the trip, finishing while OPEN
    assert b.state is O
    assert b.allow(1.0) and b.state is H
    b.record(1.0, FAIL, 0.01, trial_slot_released=False)  # admitted while CLOSED: not a trial
    assert b.state is H and b.trials_in_flight == 1
    b.cancel(1.0, trial_slot_released=False)
    assert b.trials_in_flight == 1
    b.record(1.0, OK, 0.01)  # the real trial
    assert b.state is C
    assert len(log) == 3


def test_record_without_a_trial_in_flight_is_ignored_in_half_open():
    b, log = make(half_open_requests=2)
    run(b, fails(5, last=O))
    assert b.allow(1.0) and b.allow(1.0)
    b.record(1.0, FAIL, 0.01)  # reopens at step 1 (until 3.0); the other trial is outstanding
    assert b.allow(3.0) and b.state is H
    b.cancel(3.0)
    b.record(3.1, FAIL, 0.01)  # the earlier period's trial comes back late: no slot taken
    assert b.state is H and b.trials_in_flight == 0


def test_cancel_judges_nothing():
    b, log = make()
    run(b, fails(5, last=O) + [("allow", 1.0, True), ("cancel", 1.0), ("state", H), ("allow", 1.0, True),
                                ("allow", 1.0, False)])
    b.cancel(1.0)
    b.cancel(1.0)  # never below zero
    assert b.trials_in_flight == 0
    b.cancel(1.0)
    assert b.state is H and len(log) == 2
    closed, _ = make()
    closed.cancel(0.0)
    assert closed.state is C and closed.window_totals(0.0) == (0, 0, 0)


def test_peek_has_no_side_effect():
    b, log = make()
    assert b.peek(0.0)
    run(b, fails(5, last=O))
    assert not b.peek(0.5)
    assert b.peek(1.0) and b.state is O and log[-1][3] == REASON_CONSECUTIVE
    assert b.allow(1.0) and not b.peek(1.0) and b.state is H


def test_retry_after():
    b, _ = make(open_duration=4.0, max_open_duration=10.0)
    assert b.retry_after(0.0) == 0.0
    run(b, fails(5, t=2.0, last=O))
    assert [b.retry_after(t) for t in (2.0, 5.0, 6.0, 9.0)] == [4.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("statuses", "status", "outcome"),
    [
        (None, 502, Outcome.HTTP_FAILURE), (None, 503, Outcome.HTTP_FAILURE), (None, 504, Outcome.HTTP_FAILURE),
        (None, 500, OK), (None, 200, OK), (None, 404, OK), (None, 429, OK),
        ({429, 500}, 429, Outcome.HTTP_FAILURE), ({429, 500}, 502, OK), (set(), 503, OK),
    ],
)
def test_outcome_for_status(statuses, status, outcome):
    kw = {} if statuses is None else {"failure_statuses": frozenset(statuses)}
    b, _ = make(**kw)
    assert b.outcome_for_status(status) is outcome
    assert NullBreaker(b.policy).outcome_for_status(status) is outcome


def test_transition_table_is_guarded():
    b, _ = make()
    with pytest.raises(RuntimeError, match="CLOSED -> HALF_OPEN"):
        b._transition(H, 0.0, "bogus")
    assert set(breaker_mod._TRANSITIONS) == {(C, O), (O, H), (H, C), (H, O)}


def test_null_breaker_and_factory():
    log = []
    nb = make_breaker(BreakerPolicy(enabled=False), 0.0, on_transition=lambda *a: log.append(a))
    assert isinstance(nb, NullBreaker)
    for i in range(100):
        assert nb.allow(float(i))
        nb.record(float(i), FAIL, 0.01)
    nb.cancel(1.0)
    assert nb.state is C and nb.retry_after(5.0) == 0.0 and nb.open_until == 0.0 and nb.backoff_step == 0
    assert nb.peek(0.0) and log == []
    assert isinstance(make_breaker(BreakerPolicy(), 0.0), Breaker)


def test_policy_from_config_defaults():
    p = BreakerPolicy.from_config(BreakerConfig())
    assert p == BreakerPolicy()
    assert (p.enabled, p.failure_statuses, p.window, p.window_buckets, p.failure_rate, p.min_requests,
            p.consecutive_failures, p.slow_call_threshold, p.slow_call_rate, p.open_duration, p.max_open_duration,
            p.jitter, p.half_open_requests, p.half_open_successes) == (
        True, frozenset({502, 503, 504}), 30.0, 30, 0.5, 20, 5, 0.0, 0.5, 1.0, 60.0, 0.2, 1, 3)
    p2 = BreakerPolicy.from_config(BreakerConfig(enabled=False, failure_statuses=(500,), open_duration=2.0))
    assert not p2.enabled and p2.failure_statuses == {500} and p2.open_duration == 2.0


@pytest.mark.parametrize(
    "kw",
    [{"failure_rate": 0.0}, {"failure_rate": 1.5}, {"min_requests": 0}, {"open_duration": 0.0},
     {"open_duration": 10.0, "max_open_duration": 5.0}, {"jitter": -0.1}, {"half_open_requests": 0},
     {"window": 0.0}, {"consecutive_failures": -1}, {"slow_call_rate": 0.0}],
)
def test_policy_refuses_nonsense(kw):
    with pytest.raises(ValueError):
        BreakerPolicy(**kw)
