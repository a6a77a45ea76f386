"""Server choice: smooth weighted round robin and least-request (power of two choices)."""

from __future__ import annotations

import itertools

import pytest

from proxy.balancer import LeastRequest, RoundRobin, ServerState, make_balancer


class DownServer(ServerState):
    """A server whose breaker says no."""

    def available(self) -> bool:
        return False


def servers(weights, names="abcdefgh", down=()):
    out = []
    for name, w in zip(names, weights):
        cls = DownServer if name in down else ServerState
        s = cls("10.0.0.1", 8000 + ord(name), w)
        s.name = name  # readable sequences in assertions
        out.append(s)
    return out


def sequence(bal, n, exclude=()):
    picks = []
    for _ in range(n):
        s = bal.pick(exclude)
        picks.append(s.name if s is not None else None)
    return "".join(p or "-" for p in picks)


# ----------------------------------------------------------------------
# round robin
@pytest.mark.parametrize(
    "weights, n, expected",
    [
        ((5, 1, 1), 14, "aabacaa" * 2),  # the nginx example, spread out
        ((1, 1, 1), 9, "abc" * 3),  # equal weights rotate
        ((1, 1), 4, "abab"),
        ((2, 1), 6, "aba" * 2),
        ((1, 2), 6, "bab" * 2),
        ((3, 3), 4, "abab"),  # equal but not 1 still rotate
        ((7,), 3, "aaa"),
    ],
)
def test_smooth_weighted_round_robin(weights, n, expected):
    assert sequence(RoundRobin(servers(weights)), n) == expected


def test_round_robin_weights_give_proportional_share():
    bal = RoundRobin(servers((5, 1, 1)))
    seq = sequence(bal, 700)
    assert (seq.count("a"), seq.count("b"), seq.count("c")) == (500, 100, 100)
    assert "aaaaa" not in seq  # smooth: a weight of 5 out of 7 never comes as one burst


@pytest.mark.parametrize(
    "weights, exclude, n, expected",
    [
        ((1, 1, 1), "b", 6, "acacac"),
        ((1, 1, 1), "ab", 3, "ccc"),
        ((1, 1, 1), "abc", 2, "--"),
        ((5, 1, 1), "a", 4, "bcbc"),
    ],
)
def test_round_robin_exclude_set_skipped(weights, exclude, n, expected):
    srv = servers(weights)
    ex = {s for s in srv if s.name in exclude}
    assert sequence(RoundRobin(srv), n, ex) == expected


def test_round_robin_retry_exclusion_does_not_disturb_rotation():
    srv = servers((1, 1, 1))
    bal = RoundRobin(srv)
    first = bal.pick()
    assert first.name == "a"
    retry = bal.pick({first})  # the request's retry skips the server it tried
    assert retry is not None and retry.name != "a"
    # over many rounds every server still gets its share
    seq = sequence(bal, 300)
    assert sorted(set(seq)) == ["a", "b", "c"]
    assert max(seq.count(x) for x in "abc") - min(seq.count(x) for x in "abc") <= 2


def test_round_robin_skips_unavailable():
    bal = RoundRobin(servers((1, 1, 1), down="b"))
    assert sequence(bal, 4) == "acac"
    assert RoundRobin(servers((1, 1), down="ab")).pick() is None


# ----------------------------------------------------------------------
# least request
def rng_of(*values):
    return itertools.cycle(values).__next__


@pytest.mark.parametrize(
    "weights, active, rng, expected",
    [
        # two servers: whichever is drawn first, the one with fewer in flight wins
        ((1, 1), (5, 1), (0.0,), "b"),
        ((1, 1), (5, 1), (0.99,), "b"),
        ((1, 1), (1, 5), (0.0,), "a"),
        ((1, 1), (1, 5), (0.99,), "a"),
        # ties go to the first draw
        ((1, 1), (2, 2), (0.0,), "a"),
        ((1, 1), (2, 2), (0.99,), "b"),
        # in-flight per unit of weight: a has 3/3, b has 2/1
        ((3, 1), (3, 2), (0.0,), "a"),
        ((3, 1), (3, 2), (0.99,), "a"),
        # three servers: only the two drawn compete (c would be the least loaded)
        ((1, 1, 1), (4, 2, 0), (0.0, 0.0), "b"),  # draws a, then b
        ((1, 1, 1), (4, 2, 0), (0.0, 0.99), "c"),  # draws a, then c
        ((1, 1, 1), (4, 2, 0), (0.5, 0.0), "b"),  # draws b, then a
    ],
)
def test_least_request_prefers_fewer_active(weights, active, rng, expected):
    srv = servers(weights)
    for s, n in zip(srv, active):
        s.active = n
    assert LeastRequest(srv, rng=rng_of(*rng)).pick().name == expected


def test_least_request_draw_is_weighted():
    srv = servers((3, 1))
    bal = LeastRequest(srv, rng=rng_of(0.7, 0.0))  # 0.7 * 4 = 2.8 falls in a's share of 3
    assert bal._draw(srv, 4).name == "a"
    assert bal._draw(srv, 4).name == "a"
    bal = LeastRequest(srv, rng=rng_of(0.8))  # 3.2 falls in b's share
    assert bal._draw(srv, 4).name == "b"


def test_least_request_exclude_and_unavailable():
    srv = servers((1, 1, 1), down="c")
    srv[1].active = 0
    srv[0].active = 9
    bal = LeastRequest(srv, rng=rng_of(0.0))
    assert bal.pick().name == "b"  # c is down; a and b compete
    assert bal.pick({srv[1]}).name == "a"  # the only candidate left, no draw needed
    assert bal.pick({srv[0], srv[1]}) is None


def test_least_request_spreads_over_a_long_run():
    import random

    srv = servers((1, 1, 1))
    bal = LeastRequest(srv, rng=random.Random(7).random)
    counts = {"a": 0, "b": 0, "c": 0}
    for _ in range(300):
        s = bal.pick()
        s.active += 1  # picks stay in flight: load must spread evenly
        counts[s.name] += 1
    assert max(counts.values()) - min(counts.values()) <= 3, counts


def test_make_balancer():
    srv = servers((1, 1))
    assert isinstance(make_balancer("least_request", srv), LeastRequest)
    assert isinstance(make_balancer("round_robin", srv), RoundRobin)


def test_server_state_name():
    assert ServerState("10.0.0.1", 80).name == "10.0.0.1:80"
    assert ServerState("::1", 80).name == "[::1]:80"


def test_open_breaker_gets_no_trial_while_its_health_check_fails():
    from proxy.breaker import Breaker, BreakerPolicy, Outcome, State

    now = [0.0]
    b = Breaker(BreakerPolicy(consecutive_failures=1, open_duration=1.0, jitter=0.0), 0.0, lambda: 0.5)
    s = ServerState("10.0.0.1", 80, breaker=b, clock=lambda: now[0])
    s.check_failing = True
    assert s.available()  # closed: a failed check alone does not stop traffic (the fall does)
    b.record(0.0, Outcome.CONNECT_FAILED, 0.0)
    assert b.state is State.OPEN
    now[0] = 5.0  # the open period is over: a trial would be due
    assert b.peek(5.0) and not s.available()
    s.check_failing = False  # a check passed: the trial may go
    assert s.available()
