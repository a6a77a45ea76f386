"""Active health-check state: thresholds, scheduling with backoff and jitter,
judging responses and the check request, with a fake clock and rng."""

from __future__ import annotations

import random

import pytest

from proxy import health as health_mod
from proxy.config import HealthConfig
from proxy.health import MAX_CHECK_BODY, Health, HealthPolicy, HealthState


def make(now=0.0, u=0.5, **kw):
    kw.setdefault("jitter", 0.0)
    return HealthState(HealthPolicy(**kw), now, lambda: u)


def run(hs: HealthState, results, t0=0.0):
    """Feed check results one after another, each at the time the previous one scheduled.

    Returns [(transition or None, healthy, wait until the next check)].
    """
    out = []
    t = t0
    for ok in results:
        assert hs.due(t)
        hs.begin(t)
        assert not hs.due(t) and not hs.due(t + 1e9)  # never two checks at once
        change = hs.record(t, ok)
        out.append((change, hs.healthy, hs.next_at - t))
        t = hs.next_at
    return out


def test_starts_healthy_with_a_check_due_at_once():
    hs = make(now=42.0)
    assert hs.healthy and hs.state is Health.HEALTHY
    assert hs.next_at == 42.0 and hs.due(42.0) and not hs.due(41.9)


T, F = True, False
FALL = (True, False)
RISE = (False, True)

SCRIPTS = [
    # (id, policy kwargs, results, expected [(transition, healthy, wait)])
    ("fall after 3 failures", {}, [F, F, F], [(None, T, 5.0), (None, T, 5.0), (FALL, F, 2.0)]),
    ("a pass resets the fall", {}, [F, F, T, F, F], [(None, T, 5.0)] * 5),
    ("rise after 2 passes, backoff while down", {},
     [F, F, F, F, F, F, T, T],
     [(None, T, 5.0), (None, T, 5.0), (FALL, F, 2.0), (None, F, 4.0), (None, F, 8.0), (None, F, 16.0),
      (None, F, 2.0), (RISE, T, 5.0)]),
    ("backoff is capped", {},
     [F] * 3 + [F] * 6,
     [(None, T, 5.0)] * 2 + [(FALL, F, 2.0), (None, F, 4.0), (None, F, 8.0), (None, F, 16.0), (None, F, 30.0),
                             (None, F, 30.0), (None, F, 30.0)]),
    ("a failure while rising restarts the rise", {},
     [F, F, F, T, F, T, T],
     [(None, T, 5.0), (None, T, 5.0), (FALL, F, 2.0), (None, F, 2.0), (None, F, 4.0), (None, F, 2.0),
      (RISE, T, 5.0)]),
    ("thresholds of 1", {"healthy_threshold": 1, "unhealthy_threshold": 1},
     [F, T, F, F, T], [(FALL, F, 2.0), (RISE, T, 5.0), (FALL, F, 2.0), (None, F, 4.0), (RISE, T, 5.0)]),
    ("custom intervals", {"interval": 10.0, "unhealthy_interval": 1.0, "max_unhealthy_interval": 3.0,
                          "unhealthy_threshold": 1},
     [T, F, F, F, F], [(None, T, 10.0), (FALL, F, 1.0), (None, F, 2.0), (None, F, 3.0), (None, F, 3.0)]),
    ("passes keep a healthy server healthy", {}, [T] * 4, [(None, T, 5.0)] * 4),
]


@pytest.mark.parametrize(("kw", "results", "expected"), [c[1:] for c in SCRIPTS], ids=[c[0] for c in SCRIPTS])
def test_thresholds_and_intervals(kw, results, expected):
    hs = make(**kw)
    assert run(hs, results) == expected


def test_transitions_are_counted_once():
    hs = make()
    run(hs, [F] * 10 + [T] * 5 + [F] * 3)
    assert hs.transitions == {(Health.HEALTHY, Health.UNHEALTHY): 2, (Health.UNHEALTHY, Health.HEALTHY): 1}
    assert not hs.healthy


@pytest.mark.parametrize(("u", "factor"), [(0.0, 0.9), (0.5, 1.0), (0.25, 0.95), (0.75, 1.05)])
def test_jitter_scales_the_wait(u, factor):
    hs = make(u=u, jitter=0.1)
    hs.begin(0.0)
    hs.record(0.0, True)
    assert hs.next_at == pytest.approx(5.0 * factor)


def test_jitter_bounds_healthy_and_backing_off():
    rng = random.Random(3)
    hs = HealthState(HealthPolicy(jitter=0.1), 0.0, rng.random)
    t, ratios = 0.0, []
    for i in range(300):
        ok = (i // 40) % 2 == 1  # long runs of failures and passes
        hs.begin(t)
        hs.record(t, ok)
        base = hs.wait()
        ratio = (hs.next_at - t) / base
        assert 0.9 - 1e-12 <= ratio <= 1.1 + 1e-12
        ratios.append(ratio)
        t = hs.next_at
    assert min(ratios) < 0.92 and max(ratios) > 1.08


def test_schedule_and_due():
    hs = make()
    hs.schedule(10.0)
    assert hs.next_at == 15.0 and not hs.due(14.99) and hs.due(15.0)
    deadline = hs.begin(15.0)
    assert deadline == 17.0 and hs.in_flight and not hs.due(100.0)
    hs.record(17.0, False)
    # paced from the check's start (15 + interval 5), not from its end
    assert not hs.in_flight and hs.next_at == 20.0


def test_check_longer_than_interval_is_followed_at_once():
    hs = make(interval=1.0, timeout=3.0)
    hs.begin(10.0)
    hs.record(13.0, False)  # ran into its timeout, past started + interval
    assert hs.next_at == 13.0 and hs.due(13.0)
    hs.begin(13.0)
    hs.record(13.2, True)  # a quick check: the next waits out the interval from its start
    assert hs.next_at == 14.0


JUDGE = [
    # (id, policy kwargs, status, body, ok)
    ("200 default", {}, 200, b"", True),
    ("204 not expected by default", {}, 204, b"", False),
    ("503", {}, 503, b"ok", False),
    ("other expected statuses", {"expected_statuses": {200, 204}}, 204, b"", True),
    ("substring present", {"body_contains": "ok"}, 200, b'{"status":"ok"}', True),
    ("substring absent", {"body_contains": "ok"}, 200, b'{"status":"down"}', False),
    ("substring but wrong status", {"body_contains": "ok"}, 500, b"ok", False),
    ("substring as bytes", {"body_contains": b"UP"}, 200, b"status: UP", True),
    ("substring is case sensitive", {"body_contains": "UP"}, 200, b"status: up", False),
    ("utf-8 substring", {"body_contains": "\u00e9t\u00e9"}, 200, "\u00e9t\u00e9".encode(), True),
]


@pytest.mark.parametrize(("kw", "status", "body", "ok"), [c[1:] for c in JUDGE], ids=[c[0] for c in JUDGE])
def test_judge(kw, status, body, ok):
    assert make(**kw).judge(status, body) is ok


@pytest.mark.parametrize(
    ("kw", "host", "expected"),
    [
        ({}, "10.0.0.1:8080",
         b"GET /healthz HTTP/1.1\r\nHost: 10.0.0.1:8080\r\nUser-Agent: edgeproxy-health\r\nConnection: close\r\n\r\n"),
        ({"method": "HEAD", "path": "/status?full=1"}, "[::1]:80",
         b"HEAD /status?full=1 HTTP/1.1\r\nHost: [::1]:80\r\nUser-Agent: edgeproxy-health\r\nConnection: close\r\n\r\n"),
        ({"host": "svc.internal"}, "10.0.0.1:8080",
         b"GET /healthz HTTP/1.1\r\nHost: svc.internal\r\nUser-Agent: edgeproxy-health\r\nConnection: close\r\n\r\n"),
    ],
)
def test_request_bytes(kw, host, expected):
    assert make(**kw).request_bytes(host) == expected


def test_request_bytes_refuses_header_injection():
    with pytest.raises(ValueError):
        make().request_bytes("a\r\nX: y")


def test_policy_from_config():
    assert HealthPolicy.from_config(HealthConfig()) == HealthPolicy()
    p = HealthPolicy()
    assert (p.enabled, p.method, p.path, p.expected_statuses, p.body_contains, p.interval, p.timeout,
            p.healthy_threshold, p.unhealthy_threshold, p.unhealthy_interval, p.max_unhealthy_interval, p.jitter,
            p.host) == (False, "GET", "/healthz", frozenset({200}), b"", 5.0, 2.0, 2, 3, 2.0, 30.0, 0.1, "")
    p = HealthPolicy.from_config(HealthConfig(enabled=True, expected_statuses=(200, 204), body_contains="ok"))
    assert p.enabled and p.expected_statuses == {200, 204} and p.body_contains == b"ok"
    assert MAX_CHECK_BODY == 65536


@pytest.mark.parametrize(
    "kw",
    [{"method": "G T"}, {"path": "healthz"}, {"expected_statuses": set()}, {"interval": 0.0},
     {"unhealthy_interval": 5.0, "max_unhealthy_interval": 2.0}, {"healthy_threshold": 0}, {"jitter": 2.0},
     {"host": "a b"}],
)
def test_policy_refuses_nonsense(kw):
    with pytest.raises(ValueError):
        HealthPolicy(**kw)


def test_transition_table_is_guarded():
    hs = make()
    with pytest.raises(RuntimeError):
        hs._transition(Health.HEALTHY, 0.0)
    assert set(health_mod._TRANSITIONS) == {(Health.HEALTHY, Health.UNHEALTHY), (Health.UNHEALTHY, Health.HEALTHY)}
