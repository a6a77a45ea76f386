"""Proxying over the wire: keep-alive, pipelining, framing, headers, routing, upgrades."""

import asyncio
import re

from helpers_proxying import RawConn, header, parse_head, read_request_head
from support import Client, metric_value

HEX32 = re.compile(r"[0-9a-f]{32}\Z")

HOP_REQUEST_HEADERS = ("connection", "keep-alive", "proxy-connection", "te", "upgrade", "x-custom-hop")


async def path_body_handler(req, reply):
    """Answers with "<method> <target> <body>" so each response names its request."""
    body = f"{req.method} {req.target} ".encode() + req.body
    await reply.send(200, [("Content-Type", "text/plain")], body)


# ---------------------------------------------------------------- 1. keep-alive
def test_keepalive_reuses_one_upstream_connection(proxy_factory, upstream_factory):
    up = upstream_factory(path_body_handler)
    px = proxy_factory(upstreams={"app": [up.address]})
    with Client(px.addr) as c:
        for i in range(25):
            if i % 3 == 0:
                r = c.request("POST", f"/post/{i}", body=b"payload-%d" % i)
                assert r.body == b"POST /post/%d payload-%d" % (i, i)
            else:
                r = c.request("GET", f"/get/{i}")
                assert r.body == b"GET /get/%d " % i
            assert r.status == 200
            assert not r.closed
            assert r.header("connection") is None
            assert r.header("via") is None  # off by default
    assert len(up.requests) == 25
    assert up.connections == 1
    assert {q.conn_id for q in up.requests} == {1}
    assert [q.target for q in up.requests] == [f"/{'post' if i % 3 == 0 else 'get'}/{i}" for i in range(25)]


# ---------------------------------------------------------------- 2. pipelining
def test_pipelined_requests_answered_in_order(proxy_factory, upstream_factory):
    n = 8

    async def slow_early(req, reply):
        i = int(req.target.split("/")[2].split("?")[0])
        await asyncio.sleep(0.015 * (n - i))  # earlier requests take longer upstream
        await reply.send(200, [("X-Index", str(i))], f"resp-{i}:".encode() + req.body)

    up = upstream_factory(slow_early)
    px = proxy_factory(upstreams={"app": [up.address]})
    reqs = []
    for i in range(n):
        if i == 3:
            reqs.append(b"POST /p/3 HTTP/1.1\r\nHost: test\r\nContent-Length: 11\r\n\r\nhello world")
        else:
            reqs.append(f"GET /p/{i}?q={i} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    with Client(px.addr) as c:
        c.send_raw(b"".join(reqs))
        responses = [c.read_response("POST" if i == 3 else "GET") for i in range(n)]
        for i, r in enumerate(responses):
            assert r.status == 200
            assert r.header("x-index") == str(i)
            expected = b"resp-3:hello world" if i == 3 else b"resp-%d:" % i
            assert r.body == expected
            assert not r.closed
        # still usable after the pipeline drained
        r = c.request("GET", "/p/0")
        assert r.body == b"resp-0:"
    assert [q.target for q in up.requests[:n]] == [
        "/p/3" if i == 3 else f"/p/{i}?q={i}" for i in range(n)
    ]
    assert up.requests[3].method == "POST" and up.requests[3].body == b"hello world"
    assert up.requests[3].header("content-length") == "11"
    assert all(q.body == b"" for i, q in enumerate(up.requests[:n]) if i != 3)


# ---------------------------------------------------------------- 3. Connection: close
def test_client_connection_close_is_honoured(proxy_factory, upstream_factory):
    up = upstream_factory(path_body_handler)
    px = proxy_factory(upstreams={"app": [up.address]})
    with Client(px.addr) as c:
        r = c.request("GET", "/first")
        assert r.status == 200 and r.header("connection") is None
        r = c.request("GET", "/last", headers=[("Connection", "close")])
        assert r.status == 200
        assert r.body == b"GET /last "
        assert r.header("connection") == "close"
        assert c.is_closed(5)
    # the client's Connection header is hop-by-hop: not forwarded upstream
    assert up.requests[1].header("connection") is None


def test_upstream_connection_close_keeps_client_alive(proxy_factory, upstream_factory):
    async def closing(req, reply):
        await reply.send(200, [("Connection", "close")], f"from-conn-{req.conn_id}".encode())
        reply.close()

    up = upstream_factory(closing)
    px = proxy_factory(upstreams={"app": [up.address]})
    with Client(px.addr) as c:
        r1 = c.request("GET", "/one")
        assert r1.status == 200 and r1.body == b"from-conn-1"
        assert r1.header("connection") is None
        assert not r1.closed
        r2 = c.request("GET", "/two")
        assert r2.status == 200 and r2.body == b"from-conn-2"
        assert r2.header("connection") is None
        r3 = c.request("GET", "/three")
        assert r3.body == b"from-conn-3"
    assert up.connections == 3
    assert [q.conn_id for q in up.requests] == [1, 2, 3]


# ---------------------------------------------------------------- 4. HTTP/1.0 clients
def test_http10_without_keepalive_closes(proxy_factory, upstream_factory):
    up = upstream_factory(path_body_handler)
    px = proxy_factory(upstreams={"app": [up.address]})
    with RawConn(px.addr) as c:
        c.send(b"GET /ten HTTP/1.0\r\nHost: test\r\n\r\n")
        first, headers, _ = c.read_head()
        assert first.startswith(b"HTTP/1.1 200 ") or first.startswith(b"HTTP/1.0 200 ")
        assert header(headers, "content-length") == str(len(b"GET /ten "))
        assert header(headers, "connection") == "close"
        rest, closed = c.read_until_close()
        assert rest == b"GET /ten "
        assert closed
    assert up.requests[0].target == "/ten"


def test_http10_keepalive_with_length_stays_open(proxy_factory, upstream_factory):
    up = upstream_factory(path_body_handler)
    px = proxy_factory(upstreams={"app": [up.address]})
    with RawConn(px.addr) as c:
        for i in range(3):
            c.send(b"GET /ka/%d HTTP/1.0\r\nHost: test\r\nConnection: keep-alive\r\n\r\n" % i)
            first, headers, _ = c.read_head()
            assert b" 200 " in first
            body = b"GET /ka/%d " % i
            assert header(headers, "content-length") == str(len(body))
            assert header(headers, "connection").lower() == "keep-alive"
            assert c.read_exact(len(body)) == body
        # the last one without keep-alive: answered, then closed
        c.send(b"GET /ka/end HTTP/1.0\r\nHost: test\r\n\r\n")
        first, headers, _ = c.read_head()
        assert header(headers, "connection") == "close"
        rest, closed = c.read_until_close()
        assert rest == b"GET /ka/end " and closed
    assert [q.target for q in up.requests] == ["/ka/0", "/ka/1", "/ka/2", "/ka/end"]
    assert up.connections == 1


def test_http10_client_gets_chunked_response_unchunked(proxy_factory, upstream_factory):
    chunks = [b"hello", b" ", b"chunked", b"-" * 3000, b" world"]

    async def chunked(req, reply):
        wire = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        wire += b"".join(b"%x\r\n%b\r\n" % (len(ch), ch) for ch in chunks) + b"0\r\n\r\n"
        await reply.raw(wire)

    up = upstream_factory(chunked)
    px = proxy_factory(upstreams={"app": [up.address]})
    with RawConn(px.addr) as c:
        # even asking for keep-alive: without a length the body must end with the close
        c.send(b"GET /c HTTP/1.0\r\nHost: test\r\nConnection: keep-alive\r\n\r\n")
        first, headers, _ = c.read_head()
        assert b" 200 " in first
        assert header(headers, "transfer-encoding") is None
        assert header(headers, "connection") == "close"
        cl = header(headers, "content-length")
        body, closed = c.read_until_close()
        assert closed
        assert body == b"".join(chunks)
        assert cl is None or cl == str(len(body))


# ---------------------------------------------------------------- 5. body framing
def test_chunked_request_body_arrives_intact(proxy_factory, upstream_factory):
    async def echo_body(req, reply):
        await reply.send(200, [], req.body)

    up = upstream_factory(echo_body)
    px = proxy_factory(upstreams={"app": [up.address]})
    parts = [b"Wiki", b"pedia", b" in\r\n\r\nchunks.", b"x" * 70000, bytes(range(256)) * 10]
    expected = b"".join(parts)
    with Client(px.addr) as c:
        c.send_raw(b"POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i, p in enumerate(parts):
            ext = b";name=val" if i == 1 else b""
            c.send_raw(b"%x%b\r\n%b\r\n" % (len(p), ext, p))
        c.send_raw(b"0\r\n\r\n")
        r = c.read_response("POST")
        assert r.status == 200
        assert r.body == expected
        # connection still usable, and a second chunked body works too
        c.send_raw(b"POST /again HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        r = c.read_response("POST")
        assert r.body == b"abc"
    assert up.requests[0].body == expected
    assert up.requests[0].target == "/upload"
    assert up.requests[1].body == b"abc"


def test_chunked_response_reaches_http11_client(proxy_factory, upstream_factory):
    chunks = [b"first;", b"second;", b"z" * 50000, b";last"]

    async def chunked(req, reply):
        wire = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        wire += b"".join(b"%x\r\n%b\r\n" % (len(ch), ch) for ch in chunks) + b"0\r\n\r\n"
        await reply.raw(wire)

    up = upstream_factory(chunked)
    px = proxy_factory(upstreams={"app": [up.address]})
    with Client(px.addr) as c:
        for _ in range(2):
            r = c.request("GET", "/chunked")
            assert r.status == 200
            assert r.body == b"".join(chunks)
            assert r.header("transfer-encoding") == "chunked"
            assert r.header("content-length") is None
            assert not r.closed
    assert up.connections == 1


def test_response_delimited_by_close_reaches_client(proxy_factory, upstream_factory):
    body_parts = [b"start-", b"m" * 100000, b"-end"]

    async def until_close(reader, writer):
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        for p in body_parts:
            writer.write(p)
            await writer.drain()
        writer.close()

    up = upstream_factory(raw=until_close)
    px = proxy_factory(upstreams={"app": [up.address]})
    expected = b"".join(body_parts)
    with Client(px.addr) as c:
        r = c.request("GET", "/eof")
        assert r.status == 200
        assert r.body == expected
        assert not r.closed
        # re-framed as chunked for the HTTP/1.1 client, so its connection lives on
        assert r.header("transfer-encoding") == "chunked"
        r = c.request("GET", "/eof2")
        assert r.body == expected
    assert up.connections == 2
    # an HTTP/1.0 client gets it delimited by close
    with RawConn(px.addr) as c:
        c.send(b"GET /eof3 HTTP/1.0\r\nHost: test\r\n\r\n")
        first, headers, _ = c.read_head()
        assert b" 200 " in first and header(headers, "transfer-encoding") is None
        body, closed = c.read_until_close()
        assert closed and body == expected


# ---------------------------------------------------------------- 6. hop-by-hop and X-Forwarded-*
def test_hop_by_hop_request_headers_removed_and_forwarded_headers_set(proxy_factory, upstream_factory):
    up = upstream_factory(path_body_handler)
    px = proxy_factory(upstreams={"app": [up.address]})
    with Client(px.addr) as c:
        r = c.request(
            "GET",
            "/hop",
            host="front.example:8080",
            headers=[
                ("Connection", "keep-alive, X-Custom-Hop"),
                ("Keep-Alive", "timeout=5, max=100"),
                ("Proxy-Connection", "keep-alive"),
                ("TE", "trailers"),
                ("Upgrade", "websocket"),
                ("X-Custom-Hop", "secret"),
                ("X-Forwarded-For", "1.2.3.4"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "spoofed.example"),
                ("X-End-To-End", "kept"),
            ],
        )
        assert r.status == 200
        assert not r.closed
    req = up.requests[0]
    names = [k for k, _ in req.headers]
    for hop in HOP_REQUEST_HEADERS:
        assert hop not in names, (hop, req.headers)
    assert req.header("x-forwarded-for") == "1.2.3.4, 127.0.0.1"
    assert req.header("x-forwarded-proto") == "http"
    assert req.header("x-forwarded-host") == "front.example:8080"
    assert req.header("host") == "front.example:8080"
    assert req.header("x-end-to-end") == "kept"
    assert names.count("x-forwarded-for") == 1
    assert names.count("host") == 1


def test_x_forwarded_for_set_when_absent(proxy_factory, upstream_factory):
    up = upstream_factory(path_body_handler)
    px = proxy_factory(upstreams={"app": [up.address]})
    with Client(px.addr) as c:
        assert c.request("GET", "/").status == 200
    req = up.requests[0]
    assert req.header("x-forwarded-for") == "127.0.0.1"
    assert req.header("x-forwarded-proto") == "http"
    assert req.header("x-forwarded-host") == "test"


def test_hop_by_hop_response_headers_removed(proxy_factory, upstream_factory):
    async def hoppy(req, reply):
        await reply.send(
            200,
            [("Connection", "x-up-hop"), ("X-Up-Hop", "1"), ("Keep-Alive", "timeout=5"),
             ("Proxy-Connection", "keep-alive"), ("X-Up-End", "kept")],
            b"ok",
        )

    up = upstream_factory(hoppy)
    px = proxy_factory(upstreams={"app": [up.address]})
    with Client(px.addr) as c:
        for _ in range(2):
            r = c.request("GET", "/resp-hop")
            assert r.status == 200 and r.body == b"ok"
            names = [k for k, _ in r.headers]
            assert "x-up-hop" not in names
            assert "keep-alive" not in names
            assert "proxy-connection" not in names
            assert r.header("connection") is None
            assert r.header("x-up-end") == "kept"
            assert not r.closed
    assert up.connections == 1


# ---------------------------------------------------------------- 7. X-Request-ID
def test_request_id_generated_and_consistent(proxy_factory, upstream_factory):
    up = upstream_factory(path_body_handler)
    px = proxy_factory(upstreams={"app": [up.address]})
    with Client(px.addr) as c:
        r1 = c.request("GET", "/rid/1")
        r2 = c.request("GET", "/rid/2")
    ids = []
    for r, q in zip((r1, r2), up.requests):
        rid = r.header("x-request-id")
        assert rid is not None and HEX32.match(rid), rid
        assert q.header("x-request-id") == rid
        ids.append(rid)
    assert ids[0] != ids[1]
    recs = px.access_records(2)
    assert [(x["path"], x["request_id"]) for x in recs[:2]] == [("/rid/1", ids[0]), ("/rid/2", ids[1])]


def test_request_id_from_client_passed_both_ways(proxy_factory, upstream_factory):
    async def with_own_id(req, reply):
        # an upstream that sets its own id does not override the request's
        await reply.send(200, [("X-Request-ID", "upstream-made-up")], b"ok")

    up = upstream_factory(with_own_id)
    px = proxy_factory(upstreams={"app": [up.address]})
    with Client(px.addr) as c:
        r = c.request("GET", "/mine", headers=[("X-Request-ID", "client-req-42.abc")])
        assert r.header("x-request-id") == "client-req-42.abc"
        bad = "b" * 129
        r2 = c.request("GET", "/bad", headers=[("X-Request-ID", bad)])
        rid2 = r2.header("x-request-id")
        assert rid2 != bad and HEX32.match(rid2)
    assert up.requests[0].header("x-request-id") == "client-req-42.abc"
    assert [k for k, _ in up.requests[0].headers].count("x-request-id") == 1
    assert up.requests[1].header("x-request-id") == rid2
    recs = px.access_records(2)
    assert recs[0]["request_id"] == "client-req-42.abc"
    assert recs[1]["request_id"] == rid2


# ---------------------------------------------------------------- 8. routing
def test_routing_over_the_wire(proxy_factory, upstream_factory):
    def tagged(tag):
        async def handler(req, reply):
            await reply.send(200, [("X-Upstream", tag)], f"{tag} {req.target}".encode())

        return handler

    a = upstream_factory(tagged("A"))
    b = upstream_factory(tagged("B"))
    px = proxy_factory(
        upstreams={"alpha": [a.address], "beta": [b.address]},
        routes=[
            {"name": "api", "host": "api.example.com", "path_prefix": "/", "upstream": "alpha"},
            {"name": "wild", "host": "*.example.com", "path_prefix": "/", "upstream": "beta"},
            {"name": "svc", "path_prefix": "/svc/", "upstream": "beta", "strip_prefix": True,
             "host_rewrite": "backend.internal"},
            {"name": "static", "path_prefix": "/static/", "upstream": "alpha"},
        ],
    )
    with Client(px.addr) as c:
        r = c.request("GET", "/v1/users?x=1", host="API.Example.com:8080")
        assert (r.status, r.body) == (200, b"A /v1/users?x=1")
        r = c.request("GET", "/page", host="shop.example.com")
        assert (r.status, r.body) == (200, b"B /page")
        r = c.request("GET", "/svc/items/7?full=1", host="front.test")
        assert (r.status, r.body) == (200, b"B /items/7?full=1")
        r = c.request("GET", "/static/app.js", host="front.test")
        assert (r.status, r.body) == (200, b"A /static/app.js")
        # bare suffix of a wildcard: falls to any-host routes
        r = c.request("GET", "/static/x.css", host="example.com")
        assert (r.status, r.body) == (200, b"A /static/x.css")
        # unknown host and path: 404 from the proxy, connection still usable
        r = c.request("GET", "/nothing", host="unknown.test")
        assert r.status == 404
        assert r.header("content-type") == "application/json"
        body = r.json()
        assert body == {"error": "no_route", "request_id": r.header("x-request-id")}
        assert HEX32.match(body["request_id"])
        assert not r.closed
        r = c.request("GET", "/nothing", host="example.com")
        assert r.status == 404 and r.json()["error"] == "no_route"
        r = c.request("GET", "/svc", host="front.test")  # "/svc/" is the prefix
        assert r.status == 404
        r = c.request("GET", "/page2", host="deep.shop.example.com")
        assert (r.status, r.body) == (200, b"B /page2")
    assert [q.target for q in a.requests] == ["/v1/users?x=1", "/static/app.js", "/static/x.css"]
    assert a.requests[0].header("host") == "API.Example.com:8080"
    assert [q.target for q in b.requests] == ["/page", "/items/7?full=1", "/page2"]
    svc = b.requests[1]
    assert svc.header("host") == "backend.internal"
    assert svc.header("x-forwarded-host") == "front.test"
    recs = px.access_records(9)
    assert [x["route"] for x in recs] == ["api", "wild", "svc", "static", "static", None, None, None, "wild"]
    assert [x["status"] for x in recs[5:8]] == [404, 404, 404]
    assert recs[5]["outcome"] == "no_route"


# ---------------------------------------------------------------- 9. upgrades
def test_websocket_upgrade_tunnels_bytes(proxy_factory, upstream_factory):
    heads = []

    async def ws(reader, writer):
        heads.append(await read_request_head(reader))
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        await writer.drain()
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()

    up = upstream_factory(raw=ws)
    px = proxy_factory(
        upstreams={"wsc": [up.address]},
        routes=[{"name": "ws", "path_prefix": "/ws", "upstream": "wsc", "websocket": True}],
    )
    with RawConn(px.addr) as c:
        c.send(
            b"GET /ws/chat HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        first, headers, _ = c.read_head()
        assert first.startswith(b"HTTP/1.1 101")
        assert header(headers, "upgrade").lower() == "websocket"
        assert "upgrade" in header(headers, "connection").lower()
        assert header(headers, "content-length") is None and header(headers, "transfer-encoding") is None
        c.send(b"ping-1")
        assert c.read_exact(6) == b"ping-1"
        big = bytes(range(256)) * 800
        c.send(big)
        assert c.read_exact(len(big)) == big
        c.send(b"\x81\x05hello")
        assert c.read_exact(7) == b"\x81\x05hello"
        assert metric_value(px.metrics(), "http_server_upgrades_total", route="ws") == 1
    _, up_headers = parse_head(heads[0])
    assert header(up_headers, "upgrade") == "websocket"
    assert "upgrade" in header(up_headers, "connection").lower()
    assert header(up_headers, "sec-websocket-key") == "dGhlIHNhbXBsZSBub25jZQ=="


def test_upgrade_not_forwarded_without_websocket_route(proxy_factory, upstream_factory):
    up = upstream_factory(path_body_handler)
    px = proxy_factory(
        upstreams={"app": [up.address]},
        routes=[{"name": "plain", "path_prefix": "/", "upstream": "app"}],
    )
    with Client(px.addr) as c:
        r = c.request("GET", "/ws", headers=[("Connection", "Upgrade"), ("Upgrade", "websocket"),
                                             ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                             ("Sec-WebSocket-Version", "13")])
        assert r.status == 200 and r.body == b"GET /ws "
        assert r.interim == []
        assert not r.closed
        assert c.request("GET", "/after").body == b"GET /after "
    req = up.requests[0]
    assert req.header("upgrade") is None
    assert req.header("connection") is None
    assert metric_value(px.metrics(), "http_server_upgrades_total", route="plain") == 0


# ---------------------------------------------------------------- 10. HEAD
def test_head_request_keeps_content_length_and_no_body(proxy_factory, upstream_factory):
    async def head_aware(req, reply):
        if req.method == "HEAD":
            await reply.send(200, [("Content-Length", "1234"), ("Content-Type", "text/plain")], b"")
        else:
            await reply.send(200, [("Content-Type", "text/plain")], b"full body for " + req.target.encode())

    up = upstream_factory(head_aware)
    px = proxy_factory(upstreams={"app": [up.address]})
    with RawConn(px.addr) as c:
        c.send(b"HEAD /h HTTP/1.1\r\nHost: test\r\n\r\n")
        first, headers, _ = c.read_head()
        assert b" 200 " in first
        assert header(headers, "content-length") == "1234"
        assert header(headers, "transfer-encoding") is None
        # the next bytes on the wire are the next response, nothing in between
        c.send(b"GET /after HTTP/1.1\r\nHost: test\r\n\r\n")
        first, headers, _ = c.read_head()
        assert first.startswith(b"HTTP/1.1 200")
        body = b"full body for /after"
        assert header(headers, "content-length") == str(len(body))
        assert c.read_exact(len(body)) == body
    with Client(px.addr) as c:
        r = c.request("HEAD", "/h2")
        assert r.status == 200 and r.body == b"" and r.header("content-length") == "1234"
        r = c.request("GET", "/x")
        assert r.body == b"full body for /x"
    assert [q.method for q in up.requests] == ["HEAD", "GET", "HEAD", "GET"]
    assert up.connections == 1


# ---------------------------------------------------------------- 11. Via
def test_via_added_both_ways(proxy_factory, upstream_factory):
    up = upstream_factory(path_body_handler)
    px = proxy_factory(upstreams={"app": [up.address]}, extra="[headers]\nvia = true\n")
    with Client(px.addr) as c:
        r = c.request("GET", "/via")
        assert r.status == 200
        assert r.header("via") == "1.1 edgeproxy"
    assert up.requests[0].header("via") == "1.1 edgeproxy"


def test_access_log_records_each_proxied_request(proxy_factory, upstream_factory):
    up = upstream_factory(path_body_handler)
    px = proxy_factory(upstreams={"app": [up.address]})
    with Client(px.addr) as c:
        c.request("POST", "/log", body=b"12345")
    rec = px.access_records(1)[0]
    assert (rec["method"], rec["path"], rec["status"], rec["route"], rec["upstream"]) == (
        "POST", "/log", 200, "default", "app")
    assert rec["bytes_in"] == 5
    assert rec["bytes_out"] == len(b"POST /log 12345")
