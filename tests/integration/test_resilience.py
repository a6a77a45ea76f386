"""Circuit breakers and fallback over real sockets.

Breaker timings are configured short (open_duration of a few hundred ms) so
the half-open path runs within a test; waits are bounded loops on
client-visible state, never fixed sleeps.
"""

from __future__ import annotations


from support import Client, dead_addr, get, metric_value
from support import wait_for as wait_until


def breaker_toml(name: str, **keys) -> str:
    body = "\n".join(f"{k} = {v}" for k, v in keys.items())
    return f"[upstreams.{name}.breaker]\n{body}\n"



def test_breaker_opens_on_bad_server_and_good_one_takes_traffic(proxy_factory, upstream_factory):
    good = upstream_factory()
    bad = dead_addr()
    px = proxy_factory(upstreams={"app": [good.address, bad]}, cluster_extra="tries = 1",
                       extra=breaker_toml("app", consecutive_failures=3, open_duration='"30s"'))
    statuses = []
    with Client(px.addr) as c:
        for _ in range(30):
            statuses.append(c.request("GET", "/x").status)
    assert statuses.count(502) == 3  # exactly the failures that tripped it
    assert statuses[-20:] == [200] * 20  # then only the good server
    m = px.metrics()
    assert metric_value(m, "circuit_breaker_state", upstream="app", server=bad) == 2
    assert metric_value(m, "circuit_breaker_state", upstream="app", server=good.address) == 0
    assert metric_value(m, "circuit_breaker_transitions_total", upstream="app", server=bad,
                        **{"from": "closed", "to": "open"}) == 1
    # logged once, not per request
    assert sum(1 for e in px.events if e.get("event") == "breaker_transition") == 1


def test_full_outage_gets_fast_default_fallback(proxy_factory):
    dead = dead_addr()
    px = proxy_factory(upstreams={"app": [dead]}, cluster_extra="tries = 1",
                       extra=breaker_toml("app", consecutive_failures=2, open_duration='"20s"'))
    with Client(px.addr) as c:
        assert [c.request("GET", "/").status for _ in range(2)] == [502, 502]
        for _ in range(20):
            r = c.request("GET", "/")
            assert r.status == 503
            assert r.json()["error"] == "upstream_unavailable"
            assert r.json()["request_id"] == r.header("x-request-id")
            assert 15 <= int(r.header("retry-after")) <= 25  # time to the half-open probe
            assert r.elapsed < 0.5
            assert not r.closed  # the connection stays usable
    m = px.metrics()
    assert metric_value(m, "fallback_responses_total", upstream="app", reason="breaker_open") == 20
    # no connect was attempted while open
    assert metric_value(m, "http_client_connect_errors_total", upstream="app", server=dead, reason="refused") == 2
    recs = px.access_records(22)
    assert recs[-1]["outcome"] == "fallback" and recs[-1]["status"] == 503
    # readiness reflects the outage without any upstream I/O
    assert get(px.admin_addr, "/readyz").status == 503


def test_static_fallback_response(proxy_factory):
    dead = dead_addr()
    fallback = ('[upstreams.app.fallback]\nstatus = 200\nbody = "down for maintenance"\n'
                'content_type = "text/plain"\nretry_after = "off"\nheaders = { X-Fallback = "static" }\n')
    px = proxy_factory(upstreams={"app": [dead]}, cluster_extra="tries = 1",
                       extra=breaker_toml("app", consecutive_failures=1, open_duration='"20s"') + fallback)
    assert get(px.addr, "/").status == 502
    r = get(px.addr, "/")
    assert (r.status, r.body) == (200, b"down for maintenance")
    assert r.header("content-type") == "text/plain"
    assert r.header("x-fallback") == "static"
    assert r.header("retry-after") is None


def test_fallback_to_another_cluster(proxy_factory, upstream_factory):
    backup = upstream_factory()
    dead = dead_addr()
    px = proxy_factory(upstreams={"app": [dead], "backup": [backup.address]},
                       routes=[{"path_prefix": "/", "upstream": "app"}], cluster_extra="tries = 1",
                       extra=breaker_toml("app", consecutive_failures=1, open_duration='"20s"')
                       + '[upstreams.app.fallback]\nupstream = "backup"\n')
    assert get(px.addr, "/a").status == 502
    r = get(px.addr, "/b")
    assert r.status == 200 and r.json()["target"] == "/b"
    assert [q.target for q in backup.requests] == ["/b"]
    assert metric_value(px.metrics(), "fallback_responses_total", upstream="app", reason="breaker_open") == 1


def test_half_open_probe_and_recovery(proxy_factory, upstream_factory):
    state = {"fail": True}

    async def flaky(req, reply):
        await reply.send(503 if state["fail"] else 200, body=b"x")

    up = upstream_factory(flaky)
    px = proxy_factory(upstreams={"app": [up.address]}, cluster_extra="tries = 1",
                       extra=breaker_toml("app", consecutive_failures=2, open_duration='"300ms"',
                                          jitter=0.0, half_open_requests=1, half_open_successes=2))
    with Client(px.addr) as c:
        assert [c.request("GET", "/").status for _ in range(2)] == [503, 503]  # upstream's own 503s
        assert c.request("GET", "/").json()["error"] == "upstream_unavailable"  # open: fallback
        seen_before = len(up.requests)
        # still failing: the half-open probe goes through, fails, and reopens it
        probe = wait_until(lambda: c.request("GET", "/").header("content-type") is None)
        assert probe and len(up.requests) == seen_before + 1
        state["fail"] = False
        # the next probe succeeds; two trial successes close the breaker
        assert wait_until(lambda: c.request("GET", "/").status == 200, timeout=5.0)
        assert c.request("GET", "/").status == 200
        assert [c.request("GET", "/").status for _ in range(5)] == [200] * 5
    m = px.metrics()
    assert metric_value(m, "circuit_breaker_state", upstream="app", server=up.address) == 0
    t = {k: metric_value(m, "circuit_breaker_transitions_total", upstream="app", server=up.address,
                         **{"from": a, "to": b})
         for k, (a, b) in {"trip": ("closed", "open"), "probe": ("open", "half_open"),
                           "reopen": ("half_open", "open"), "close": ("half_open", "closed")}.items()}
    assert t["trip"] == 1 and t["reopen"] == 1 and t["close"] == 1 and t["probe"] == 2


def test_resets_before_response_trip_the_breaker(proxy_factory, upstream_factory):
    async def reset(req, reply):
        reply.abort()  # connection reset before any response byte

    bad = upstream_factory(reset)
    good = upstream_factory()
    px = proxy_factory(upstreams={"app": [bad.address, good.address]},
                       cluster_extra='tries = 1\nretry_methods = ["HEAD"]',
                       extra=breaker_toml("app", consecutive_failures=3, open_duration='"30s"'))
    with Client(px.addr) as c:
        statuses = [c.request("GET", "/").status for _ in range(20)]
    assert statuses.count(502) == 3 and statuses[-10:] == [200] * 10
    m = px.metrics()
    assert metric_value(m, "circuit_breaker_state", upstream="app", server=bad.address) == 2
    assert metric_value(m, "http_client_requests_total", upstream="app", code="reset") == 3


def test_slow_calls_trip_the_breaker_when_configured(proxy_factory, upstream_factory):
    import asyncio

    async def slow(req, reply):
        await asyncio.sleep(0.15)  # answers, but slowly
        await reply.send(200, body=b"slow")

    up = upstream_factory(slow)
    px = proxy_factory(upstreams={"app": [up.address]}, cluster_extra="tries = 1",
                       extra=breaker_toml("app", slow_call_threshold='"50ms"', slow_call_rate=0.5,
                                          min_requests=4, consecutive_failures=0, open_duration='"30s"'))
    with Client(px.addr) as c:
        statuses = [c.request("GET", "/").status for _ in range(6)]
    assert statuses[:4] == [200] * 4  # slow but successful answers still reach the client
    assert statuses[4:] == [503, 503]  # then the breaker opened on slow calls: fallback
    assert len(up.requests) == 4
    assert any(e.get("event") == "breaker_transition" and e.get("reason") == "slow_calls" for e in px.events)
