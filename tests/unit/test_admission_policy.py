"""Admission decisions with a fake clock (no sockets)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from proxy.admission import Decision, Gate, ListenerAdmission


@dataclass
class Cfg:
    max_connections: int = 0
    max_connections_per_ip: int = 0
    accept_rate: float = 0.0
    accept_burst: int = 0
    on_limit: str = "pause"


def adm(gate_limit=0, **kw):
    return ListenerAdmission(Cfg(**kw), Gate(gate_limit), now=0.0)


@pytest.mark.parametrize("on_limit,expected", [("pause", Decision.PAUSED), ("reject", Decision.REJECTED),
                                                ("respond", Decision.RESPONDED)])
def test_listener_cap_and_on_limit(on_limit, expected):
    a = adm(max_connections=2, on_limit=on_limit)
    for ip in ("1.1.1.1", "2.2.2.2"):
        assert a.before_accept(0.0) is Decision.ACCEPTED
        assert a.admit(ip, 0.0) is Decision.ACCEPTED
    assert a.before_accept(0.0) is expected
    assert a.resume_in(0.0) is None  # only a freed slot resumes it
    a.release("1.1.1.1")
    assert a.before_accept(0.0) is Decision.ACCEPTED


def test_global_gate_is_shared_between_listeners():
    gate = Gate(2)
    a = ListenerAdmission(Cfg(), gate, 0.0)
    b = ListenerAdmission(Cfg(on_limit="reject"), gate, 0.0)
    assert a.admit("x", 0.0) is Decision.ACCEPTED and b.admit("y", 0.0) is Decision.ACCEPTED
    assert a.before_accept(0.0) is Decision.PAUSED and b.before_accept(0.0) is Decision.REJECTED
    b.release("y")
    assert a.before_accept(0.0) is Decision.ACCEPTED and gate.count == 1


def test_per_ip_cap():
    a = adm(max_connections_per_ip=2)
    assert [a.admit("9.9.9.9", 0.0) for _ in range(3)] == [Decision.ACCEPTED, Decision.ACCEPTED, Decision.PER_IP]
    assert a.admit("8.8.8.8", 0.0) is Decision.ACCEPTED  # other clients unaffected
    a.release("9.9.9.9")
    assert a.admit("9.9.9.9", 0.0) is Decision.ACCEPTED
    assert a.count == 4 - 1 + 0  # three admitted before, one released, one admitted


def test_token_bucket_rate_and_burst():
    a = adm(accept_rate=10.0, accept_burst=3, on_limit="respond")
    now = 0.0
    got = []
    for _ in range(5):
        d = a.before_accept(now)
        got.append(d)
        if d is Decision.ACCEPTED:
            a.admit("c", now)
    assert got == [Decision.ACCEPTED] * 3 + [Decision.RESPONDED] * 2
    assert a.resume_in(now) == pytest.approx(0.1)  # one token every 100 ms
    assert a.before_accept(0.1) is Decision.ACCEPTED
    a.admit("c", 0.1)
    assert a.before_accept(0.1) is Decision.RESPONDED


def test_before_accept_spends_nothing():
    a = adm(accept_rate=1.0, accept_burst=1)
    for _ in range(5):  # readiness events with nothing to accept cost no token
        assert a.before_accept(0.0) is Decision.ACCEPTED
    a.admit("c", 0.0)
    assert a.before_accept(0.0) is Decision.PAUSED
    assert a.resume_in(0.0) == pytest.approx(1.0)


def test_default_burst_is_one_second_of_rate():
    a = adm(accept_rate=4.0)
    for _ in range(4):
        assert a.before_accept(0.0) is Decision.ACCEPTED
        a.admit("c", 0.0)
    assert a.before_accept(0.0) is Decision.PAUSED
