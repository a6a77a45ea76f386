"""parse_response_head: status line, framing rules, interim heads, rejections."""

from __future__ import annotations

import pytest

from proxy.codec.base import (
    FRAMING_CHUNKED,
    FRAMING_CLOSE,
    FRAMING_LENGTH,
    FRAMING_NONE,
    ParseError,
)

MAX = 8192


def resp(*header_lines, line=b"HTTP/1.1 200 OK", eol=b"\r\n"):
    return line + eol + b"".join(h + eol for h in header_lines) + eol


def parse(impl, raw, method=b"GET", max_size=MAX):
    return impl.parse_response_head(raw, method, max_size)


def parse_whole(impl, raw, method=b"GET", max_size=MAX):
    res = parse(impl, raw, method, max_size)
    assert res is not None, raw
    head, consumed = res
    assert consumed == len(raw)
    return head


def fields(head):
    return {
        "status": head.status,
        "reason": head.reason,
        "version": head.version,
        "framing": head.framing,
        "content_length": head.content_length,
        "keep_alive": bool(head.keep_alive),
        "connection": frozenset(head.connection),
        "upgrade": head.upgrade,
        "headers": [(bytes(n), bytes(v)) for n, v in head.headers],
    }


# --------------------------------------------------------------------------
# status line


@pytest.mark.parametrize(
    ("line", "status", "reason", "version"),
    [
        (b"HTTP/1.1 200 OK", 200, b"OK", b"1.1"),
        (b"HTTP/1.1 404 Not Found", 404, b"Not Found", b"1.1"),
        (b"HTTP/1.1 503 Service Unavailable", 503, b"Service Unavailable", b"1.1"),
        (b"HTTP/1.1 201 Very Much Created Indeed", 201, b"Very Much Created Indeed", b"1.1"),
        (b"HTTP/1.1 200", 200, b"", b"1.1"),
        (b"HTTP/1.1 200 ", 200, b"", b"1.1"),
        (b"HTTP/1.1 418 I'm a teapot", 418, b"I'm a teapot", b"1.1"),
        (b"HTTP/1.1 599 Custom", 599, b"Custom", b"1.1"),
        (b"HTTP/1.0 200 OK", 200, b"OK", b"1.0"),
        (b"HTTP/1.1 302 Found", 302, b"Found", b"1.1"),
    ],
    ids=lambda v: v.decode() if isinstance(v, bytes) else str(v),
)
def test_status_line(impl, line, status, reason, version):
    head = parse_whole(impl, resp(b"Content-Length: 0", line=line))
    assert head.status == status
    assert head.reason == reason
    assert head.version == version
    assert isinstance(head.reason, bytes)


# --------------------------------------------------------------------------
# framing


FRAMING_CASES = [
    # method, raw, framing, content_length (None = not checked), keep_alive
    pytest.param(b"GET", resp(b"Content-Length: 5"), FRAMING_LENGTH, 5, True, id="length"),
    pytest.param(b"GET", resp(b"Content-Length: 0"), FRAMING_NONE, 0, True, id="length-zero"),
    pytest.param(b"GET", resp(b"Transfer-Encoding: chunked"), FRAMING_CHUNKED, None, True, id="chunked"),
    pytest.param(b"GET", resp(b"Transfer-Encoding: Chunked"), FRAMING_CHUNKED, None, True, id="chunked-any-case"),
    pytest.param(b"GET", resp(b"Server: x"), FRAMING_CLOSE, -1, False, id="neither-close"),
    pytest.param(b"POST", resp(), FRAMING_CLOSE, -1, False, id="neither-close-post"),
    pytest.param(
        b"GET", resp(line=b"HTTP/1.0 200 OK"), FRAMING_CLOSE, -1, False, id="http10-neither"
    ),
    pytest.param(
        b"GET", resp(b"Content-Length: 3", line=b"HTTP/1.0 200 OK"), FRAMING_LENGTH, 3, False, id="http10-length"
    ),
    pytest.param(
        b"GET",
        resp(b"Content-Length: 3", b"Connection: keep-alive", line=b"HTTP/1.0 200 OK"),
        FRAMING_LENGTH,
        3,
        True,
        id="http10-length-keep-alive",
    ),
    pytest.param(
        b"GET", resp(b"Content-Length: 3", b"Connection: close"), FRAMING_LENGTH, 3, False, id="length-close"
    ),
    pytest.param(
        b"GET",
        resp(b"Transfer-Encoding: chunked", b"Connection: Close"),
        FRAMING_CHUNKED,
        None,
        False,
        id="chunked-close",
    ),
    # HEAD: never a body, whatever the headers say
    pytest.param(b"HEAD", resp(b"Content-Length: 100"), FRAMING_NONE, 100, True, id="head-length"),
    pytest.param(b"HEAD", resp(b"Transfer-Encoding: chunked"), FRAMING_NONE, None, True, id="head-chunked"),
    pytest.param(b"HEAD", resp(), FRAMING_NONE, None, True, id="head-neither"),
    # no-body statuses
    pytest.param(b"GET", resp(line=b"HTTP/1.1 204 No Content"), FRAMING_NONE, None, True, id="204"),
    pytest.param(
        b"GET", resp(b"Content-Length: 10", line=b"HTTP/1.1 304 Not Modified"), FRAMING_NONE, None, True, id="304-cl"
    ),
    pytest.param(b"GET", resp(line=b"HTTP/1.1 304 Not Modified"), FRAMING_NONE, None, True, id="304"),
    pytest.param(
        b"POST", resp(line=b"HTTP/1.1 204 No Content"), FRAMING_NONE, None, True, id="204-post"
    ),
    # bare LF
    pytest.param(b"GET", resp(b"Content-Length: 7", eol=b"\n"), FRAMING_LENGTH, 7, True, id="bare-lf"),
]


@pytest.mark.parametrize(("method", "raw", "framing", "content_length", "keep"), FRAMING_CASES)
def test_framing(impl, method, raw, framing, content_length, keep):
    head = parse_whole(impl, raw, method)
    assert head.framing == framing
    if content_length is not None:
        assert head.content_length == content_length
    assert bool(head.keep_alive) is keep


@pytest.mark.parametrize(
    ("line", "status"),
    [
        (b"HTTP/1.1 100 Continue", 100),
        (b"HTTP/1.1 102 Processing", 102),
        (b"HTTP/1.1 103 Early Hints", 103),
    ],
    ids=["100", "102", "103"],
)
@pytest.mark.parametrize("method", [b"GET", b"POST", b"HEAD"], ids=lambda m: m.decode())
def test_interim_heads(impl, line, status, method):
    raw = resp(b"Link: </style.css>; rel=preload", line=line)
    head = parse_whole(impl, raw, method)
    assert head.status == status
    assert head.status < 200
    assert head.framing == FRAMING_NONE


SWITCHING = resp(
    b"Upgrade: websocket",
    b"Connection: Upgrade",
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
    line=b"HTTP/1.1 101 Switching Protocols",
)


@pytest.mark.parametrize("method", [b"GET", b"POST"], ids=lambda m: m.decode())
def test_101_to_upgrade_request(impl, method):
    """A 101 is an interim head when the request proposed an upgrade."""
    head, consumed = impl.parse_response_head(SWITCHING + b"\x81\x05hello", method, MAX, 0, upgrade=True)
    assert consumed == len(SWITCHING)
    assert head.status == 101
    assert head.reason == b"Switching Protocols"
    assert head.framing == FRAMING_NONE
    assert head.upgrade == b"websocket"
    assert head.connection == frozenset({b"upgrade"})


@pytest.mark.parametrize("method", [b"GET", b"POST"], ids=lambda m: m.decode())
def test_101_to_plain_request_is_502(impl, method):
    with pytest.raises(ParseError) as info:
        parse(impl, SWITCHING, method)
    assert info.value.status == 502


@pytest.mark.parametrize(
    ("raw", "status", "framing"),
    [
        pytest.param(resp(b"Content-Length: 3"), 200, FRAMING_LENGTH, id="200-length"),
        pytest.param(resp(line=b"HTTP/1.1 100 Continue"), 100, FRAMING_NONE, id="100"),
        pytest.param(
            resp(b"Content-Length: 0", b"Upgrade: websocket", line=b"HTTP/1.1 426 Upgrade Required"),
            426,
            FRAMING_NONE,
            id="426",
        ),
        pytest.param(resp(b"Transfer-Encoding: chunked"), 200, FRAMING_CHUNKED, id="200-chunked-declined"),
    ],
)
def test_upgrade_request_other_answers(impl, raw, status, framing):
    """An upgrade request the upstream declines gets an ordinary response."""
    head, consumed = impl.parse_response_head(raw, b"GET", MAX, 0, upgrade=True)
    assert (head.status, head.framing, consumed) == (status, framing, len(raw))
    assert fields(head) == fields(parse_whole(impl, raw))


def test_interim_then_final_in_one_buffer(impl):
    interim = resp(line=b"HTTP/1.1 100 Continue")
    final = resp(b"Content-Length: 2", line=b"HTTP/1.1 200 OK")
    buf = bytearray(interim + final + b"hi")
    head, n = parse(impl, buf)
    assert (head.status, n) == (100, len(interim))
    del buf[:n]
    head, n = parse(impl, buf)
    assert (head.status, n, head.framing, head.content_length) == (200, len(final), FRAMING_LENGTH, 2)
    assert bytes(buf[n:]) == b"hi"


def test_connection_and_headers(impl):
    raw = resp(
        b"Content-Length: 1",
        b"Connection: Keep-Alive, X-Hop",
        b"X-Hop: secret",
        b"set-cookie: a=1",
        b"Set-Cookie: b=2",
        b"Keep-Alive: timeout=5",
    )
    head = parse_whole(impl, raw)
    assert head.connection == frozenset({b"keep-alive", b"x-hop"})
    assert fields(head)["headers"] == [
        (b"Content-Length", b"1"),
        (b"Connection", b"Keep-Alive, X-Hop"),
        (b"X-Hop", b"secret"),
        (b"set-cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
        (b"Keep-Alive", b"timeout=5"),
    ]


# --------------------------------------------------------------------------
# completeness


COMPLETE = [
    pytest.param(resp(b"Content-Length: 5", b"Server: t"), id="crlf"),
    pytest.param(resp(b"Transfer-Encoding: chunked", eol=b"\n"), id="bare-lf"),
    pytest.param(resp(line=b"HTTP/1.1 100 Continue"), id="interim"),
    pytest.param(resp(line=b"HTTP/1.1 204 No Content"), id="no-headers"),
]


@pytest.mark.parametrize("raw", COMPLETE)
def test_every_prefix_is_incomplete(impl, raw):
    for i in range(len(raw)):
        assert parse(impl, raw[:i]) is None, raw[:i]
    assert parse(impl, raw)[1] == len(raw)


@pytest.mark.parametrize("raw", COMPLETE)
def test_incremental_scan_from(impl, raw):
    buf = bytearray()
    result = None
    for i in range(len(raw)):
        prev = len(buf)
        buf += raw[i : i + 1]
        result = impl.parse_response_head(buf, b"GET", MAX, prev)
        if i < len(raw) - 1:
            assert result is None
    assert result is not None and result[1] == len(raw)
    assert fields(result[0]) == fields(parse_whole(impl, raw))


@pytest.mark.parametrize(
    "after", [b"hello", b"HTTP/1.1 200 OK\r\n\r\n", b"x" * 20000], ids=["body", "next-response", "large-body"]
)
def test_body_not_consumed(impl, after):
    raw = resp(b"Content-Length: 5")
    head, consumed = parse(impl, raw + after, b"GET", 1024)
    assert consumed == len(raw)


def test_implementations_agree(impls):
    reference, *others = impls
    for param in FRAMING_CASES:
        method, raw = param.values[0], param.values[1]
        want = fields(parse_whole(reference, raw, method))
        for other in others:
            assert fields(parse_whole(other, raw, method)) == want, (other.NAME, raw)


# --------------------------------------------------------------------------
# rejections: always 502


REJECT = [
    pytest.param(resp(b"X-Foo: a\x01b", b"Content-Length: 0"), id="value-control"),
    pytest.param(resp(b"X-Foo: a\x7f", b"Content-Length: 0"), id="value-del"),
    pytest.param(resp(b"X-Foo: a", b" folded", b"Content-Length: 0"), id="obs-fold"),
    pytest.param(resp(b"Content-Length: 5", b"Transfer-Encoding: chunked"), id="cl-and-te"),
    pytest.param(resp(b"Transfer-Encoding: chunked", b"Content-Length: 5"), id="te-and-cl"),
    pytest.param(resp(b"Content-Length: 1", b"Content-Length: 2"), id="cl-differing"),
    pytest.param(resp(b"Content-Length: abc"), id="cl-alpha"),
    pytest.param(resp(b"Content-Length: -1"), id="cl-negative"),
    pytest.param(resp(b"Transfer-Encoding: gzip"), id="te-gzip"),
    pytest.param(resp(b"X-Foo : 1"), id="space-before-colon"),
    pytest.param(resp(b"X(Foo): 1"), id="bad-name"),
    pytest.param(resp(b"X-Foo: a\x00b"), id="nul-in-value"),
    pytest.param(resp(b"X-Foo: a\rb"), id="cr-in-value"),
    pytest.param(b"garbage\r\n\r\n", id="garbage"),
    pytest.param(b"\x00\x01\x02\x03\r\n\r\n", id="binary"),
    pytest.param(b"<html>\n\n", id="html"),
    pytest.param(resp(line=b"HTTP/2.0 200 OK"), id="http20"),
    pytest.param(resp(line=b"HTTP/1.2 200 OK"), id="http12"),
    pytest.param(resp(line=b"HTTP/1.1 2000 OK"), id="status-4-digits"),
    pytest.param(resp(line=b"HTTP/1.1 20 OK"), id="status-2-digits"),
    pytest.param(resp(line=b"HTTP/1.1 abc OK"), id="status-alpha"),
    pytest.param(resp(line=b"HTTP/1.1  200 OK"), id="double-space"),
    pytest.param(resp(line=b"http/1.1 200 OK"), id="lowercase-http"),
    pytest.param(resp(line=b"HTTP/1.1 200 O\x00K"), id="nul-in-reason"),
    pytest.param(resp(b"Content-Length: 1", line=b"GET / HTTP/1.1"), id="request-line"),
]


@pytest.mark.parametrize("raw", REJECT)
@pytest.mark.parametrize("method", [b"GET", b"HEAD"], ids=lambda m: m.decode())
def test_rejected_502(impl, raw, method):
    with pytest.raises(ParseError) as info:
        parse(impl, raw, method)
    assert info.value.status == 502


@pytest.mark.parametrize(
    ("raw", "limit"),
    [
        pytest.param(resp(b"Content-Length: 1"), len(resp(b"Content-Length: 1")) - 1, id="complete-one-over"),
        pytest.param(resp(b"X-Big: " + b"v" * 3000), 1024, id="complete-big"),
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * 3000, 1024, id="incomplete"),
        pytest.param(b"H" * 1025, 1024, id="incomplete-garbage"),
    ],
)
def test_oversized_is_502(impl, raw, limit):
    with pytest.raises(ParseError) as info:
        parse(impl, raw, b"GET", limit)
    assert info.value.status == 502


def test_exactly_at_limit_is_accepted(impl):
    raw = resp(b"Content-Length: 1")
    head, consumed = parse(impl, raw, b"GET", len(raw))
    assert consumed == len(raw)
