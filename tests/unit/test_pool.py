"""The sans-IO idle connection pool, driven with a fake clock (``now`` values)."""

from __future__ import annotations

import pytest

from proxy.pool import Pool

A, B, C = "server-a", "server-b", "server-c"


class Conn:
    """An opaque hashable connection with a readable name."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


def make(per=32, total=256, idle=60.0, max_requests=1000) -> Pool:
    return Pool(max_idle_per_server=per, max_idle_total=total, idle_timeout=idle,
                max_requests_per_connection=max_requests)


def run_script(pool: Pool, script):
    """Run (op, server, conn name, now, expected) steps; conns are created by name.

    ops: "give" (expected: names the caller must close), "take" (expected:
    name or None), "remove" (expected: bool), "expire" (expected: names),
    "count" (expected: idle_count(server), server None = whole cluster).
    """
    conns: dict[str, Conn] = {}

    def conn(name):
        return conns.setdefault(name, Conn(name))

    for i, (op, server, name, now, expected) in enumerate(script):
        if op == "give":
            got = [c.name for c in pool.give(server, conn(name), 1, now)]
        elif op == "take":
            c = pool.take(server)
            got = c.name if c is not None else None
        elif op == "remove":
            got = pool.remove(server, conn(name))
        elif op == "expire":
            got = [c.name for c in pool.expire(now)]
        elif op == "count":
            got = pool.idle_count(server)
        else:  # pragma: no cover
            raise AssertionError(op)
        assert got == expected, f"step {i} {op} {server} {name}: got {got!r}, expected {expected!r}"


CASES = {
    "per_server_cap": (
        dict(per=2, total=10),
        [
            ("give", A, "a1", 0, []),
            ("give", A, "a2", 1, []),
            ("give", A, "a3", 2, ["a3"]),  # A is at its cap: the returning one is closed
            ("give", B, "b1", 3, []),  # other servers are unaffected
            ("count", A, None, 0, 2),
            ("count", B, None, 0, 1),
            ("count", None, None, 0, 3),
        ],
    ),
    "total_cap_evicts_oldest_idle_of_any_server": (
        dict(per=5, total=3),
        [
            ("give", A, "a1", 1, []),
            ("give", B, "b1", 2, []),
            ("give", A, "a2", 3, []),
            ("give", C, "c1", 4, ["a1"]),  # oldest anywhere, not a C connection
            ("give", B, "b2", 5, ["b1"]),
            ("count", A, None, 0, 1),
            ("count", B, None, 0, 1),
            ("count", C, None, 0, 1),
            ("count", None, None, 0, 3),
            ("take", A, None, 0, "a2"),
            ("take", A, None, 0, None),  # a1 was evicted from its server's list too
        ],
    ),
    "per_server_cap_checked_before_total_eviction": (
        dict(per=1, total=2),
        [
            ("give", A, "a1", 1, []),
            ("give", B, "b1", 2, []),
            ("give", A, "a2", 3, ["a2"]),  # refused by A's cap; nothing evicted
            ("take", A, None, 0, "a1"),
            ("take", B, None, 0, "b1"),
        ],
    ),
    "total_cap_zero_keeps_nothing": (
        dict(per=5, total=0),
        [
            ("give", A, "a1", 1, ["a1"]),
            ("count", None, None, 0, 0),
            ("take", A, None, 0, None),
        ],
    ),
    "per_server_cap_zero_keeps_nothing": (
        dict(per=0, total=10),
        [
            ("give", A, "a1", 1, ["a1"]),
            ("take", A, None, 0, None),
        ],
    ),
    "take_is_lifo": (
        dict(),
        [
            ("give", A, "a1", 1, []),
            ("give", A, "a2", 2, []),
            ("give", A, "a3", 3, []),
            ("take", A, None, 4, "a3"),
            ("give", A, "a3", 5, []),  # back on top
            ("take", A, None, 6, "a3"),
            ("take", A, None, 6, "a2"),
            ("take", A, None, 6, "a1"),
            ("take", A, None, 6, None),
            ("take", B, None, 6, None),  # never-seen server
        ],
    ),
    "expire_with_fake_clock": (
        dict(idle=10.0),
        [
            ("give", A, "a1", 0.0, []),
            ("give", B, "b1", 5.0, []),
            ("give", A, "a2", 8.0, []),
            ("expire", None, None, 9.99, []),
            ("expire", None, None, 10.01, ["a1"]),
            ("count", A, None, 0, 1),
            ("expire", None, None, 14.0, []),
            ("expire", None, None, 100.0, ["b1", "a2"]),
            ("count", None, None, 0, 0),
            ("take", A, None, 0, None),
        ],
    ),
    "expire_counts_idle_time_from_the_last_give": (
        dict(idle=10.0),
        [
            ("give", A, "a1", 0.0, []),
            ("give", A, "a2", 1.0, []),
            ("take", A, None, 2.0, "a2"),  # in use again
            ("give", A, "a2", 9.0, []),  # idle since 9
            ("expire", None, None, 12.0, ["a1"]),
            ("expire", None, None, 18.5, []),
            ("expire", None, None, 19.5, ["a2"]),
        ],
    ),
    "total_cap_eviction_order_follows_last_give": (
        dict(per=5, total=2),
        [
            ("give", A, "a1", 1, []),
            ("give", B, "b1", 2, []),
            ("take", A, None, 3, "a1"),
            ("give", A, "a1", 4, []),  # a1 is now the most recently idle
            ("give", C, "c1", 5, ["b1"]),
        ],
    ),
    "remove": (
        dict(per=5, total=2),
        [
            ("give", A, "a1", 1, []),
            ("give", A, "a2", 2, []),
            ("remove", A, "a1", 3, True),
            ("remove", A, "a1", 3, False),  # not idle any more
            ("remove", B, "b9", 3, False),  # never seen
            ("count", None, None, 0, 1),
            ("give", B, "b1", 4, []),  # room freed: no eviction
            ("take", A, None, 5, "a2"),
            ("take", A, None, 5, None),
            ("remove", A, "a2", 5, False),  # taken, so not idle
            ("expire", None, None, 1000, ["b1"]),  # removed ones are not expired again
        ],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_pool_script(name):
    kwargs, script = CASES[name]
    run_script(make(**kwargs), script)


@pytest.mark.parametrize(
    "max_requests, served, kept",
    [
        (3, 1, True),
        (3, 2, True),
        (3, 3, False),  # served its quota: closed
        (3, 4, False),
        (1, 1, False),
    ],
)
def test_max_requests_per_connection(max_requests, served, kept):
    pool = make(max_requests=max_requests)
    c = Conn("c")
    closed = pool.give(A, c, served, 0.0)
    assert closed == ([] if kept else [c])
    assert pool.idle_count(A) == (1 if kept else 0)
    assert (pool.take(A) is c) == kept


def test_drain_returns_everything_and_empties():
    pool = make()
    conns = [Conn(f"c{i}") for i in range(4)]
    for i, c in enumerate(conns):
        pool.give((A, B)[i % 2], c, 1, float(i))
    assert set(pool.drain()) == set(conns)
    assert pool.idle_count() == 0
    assert pool.take(A) is None and pool.take(B) is None
    assert pool.expire(1e9) == []


def test_from_config():
    from proxy.config import PoolConfig

    pool = Pool.from_config(PoolConfig(max_idle_per_server=3, max_idle_total=7, idle_timeout=2.5,
                                       max_requests_per_connection=9))
    assert (pool.max_idle_per_server, pool.max_idle_total, pool.idle_timeout, pool.max_requests) == (3, 7, 2.5, 9)
