"""Concurrency caps and the retry budget over real sockets.

Overflow is answered at once by the fallback (503 by default) and counted in
``upstream_overflow_total``, never as an upstream failure.
"""

from __future__ import annotations

import asyncio
import time

from support import Client, dead_addr, metric_value


def limits(**keys) -> str:
    return "[upstreams.app.limits]\n" + "\n".join(f"{k} = {v}" for k, v in keys.items()) + "\n"


def gated_upstream(upstream_factory):
    gate = asyncio.Event()

    async def handler(req, reply):
        await gate.wait()
        await reply.send(200, body=b"ok")

    up = upstream_factory(handler)
    return up, lambda: up.loop.call_soon_threadsafe(gate.set)


def send(addr, target="/"):
    c = Client(addr)
    c.send_raw(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return c


def test_max_requests_overflows_to_fallback(proxy_factory, upstream_factory):
    up, release = gated_upstream(upstream_factory)
    px = proxy_factory(upstreams={"app": [up.address]}, extra=limits(max_requests=2))
    held = [send(px.addr, "/1"), send(px.addr, "/2")]
    assert up.wait_requests(2)
    with Client(px.addr) as c:
        t0 = time.monotonic()
        r = c.request("GET", "/3")
        assert r.status == 503 and r.json()["error"] == "upstream_unavailable"
        assert time.monotonic() - t0 < 0.5
    release()
    assert [h.read_response().status for h in held] == [200, 200]
    m = px.metrics()
    assert metric_value(m, "upstream_overflow_total", upstream="app", kind="max_requests") == 1
    assert metric_value(m, "fallback_responses_total", upstream="app", reason="overflow") == 1
    # an overflow is not an upstream failure: the breaker stayed closed
    assert metric_value(m, "circuit_breaker_state", upstream="app", server=up.address) == 0
    with Client(px.addr) as c:
        assert c.request("GET", "/4").status == 200  # slots were given back
    for h in held:
        h.close()


def test_max_connections_queue_timeout_and_pending_cap(proxy_factory, upstream_factory):
    up, release = gated_upstream(upstream_factory)
    px = proxy_factory(upstreams={"app": [up.address]},
                       extra=limits(max_connections=1, max_pending=1, pending_timeout='"300ms"'))
    a = send(px.addr, "/a")  # takes the only connection
    assert up.wait_requests(1)
    b = send(px.addr, "/b")  # waits in the pending queue
    with Client(px.addr) as c:  # the queue is full: overflow at once
        t0 = time.monotonic()
        assert c.request("GET", "/c").status == 503
        assert time.monotonic() - t0 < 0.25
    t0 = time.monotonic()
    rb = b.read_response()  # the queued request times out at pending_timeout
    assert rb.status == 503 and 0.15 <= time.monotonic() - t0 < 1.5
    release()
    assert a.read_response().status == 200
    assert up.connections == 1  # the cap held: one upstream connection only
    m = px.metrics()
    assert metric_value(m, "upstream_overflow_total", upstream="app", kind="max_pending") == 1
    assert metric_value(m, "upstream_overflow_total", upstream="app", kind="pending_timeout") == 1
    a.close()
    b.close()


def test_queued_requests_get_the_freed_connection(proxy_factory, upstream_factory):
    async def slowish(req, reply):
        await asyncio.sleep(0.05)  # the upstream's own pace
        await reply.send(200, body=req.target.encode())

    up = upstream_factory(slowish)
    px = proxy_factory(upstreams={"app": [up.address]}, extra=limits(max_connections=1, pending_timeout='"5s"'))
    clients = [send(px.addr, f"/{i}") for i in range(4)]
    bodies = sorted(c.read_response().body for c in clients)
    assert bodies == [b"/0", b"/1", b"/2", b"/3"]
    assert up.connections == 1  # each waiter got the connection handed over
    for c in clients:
        c.close()


def test_retry_budget_exhausted_is_visible(proxy_factory, upstream_factory):
    good = upstream_factory()
    dead = dead_addr()
    px = proxy_factory(upstreams={"app": [dead, good.address]}, cluster_extra="tries = 2",
                       extra=limits(retry_budget=0, retry_budget_min=0)
                       + "[upstreams.app.breaker]\nenabled = false\n")
    with Client(px.addr) as c:
        statuses = [c.request("GET", "/").status for _ in range(6)]
    assert statuses.count(502) == 3 and statuses.count(200) == 3  # round robin: no retry allowed
    m = px.metrics()
    assert metric_value(m, "http_client_retries_total", upstream="app", result="budget_exhausted") == 3
    assert metric_value(m, "http_client_retries_total", upstream="app", result="retried") == 0
