"""acceptor.CoroutineRunner: a coroutine stepped to its end without an asyncio.Task (how every
accepted connection's ``connect_accepted_socket`` runs)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.acceptor import CoroutineRunner
from proxy.server import new_event_loop


@pytest.fixture(params=["uvloop", "asyncio"])
def loop(request):
    lp = new_event_loop(request.param)
    yield lp
    lp.close()


class Runner(CoroutineRunner):
    def __init__(self, loop, on_error):
        super().__init__(loop)
        self.on_error = on_error

    def failed(self, exc):
        self.on_error(exc)


def drive(loop, make_coro):
    """Run ``make_coro(loop, trace)`` with a CoroutineRunner; ``(trace, errors)`` once it has ended."""
    trace, errors = [], []
    ended = loop.create_future()

    def on_error(exc):
        errors.append(exc)
        ended.set_result(None)

    async def wrapper():
        try:
            await make_coro(loop, trace)
        finally:
            trace.append("end")
            if not ended.done() and not errors:
                loop.call_soon(lambda: ended.done() or ended.set_result(None))

    async def main():
        Runner(loop, on_error).run(wrapper())
        trace.append("returned")  # run() returns at the coroutine's first wait
        await asyncio.wait_for(ended, 5)

    loop.run_until_complete(main())
    return trace, errors


def test_a_coroutine_that_never_waits_runs_at_once(loop):
    async def coro(lp, trace):
        trace.append("ran")

    trace, errors = drive(loop, coro)
    assert trace == ["ran", "end", "returned"] and errors == []


def test_it_resumes_when_the_awaited_future_is_done(loop):
    async def coro(lp, trace):
        fut = lp.create_future()
        lp.call_soon(fut.set_result, 7)
        trace.append(await fut)
        fut2 = lp.create_future()
        lp.call_later(0.01, fut2.set_result, 8)
        trace.append(await fut2)

    trace, errors = drive(loop, coro)
    assert trace == ["returned", 7, 8, "end"] and errors == []


def test_a_bare_yield_resumes_at_the_next_iteration(loop):
    async def coro(lp, trace):
        await asyncio.sleep(0)
        trace.append("after sleep(0)")

    trace, errors = drive(loop, coro)
    assert trace == ["returned", "after sleep(0)", "end"] and errors == []


def test_an_exception_from_the_awaited_future_reaches_on_error(loop):
    async def coro(lp, trace):
        fut = lp.create_future()
        lp.call_soon(fut.set_exception, ConnectionResetError("gone"))
        await fut
        trace.append("not reached")

    trace, errors = drive(loop, coro)
    assert trace == ["returned", "end"]
    assert len(errors) == 1 and isinstance(errors[0], ConnectionResetError) and str(errors[0]) == "gone"


def test_an_exception_before_any_wait_reaches_on_error(loop):
    async def coro(lp, trace):
        raise OSError("bad socket")

    trace, errors = drive(loop, coro)
    assert trace == ["end", "returned"] and [str(e) for e in errors] == ["bad socket"]


def test_settle_heap_freezes_the_start_up_heap_and_raises_the_young_threshold():
    """What a serving process does once started (server.serve, worker): run in a fresh
    interpreter, so this test process's own collector settings stay as they are."""
    script = (
        "import gc\n"
        "from proxy.server import GC_YOUNG_THRESHOLD, settle_heap\n"
        "assert gc.get_freeze_count() == 0\n"
        "settle_heap()\n"
        "print(gc.get_freeze_count() > 1000, gc.get_threshold()[0] == GC_YOUNG_THRESHOLD > 700)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout.split()
    assert out == ["True", "True"]
