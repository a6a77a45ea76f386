"""build_request_head / build_response_head: rewritten heads, checked with h11."""

from __future__ import annotations

import h11
import pytest

from proxy.codec.base import HOP_BY_HOP

MAX = 8192

HOP_VALUES = {
    b"connection": b"keep-alive",
    b"keep-alive": b"timeout=5, max=100",
    b"proxy-connection": b"keep-alive",
    b"proxy-authenticate": b'Basic realm="edge"',
    b"proxy-authorization": b"Basic dXNlcjpwYXNz",
    b"te": b"trailers",
    b"trailer": b"Checksum",
    b"transfer-encoding": b"chunked",
    b"upgrade": b"websocket",
    b"content-length": b"0",
}


def req_head(impl, raw):
    head, consumed = impl.parse_request_head(raw, MAX)
    assert consumed == len(raw)
    return head


def resp_head(impl, raw, method=b"GET"):
    head, consumed = impl.parse_response_head(raw, method, MAX)
    assert consumed == len(raw)
    return head


def lines(out):
    """The head's lines; asserts CRLF everywhere and a single final blank line."""
    assert isinstance(out, bytes)
    assert out.endswith(b"\r\n\r\n")
    body = out[:-4]
    assert b"\r\n\r\n" not in body
    stripped = out.replace(b"\r\n", b"")
    assert b"\n" not in stripped and b"\r" not in stripped, out
    return body.split(b"\r\n")


def names(out):
    return [ln.split(b":", 1)[0] for ln in lines(out)[1:]]


def h11_request(out):
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(out)
    ev = conn.next_event()
    assert type(ev) is h11.Request, ev
    return ev


def h11_response(out, method=b"GET"):
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target=b"/", headers=[(b"Host", b"h")]))
    conn.receive_data(out)
    ev = conn.next_event()
    assert type(ev) in (h11.Response, h11.InformationalResponse), ev
    return ev


def rq(*header_lines, line=b"GET / HTTP/1.1", eol=b"\r\n"):
    return line + eol + b"".join(h + eol for h in header_lines) + eol


def rs(*header_lines, line=b"HTTP/1.1 200 OK", eol=b"\r\n"):
    return line + eol + b"".join(h + eol for h in header_lines) + eol


# --------------------------------------------------------------------------
# requests


def test_request_exact(impl):
    head = req_head(impl, rq(b"Host: client.example", b"Accept: */*", b"X-Custom: v", line=b"GET /old?q=1 HTTP/1.1"))
    out = impl.build_request_head(head, b"/new?q=1", b"backend:8080", frozenset(), [(b"X-Forwarded-For", b"1.2.3.4")])
    assert out == (
        b"GET /new?q=1 HTTP/1.1\r\n"
        b"Host: backend:8080\r\n"
        b"Accept: */*\r\n"
        b"X-Custom: v\r\n"
        b"X-Forwarded-For: 1.2.3.4\r\n"
        b"\r\n"
    )


@pytest.mark.parametrize("case", [bytes.lower, bytes.title, bytes.upper], ids=["lower", "title", "upper"])
@pytest.mark.parametrize("hop", sorted(HOP_BY_HOP), ids=lambda n: n.decode())
def test_request_drops_hop_by_hop(impl, hop, case):
    raw = rq(b"Host: a", b"X-Before: 1", case(hop) + b": " + HOP_VALUES.get(hop, b"x"), b"X-After: 2")
    head = req_head(impl, raw)
    out = impl.build_request_head(head, b"/", b"up", frozenset(), [])
    assert [n.lower() for n in names(out)] == [b"host", b"x-before", b"x-after"]
    h11_request(out)


def test_request_drops_every_hop_by_hop_at_once(impl):
    raw = rq(
        b"Host: a",
        b"Connection: keep-alive, Upgrade, TE",
        b"Keep-Alive: timeout=5",
        b"Proxy-Connection: keep-alive",
        b"Proxy-Authorization: Basic x",
        b"TE: trailers",
        b"Trailer: Checksum",
        b"Transfer-Encoding: chunked",
        b"Upgrade: websocket",
        b"X-End-To-End: yes",
        line=b"POST / HTTP/1.1",
    )
    out = impl.build_request_head(req_head(impl, raw), b"/", b"up", frozenset(), [(b"Transfer-Encoding", b"chunked")])
    assert names(out) == [b"Host", b"X-End-To-End", b"Transfer-Encoding"]
    ev = h11_request(out)
    assert ev.method == b"POST"


def test_request_drops_connection_named_headers(impl):
    raw = rq(
        b"Host: a",
        b"Connection: X-Secret, keep-alive, Foo-Bar",
        b"x-secret: 1",
        b"X-Keep: 2",
        b"FOO-BAR: 3",
        b"X-SECRET: 4",
    )
    out = impl.build_request_head(req_head(impl, raw), b"/", b"up", frozenset(), [])
    assert names(out) == [b"Host", b"X-Keep"]


def test_request_drops_named(impl):
    raw = rq(b"Host: a", b"X-Internal: a", b"Cookie: c=1", b"X-Keep: k", b"cookie: d=2", b"x-INTERNAL: b")
    out = impl.build_request_head(
        req_head(impl, raw), b"/", b"up", frozenset({b"x-internal", b"cookie"}), [(b"X-Extra", b"e")]
    )
    assert names(out) == [b"Host", b"X-Keep", b"X-Extra"]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(rq(b"Host: a"), id="host-first"),
        pytest.param(rq(b"Accept: */*", b"host: client.example", b"X-Z: z"), id="host-in-middle-lowercase"),
        pytest.param(rq(b"Accept: */*", b"HOST: client.example"), id="host-uppercase"),
        pytest.param(rq(b"Accept: */*", line=b"GET / HTTP/1.0"), id="http10-no-host"),
        pytest.param(rq(b"Host: a", b"Accept: */*", line=b"GET / HTTP/1.0"), id="http10-host"),
    ],
)
def test_request_host_first_and_single(impl, raw):
    out = impl.build_request_head(req_head(impl, raw), b"/t", b"upstream.internal:9000", frozenset(), [])
    ls = lines(out)
    assert ls[0] == b"GET /t HTTP/1.1"
    assert ls[1] == b"Host: upstream.internal:9000"
    assert [n.lower() for n in names(out)].count(b"host") == 1
    ev = h11_request(out)
    assert ev.http_version == b"1.1"
    assert ev.headers.raw_items()[0] == (b"Host", b"upstream.internal:9000")


def test_request_extra_appended_in_order(impl):
    raw = rq(b"Host: a", b"X-Forwarded-For: 9.9.9.9", b"Accept: */*")
    extra = [
        (b"X-Forwarded-For", b"9.9.9.9, 1.2.3.4"),
        (b"X-Request-ID", b"rid-1"),
        (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        (b"Content-Length", b"5"),
    ]
    head = req_head(impl, raw)
    out = impl.build_request_head(head, b"/", b"up", frozenset({b"x-forwarded-for"}), extra)
    ls = lines(out)
    assert ls[1:] == [b"Host: up", b"Accept: */*"] + [n + b": " + v for n, v in extra]
    ev = h11_request(out)
    assert ev.headers.raw_items()[-4:] == extra


def test_request_case_and_values_preserved(impl):
    raw = rq(
        b"Host: a",
        b"x-lower: v1",
        b"X-UPPER: v2",
        b"X-Mixed-Case: some value with  spaces",
        b"Set-Thing: caf\xc3\xa9",
        b"X-Dup: 1",
        b"x-dup: 2",
        b"X-Empty:",
        line=b"PATCH /a/b?c=d%20e HTTP/1.1",
    )
    out = impl.build_request_head(req_head(impl, raw), b"/a/b?c=d%20e", b"up", frozenset(), [])
    ev = h11_request(out)
    assert ev.method == b"PATCH"
    assert ev.target == b"/a/b?c=d%20e"
    assert ev.headers.raw_items() == [
        (b"Host", b"up"),
        (b"x-lower", b"v1"),
        (b"X-UPPER", b"v2"),
        (b"X-Mixed-Case", b"some value with  spaces"),
        (b"Set-Thing", b"caf\xc3\xa9"),
        (b"X-Dup", b"1"),
        (b"x-dup", b"2"),
        (b"X-Empty", b""),
    ]


def test_request_bare_lf_reserialised_with_crlf(impl):
    raw = rq(b"Host: a", b"Accept: */*", b"Connection: keep-alive", b"X-A: 1", eol=b"\n")
    out = impl.build_request_head(req_head(impl, raw), b"/", b"up", frozenset(), [(b"X-B", b"2")])
    assert lines(out) == [b"GET / HTTP/1.1", b"Host: up", b"Accept: */*", b"X-A: 1", b"X-B: 2"]
    h11_request(out)


def test_request_http10_becomes_http11(impl):
    raw = rq(b"Host: a", b"Connection: keep-alive", line=b"POST /x HTTP/1.0")
    out = impl.build_request_head(req_head(impl, raw), b"/x", b"up", frozenset(), [(b"Content-Length", b"3")])
    assert lines(out)[0] == b"POST /x HTTP/1.1"
    ev = h11_request(out)
    assert ev.http_version == b"1.1"


# --------------------------------------------------------------------------
# responses


def test_response_exact(impl):
    raw = rs(b"Content-Type: text/plain", b"Content-Length: 5", b"Connection: keep-alive", b"X-A: 1")
    out = impl.build_response_head(resp_head(impl, raw), frozenset(), [(b"Content-Length", b"5")])
    assert out == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: 1\r\nContent-Length: 5\r\n\r\n"


@pytest.mark.parametrize("case", [bytes.lower, bytes.title, bytes.upper], ids=["lower", "title", "upper"])
@pytest.mark.parametrize("hop", sorted(HOP_BY_HOP), ids=lambda n: n.decode())
def test_response_drops_hop_by_hop(impl, hop, case):
    raw = rs(b"X-Before: 1", case(hop) + b": " + HOP_VALUES.get(hop, b"x"), b"X-After: 2", b"Content-Length: 0")
    if hop == b"transfer-encoding":
        raw = rs(b"X-Before: 1", case(hop) + b": chunked", b"X-After: 2")
    out = impl.build_response_head(resp_head(impl, raw), frozenset(), [])
    assert [n.lower() for n in names(out)] == [b"x-before", b"x-after"]
    h11_response(out)


def test_response_drops_connection_named_and_drop(impl):
    raw = rs(
        b"Connection: X-Hop",
        b"X-Hop: 1",
        b"Server: origin/1.0",
        b"x-hop: 2",
        b"Set-Cookie: a=1",
        b"X-Powered-By: php",
        b"set-cookie: b=2",
        b"Content-Length: 0",
    )
    out = impl.build_response_head(
        resp_head(impl, raw), frozenset({b"server", b"x-powered-by"}), [(b"Content-Length", b"0"), (b"Via", b"1.1 edge")]
    )
    ev = h11_response(out)
    assert ev.status_code == 200
    assert ev.headers.raw_items() == [
        (b"Set-Cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"Content-Length", b"0"),
        (b"Via", b"1.1 edge"),
    ]


@pytest.mark.parametrize(
    ("line", "status", "reason"),
    [
        (b"HTTP/1.1 200 OK", 200, b"OK"),
        (b"HTTP/1.0 200 OK", 200, b"OK"),
        (b"HTTP/1.1 404 Not Found", 404, b"Not Found"),
        (b"HTTP/1.1 201 Very Much Created", 201, b"Very Much Created"),
        (b"HTTP/1.1 204 No Content", 204, b"No Content"),
        (b"HTTP/1.1 304 Not Modified", 304, b"Not Modified"),
        (b"HTTP/1.1 599 Custom", 599, b"Custom"),
        (b"HTTP/1.1 200", 200, b""),
    ],
    ids=lambda v: v.decode() if isinstance(v, bytes) else str(v),
)
def test_response_status_line(impl, line, status, reason):
    raw = rs(b"Content-Length: 0", line=line)
    out = impl.build_response_head(resp_head(impl, raw), frozenset(), [(b"Content-Length", b"0")])
    assert lines(out)[0].startswith(b"HTTP/1.1 %d" % status)
    ev = h11_response(out)
    assert (ev.status_code, ev.reason, ev.http_version) == (status, reason, b"1.1")


@pytest.mark.parametrize(
    ("line", "status"),
    [(b"HTTP/1.1 100 Continue", 100), (b"HTTP/1.1 103 Early Hints", 103)],
    ids=["100", "103"],
)
def test_response_interim(impl, line, status):
    raw = rs(b"Link: </style.css>; rel=preload", line=line)
    out = impl.build_response_head(resp_head(impl, raw), frozenset(), [])
    ev = h11_response(out, b"POST")
    assert type(ev) is h11.InformationalResponse
    assert ev.status_code == status
    assert ev.headers.raw_items() == [(b"Link", b"</style.css>; rel=preload")]


def test_response_bare_lf_reserialised_with_crlf(impl):
    raw = rs(b"Content-Type: text/html", b"Transfer-Encoding: chunked", b"X-A: 1", eol=b"\n")
    out = impl.build_response_head(resp_head(impl, raw), frozenset(), [(b"Transfer-Encoding", b"chunked")])
    assert lines(out) == [b"HTTP/1.1 200 OK", b"Content-Type: text/html", b"X-A: 1", b"Transfer-Encoding: chunked"]
    h11_response(out)


# --------------------------------------------------------------------------
# every implementation produces the same bytes


BUILD_REQUESTS = [
    rq(b"Host: a", b"Connection: X-Secret", b"X-Secret: s", b"Accept: */*", b"Cookie: c"),
    rq(b"Accept: */*", b"host: b", b"Transfer-Encoding: chunked", line=b"POST /u HTTP/1.1"),
    rq(b"Host: a", b"X: 1", eol=b"\n"),
]
BUILD_RESPONSES = [
    rs(b"Content-Length: 3", b"Connection: close, X-Hop", b"X-Hop: 1", b"Server: s"),
    rs(b"Transfer-Encoding: chunked", b"Set-Cookie: a", line=b"HTTP/1.0 201 Created"),
]


def test_implementations_agree(impls):
    reference, *others = impls
    extra = [(b"X-Request-ID", b"r1")]
    drop = frozenset({b"cookie", b"server"})
    for raw in BUILD_REQUESTS:
        want = reference.build_request_head(req_head(reference, raw), b"/t", b"up", drop, extra)
        for other in others:
            assert other.build_request_head(req_head(other, raw), b"/t", b"up", drop, extra) == want, other.NAME
    for raw in BUILD_RESPONSES:
        want = reference.build_response_head(resp_head(reference, raw), drop, extra)
        for other in others:
            assert other.build_response_head(resp_head(other, raw), drop, extra) == want, other.NAME
