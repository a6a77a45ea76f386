"""deadlines.DeadlineQueue: one timer for many deadlines that share a timeout.

(The handshakes of a TLS listener, the first request heads of new client
connections.) Entries are added one after another and share one timeout,
so they fall due in the order they were added. Each must be told at its
own deadline, never before it; one that left the queue is never told; the
timer re-arms for what is left. A real event loop, short timeouts, and events
to wait on (no sleeps).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from proxy.server import new_event_loop
from proxy.deadlines import DeadlineQueue

TIMEOUT = 0.2


class Stalled:
    """Stands for a connection whose client never finishes what it started."""

    def __init__(self, name, log, done):
        self.name, self.log, self.done = name, log, done

    def on_deadline(self):
        self.log.append((self.name, time.monotonic()))
        if len(self.log) == self.done[1]:
            self.done[0].set()


@pytest.mark.parametrize("loop_kind", ["uvloop", "asyncio"])
def test_each_entry_is_due_at_its_own_deadline_and_removed_ones_never(loop_kind):
    loop = new_event_loop(loop_kind)

    async def scenario():
        log = []
        done = (asyncio.Event(), 3)
        q = DeadlineQueue(loop, TIMEOUT)
        started = {}

        def add(name):
            conn = Stalled(name, log, done)
            started[name] = time.monotonic()
            q.add(conn, started[name])
            return conn

        add("a")
        finished = add("b")
        q.remove(finished)  # b's handshake completed
        loop.call_later(0.05, add, "c")
        loop.call_later(0.12, add, "d")
        await asyncio.wait_for(done[0].wait(), 5)
        return log, started, q

    try:
        log, started, q = loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert [name for name, _ in log] == ["a", "c", "d"]
    for name, at in log:
        assert at >= started[name] + TIMEOUT - 0.002, (name, at - started[name])  # never early (timer ms rounding)
        assert at < started[name] + TIMEOUT + 2.0  # and not left for long
    assert q.pending == {} and q.timer is None  # nothing left, no timer armed


def test_a_queue_that_empties_leaves_no_timer_behind():
    loop = new_event_loop("asyncio")

    async def scenario():
        q = DeadlineQueue(loop, 0.05)
        log, done = [], (asyncio.Event(), 1)
        conn = Stalled("a", log, done)
        q.add(conn, time.monotonic())
        q.remove(conn)  # ended before its deadline
        fired = asyncio.Event()
        loop.call_later(0.1, fired.set)  # past the deadline: the timer has run and found nothing
        await asyncio.wait_for(fired.wait(), 5)
        return q, log

    try:
        q, log = loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert log == [] and q.pending == {} and q.timer is None
