"""A closed client connection leaves no reference cycle behind.

Its objects (client connection, exchange, parsed heads, TLS connection and
transport, OpenSSL object) are freed by reference counting the moment it
closes. Left in a cycle, each would wait for the cyclic garbage collector:
more memory held under churn, and a collector pass traversing them all.
The proxy runs in this process (real sockets on 127.0.0.1, real TLS, a real
upstream), so the collector can be asked what it would have had to free.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import ssl
import types
from collections import Counter

import pytest

from bench.connpath import start_proxy
from proxy.server import new_event_loop


async def _cyclic_garbage(tmp_path, tls: bool, keep_alive_requests: int) -> Counter:
    server, port, client_ctx, up = await start_proxy(tls, tmp_path)

    async def connection():
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                             server_hostname="localhost" if tls else None)
        for i in range(keep_alive_requests):
            last = i == keep_alive_requests - 1
            w.write(b"GET / HTTP/1.1\r\nHost: t\r\n" + (b"Connection: close\r\n" if last else b"") + b"\r\n")
            head = await r.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            assert await r.readexactly(3) == b"ok\n"
        assert await r.read() == b""  # the proxy closed after the last answer
        w.close()
        await w.wait_closed()

    # the proxy side of every connection closed: the server's own notification, not a poll
    all_closed = asyncio.Event()
    closed_cb = server.connection_closed

    def connection_closed(conn):
        closed_cb(conn)
        if not server.connections:
            all_closed.set()

    server.connection_closed = connection_closed

    async def closed():
        await all_closed.wait()
        all_closed.clear()

    try:
        await connection()  # warm-up: pooled upstream connection, imports, caches
        await asyncio.wait_for(closed(), 5)
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds unreachable stays in gc.garbage
        try:
            for _ in range(3):
                await connection()
            await asyncio.wait_for(closed(), 5)
            gc.collect()
            # the proxy's objects and OpenSSL's, and the proxy's functions (closures made per
            # connection, e.g. on the accept path); not the accepted socket: the event loop's
            # transport owns it (asyncio's own transports keep themselves in a cycle, and the
            # socket with them)
            found = Counter(type(o).__module__ + "." + type(o).__qualname__ for o in gc.garbage
                            if type(o).__module__.startswith(("proxy", "ssl", "_ssl"))
                            and not isinstance(o, socket.socket))
            found.update(f"function {o.__module__}.{o.__qualname__}" for o in gc.garbage
                         if isinstance(o, types.FunctionType) and (o.__module__ or "").startswith("proxy"))
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        return found
    finally:
        await server.shutdown()
        up.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("requests", [1, 3], ids=["one_request", "keep_alive"])
@pytest.mark.parametrize("loop_kind", ["uvloop", "asyncio"])
def test_closed_connection_is_freed_without_the_cycle_collector(tmp_path, tls, requests, loop_kind):
    loop = new_event_loop(loop_kind)
    try:
        garbage = loop.run_until_complete(asyncio.wait_for(_cyclic_garbage(tmp_path, tls, requests), 30))
    finally:
        loop.close()
    assert garbage == Counter(), f"objects left in reference cycles by closed connections: {dict(garbage)}"
