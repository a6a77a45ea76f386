"""Request-level limits: 414, 431 (bytes and count), 413 per route."""

from __future__ import annotations

import time

from support import Client, raw_exchange


def limits_config(up, tmp):
    from support import base_config

    return base_config(
        {"app": [up.address]},
        routes=[{"name": "small", "path_prefix": "/upload", "upstream": "app", "max_body_size": "1KiB"},
                {"name": "any", "path_prefix": "/", "upstream": "app"}],
        extra='[downstream]\nmax_request_line = "1KiB"\nmax_headers = 10\nmax_header_size = "4KiB"\n',
        tmp=tmp)


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


def test_long_request_line_gets_414(proxy_factory, upstream_factory, tmp_path):
    up = upstream_factory()
    px = proxy_factory(config=limits_config(up, tmp_path))
    out = raw_exchange(px.addr, b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status_of(out) == 414 and b"uri_too_long" in out
    # refused as soon as the line is too long, without waiting for its end
    out = raw_exchange(px.addr, b"GET /" + b"a" * 1100)
    assert status_of(out) == 414
    assert up.requests == []


def test_header_bytes_and_count_get_431(proxy_factory, upstream_factory, tmp_path):
    up = upstream_factory()
    px = proxy_factory(config=limits_config(up, tmp_path))
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(11))
    out = raw_exchange(px.addr, b"GET / HTTP/1.1\r\nHost: t\r\n" + many + b"\r\n")
    assert status_of(out) == 431 and b"too_many_headers" in out
    big = b"X-Big: " + b"v" * 5000 + b"\r\n"
    out = raw_exchange(px.addr, b"GET / HTTP/1.1\r\nHost: t\r\n" + big + b"\r\n")
    assert status_of(out) == 431 and b"header_too_large" in out
    with Client(px.addr) as c:  # at the limits is fine
        hdrs = [(f"X-H{i}", "v") for i in range(9)]
        assert c.request("GET", "/", headers=hdrs).status == 200
    assert len(up.requests) == 1


def test_body_over_route_limit_gets_413(proxy_factory, upstream_factory, tmp_path):
    up = upstream_factory()
    px = proxy_factory(config=limits_config(up, tmp_path))
    # Content-Length over the limit: answered before the body is read, even with Expect
    out = raw_exchange(px.addr, b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n"
                                b"Expect: 100-continue\r\n\r\n")
    assert status_of(out) == 413 and b"100 Continue" not in out and b"connection: close" in out.lower()
    # a chunked body that grows past the limit is cut with 413
    chunk = b"400\r\n" + b"x" * 1024 + b"\r\n"
    out = raw_exchange(px.addr, b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                                + chunk + chunk + b"0\r\n\r\n")
    assert status_of(out) == 413
    with Client(px.addr) as c:
        assert c.request("POST", "/upload", body=b"y" * 1024).status == 200  # at the limit
        assert c.request("POST", "/other", body=b"y" * 5000).status == 200  # other route: no limit
    assert [len(r.body) for r in up.requests] == [1024, 5000]


def test_expectation_other_than_100_continue_gets_417(proxy_factory, upstream_factory, tmp_path):
    up = upstream_factory()
    px = proxy_factory(config=limits_config(up, tmp_path))
    out = raw_exchange(px.addr, b"POST /other HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 200-ok\r\n\r\nabc"
                                b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    # answered, closed (the pipelined GET is not served), nothing forwarded
    assert status_of(out) == 417 and b"expectation_failed" in out and out.count(b"HTTP/1.1") == 1
    assert b"connection: close" in out.lower()
    with Client(px.addr) as c:  # 100-continue is still forwarded as before
        r = c.request("POST", "/other", headers=[("Expect", "100-continue")], body=b"abc")
        assert r.status == 200
    assert [r.target for r in up.requests] == ["/other"]


def test_request_body_under_min_rate_gets_408(proxy_factory, upstream_factory, tmp_path):
    import socket
    import threading

    from helpers_failures import read_until_close
    from support import base_config, metric_value

    up = upstream_factory()
    cfg = base_config({"app": [up.address]}, tmp=tmp_path, extra=(
        '[downstream]\nbody_timeout = "10s"\nbody_min_rate = "1KiB"\nbody_min_rate_after = "400ms"\n'))
    px = proxy_factory(config=cfg)

    # a slow-POST client: 20 bytes every 50 ms (400 B/s), never idle long enough for body_timeout
    slow = socket.create_connection(px.addr)
    slow.sendall(b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
    stop = threading.Event()

    def trickle():
        try:
            while not stop.wait(0.05):
                slow.sendall(b"x" * 20)
        except OSError:
            pass

    th = threading.Thread(target=trickle, daemon=True)
    t0 = time.monotonic()
    th.start()
    try:
        data, closed = read_until_close(slow, 5.0)
        cut = time.monotonic() - t0
    finally:
        stop.set()
        th.join(2)
        slow.close()
    assert closed and status_of(data) == 408 and b"request_body_too_slow" in data
    assert 0.35 <= cut < 3.0, cut

    # a client that is slow to start (inside the grace period) and then fast is served
    fast = socket.create_connection(px.addr)
    try:
        fast.sendall(b"POST /late HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n" + b"y" * 10)
        assert not stop.clear() and not stop.wait(0.2)  # pause inside the 400 ms grace
        fast.sendall(b"y" * 199990)
        fast.settimeout(5)
        assert status_of(fast.recv(65536)) == 200
    finally:
        fast.close()
    m = px.metrics()
    assert metric_value(m, "http_timeouts_total", side="downstream", phase="body_rate") == 1
    assert metric_value(m, "http_timeouts_total", side="downstream", phase="body") == 0


def test_413_reaches_a_client_still_uploading_then_lingering_close(proxy_factory, upstream_factory, tmp_path):
    """The answer comes before the body: the proxy half-closes and discards
    the rest (lingering close), so the client finishes sending, reads its 413
    and a clean end, never a reset that could destroy the answer."""
    import socket
    import threading

    up = upstream_factory()
    px = proxy_factory(config=limits_config(up, tmp_path))
    body = b"z" * (4 * 1024 * 1024)  # far more than the socket buffers hold
    sock = socket.create_connection(px.addr, timeout=10)
    sent: dict = {}

    def upload():
        try:
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            sock.shutdown(socket.SHUT_WR)
            sent["ok"] = True
        except OSError as exc:
            sent["error"] = exc

    t = threading.Thread(target=upload)
    t.start()
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)  # a reset raises here
            if not chunk:
                break
            data += chunk
    finally:
        t.join(10)
        sock.close()
    assert sent == {"ok": True}, sent
    assert status_of(data) == 413 and b"body_too_large" in data
    assert up.requests == []
