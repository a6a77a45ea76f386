"""A connection accepted in the same instant a drain starts is drained, not dropped.

The accept loop turns an accepted socket into a client connection at the
event loop's next iteration (its connection_made is scheduled). A drain
that started in between must still count it: it waits for its request
(the first-request grace), answers it with ``Connection: close``, and only
then closes the upstream pools. Counted too early, the drain saw no
connection, closed the pools at once, and the request failed with 502
upstream_connect_failed. Real sockets on 127.0.0.1, the proxy in this
process so the accept can be placed exactly.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from bench.connpath import start_proxy
from proxy.server import new_event_loop


async def _scenario(tmp_path) -> tuple[bytes, bool]:
    server, port, _, up = await start_proxy(False, tmp_path)
    loop = asyncio.get_running_loop()
    lst = server.listeners[0]
    client = socket.create_connection(("127.0.0.1", port), timeout=5)  # queued in the kernel, not accepted yet
    client.setblocking(False)
    close_listener = lst.close

    def close_after_one_last_accept():
        lst._on_acceptable()  # the readiness event handled just before the drain closes the socket
        close_listener()

    lst.close = close_after_one_last_accept
    try:
        drain = asyncio.ensure_future(server.shutdown())
        await asyncio.sleep(0)  # the drain has started (and accepted the connection)
        await loop.sock_sendall(client, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        answer = b""
        while True:
            chunk = await asyncio.wait_for(loop.sock_recv(client, 65536), 5)
            if not chunk:
                break
            answer += chunk
        await asyncio.wait_for(drain, 10)
        return answer, drain.done()
    finally:
        client.close()
        up.close()


@pytest.mark.parametrize("loop_kind", ["uvloop", "asyncio"])
def test_connection_accepted_as_the_drain_starts_gets_its_answer(tmp_path, loop_kind):
    loop = new_event_loop(loop_kind)
    try:
        answer, drained = loop.run_until_complete(_scenario(tmp_path))
    finally:
        loop.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert b"\r\nconnection: close\r\n" in answer.lower()
    assert answer.endswith(b"\r\n\r\nok\n")
    assert drained
