#!/usr/bin/env python3
"""Python cost of one proxied request, without sockets.

    python3 bench/hotpath.py [--requests 200000] [--profile] [--tls] [--post]

Drives the real Downstream/Exchange/UpstreamConn objects with in-memory
transports: a keep-alive client sends a small GET, the pooled upstream
connection answers 200 with a 3-byte body. What it measures is the proxy's
own Python work per request (codec, routing, rewrite, pool, timers, metrics)
without kernel time, so changes to the hot path can be compared precisely;
wrk in bench/run.py measures the whole thing.

``--post``: a POST with a 1 KiB body (Content-Length, in the head's
segment) instead of the GET.

``--tls``: the same request on a TLS keep-alive connection (TLSConnection
over a memory transport, a client SSL object on the other side). The figure
then includes OpenSSL's record work on both sides; compare it with itself.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import ssl
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy import codec  # noqa: E402
from proxy.config import parse_config  # noqa: E402
from proxy.downstream import Downstream  # noqa: E402
from proxy.gencert import generate_dev_set  # noqa: E402
from proxy.server import Listener, ProxyServer, new_event_loop  # noqa: E402
from proxy.tls import TLSConnection  # noqa: E402
from proxy.upstream import UpstreamConn  # noqa: E402

REQUEST = b"GET /hello HTTP/1.1\r\nHost: bench.local\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
POST = (b"POST /upload HTTP/1.1\r\nHost: bench.local\r\nUser-Agent: wrk\r\nContent-Length: 1024\r\n"
        b"Content-Type: application/octet-stream\r\n\r\n" + b"x" * 1024)
RESPONSE = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"


class FakeTransport:
    def __init__(self, peer=("127.0.0.1", 40000)):
        self.out = []
        self.closing = False
        self.peer = peer

    def write(self, data):
        self.out.append(data)

    def get_extra_info(self, name, default=None):
        return self.peer if name == "peername" else default

    def is_closing(self):
        return self.closing

    def close(self):
        self.closing = True

    abort = close

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def get_write_buffer_size(self):
        return 0


def build(loop, certs: dict | None = None):
    listener = {"address": "127.0.0.1:0"}
    if certs is not None:
        listener.update(tls=True, certificates=[{"cert": str(certs["server.pem"]), "key": str(certs["server.key"])}])
    cfg = parse_config({
        "listeners": [listener],
        "admin": {"enabled": False},
        "access_log": {"enabled": False},
        "downstream": {"keepalive_requests": 1 << 40},
        "upstreams": {"app": {"servers": ["127.0.0.1:9"], "pool": {"max_requests_per_connection": 1 << 40}}},
        "routes": [{"upstream": "app"}],
    }, "<hotpath>")
    server = ProxyServer(cfg, loop)
    cluster = server.clusters["app"]
    # one pooled upstream connection
    conn = UpstreamConn(cluster, cluster.servers[0])
    conn.connection_made(FakeTransport())
    cluster.open_conns.add(conn)
    cluster.release(conn, True)
    if certs is None:
        down = Downstream(server, "main")
        down.connection_made(FakeTransport())
        return server, PlainClient(down), conn
    listener = Listener(cfg.listeners[0], server)
    server.listeners.append(listener)
    return server, TLSClient(server, listener, certs["ca.pem"]), conn


class PlainClient:
    def __init__(self, down: Downstream):
        self.down = down

    def send(self, data: bytes) -> None:
        self.down.data_received(data)

    def received(self) -> None:
        self.down.transport.out.clear()


class TLSClient:
    """A client SSL object talking to a TLSConnection through memory: handshake once, then requests."""

    def __init__(self, server, listener, ca):
        ctx = ssl.create_default_context(cafile=str(ca))
        self.raw = FakeTransport()
        self.conn = TLSConnection(server, listener, "127.0.0.1", time.monotonic(),
                                  lambda: Downstream(server, "main", listener, "127.0.0.1"))
        self.conn.connection_made(self.raw)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.conn.data_received(self.outgoing.read())
                self.received()
        self.conn.data_received(self.outgoing.read())  # the client's Finished
        self.received()  # the session tickets
        assert self.conn.app is not None, "handshake did not complete"

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self.conn.data_received(self.outgoing.read())

    def received(self) -> None:
        out = self.raw.out
        self.incoming.write(b"".join(out))
        out.clear()
        try:
            while self.tls.read(65536):
                pass
        except ssl.SSLWantReadError:
            pass


def run(n: int, client, conn: UpstreamConn, request: bytes = REQUEST) -> float:
    ut = conn.transport
    t0 = time.perf_counter()
    for _ in range(n):
        client.send(request)
        conn.data_received(RESPONSE)
        client.received()
        ut.out.clear()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    ap.add_argument("--post", action="store_true", help="a POST with a 1 KiB body instead of the GET")
    ap.add_argument("--tls", action="store_true", help="a TLS keep-alive connection (OpenSSL on both sides included)")
    args = ap.parse_args()
    loop = new_event_loop(args.loop)
    asyncio.set_event_loop(loop)
    with tempfile.TemporaryDirectory() as tmp:
        certs = generate_dev_set(Path(tmp), ["localhost"]) if args.tls else None
        server, client, conn = build(loop, certs)
    request = POST if args.post else REQUEST
    run(2000, client, conn, request)  # warm-up
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        run(args.requests // 4, client, conn, request)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    secs = run(args.requests, client, conn, request)
    assert conn.requests > args.requests, "the pooled connection was not reused"
    what = "Python and OpenSSL per proxied TLS request" if args.tls else "Python per proxied request"
    if args.post:
        what += " (POST 1 KiB)"
    print(f"codec {codec.NAME}, {args.loop}: {secs / args.requests * 1e6:.2f} µs of {what} ({args.requests} requests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
