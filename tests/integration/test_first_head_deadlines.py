"""New client connections wait for their first request head under one server-wide timer.

Every new connection enters the server's ``first_heads`` queue
(deadlines.DeadlineQueue) instead of arming an event-loop timer; it must
leave the queue when a keep-alive idle deadline or its close takes over, so
the queue never holds a closed connection, and a connection that sends
nothing is still answered 408 at ``header_timeout``. The proxy runs in
this process (real sockets on 127.0.0.1) so the queue can be read.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.connpath import start_proxy
from proxy.server import new_event_loop


async def _scenario(tmp_path):
    server, port, _, up = await start_proxy(False, tmp_path, {"header_timeout": "300ms"})
    loop = asyncio.get_running_loop()
    try:
        # a connection that makes a request and closes leaves the queue
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(r.read(), 5)
        w.close()
        for _ in range(100):  # the proxy's side of the close runs at its loop's next iterations
            if not server.connections:
                break
            await asyncio.sleep(0)
        after_close = dict(server.first_heads.pending)
        # a connection that never sends a head: in the queue, then 408 at its deadline
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(100):
            if server.first_heads.pending:
                break
            await asyncio.sleep(0)
        waiting = len(server.first_heads.pending)
        t0 = time.monotonic()
        stalled = await asyncio.wait_for(r2.read(), 5)
        waited = time.monotonic() - t0
        w2.close()
        for _ in range(100):
            if not server.connections:
                break
            await asyncio.sleep(0)
        return answer, after_close, waiting, stalled, waited, dict(server.first_heads.pending)
    finally:
        await server.shutdown()
        up.close()


@pytest.mark.parametrize("loop_kind", ["uvloop", "asyncio"])
def test_first_head_queue_is_left_on_close_and_times_out_a_silent_client(tmp_path, loop_kind):
    loop = new_event_loop(loop_kind)
    try:
        answer, after_close, waiting, stalled, waited, left = loop.run_until_complete(_scenario(tmp_path))
    finally:
        loop.close()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert after_close == {}  # the closed connection is not held by the queue
    assert waiting == 1
    assert stalled.startswith(b"HTTP/1.1 408 ")
    assert 0.2 <= waited < 3.0, waited
    assert left == {}
