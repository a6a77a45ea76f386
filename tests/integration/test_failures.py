"""Upstream and downstream failures: what the client sees, and when.

Every scenario runs under both event loops (``loop_kind``). Timing bounds
are loose on the slow side (a loaded machine) and tight where the feature is
about speed (a refused connect must not wait for a timeout).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from helpers_failures import (
    discard_until_eof,
    hang_raw,
    head_lines,
    parse_raw_response,
    read_head,
    read_until_close,
    wait_until,
)
from support import Client, base_config, dead_addr, get, metric_value


def assert_error(r, status: int, code: str) -> None:
    assert r.status == status, (r.status, r.body)
    body = r.json()
    assert body["error"] == code
    assert body["request_id"]
    assert r.header("x-request-id") == body["request_id"]


# ----------------------------------------------------------------------
# 1. connect refused
def test_connect_refused_answers_502_fast(proxy_factory):
    px = proxy_factory(upstreams={"app": [dead_addr()]})
    r = get(px.addr, "/refused")
    assert_error(r, 502, "upstream_connect_failed")
    assert r.elapsed < 1.0
    m = px.metrics()
    assert metric_value(m, "http_client_connect_errors_total", upstream="app", reason="refused") >= 1
    rec = px.access_records(1)[-1]
    assert rec["status"] == 502 and rec["outcome"] == "upstream_connect_failed"


# ----------------------------------------------------------------------
# 2. upstream accepts, never answers
def test_silent_upstream_times_out_at_response_timeout(proxy_factory, upstream_factory):
    up = upstream_factory(raw=hang_raw)
    px = proxy_factory(upstreams={"app": [up.address]}, cluster_extra='response_timeout = "300ms"')
    r = get(px.addr, "/silent")
    assert_error(r, 504, "upstream_timeout")
    assert 0.25 <= r.elapsed < 2.0, r.elapsed
    assert up.connections == 1  # the only server is not tried twice
    m = px.metrics()
    assert metric_value(m, "http_timeouts_total", side="upstream", phase="response") == 1
    assert metric_value(m, "http_client_retries_total", upstream="app", result="retried") == 0


@pytest.mark.parametrize("retry_on_timeout", [True, False])
def test_response_timeout_retried_on_another_server(proxy_factory, upstream_factory, retry_on_timeout):
    hung = upstream_factory(raw=hang_raw)
    good = upstream_factory()
    px = proxy_factory(upstreams={"app": [hung.address, good.address]},
                       cluster_extra=f'response_timeout = "300ms"\nretry_on_timeout = {str(retry_on_timeout).lower()}')
    # round robin: one of two requests meets the hung server
    results = [get(px.addr, f"/r{i}") for i in range(2)]
    slow = [r for r in results if r.elapsed >= 0.25]
    assert len(slow) == 1 and hung.connections == 1
    m = px.metrics()
    assert metric_value(m, "http_timeouts_total", side="upstream", phase="response") == 1
    if retry_on_timeout:
        # the hung server cost latency, not an error: the good server answered
        assert [r.status for r in results] == [200, 200]
        assert sorted(r.target for r in good.requests) == ["/r0", "/r1"]
        assert metric_value(m, "http_client_retries_total", upstream="app", result="retried") == 1
        # a POST is never sent twice
        with Client(px.addr) as c:
            posts = [c.request("POST", f"/p{i}", body=b"x") for i in range(2)]
        assert sorted(r.status for r in posts) == [200, 504]
    else:
        assert sorted(r.status for r in results) == [200, 504]
        assert_error(slow[0], 504, "upstream_timeout")
        assert metric_value(m, "http_client_retries_total", upstream="app", result="retried") == 0


def test_response_timeout_on_a_keepalive_connection_after_a_longer_one(proxy_factory, upstream_factory, tmp_path):
    """The exchanges of one client connection share a lazily armed timer: a
    later request whose deadline is earlier than the handle left by the one
    before must still time out at its own deadline, and a fast request after
    it is unaffected."""
    fast = upstream_factory()
    hung = upstream_factory(raw=hang_raw)
    config = base_config({"patient": [fast.address], "strict": [hung.address]},
                         [{"name": "strict", "path_prefix": "/strict", "upstream": "strict"},
                          {"name": "patient", "path_prefix": "/", "upstream": "patient"}], tmp=tmp_path)
    config = config.replace("[upstreams.patient]\n", '[upstreams.patient]\nresponse_timeout = "60s"\n')
    config = config.replace("[upstreams.strict]\n", '[upstreams.strict]\nresponse_timeout = "300ms"\n')
    px = proxy_factory(config)
    with Client(px.addr) as c:
        assert c.request("GET", "/first").status == 200  # leaves a timer due in 60 s
        t0 = time.monotonic()
        r = c.request("GET", "/strict/x")
        elapsed = time.monotonic() - t0
        assert_error(r, 504, "upstream_timeout")
        assert 0.25 <= elapsed < 2.0, elapsed
        assert c.request("GET", "/after").status == 200  # the same connection still serves
    assert metric_value(px.metrics(), "http_timeouts_total", side="upstream", phase="response") == 1


# ----------------------------------------------------------------------
# 3. slowloris
def test_slowloris_cut_at_header_timeout_while_others_are_served(proxy_factory, upstream_factory):
    up = upstream_factory()
    px = proxy_factory(upstreams={"app": [up.address]}, extra='[downstream]\nheader_timeout = "500ms"\n')

    slow = socket.create_connection(px.addr, timeout=5)
    t0 = time.monotonic()
    stop = threading.Event()
    started = threading.Event()

    def trickle():
        # a head that keeps growing (well within max_header_size) and never ends
        pieces = [b"GET /slow HTTP/1.1\r\n", b"Host: te", b"st\r\n"]
        i = 0
        while not stop.is_set():
            piece = pieces[i] if i < len(pieces) else b"X-Pad-%d: %d\r\n" % (i, i)
            try:
                slow.sendall(piece)
            except OSError:
                return
            i += 1
            if i == 2:
                started.set()
            stop.wait(0.1)

    th = threading.Thread(target=trickle, daemon=True)
    th.start()
    try:
        assert started.wait(2)
        # another client, on another connection, is served while the slow one trickles
        other = get(px.addr, "/fast")
        t_other = time.monotonic() - t0
        assert other.status == 200 and other.json()["target"] == "/fast"

        data, closed = read_until_close(slow, 5.0)
        t_cut = time.monotonic() - t0
    finally:
        stop.set()
        th.join(2)
        slow.close()
    assert closed, "the slow client was never cut off"
    assert t_other < t_cut
    assert 0.45 <= t_cut < 1.5, t_cut
    status, hdrs, body = parse_raw_response(data)
    assert status == 408
    assert hdrs.get("connection", "").lower() == "close"
    assert b"request_header_timeout" in body
    # the slow request never reached the upstream
    assert [r.target for r in up.requests] == ["/fast"]
    m = px.metrics()
    assert metric_value(m, "http_timeouts_total", side="downstream", phase="header") == 1


# ----------------------------------------------------------------------
# 4. upstream answers before reading the request body
SMUGGLE = b"GET /smuggled HTTP/1.1\r\nHost: test\r\n\r\n"


def early_answer_upstream(upstream_factory, status: int):
    """Answers a POST right after its head (body unread); serves GETs normally."""
    seen: list[tuple[str, str]] = []

    async def raw(reader, writer):
        buf = bytearray()
        while True:
            head = await read_head(reader, buf)
            if head is None:
                return
            line, _ = head_lines(head)
            method, target, _ = line.split(" ", 2)
            seen.append((method, target))
            if method == "POST":
                body = b"early"
                writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%b" % (status, len(body), body))
                await writer.drain()
                await discard_until_eof(reader)
                return
            body = target.encode()
            writer.write(b"HTTP/1.1 200 X\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
            await writer.drain()

    return upstream_factory(raw=raw), seen


@pytest.mark.parametrize("status", [413, 200])
def test_early_response_small_rest_is_drained_and_connection_reused(proxy_factory, upstream_factory, status):
    up, seen = early_answer_upstream(upstream_factory, status)
    px = proxy_factory(upstreams={"app": [up.address]}, extra='[downstream]\ndrain_body_limit = "64KiB"\n')
    length = 48 * 1024  # below drain_body_limit
    body = (SMUGGLE * (length // len(SMUGGLE) + 1))[:length]
    with Client(px.addr) as c:
        c.send_raw(b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n" % length + body[:1000])
        r = c.read_response("POST")
        assert r.status == status and r.body == b"early"
        assert (r.header("connection") or "").lower() != "close"
        assert not r.closed
        # the rest of the body, then a follow-up request on the same connection
        c.send_raw(body[1000:] + b"GET /after HTTP/1.1\r\nHost: test\r\n\r\n")
        r2 = c.read_response("GET")
        assert r2.status == 200, (r2.status, r2.body)
        assert r2.body == b"/after"
        assert not r2.closed
    # body bytes were discarded, never parsed as requests
    assert ("GET", "/smuggled") not in seen
    assert ("GET", "/after") in seen


@pytest.mark.parametrize("status", [413, 200])
def test_early_response_large_rest_closes_connection(proxy_factory, upstream_factory, status):
    up, seen = early_answer_upstream(upstream_factory, status)
    px = proxy_factory(upstreams={"app": [up.address]}, extra='[downstream]\ndrain_body_limit = "64KiB"\n')
    length = 1024 * 1024  # far above drain_body_limit
    sock = socket.create_connection(px.addr, timeout=5)
    try:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n" % length + SMUGGLE * 10)
        t0 = time.monotonic()
        data, closed = read_until_close(sock, 5.0)
        elapsed = time.monotonic() - t0
    finally:
        sock.close()
    rstatus, hdrs, rest = parse_raw_response(data)
    assert rstatus == status
    assert hdrs.get("connection", "").lower() == "close"
    assert rest == b"early"  # nothing after the response
    assert closed and elapsed < 2.0
    assert ("GET", "/smuggled") not in seen


# ----------------------------------------------------------------------
# 5. retries
def test_get_retried_on_live_server_when_one_is_dead(proxy_factory, upstream_factory):
    up = upstream_factory()
    px = proxy_factory(upstreams={"app": [dead_addr(), up.address]}, cluster_extra="tries = 2")
    for i in range(6):
        r = get(px.addr, f"/get/{i}")
        assert r.status == 200, (i, r.status, r.body)
        assert r.json()["target"] == f"/get/{i}"
    assert sorted(q.target for q in up.requests) == sorted(f"/get/{i}" for i in range(6))
    m = px.metrics()
    retries = metric_value(m, "http_client_retries_total", upstream="app")
    assert retries >= 1
    assert metric_value(m, "http_client_connect_errors_total", upstream="app", reason="refused") == retries


def test_post_not_retried_after_connect_failure(proxy_factory, upstream_factory):
    up = upstream_factory()
    px = proxy_factory(upstreams={"app": [dead_addr(), up.address]}, cluster_extra="tries = 2")
    statuses = {}
    for i in range(6):
        with Client(px.addr) as c:
            r = c.request("POST", "/post", headers=[("X-Marker", str(i))], body=b"payload-%d" % i)
        statuses[i] = r.status
        if r.status != 200:
            assert_error(r, 502, "upstream_connect_failed")
    failed = {i for i, s in statuses.items() if s == 502}
    ok = {i for i, s in statuses.items() if s == 200}
    assert failed, f"no POST was routed to the dead server: {statuses}"
    assert ok, f"no POST reached the live server: {statuses}"
    seen = [q.header("x-marker") for q in up.requests]
    assert sorted(seen) == sorted(str(i) for i in ok)  # no retried copy of a failed POST
    assert metric_value(px.metrics(), "http_client_retries_total", upstream="app") == 0


# ----------------------------------------------------------------------
# 6. pool: stale connections and idle expiry
def _answer(writer, target: str) -> None:
    body = target.encode()
    writer.write(b"HTTP/1.1 200 X\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))


def test_upstream_closing_after_each_response_is_invisible_to_client(proxy_factory, upstream_factory):
    answered = []

    async def answer_then_close(reader, writer):
        buf = bytearray()
        head = await read_head(reader, buf)
        if head is None:
            return
        target = head_lines(head)[0].split(" ")[1]
        answered.append(target)
        _answer(writer, target)  # keep-alive implied (HTTP/1.1, no Connection: close)
        await writer.drain()
        writer.close()

    up = upstream_factory(raw=answer_then_close)
    px = proxy_factory(upstreams={"app": [up.address]})
    with Client(px.addr) as c:
        for i in range(10):
            r = c.request("GET", f"/s/{i}")
            assert r.status == 200, (i, r.status, r.body)
            assert r.body == f"/s/{i}".encode()
            assert not r.closed
    assert answered == [f"/s/{i}" for i in range(10)]


def _close_on_second_request(answered, heads):
    async def raw(reader, writer):
        buf = bytearray()
        head = await read_head(reader, buf)
        if head is None:
            return
        line = head_lines(head)[0]
        heads.append(line)
        target = line.split(" ")[1]
        answered.append(target)
        _answer(writer, target)
        await writer.drain()
        # the next request on this kept-alive connection is dropped unanswered,
        # as if the server's idle timer fired just as it arrived
        head = await read_head(reader, buf)
        if head is not None:
            heads.append(head_lines(head)[0])
        writer.close()

    return raw


def test_stale_pooled_connection_get_retried_on_fresh_one(proxy_factory, upstream_factory):
    answered, heads = [], []
    up = upstream_factory(raw=_close_on_second_request(answered, heads))
    px = proxy_factory(upstreams={"app": [up.address]}, cluster_extra="tries = 2")
    with Client(px.addr) as c:
        for i in range(8):
            r = c.request("GET", f"/k/{i}")
            assert r.status == 200, (i, r.status, r.body)
            assert r.body == f"/k/{i}".encode()
    assert answered == [f"/k/{i}" for i in range(8)]
    assert metric_value(px.metrics(), "http_client_retries_total", upstream="app") >= 1


def test_stale_pooled_connection_post_not_replayed(proxy_factory, upstream_factory):
    answered, heads = [], []
    up = upstream_factory(raw=_close_on_second_request(answered, heads))
    px = proxy_factory(upstreams={"app": [up.address]}, cluster_extra="tries = 2")
    with Client(px.addr) as c:
        assert c.request("GET", "/prime").status == 200  # leaves one pooled connection
        r = c.request("POST", "/once", body=b"x" * 10)
    assert r.status == 502, (r.status, r.body)
    assert r.json()["error"] == "upstream_reset"
    assert "/once" not in answered
    assert sum(1 for h in heads if h.startswith("POST /once ")) == 1


def test_pool_idle_timeout_closes_idle_upstream_connections(proxy_factory, upstream_factory, tmp_path):
    from support import base_config

    up = upstream_factory()
    cfg = base_config({"app": [up.address]}, tmp=tmp_path) + '\n[upstreams.app.pool]\nadaptive_idle = false\nidle_timeout = "1s"\n'
    px = proxy_factory(config=cfg)
    with Client(px.addr) as c:
        assert c.request("GET", "/a").status == 200
        assert c.request("GET", "/b").status == 200
    assert up.connections == 1
    t0 = time.monotonic()
    assert up.open_connections == 1  # kept idle in the pool, not closed after use
    assert wait_until(lambda: up.open_connections == 0, timeout=3.5), "idle connection never expired"
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.8, elapsed  # expired by idle_timeout, not closed at once
    m = px.metrics()
    assert metric_value(m, "http_client_conn_pool_idle", upstream="app") == 0
    # the next request opens a fresh connection and works
    assert get(px.addr, "/c").status == 200
    assert up.connections == 2


# ----------------------------------------------------------------------
# 7. reset in the middle of a response body
@pytest.mark.parametrize("how", ["abort", "close"])
def test_upstream_dies_mid_response_closes_client(proxy_factory, upstream_factory, how):
    async def partial(reader, writer):
        buf = bytearray()
        if await read_head(reader, buf) is None:
            return
        writer.write(b"HTTP/1.1 200 X\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        await writer.drain()
        await asyncio.sleep(0.05)
        if how == "abort":
            writer.transport.abort()
        else:
            writer.close()

    up = upstream_factory(raw=partial)
    px = proxy_factory(upstreams={"app": [up.address]})
    sock = socket.create_connection(px.addr, timeout=5)
    try:
        t0 = time.monotonic()
        sock.sendall(b"GET /partial HTTP/1.1\r\nHost: test\r\n\r\n")
        data, closed = read_until_close(sock, 5.0)
        elapsed = time.monotonic() - t0
    finally:
        sock.close()
    assert closed, "client connection left hanging"
    assert elapsed < 2.0
    status, hdrs, body = parse_raw_response(data)
    assert status == 200 and hdrs["content-length"] == "1000"
    assert body == b"x" * 10
    rec = px.access_records(1)[-1]
    assert rec["path"] == "/partial"
    assert rec["outcome"] in ("upstream_reset", "upstream_closed"), rec
    assert rec["bytes_out"] == 10


# ----------------------------------------------------------------------
# 8. invalid upstream response
@pytest.mark.parametrize("garbage", [
    b"HTTZ/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
    b"this is not http at all\r\n\r\n",
])
def test_garbage_status_line_is_502(proxy_factory, upstream_factory, garbage):
    async def bad(reader, writer):
        buf = bytearray()
        if await read_head(reader, buf) is None:
            return
        writer.write(garbage)
        await writer.drain()
        await discard_until_eof(reader)

    up = upstream_factory(raw=bad)
    px = proxy_factory(upstreams={"app": [up.address]})
    r = get(px.addr, "/garbage")
    assert_error(r, 502, "invalid_upstream_response")
    assert up.connections == 1  # not retried


# ----------------------------------------------------------------------
# 9. request_timeout bounds the whole exchange, retries included
def test_request_timeout_bounds_retries(proxy_factory, upstream_factory):
    hang1 = upstream_factory(raw=hang_raw)
    hang2 = upstream_factory(raw=hang_raw)
    px = proxy_factory(
        upstreams={"app": [dead_addr(), hang1.address, hang2.address]},
        cluster_extra='tries = 3\nresponse_timeout = "30s"\nrequest_timeout = "400ms"',
    )
    r = get(px.addr, "/deadline")
    assert_error(r, 504, "request_timeout")
    assert 0.35 <= r.elapsed < 1.5, r.elapsed
    m = px.metrics()
    assert metric_value(m, "http_client_retries_total", upstream="app") >= 1  # the dead server was skipped
    assert metric_value(m, "http_timeouts_total", side="upstream", phase="request") == 1
    rec = px.access_records(1)[-1]
    assert rec["status"] == 504 and rec["outcome"] == "request_timeout"
