"""Adaptive pool over real sockets: warm-up to min_idle, idle timeout by load.

The pool's policies run on the proxy's once-a-second tick, so these tests
wait (bounded) on observable state: upstream connection counts and metrics.
"""

from __future__ import annotations

import time

from support import Client, metric_value, wait_for



def test_min_idle_connections_are_warmed_before_any_request(proxy_factory, upstream_factory):
    up = upstream_factory()
    px = proxy_factory(upstreams={"app": [up.address]}, extra="[upstreams.app.pool]\nmin_idle = 3\n")
    assert wait_for(lambda: up.open_connections == 3, timeout=4.0)
    assert up.requests == []  # opened ahead of need, no request sent
    m = px.metrics()
    assert metric_value(m, "http_client_conn_pool_opened_total", upstream="app", server=up.address) == 3
    assert metric_value(m, "http_client_conn_pool_idle", upstream="app", server=up.address) == 3
    # the warm connections serve the next requests: nothing new is opened
    with Client(px.addr) as c:
        for _ in range(5):
            assert c.request("GET", "/").status == 200
    assert up.connections == 3
    assert metric_value(px.metrics(), "http_client_conn_pool_reused_total", upstream="app", server=up.address) == 5


def test_idle_timeout_follows_the_request_rate(proxy_factory, upstream_factory):
    up = upstream_factory()
    px = proxy_factory(upstreams={"app": [up.address]})

    def idle_timeout():
        return metric_value(px.metrics(), "http_client_conn_pool_idle_timeout_seconds",
                            upstream="app", server=up.address)

    assert idle_timeout() == 30.0  # quiet: the lowest tier (< 10 req/s)
    with Client(px.addr) as c:
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < 1.2 and n < 900:  # a busy second (under keepalive_requests)
            assert c.request("GET", "/").status == 200
            n += 1
    assert n > 150
    assert wait_for(lambda: idle_timeout() == 300.0, timeout=3.0)  # busy: the top tier keeps connections


def test_fixed_idle_timeout_when_adaptive_is_off(proxy_factory, upstream_factory):
    up = upstream_factory()
    px = proxy_factory(upstreams={"app": [up.address]},
                       extra='[upstreams.app.pool]\nadaptive_idle = false\nidle_timeout = "45s"\n')
    assert metric_value(px.metrics(), "http_client_conn_pool_idle_timeout_seconds",
                        upstream="app", server=up.address) == 45.0


def test_recovered_server_is_warmed_before_full_traffic(proxy_factory, upstream_factory):
    import asyncio

    mode = {"delay": 0.3, "status": 200}

    async def handler(req, reply):
        await asyncio.sleep(mode["delay"])  # the upstream's own pace
        await reply.send(mode["status"], body=b"x")

    up = upstream_factory(handler)
    extra = ('[upstreams.app.pool]\nadaptive_idle = false\nidle_timeout = "1s"\n'
             '[upstreams.app.breaker]\nconsecutive_failures = 2\nopen_duration = "300ms"\njitter = 0.0\n'
             'half_open_successes = 1\n')
    px = proxy_factory(upstreams={"app": [up.address]}, cluster_extra="tries = 1", extra=extra)
    # a burst of 4 concurrent requests: the server's recent peak concurrency is 4
    clients = [Client(px.addr) for _ in range(4)]
    for c in clients:
        c.send_raw(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert [c.read_response().status for c in clients] == [200] * 4
    for c in clients:
        c.close()
    assert wait_for(lambda: up.open_connections == 0, timeout=4.0)  # idle ones expired
    mode.update(delay=0.0, status=503)
    with Client(px.addr) as c:
        assert [c.request("GET", "/").status for _ in range(2)] == [503, 503]
        assert c.request("GET", "/").json()["error"] == "upstream_unavailable"  # open
        mode["status"] = 200
        assert wait_for(lambda: c.request("GET", "/").status == 200, timeout=4.0)  # probe closes it
    n = len(up.requests)
    # recovered: the pool opens connections up to the recent peak before traffic needs them
    assert wait_for(lambda: up.open_connections >= 4, timeout=4.0)
    assert len(up.requests) == n  # opened ahead of need, no request sent on them
    assert metric_value(px.metrics(), "http_client_conn_pool_idle", upstream="app", server=up.address) >= 4
