"""Adaptive pool over real sockets: warm-up to min_idle, idle timeout by load.

The pool's policies run on the proxy's once-a-second tick, so these tests
wait (bounded) on observable state: upstream connection counts and metrics.
"""

from __future__ import annotations

import time

from support import Client, metric_value


def wait_for(fn, timeout: float = 5.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


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
