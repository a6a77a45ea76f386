"""The resilience gate: bounded failure scenarios under concurrent load.

Run alone with ``pytest -m resilience`` (CI runs it with everything else).
Each scenario drives several client threads at once and asserts both what
the clients saw (statuses, error codes, how fast) and the metrics that must
have moved. Timing bounds are generous on a loaded machine where they are
about "no hang", and tight where speed is the feature (a refused connect, a
fallback).
"""

from __future__ import annotations

import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers_failures import hang_raw
from support import Client, base_config, dead_addr, metric_value

pytestmark = pytest.mark.resilience


@pytest.fixture
def runtime():
    """One runtime: these scenarios are about behaviour under load, which the
    other modules already pin under every loop and codec."""
    return ("uvloop", "default")


def load(addr, n: int, threads: int = 8, target: str = "/", source: str | None = None) -> list:
    """``n`` GETs from ``threads`` keep-alive clients at once: [(status, error code, seconds)]."""

    def worker(count: int, idx: int) -> list:
        out = []
        c = Client(addr)
        try:
            for i in range(count):
                t0 = time.monotonic()
                try:
                    r = c.request("GET", f"{target}?w={idx}&i={i}")
                except OSError:
                    c.close()
                    c = Client(addr)
                    out.append((0, "socket_error", time.monotonic() - t0))
                    continue
                code = r.json().get("error") if r.status >= 400 and r.body[:1] == b"{" else None
                out.append((r.status, code, time.monotonic() - t0))
                if r.closed:
                    c.close()
                    c = Client(addr)
        finally:
            c.close()
        return out

    per = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
    with ThreadPoolExecutor(threads) as ex:
        results = ex.map(worker, per, range(threads))
    return [r for part in results for r in part]


def pct(values, q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def test_upstream_hangs_clients_get_504_then_fast_fallback(proxy_factory):
    from support import Upstream

    with Upstream(raw=hang_raw) as hung:
        px = proxy_factory(upstreams={"app": [hung.address]}, cluster_extra=(
            'response_timeout = "300ms"\n[upstreams.app.breaker]\nconsecutive_failures = 4\n'
            'open_duration = "30s"\n'))
        t0 = time.monotonic()
        res = load(px.addr, 48, threads=8)
        took = time.monotonic() - t0
    statuses = {(s, c) for s, c, _ in res}
    assert statuses <= {(504, "upstream_timeout"), (503, "upstream_unavailable")}, statuses
    # nobody waited much past response_timeout; once open, the breaker answers at once
    assert max(t for _, _, t in res) < 1.5
    fast = [t for s, _, t in res if s == 503]
    assert len(fast) >= 30 and pct(fast, 0.95) < 0.05
    assert took < 5.0  # 48 requests through a hung upstream, not 48 x 300 ms
    m = px.metrics()
    assert metric_value(m, "circuit_breaker_state", upstream="app", server=hung.address) == 2
    assert metric_value(m, "fallback_responses_total", upstream="app", reason="breaker_open") == len(fast)
    assert metric_value(m, "http_timeouts_total", side="upstream", phase="response") >= 4


def test_upstream_refuses_502_within_50ms_then_fallback(proxy_factory):
    dead = dead_addr()
    px = proxy_factory(upstreams={"app": [dead]}, cluster_extra='[upstreams.app.breaker]\nconsecutive_failures = 5\n')
    res = load(px.addr, 64, threads=8)
    codes = {(s, c) for s, c, _ in res}
    assert codes <= {(502, "upstream_connect_failed"), (503, "upstream_unavailable")}, codes
    assert pct([t for _, _, t in res], 0.95) < 0.05  # refused, not timed out
    m = px.metrics()
    assert metric_value(m, "http_client_connect_errors_total", upstream="app", server=dead, reason="refused") >= 5
    assert metric_value(m, "circuit_breaker_state", upstream="app", server=dead) == 2
    assert sum(1 for s, _, _ in res if s == 503) == metric_value(
        m, "fallback_responses_total", upstream="app", reason="breaker_open")


def test_one_of_two_servers_down_idempotent_success_at_least_99_percent(proxy_factory, upstream_factory):
    good = upstream_factory()
    dead = dead_addr()
    px = proxy_factory(upstreams={"app": [dead, good.address]})
    res = load(px.addr, 300, threads=6)
    ok = sum(1 for s, _, _ in res if s == 200)
    assert ok / len(res) >= 0.99, (ok, len(res), {(s, c) for s, c, _ in res if s != 200})
    m = px.metrics()
    assert metric_value(m, "http_client_retries_total", upstream="app", result="retried") >= 1
    assert metric_value(m, "circuit_breaker_state", upstream="app", server=dead) == 2


def test_admission_cap_refuses_the_flood_while_admin_and_normal_clients_are_served(proxy_factory, upstream_factory,
                                                                                  tmp_path):
    up = upstream_factory()
    cfg = base_config({"app": [up.address]}, tmp=tmp_path).replace(
        'address = "127.0.0.1:0"\n', 'address = "127.0.0.1:0"\nmax_connections_per_ip = 10\non_limit = "respond"\n',
        1)
    px = proxy_factory(config=cfg)
    host, port = px.addr
    flood = []
    for _ in range(60):  # one attacker address, from another loopback source
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.settimeout(5)
        s.connect((host, port))
        flood.append(s)
    try:
        latencies = []
        for i in range(30):
            t0 = time.monotonic()
            with Client(px.addr) as c:  # a normal client (127.0.0.1) is served throughout
                assert c.request("GET", f"/n{i}").status == 200
            latencies.append(time.monotonic() - t0)
            with socket.create_connection(px.admin_addr, timeout=5) as a:  # and so is the admin endpoint
                a.sendall(b"GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                assert a.recv(100).startswith(b"HTTP/1.1 200")
        assert pct(latencies, 0.99) < 0.5
        # the refused ones were answered at accept; the admitted ones sit idle, unanswered
        readable, _, _ = select.select(flood, [], [], 1.0)
        answers = [s.recv(200) if s in readable else None for s in flood]
    finally:
        for s in flood:
            s.close()
    refused = [a for a in answers if a and a.startswith(b"HTTP/1.1 503")]
    assert len(refused) == 50 and answers.count(None) == 10
    m = px.metrics()
    assert metric_value(m, "http_server_admission_total", listener="main", decision="per_ip") == 50
    assert len(up.requests) == 30


def test_slowloris_normal_clients_unaffected(proxy_factory, upstream_factory, tmp_path):
    up = upstream_factory()
    px = proxy_factory(config=base_config({"app": [up.address]}, tmp=tmp_path,
                                          extra='[downstream]\nheader_timeout = "1500ms"\n'))
    flood = []
    stop = threading.Event()
    for _ in range(200):
        s = socket.create_connection(px.addr, timeout=5)
        s.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        flood.append(s)

    def trickle():
        while not stop.wait(0.05):
            for s in flood:
                try:
                    s.sendall(b"a")
                except OSError:
                    pass

    th = threading.Thread(target=trickle, daemon=True)
    th.start()
    try:
        res = load(px.addr, 120, threads=4)
    finally:
        stop.set()
        th.join(5)
    assert all(s == 200 for s, _, _ in res)
    assert pct([t for _, _, t in res], 0.99) < 0.3
    cut = 0
    for s in flood:  # every trickler is cut at the header deadline
        s.settimeout(5)
        try:
            data = s.recv(100)
        except (ConnectionResetError, socket.timeout):
            data = b""
        cut += data.startswith(b"HTTP/1.1 408") or data == b""
        s.close()
    assert cut == len(flood)
    assert metric_value(px.metrics(), "http_timeouts_total", side="downstream", phase="header") == len(flood)
    assert len(up.requests) == 120
