#!/usr/bin/env python3
"""Connection flood against an admission cap: is the proxy's footprint bounded?

    python3 bench/flood.py [--cap 100] [--factor 10] [--on-limit pause] [--seconds 10]

Starts the built-in demo upstream and edgeproxy with
``[[listeners]] max_connections = CAP``, then opens CAP x FACTOR
connections as fast as it can (each sends an incomplete request head and
keeps it open) while one normal keep-alive client, connected before the
flood, sends requests back to back. It samples the proxy's RSS and open file
descriptors every 100 ms and prints their maxima against the baseline, the
admission decisions, the accept-queue length, and the normal client's
latency percentiles during the flood. Everything it starts is stopped at
the end (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from support import Client, ProxyProcess, metric_value  # noqa: E402


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cap", type=int, default=100)
    ap.add_argument("--factor", type=int, default=10)
    ap.add_argument("--on-limit", choices=["pause", "reject", "respond"], default="pause")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="edgeproxy-flood-"))
    up_port = socket.socket()
    up_port.bind(("127.0.0.1", 0))
    port = up_port.getsockname()[1]
    up_port.close()
    upstream = subprocess.Popen([sys.executable, "-m", "bench.upstream", str(port)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cfg = f"""
[[listeners]]
address = "127.0.0.1:0"
backlog = 4096
max_connections = {args.cap}
on_limit = "{args.on_limit}"
[admin]
address = "127.0.0.1:0"
[access_log]
enabled = false
[downstream]
header_timeout = "{args.seconds * 2:g}s"
keepalive_requests = 1000000
[upstreams.app]
servers = ["127.0.0.1:{port}"]
[[routes]]
upstream = "app"
"""
    px = ProxyProcess(tmp, cfg, loop="uvloop").start()
    try:
        time.sleep(0.3)  # let the upstream bind
        normal = Client(px.addr)
        assert normal.request("GET", "/").status == 200
        pid = px.proc.pid
        base_rss, base_fds = rss_kib(pid), fds(pid)
        samples = []
        stop = threading.Event()

        def sampler():
            while not stop.is_set():
                samples.append((rss_kib(pid), fds(pid)))
                stop.wait(0.1)

        th = threading.Thread(target=sampler, daemon=True)
        th.start()
        lat = []
        flood = []
        total = args.cap * args.factor
        t_end = time.monotonic() + args.seconds
        opened = failed = 0
        while time.monotonic() < t_end:
            if opened + failed < total:
                for _ in range(50):
                    if opened + failed >= total:
                        break
                    s = socket.socket()
                    s.setblocking(False)
                    try:
                        s.connect(px.addr)
                    except BlockingIOError:
                        pass
                    except OSError:
                        failed += 1
                        s.close()
                        continue
                    flood.append(s)
                    opened += 1
            t0 = time.monotonic()
            r = normal.request("GET", "/")
            lat.append(time.monotonic() - t0)
            assert r.status == 200
        m = px.metrics()
        stop.set()
        th.join()
        lat.sort()
        max_rss = max(x[0] for x in samples)
        max_fds = max(x[1] for x in samples)
        pct = lambda q: lat[min(len(lat) - 1, int(len(lat) * q))] * 1000  # noqa: E731
        print(f"cap {args.cap}, flood of {opened} connection attempts (x{args.factor}), on_limit={args.on_limit}")
        print(f"proxy RSS: {base_rss} KiB before, max {max_rss} KiB during (+{max_rss - base_rss} KiB)")
        print(f"proxy fds: {base_fds} before, max {max_fds} during (+{max_fds - base_fds})")
        for d in ("accepted", "paused", "rejected", "responded"):
            print(f"admission {d}: {metric_value(m, 'http_server_admission_total', listener='listener0', decision=d) or metric_value(m, 'http_server_admission_total', decision=d):.0f}")
        print(f"accept queue at the end: {metric_value(m, 'http_server_accept_queue_len'):.0f}")
        print(f"normal client during the flood: {len(lat)} requests, p50 {pct(0.5):.2f} ms, "
              f"p99 {pct(0.99):.2f} ms, max {lat[-1] * 1000:.2f} ms")
        for s in flood:
            s.close()
        normal.close()
    finally:
        px.stop()
        upstream.terminate()
        upstream.wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
