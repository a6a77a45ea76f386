"""Active health checks over real sockets.

Checks are configured fast (every 100ms, no jitter) so falls and rises
happen within a test. Waits are bounded loops on observable state (metrics
scrapes, /readyz, the proxy's events, what the scripted upstreams received),
never fixed sleeps. A scrape is one consistent snapshot of the proxy's
state (one event loop), so invariants between a counter and a gauge can be
asserted on every scrape taken while waiting.
"""

from __future__ import annotations

import asyncio
import time

from support import Client, dead_addr, echo_handler, get, metric_value

UA = "edgeproxy-health"


def health_toml(name: str, **keys) -> str:
    cfg = {"enabled": "true", "interval": '"100ms"', "timeout": '"200ms"', "unhealthy_interval": '"100ms"',
           "max_unhealthy_interval": '"200ms"', "healthy_threshold": 2, "unhealthy_threshold": 2,
           "jitter": 0.0}
    cfg.update(keys)
    body = "\n".join(f"{k} = {v}" for k, v in cfg.items())
    return f"[upstreams.{name}.health]\n{body}\n"


def wait_for(fn, timeout: float = 5.0, step: float = 0.02):
    """Re-evaluate ``fn`` until it is truthy or the deadline passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def is_check(req) -> bool:
    return req.header("user-agent") == UA


def client_requests(up) -> list:
    return [r for r in list(up.requests) if not is_check(r)]


def check_requests(up) -> list:
    return [r for r in list(up.requests) if is_check(r)]


def checked(answer):
    """A handler answering health checks with ``answer()`` -> (status, body, chunked), echoing the rest."""

    async def handler(req, reply):
        if is_check(req):
            status, body, chunked = answer()
            await reply.send(status, body=body, chunked=chunked)
        else:
            await echo_handler(req, reply)

    return handler


def fixed(status: int = 200, body: bytes = b"ok", chunked: bool = False):
    return checked(lambda: (status, body, chunked))


def switchable(state: dict):
    """Health answer read from ``state["status"]`` at each check."""
    return checked(lambda: (state["status"], b"ok", False))


def health(px, up) -> tuple[float, dict[str, float]]:
    """(upstream_health gauge, health_check_total by result) of one server, from one scrape."""
    m = px.metrics()
    server = up if isinstance(up, str) else up.address
    gauge = metric_value(m, "upstream_health", upstream="app", server=server)
    counts = {r: metric_value(m, "health_check_total", upstream="app", server=server, result=r)
              for r in ("ok", "failed", "timeout", "error")}
    return gauge, counts


def transitions(px, server: str) -> list[tuple[str, str, str]]:
    return [(e["from"], e["to"], e["result"]) for e in list(px.events)
            if e.get("event") == "health_transition" and e.get("server") == server]


def logged_transitions(px, server: str, n: int) -> list[tuple[str, str, str]]:
    """``transitions`` once ``n`` are logged: the proxy's log lines reach ``px.events`` through a
    reader thread, so a state seen in /metrics can be ahead of its log line."""
    wait_for(lambda: len(transitions(px, server)) >= n)
    return transitions(px, server)


def test_failing_server_gets_no_traffic_then_comes_back(proxy_factory, upstream_factory):
    state = {"status": 500}
    good = upstream_factory(fixed(200))
    bad = upstream_factory(switchable(state))
    px = proxy_factory(upstreams={"app": [good.address, bad.address]}, cluster_extra="tries = 1",
                       extra=health_toml("app"))

    # falls exactly at unhealthy_threshold (2) failed checks: on every
    # snapshot the gauge is 1 before the second failure and 0 from it on
    def fell():
        gauge, counts = health(px, bad)
        assert gauge == (1 if counts["failed"] < 2 else 0), (gauge, counts)
        return gauge == 0

    assert wait_for(fell)
    assert logged_transitions(px, bad.address, 1) == [("healthy", "unhealthy", "failed")]
    ev = next(e for e in px.events if e.get("event") == "health_transition")
    assert ev["upstream"] == "app" and ev["level"] == "warning" and "500" in ev["detail"]
    gauge, counts = health(px, good)
    assert gauge == 1 and counts["ok"] >= 1 and counts["failed"] == 0
    assert transitions(px, good.address) == []

    # the healthy server takes all the traffic
    seen_good, seen_bad = len(client_requests(good)), len(client_requests(bad))
    with Client(px.addr) as c:
        for i in range(20):
            r = c.request("GET", f"/while-down/{i}")
            assert r.status == 200 and r.json()["target"] == f"/while-down/{i}"
    assert len(client_requests(good)) - seen_good == 20
    assert len(client_requests(bad)) == seen_bad
    assert len(check_requests(bad)) >= 2  # still checked while down

    # passing checks bring it back after healthy_threshold (2) of them
    ok_before = health(px, bad)[1]["ok"]
    assert ok_before == 0
    state["status"] = 200

    def rose():
        gauge, counts = health(px, bad)
        assert gauge == (1 if counts["ok"] >= 2 else 0), (gauge, counts)
        return gauge == 1

    assert wait_for(rose)
    assert logged_transitions(px, bad.address, 2) == [("healthy", "unhealthy", "failed"), ("unhealthy", "healthy", "ok")]
    seen_good, seen_bad = len(client_requests(good)), len(client_requests(bad))
    with Client(px.addr) as c:
        assert [c.request("GET", "/after").status for _ in range(20)] == [200] * 20
    assert len(client_requests(bad)) - seen_bad >= 5  # round robin again
    assert len(client_requests(good)) - seen_good >= 5


def test_expected_statuses_body_contains_and_refused(proxy_factory, upstream_factory):
    marker = b"all systems go"
    s204 = upstream_factory(fixed(204, b""))
    s200 = upstream_factory(fixed(200))
    yes = upstream_factory(fixed(200, b"status: " + marker + b"\n", chunked=True))
    no = upstream_factory(fixed(200, b"status: degraded\n"))
    late = upstream_factory(fixed(200, b"x" * 70000 + marker))  # past the 64 KiB the check reads
    err = upstream_factory(fixed(500, marker))
    dead = dead_addr()
    px = proxy_factory(
        upstreams={"app": [s204.address, s200.address], "body": [yes.address, no.address, late.address,
                                                               err.address], "dead": [dead]},
        routes=[{"path_prefix": "/body", "upstream": "body"}, {"path_prefix": "/dead", "upstream": "dead"},
                {"path_prefix": "/", "upstream": "app"}],
        extra=health_toml("app", expected_statuses="[204]")
        + health_toml("body", body_contains=f'"{marker.decode()}"')
        + health_toml("dead"))

    def verdicts():
        m = px.metrics()
        out = {}
        for cluster, ups in (("app", [s204, s200]), ("body", [yes, no, late, err]), ("dead", [dead])):
            for u in ups:
                server = u if isinstance(u, str) else u.address
                out[server] = (metric_value(m, "upstream_health", upstream=cluster, server=server),
                               {r: metric_value(m, "health_check_total", upstream=cluster, server=server, result=r)
                                for r in ("ok", "failed", "timeout", "error")})
        return out

    def settled():
        v = verdicts()
        down = all(v[u][0] == 0 for u in (s200.address, no.address, late.address, err.address, dead))
        ups_checked = all(v[u][1]["ok"] >= 3 for u in (s204.address, yes.address))
        return v if down and ups_checked else None

    v = wait_for(settled)
    assert v, verdicts()
    for u in (s204, yes):
        gauge, counts = v[u.address]
        assert gauge == 1 and counts["failed"] == counts["timeout"] == counts["error"] == 0, (u.address, v)
    for u in (s200, no, late, err):
        gauge, counts = v[u.address]
        assert gauge == 0 and counts["failed"] >= 2 and counts["ok"] == 0, (u.address, v)
        assert counts["timeout"] == counts["error"] == 0, (u.address, v)
    assert v[dead][0] == 0 and v[dead][1]["error"] >= 2 and v[dead][1]["ok"] == 0
    assert logged_transitions(px, dead, 1) == [("healthy", "unhealthy", "error")]
    # requests go to the healthy server of each cluster only
    with Client(px.addr) as c:
        assert [c.request("GET", "/a").status for _ in range(6)] == [200] * 6
        assert [c.request("GET", "/body/b").status for _ in range(6)] == [200] * 6
    assert len(client_requests(s204)) == 6 and len(client_requests(yes)) == 6
    assert not any(client_requests(u) for u in (s200, no, late, err))


def test_hanging_check_times_out_without_blocking_traffic(proxy_factory, upstream_factory):
    async def hangs_on_checks(req, reply):
        if is_check(req):
            await asyncio.sleep(30)  # accepted, read, never answered
        else:
            await echo_handler(req, reply)

    good = upstream_factory(fixed(200))
    slow = upstream_factory(hangs_on_checks)
    px = proxy_factory(upstreams={"app": [good.address, slow.address]}, cluster_extra="tries = 1",
                       extra=health_toml("app", timeout='"500ms"'))
    # while checks of `slow` hang, client requests (some to `slow` itself)
    # and /readyz are answered at once
    rounds = 0
    with Client(px.addr) as c:
        while health(px, slow)[0] == 1:
            r = c.request("GET", "/during")
            assert r.status == 200 and r.elapsed < 0.3, r.elapsed
            t0 = time.monotonic()
            assert get(px.admin_addr, "/readyz").status == 200
            assert time.monotonic() - t0 < 0.3
            rounds += 1
            assert rounds < 1000, "slow server never marked unhealthy"
    assert client_requests(slow), "round robin sent traffic to the slow server before its fall"
    gauge, counts = health(px, slow)
    assert gauge == 0 and counts["timeout"] >= 2 and counts["ok"] == counts["failed"] == counts["error"] == 0
    assert logged_transitions(px, slow.address, 1) == [("healthy", "unhealthy", "timeout")]
    ev = next(e for e in px.events if e.get("event") == "health_transition")
    assert "within 0.5s" in ev["detail"]
    seen = len(client_requests(slow))
    with Client(px.addr) as c:
        assert [c.request("GET", "/after").status for _ in range(10)] == [200] * 10
    assert len(client_requests(slow)) == seen


def test_readyz_follows_health_of_the_only_server(proxy_factory, upstream_factory):
    state = {"status": 200}
    up = upstream_factory(switchable(state))
    px = proxy_factory(upstreams={"app": [up.address]}, cluster_extra="tries = 1",
                       extra=health_toml("app", healthy_threshold=1))
    # healthy at boot: traffic flows and the proxy is ready
    assert wait_for(lambda: health(px, up)[1]["ok"] >= 1)
    assert get(px.addr, "/boot").status == 200
    assert get(px.admin_addr, "/readyz").status == 200

    state["status"] = 503
    r = wait_for(lambda: (lambda r: r if r.status == 503 else None)(get(px.admin_addr, "/readyz")))
    assert r and r.json() == {"ready": False, "reasons": ["upstream_down:app"]}
    seen = len(client_requests(up))
    with Client(px.addr) as c:
        for _ in range(5):
            r = c.request("GET", "/while-down")
            assert r.status == 503 and r.json()["error"] == "upstream_unavailable"
    assert len(client_requests(up)) == seen  # never forwarded while unhealthy

    state["status"] = 200
    r = wait_for(lambda: (lambda r: r if r.status == 200 else None)(get(px.admin_addr, "/readyz")))
    assert r and r.json() == {"ready": True, "reasons": []}
    assert get(px.addr, "/back").status == 200
    assert [q.target for q in client_requests(up)][-1] == "/back"
    assert logged_transitions(px, up.address, 2) == [("healthy", "unhealthy", "failed"), ("unhealthy", "healthy", "ok")]


def test_checks_use_their_own_connections(proxy_factory, upstream_factory):
    up = upstream_factory(fixed(200))
    px = proxy_factory(upstreams={"app": [up.address]}, extra=health_toml("app", path='"/healthz?deep=1"'))
    with Client(px.addr) as c:
        n = 0
        while len(check_requests(up)) < 5:
            assert c.request("GET", f"/r{n}").status == 200
            n += 1
            assert n < 2000, "no health checks seen"
    checks = check_requests(up)
    clients = client_requests(up)
    for q in checks:
        assert (q.method, q.target) == ("GET", "/healthz?deep=1")
        assert q.header("host") == up.address
        assert q.header("connection") == "close"
    # one fresh connection per check, never one a client request used
    check_conns = [q.conn_id for q in checks]
    assert len(set(check_conns)) == len(check_conns)
    client_conns = {q.conn_id for q in clients}
    assert client_conns == {clients[0].conn_id}  # the client's requests all reused one pooled connection
    assert not client_conns & set(check_conns)
    assert all(q.header("user-agent") != UA for q in clients)
    # the check connections are closed once judged: the pool holds only the client's
    m = px.metrics()
    assert metric_value(m, "http_client_conn_pool_idle", upstream="app", server=up.address) == 1
    assert wait_for(lambda: up.open_connections <= 2)  # the pooled one, plus at most a check in flight


def test_interim_head_and_close_delimited_body(proxy_factory, upstream_factory):
    """A 100 before the answer is skipped; a body ended by the close is judged at the close."""

    async def raw(reader, writer):
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = await reader.read(65536)
            if not data:
                return
            buf += data
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        await writer.drain()
        writer.write(b"state=" + (b"ready" if b"User-Agent: edgeproxy-health" in buf else b"?"))
        await writer.drain()
        writer.close()

    up = upstream_factory(raw=raw)
    px = proxy_factory(upstreams={"app": [up.address]}, extra=health_toml("app", body_contains='"state=ready"'))
    assert wait_for(lambda: health(px, up)[1]["ok"] >= 3)
    gauge, counts = health(px, up)
    assert gauge == 1 and counts["failed"] == counts["timeout"] == counts["error"] == 0
    assert transitions(px, up.address) == []
