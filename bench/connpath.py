#!/usr/bin/env python3
"""Cost of one new connection through the proxy, in one process.

    python3 bench/connpath.py [--connections 500] [--tls] [--loop uvloop|asyncio]

Starts the real ProxyServer on 127.0.0.1 with an upstream in the same
process, then opens connections one after another, each sending one GET
with ``Connection: close`` and reading the whole answer: accept, admission,
transport set-up, (``--tls``) the handshake driven by the TLS connection,
the request, and the close. The client runs in the same process, so the
figure includes its side too (with ``--tls`` the client's handshake and
certificate verification as well); compare it with itself before and after
a change. Under callgrind the instruction count per connection is the
steady figure (run it for two connection counts and take the difference),
where the timing varies with the machine; ``bench/run.py`` measures the
proxy alone under wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.config import parse_config  # noqa: E402
from proxy.gencert import generate_dev_set  # noqa: E402
from proxy.server import ProxyServer, new_event_loop  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: bench.local\r\nConnection: close\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"


class Upstream(asyncio.Protocol):
    """Answers every request head it receives (keep-alive, as the proxy's pool uses it)."""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        for _ in range(data.count(b"\r\n\r\n")):
            self.transport.write(RESPONSE)


class Client(asyncio.Protocol):
    def __init__(self, done: asyncio.Future):
        self.done = done
        self.received = bytearray()

    def connection_made(self, transport):
        transport.write(REQUEST)

    def data_received(self, data):
        self.received += data

    def connection_lost(self, exc):
        self.done.set_result(bytes(self.received))


async def start_proxy(tls: bool, tmp: Path, downstream: dict | None = None):
    """The real ProxyServer on 127.0.0.1 in front of an in-process upstream (``tls``: a TLS
    listener with a development certificate made in ``tmp``; ``downstream``: that config section):
    ``(server, port, client_ctx, upstream)``."""
    loop = asyncio.get_running_loop()
    up = await loop.create_server(Upstream, "127.0.0.1", 0)
    listener = {"address": "127.0.0.1:0"}
    client_ctx = None
    if tls:
        certs = generate_dev_set(tmp, ["localhost"])
        listener.update(tls=True, certificates=[{"cert": str(certs["server.pem"]), "key": str(certs["server.key"])}])
        client_ctx = ssl.create_default_context(cafile=str(certs["ca.pem"]))
    cfg = parse_config({
        "listeners": [listener],
        "admin": {"enabled": False},
        "access_log": {"enabled": False},
        "upstreams": {"app": {"servers": [f"127.0.0.1:{up.sockets[0].getsockname()[1]}"]}},
        "routes": [{"upstream": "app"}],
        **({"downstream": downstream} if downstream else {}),
    }, "<connpath>")
    server = ProxyServer(cfg, loop)
    await server.start()
    return server, server.listeners[0].sock.getsockname()[1], client_ctx, up


async def measure(n: int, tls: bool, tmp: Path) -> float:
    loop = asyncio.get_running_loop()
    server, port, client_ctx, up = await start_proxy(tls, tmp)

    async def one() -> None:
        done = loop.create_future()
        await loop.create_connection(lambda: Client(done), "127.0.0.1", port, ssl=client_ctx,
                                     server_hostname="localhost" if tls else None)
        answer = await asyncio.wait_for(done, 10)
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\nok\n"), answer[:200]

    try:
        for _ in range(30):  # warm-up: the pooled upstream connection, caches
            await one()
        t0 = time.perf_counter()
        for _ in range(n):
            await one()
        return time.perf_counter() - t0
    finally:
        await server.shutdown()
        up.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", "--requests", type=int, default=500, dest="connections",
                    help="connections measured (--requests: the same, for the callgrind recipe)")
    ap.add_argument("--tls", action="store_true", help="a TLS listener: a full handshake per connection")
    ap.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = ap.parse_args()
    loop = new_event_loop(args.loop)
    asyncio.set_event_loop(loop)
    with tempfile.TemporaryDirectory() as tmp:
        secs = loop.run_until_complete(measure(args.connections, args.tls, Path(tmp)))
    loop.close()
    what = "TLS connection (handshake included)" if args.tls else "connection"
    print(f"{args.loop}: {secs / args.connections * 1e6:.1f} µs per new {what}, one request each, client side "
          f"included ({args.connections} connections)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
