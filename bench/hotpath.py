#!/usr/bin/env python3
"""Python cost of one proxied request, without sockets.

    python3 bench/hotpath.py [--requests 200000] [--profile]

Drives the real Downstream/Exchange/UpstreamConn objects with in-memory
transports: a keep-alive client sends a small GET, the pooled upstream
connection answers 200 with a 3-byte body. What it measures is the proxy's
own Python work per request (codec, routing, rewrite, pool, timers, metrics)
without kernel time, so changes to the hot path can be compared precisely;
wrk in bench/run.py measures the whole thing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy import codec  # noqa: E402
from proxy.config import parse_config  # noqa: E402
from proxy.downstream import Downstream  # noqa: E402
from proxy.server import ProxyServer, new_event_loop  # noqa: E402
from proxy.upstream import UpstreamConn  # noqa: E402

REQUEST = b"GET /hello HTTP/1.1\r\nHost: bench.local\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
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


def build(loop):
    cfg = parse_config({
        "listeners": [{"address": "127.0.0.1:0"}],
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
    down = Downstream(server, "main")
    down.connection_made(FakeTransport())
    return server, down, conn


def run(n: int, down: Downstream, conn: UpstreamConn) -> float:
    dt, ut = down.transport, conn.transport
    t0 = time.perf_counter()
    for _ in range(n):
        down.data_received(REQUEST)
        conn.data_received(RESPONSE)
        dt.out.clear()
        ut.out.clear()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = ap.parse_args()
    loop = new_event_loop(args.loop)
    asyncio.set_event_loop(loop)
    server, down, conn = build(loop)
    run(2000, down, conn)  # warm-up
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        run(args.requests // 4, down, conn)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    secs = run(args.requests, down, conn)
    assert conn.requests > args.requests, "the pooled connection was not reused"
    print(f"codec {codec.NAME}, {args.loop}: {secs / args.requests * 1e6:.2f} µs of Python per proxied request "
          f"({args.requests} requests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
