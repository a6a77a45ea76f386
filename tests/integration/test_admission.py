"""Admission control at accept time over real sockets.

The proxy decides before (and right after) accept(): paused connections wait
in the kernel's accept queue, which the accept-queue metric shows.
"""

from __future__ import annotations

import asyncio
import socket
import time

from support import Client, get, metric_value, wait_for


def listener_extra(**keys) -> str:
    """Keys for the main listener (appended to its [[listeners]] table)."""
    return "\n".join(f"{k} = {v}" for k, v in keys.items())


def start(proxy_factory, upstream, listener_keys: dict, extra: str = ""):
    from support import base_config

    def make(tmp):
        cfg = base_config({"app": [upstream.address]}, extra=extra, tmp=tmp)
        return cfg.replace('address = "127.0.0.1:0"\n', 'address = "127.0.0.1:0"\n' + listener_extra(**listener_keys) + "\n", 1)

    return make



def test_pause_leaves_connections_in_the_kernel_queue_then_drains(proxy_factory, upstream_factory, tmp_path):
    up = upstream_factory()
    px = proxy_factory(config=start(proxy_factory, up, {"max_connections": 2})(tmp_path))
    held = [Client(px.addr) for _ in range(2)]
    for c in held:
        assert c.request("GET", "/").status == 200  # admitted, kept alive
    waiting = [socket.create_connection(px.addr, timeout=5) for _ in range(3)]  # TCP handshake done by the kernel
    for w in waiting:
        w.sendall(b"GET /queued HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")  # frees its slot after
    assert wait_for(lambda: metric_value(px.metrics(), "http_server_accept_queue_len", listener="main") == 3)
    m = px.metrics()
    assert metric_value(m, "http_server_accept_queue_max", listener="main") > 0
    assert metric_value(m, "http_server_admission_total", listener="main", decision="paused") >= 1
    assert [q.target for q in up.requests].count("/queued") == 0  # not accepted, not served
    t0 = time.monotonic()
    assert get(px.admin_addr, "/readyz").status == 200 and time.monotonic() - t0 < 0.5  # admin unaffected
    for c in held:
        c.close()  # slots free: accepting resumes, the queue drains
    for w in waiting:
        w.settimeout(5)
        assert w.recv(65536).startswith(b"HTTP/1.1 200")
    assert wait_for(lambda: metric_value(px.metrics(), "http_server_accept_queue_len", listener="main") == 0)
    for w in waiting:
        w.close()


def test_reject_resets_over_the_cap(proxy_factory, upstream_factory, tmp_path):
    up = upstream_factory()
    px = proxy_factory(config=start(proxy_factory, up, {"max_connections": 1, "on_limit": '"reject"'})(tmp_path))
    with Client(px.addr) as held:
        assert held.request("GET", "/").status == 200
        try:  # the reset may even beat the client's own connect() on loopback
            s = socket.create_connection(px.addr, timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            data = s.recv(100)
            s.close()
        except (ConnectionResetError, BrokenPipeError):
            data = b"reset"
        assert data in (b"reset", b"")  # reset (or closed), never served
    assert metric_value(px.metrics(), "http_server_admission_total", listener="main", decision="rejected") == 1


def test_respond_answers_503_over_the_cap(proxy_factory, upstream_factory, tmp_path):
    up = upstream_factory()
    px = proxy_factory(config=start(proxy_factory, up, {"max_connections": 1, "on_limit": '"respond"'})(tmp_path))
    with Client(px.addr) as held:
        assert held.request("GET", "/").status == 200
        with Client(px.addr) as c:
            r = c.read_response()  # answered at accept, before any request
            assert r.status == 503 and r.header("retry-after") == "1" and r.header("connection") == "close"
            assert r.json() == {"error": "overloaded"}
    assert metric_value(px.metrics(), "http_server_admission_total", listener="main", decision="responded") == 1


def test_per_ip_cap(proxy_factory, upstream_factory, tmp_path):
    up = upstream_factory()
    px = proxy_factory(config=start(proxy_factory, up, {"max_connections_per_ip": 2, "on_limit": '"respond"'})(tmp_path))
    held = [Client(px.addr) for _ in range(2)]
    for c in held:
        assert c.request("GET", "/").status == 200
    with Client(px.addr) as c:
        assert c.read_response().status == 503
    held[0].close()
    assert wait_for(lambda: Client(px.addr).request("GET", "/").status == 200, timeout=3.0)
    held[1].close()
    assert metric_value(px.metrics(), "http_server_admission_total", listener="main", decision="per_ip") >= 1


def test_accept_rate_token_bucket(proxy_factory, upstream_factory, tmp_path):
    up = upstream_factory()
    px = proxy_factory(config=start(proxy_factory, up, {"accept_rate": 1.0, "accept_burst": 3,
                                                         "on_limit": '"respond"'})(tmp_path))
    statuses = []
    for _ in range(6):
        with Client(px.addr) as c:
            c.send_raw(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            statuses.append(c.read_response().status)
    assert statuses.count(200) == 3 and statuses.count(503) == 3  # the burst, then refused
    assert statuses[:3] == [200, 200, 200]


def test_global_max_requests_sheds_with_503(proxy_factory, upstream_factory, tmp_path):
    gate = asyncio.Event()

    async def held(req, reply):
        await gate.wait()
        await reply.send(200, body=b"ok")

    up = upstream_factory(held)
    from support import base_config

    px = proxy_factory(config=base_config({"app": [up.address]}, tmp=tmp_path,
                                          extra="[server]\nmax_requests = 1\n"))
    first = Client(px.addr)
    first.send_raw(b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\n")
    assert up.wait_requests(1)
    with Client(px.addr) as c:
        r = c.request("GET", "/2")
        assert r.status == 503 and r.json()["error"] == "overloaded" and r.header("retry-after") == "1"
    up.loop.call_soon_threadsafe(gate.set)
    assert first.read_response().status == 200
    first.close()
    assert get(px.addr, "/3").status == 200  # the slot was given back
    assert metric_value(px.metrics(), "http_server_admission_total", listener="main", decision="max_requests") == 1


def test_slowloris_flood_does_not_stop_normal_clients(proxy_factory, upstream_factory, tmp_path):
    from support import base_config

    up = upstream_factory()
    px = proxy_factory(config=base_config({"app": [up.address]}, tmp=tmp_path,
                                          extra='[downstream]\nheader_timeout = "2s"\n'))
    flood = []
    for _ in range(300):  # hundreds of clients trickling a head that never ends
        s = socket.create_connection(px.addr, timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        flood.append(s)
    latencies = []
    with Client(px.addr) as c:
        for i in range(50):
            for s in flood[i * 6:(i + 1) * 6]:
                s.sendall(b"a")  # keep trickling
            t0 = time.monotonic()
            assert c.request("GET", f"/n{i}").status == 200
            latencies.append(time.monotonic() - t0)
    latencies.sort()
    assert latencies[int(len(latencies) * 0.99) - 1] < 0.2  # p99 of normal requests during the flood
    m = px.metrics()
    assert metric_value(m, "http_server_connections", listener="main", state="reading_head") >= 300
    # the flood is cut at the header deadline: every trickler gets 408 or a close
    t0 = time.monotonic()
    for s in flood:
        s.settimeout(5)
        try:
            data = s.recv(100)
        except (ConnectionResetError, socket.timeout):
            data = b""
        assert data.startswith(b"HTTP/1.1 408") or data == b""
        s.close()
    assert time.monotonic() - t0 < 5
    assert len(up.requests) == 50
