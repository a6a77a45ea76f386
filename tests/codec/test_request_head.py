"""parse_request_head: completeness, derived fields and rejections."""

from __future__ import annotations

import pytest

from proxy.codec.base import (
    FRAMING_CHUNKED,
    FRAMING_LENGTH,
    FRAMING_NONE,
    ParseError,
)

MAX = 8192

SIMPLE = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"


def parse(impl, raw, max_size=MAX, scan_from=0):
    return impl.parse_request_head(raw, max_size, scan_from)


def parse_whole(impl, raw, max_size=MAX):
    res = parse(impl, raw, max_size)
    assert res is not None, raw
    head, consumed = res
    assert consumed == len(raw)
    return head


def req(*header_lines, line=b"GET / HTTP/1.1", eol=b"\r\n"):
    return line + eol + b"".join(h + eol for h in header_lines) + eol


def rejected(impl, raw, max_size=MAX):
    with pytest.raises(ParseError) as info:
        parse(impl, raw, max_size)
    return info.value


def fields(head):
    return {
        "method": head.method,
        "target": head.target,
        "version": head.version,
        "host": head.host,
        "framing": head.framing,
        "content_length": head.content_length,
        "keep_alive": bool(head.keep_alive),
        "connection": frozenset(head.connection),
        "upgrade": head.upgrade,
        "expect_continue": bool(head.expect_continue),
        "xff": head.xff,
        "request_id": head.request_id,
        "traceparent": head.traceparent,
        "headers": [(bytes(n), bytes(v)) for n, v in head.headers],
    }


# --------------------------------------------------------------------------
# completeness


VALID_HEADS = [
    pytest.param(SIMPLE, id="simple"),
    pytest.param(
        req(b"Host: a", b"Content-Length: 3", b"X-Thing: yes", line=b"POST /upload?x=1 HTTP/1.1"),
        id="post-length",
    ),
    pytest.param(req(b"Host: a", b"Transfer-Encoding: chunked", line=b"PUT /x HTTP/1.1"), id="chunked"),
    pytest.param(req(b"Host: a", b"X: y", eol=b"\n"), id="bare-lf"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\n\r\n", id="mixed-eol"),
    pytest.param(b"GET / HTTP/1.0\r\n\r\n", id="http10-no-headers"),
    pytest.param(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", id="leading-crlf"),
    pytest.param(b"\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", id="leading-lf"),
]


@pytest.mark.parametrize("raw", VALID_HEADS)
def test_every_prefix_is_incomplete(impl, raw):
    for i in range(len(raw)):
        assert parse(impl, raw[:i]) is None, raw[:i]
    head, consumed = parse(impl, raw)
    assert consumed == len(raw)
    assert head.method in (b"GET", b"POST", b"PUT")


@pytest.mark.parametrize("raw", VALID_HEADS)
def test_incremental_scan_from(impl, raw):
    """Trickled one byte at a time with scan_from = previous buffer length."""
    buf = bytearray()
    result = None
    for i in range(len(raw)):
        prev = len(buf)
        buf += raw[i : i + 1]
        result = parse(impl, buf, MAX, prev)
        if i < len(raw) - 1:
            assert result is None, bytes(buf)
    assert result is not None
    head, consumed = result
    assert consumed == len(raw)
    assert fields(head) == fields(parse_whole(impl, raw))


@pytest.mark.parametrize("container", [bytes, bytearray], ids=["bytes", "bytearray"])
@pytest.mark.parametrize(
    "after",
    [
        pytest.param(b"hello", id="body"),
        pytest.param(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n", id="pipelined"),
        pytest.param(b"\r\n\r\n", id="blank-lines"),
        pytest.param(b"x" * 20000, id="body-larger-than-max"),
    ],
)
def test_bytes_after_head_not_consumed(impl, after, container):
    head_bytes = req(b"Host: a", b"Content-Length: 5", line=b"POST / HTTP/1.1")
    head, consumed = parse(impl, container(head_bytes + after))
    assert consumed == len(head_bytes)
    assert head.framing == FRAMING_LENGTH
    assert head.content_length == 5


@pytest.mark.parametrize(
    "prefix", [b"\r\n", b"\n", b"\r\n\r\n", b"\n\r\n", b"\r\n\n\r\n\n"], ids=repr
)
def test_leading_empty_lines_skipped(impl, prefix):
    raw = prefix + SIMPLE
    head, consumed = parse(impl, raw + b"tail")
    assert consumed == len(raw)
    assert head.method == b"GET"
    assert head.target == b"/"
    assert head.host == b"example.com"


def test_pipelined_heads_parse_in_turn(impl):
    first = req(b"Host: a", line=b"GET /1 HTTP/1.1")
    second = req(b"Host: b", line=b"GET /2 HTTP/1.1")
    buf = first + second
    h1, n1 = parse(impl, buf)
    assert (h1.target, h1.host, n1) == (b"/1", b"a", len(first))
    h2, n2 = parse(impl, buf[n1:])
    assert (h2.target, h2.host, n2) == (b"/2", b"b", len(second))


# --------------------------------------------------------------------------
# derived fields


BASE = {
    "method": b"GET",
    "target": b"/",
    "version": b"1.1",
    "host": b"a",
    "framing": FRAMING_NONE,
    "content_length": -1,
    "keep_alive": True,
    "connection": frozenset(),
    "upgrade": b"",
    "expect_continue": False,
    "xff": b"",
    "request_id": b"",
    "traceparent": b"",
}


def exp(**kw):
    d = dict(BASE)
    d.update(kw)
    return d


FIELD_CASES = [
    pytest.param(req(b"Host: a"), exp(), id="minimal"),
    pytest.param(
        req(b"Host: a", line=b"OPTIONS * HTTP/1.1"), exp(method=b"OPTIONS", target=b"*"), id="asterisk-form"
    ),
    pytest.param(
        req(b"Host: example.com:443", line=b"CONNECT example.com:443 HTTP/1.1"),
        exp(method=b"CONNECT", target=b"example.com:443", host=b"example.com:443"),
        id="authority-form",
    ),
    pytest.param(
        req(b"Host: a.example", line=b"GET http://a.example/x?y=1 HTTP/1.1"),
        exp(target=b"http://a.example/x?y=1", host=b"a.example"),
        id="absolute-form",
    ),
    pytest.param(
        req(b"Host: a", line=b"PURGE /p/q?r=%20s HTTP/1.1"),
        exp(method=b"PURGE", target=b"/p/q?r=%20s"),
        id="extension-method",
    ),
    pytest.param(req(b"hOsT:   spaced.example  "), exp(host=b"spaced.example"), id="host-ows-any-case"),
    pytest.param(req(line=b"GET / HTTP/1.0"), exp(version=b"1.0", host=b"", keep_alive=False), id="http10-no-host"),
    pytest.param(
        req(b"Host: h10", line=b"GET / HTTP/1.0"), exp(version=b"1.0", host=b"h10", keep_alive=False), id="http10-host"
    ),
    # framing
    pytest.param(req(b"Host: a", b"Content-Length: 0"), exp(content_length=0), id="cl-zero"),
    pytest.param(
        req(b"Host: a", b"Content-Length: 42"), exp(framing=FRAMING_LENGTH, content_length=42), id="cl-42"
    ),
    pytest.param(
        req(b"Host: a", b"Content-Length: 007"), exp(framing=FRAMING_LENGTH, content_length=7), id="cl-leading-zeros"
    ),
    pytest.param(
        req(b"Host: a", b"Content-Length: 1099511627776"),
        exp(framing=FRAMING_LENGTH, content_length=1099511627776),
        id="cl-large",
    ),
    pytest.param(
        req(b"Host: a", b"Transfer-Encoding: chunked"), exp(framing=FRAMING_CHUNKED), id="chunked"
    ),
    pytest.param(
        req(b"Host: a", b"transfer-encoding: Chunked"), exp(framing=FRAMING_CHUNKED), id="chunked-any-case"
    ),
    # keep-alive and connection tokens
    pytest.param(
        req(b"Host: a", b"Connection: close"),
        exp(keep_alive=False, connection=frozenset({b"close"})),
        id="11-close",
    ),
    pytest.param(
        req(b"Host: a", b"Connection: CLOSE"),
        exp(keep_alive=False, connection=frozenset({b"close"})),
        id="11-close-upper",
    ),
    pytest.param(
        req(b"Host: a", b"Connection: keep-alive"),
        exp(connection=frozenset({b"keep-alive"})),
        id="11-keep-alive",
    ),
    pytest.param(
        req(b"Host: a", b"Connection: Keep-Alive, Close"),
        exp(keep_alive=False, connection=frozenset({b"keep-alive", b"close"})),
        id="11-keep-alive-and-close",
    ),
    pytest.param(
        req(b"Host: a", b"Connection: keep-alive", line=b"GET / HTTP/1.0"),
        exp(version=b"1.0", keep_alive=True, connection=frozenset({b"keep-alive"})),
        id="10-keep-alive",
    ),
    pytest.param(
        req(b"Host: a", b"Connection: Keep-Alive", line=b"GET / HTTP/1.0"),
        exp(version=b"1.0", keep_alive=True, connection=frozenset({b"keep-alive"})),
        id="10-keep-alive-mixed-case",
    ),
    pytest.param(
        req(b"Host: a", b"Connection: close", line=b"GET / HTTP/1.0"),
        exp(version=b"1.0", keep_alive=False, connection=frozenset({b"close"})),
        id="10-close",
    ),
    pytest.param(
        req(b"Host: a", b"Connection: X-Secret ,  TE,,", b"connection: Upgrade"),
        exp(connection=frozenset({b"x-secret", b"te", b"upgrade"})),
        id="connection-tokens-lowercase-merged",
    ),
    # upgrade / expect
    pytest.param(
        req(b"Host: a", b"Connection: Upgrade", b"Upgrade: websocket"),
        exp(upgrade=b"websocket", connection=frozenset({b"upgrade"})),
        id="upgrade",
    ),
    pytest.param(
        req(b"Host: a", b"Expect: 100-continue", b"Content-Length: 3", line=b"POST / HTTP/1.1"),
        exp(method=b"POST", expect_continue=True, framing=FRAMING_LENGTH, content_length=3),
        id="expect-continue",
    ),
    pytest.param(
        req(b"Host: a", b"Expect: 100-Continue"), exp(expect_continue=True), id="expect-continue-any-case"
    ),
    pytest.param(req(b"Host: a", b"Expect:"), exp(), id="expect-empty-ignored"),
    pytest.param(
        req(b"Host: a", b"Expect: 100-continue", b"Expect: 100-continue"), exp(expect_continue=True),
        id="expect-continue-twice",
    ),
    # forwarding and ids
    pytest.param(req(b"Host: a", b"X-Forwarded-For: 1.2.3.4"), exp(xff=b"1.2.3.4"), id="xff-one"),
    pytest.param(
        req(b"Host: a", b"X-Forwarded-For: 1.1.1.1, 2.2.2.2", b"Accept: */*", b"x-forwarded-for: 3.3.3.3"),
        exp(xff=b"1.1.1.1, 2.2.2.2, 3.3.3.3"),
        id="xff-joined",
    ),
    pytest.param(
        req(b"Host: a", b"X-Forwarded-For: 1.1.1.1", b"X-Forwarded-For: 2.2.2.2", b"X-Forwarded-For: ::1"),
        exp(xff=b"1.1.1.1, 2.2.2.2, ::1"),
        id="xff-three",
    ),
    pytest.param(req(b"Host: a", b"X-Request-ID: abc-123"), exp(request_id=b"abc-123"), id="request-id"),
    pytest.param(req(b"Host: a", b"x-request-id: lower"), exp(request_id=b"lower"), id="request-id-lowercase"),
    pytest.param(
        req(b"Host: a", b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        exp(traceparent=b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        id="traceparent",
    ),
    # bare LF
    pytest.param(
        req(b"Host: lf", b"Content-Length: 2", b"Connection: close", eol=b"\n"),
        exp(host=b"lf", framing=FRAMING_LENGTH, content_length=2, keep_alive=False, connection=frozenset({b"close"})),
        id="bare-lf",
    ),
]


@pytest.mark.parametrize(("raw", "expected"), FIELD_CASES)
def test_fields(impl, raw, expected):
    got = fields(parse_whole(impl, raw))
    del got["headers"]
    assert got == expected


def test_field_types(impl):
    head = parse_whole(impl, req(b"Host: a", b"X-Forwarded-For: 1.2.3.4", b"X-Request-ID: r"))
    for name in ("method", "target", "version", "host", "upgrade", "xff", "request_id", "traceparent"):
        assert isinstance(getattr(head, name), bytes), name
    assert isinstance(head.content_length, int)
    for name, value in head.headers:
        assert isinstance(name, bytes) and isinstance(value, bytes)
    assert all(isinstance(t, bytes) for t in head.connection)


def test_headers_keep_case_and_order(impl):
    raw = req(
        b"Host: a",
        b"X-Foo: 1",
        b"accept: */*",
        b"X-FOO: 2",
        b"Cookie: a=b; c=d",
        b"x-Mixed-CASE:   padded value  ",
        b"Connection: keep-alive",
        b"X-Empty:",
    )
    assert fields(parse_whole(impl, raw))["headers"] == [
        (b"Host", b"a"),
        (b"X-Foo", b"1"),
        (b"accept", b"*/*"),
        (b"X-FOO", b"2"),
        (b"Cookie", b"a=b; c=d"),
        (b"x-Mixed-CASE", b"padded value"),
        (b"Connection", b"keep-alive"),
        (b"X-Empty", b""),
    ]


def test_first_request_id_wins(impl):
    head = parse_whole(impl, req(b"Host: a", b"X-Request-ID: first", b"X-Request-ID: second"))
    assert head.request_id == b"first"


def test_implementations_agree(impls):
    """Every implementation derives the same fields as pure from the same bytes."""
    reference, *others = impls
    for param in FIELD_CASES + VALID_HEADS:
        raw = param.values[0]
        want = fields(parse_whole(reference, raw))
        for other in others:
            assert fields(parse_whole(other, raw)) == want, (other.NAME, raw)


# --------------------------------------------------------------------------
# size limit


def test_complete_head_exactly_at_limit_is_accepted(impl):
    head, consumed = parse(impl, SIMPLE, len(SIMPLE))
    assert consumed == len(SIMPLE)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(SIMPLE, id="complete-one-over"),
        pytest.param(req(b"Host: a", b"X-Big: " + b"v" * 5000), id="complete-big-header"),
        pytest.param(SIMPLE + b"body after", id="complete-with-body"),
    ],
)
def test_complete_head_over_limit_is_431(impl, raw):
    limit = len(SIMPLE) - 1 if raw.startswith(SIMPLE) else 1024
    err = rejected(impl, raw, limit)
    assert err.status == 431


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 2000, id="incomplete-header"),
        pytest.param(b"GET /" + b"a" * 2000, id="incomplete-request-line"),
        pytest.param(b"G" * 1025, id="incomplete-garbage"),
    ],
)
def test_incomplete_head_over_limit_is_431(impl, raw):
    err = rejected(impl, raw, 1024)
    assert err.status == 431


@pytest.mark.parametrize("blank", [b"\r\n", b"\n"], ids=["crlf", "lf"])
def test_endless_leading_empty_lines_are_refused(impl, blank):
    """Empty lines before the request line still count against the limit.

    Otherwise a client can grow the connection's buffer without bound.
    """
    raw = blank * (2048 // len(blank) + 1)
    err = rejected(impl, raw, 1024)
    assert err.status in (400, 431)


def test_small_head_with_large_body_is_not_431(impl):
    head_bytes = req(b"Host: a", b"Content-Length: 100000", line=b"POST / HTTP/1.1")
    head, consumed = parse(impl, head_bytes + b"x" * 100000, 256)
    assert consumed == len(head_bytes)
    assert head.content_length == 100000


# --------------------------------------------------------------------------
# rejections


REJECT = [
    # ambiguous framing (smuggling)
    pytest.param(req(b"Host: a", b"Content-Length: 5", b"Transfer-Encoding: chunked"), 400, id="cl-and-te"),
    pytest.param(req(b"Host: a", b"Transfer-Encoding: chunked", b"Content-Length: 5"), 400, id="te-and-cl"),
    pytest.param(req(b"Host: a", b"Content-Length: 0", b"Transfer-Encoding: chunked"), 400, id="cl0-and-te"),
    pytest.param(req(b"Host: a", b"Content-Length: 1", b"Content-Length: 2"), 400, id="cl-differing-duplicate"),
    pytest.param(req(b"Host: a", b"Content-Length: 1, 2"), 400, id="cl-differing-list"),
    # Content-Length syntax
    pytest.param(req(b"Host: a", b"Content-Length: abc"), 400, id="cl-alpha"),
    pytest.param(req(b"Host: a", b"Content-Length: +1"), 400, id="cl-plus"),
    pytest.param(req(b"Host: a", b"Content-Length: -1"), 400, id="cl-negative"),
    pytest.param(req(b"Host: a", b"Content-Length: 1.0"), 400, id="cl-decimal"),
    pytest.param(req(b"Host: a", b"Content-Length: 0x10"), 400, id="cl-hex"),
    pytest.param(req(b"Host: a", b"Content-Length: 1 2"), 400, id="cl-inner-space"),
    pytest.param(req(b"Host: a", b"Content-Length:"), 400, id="cl-empty"),
    # header syntax
    pytest.param(req(b"Host : a"), 400, id="space-before-colon-host"),
    pytest.param(req(b"Host: a", b"X-Foo : 1"), 400, id="space-before-colon"),
    pytest.param(req(b"Host: a", b"X-Foo\t: 1"), 400, id="tab-before-colon"),
    pytest.param(req(b"Host: a", b"X(Foo): 1"), 400, id="name-paren"),
    pytest.param(req(b"Host: a", b"X Foo: 1"), 400, id="name-space"),
    pytest.param(req(b"Host: a", b"X\x00Foo: 1"), 400, id="name-nul"),
    pytest.param(req(b"Host: a", b"X-F\xc3\xb6o: 1"), 400, id="name-non-ascii"),
    pytest.param(req(b"Host: a", b"X@Foo: 1"), 400, id="name-at"),
    pytest.param(req(b"Host: a", b": 1"), 400, id="name-empty"),
    pytest.param(req(b"Host: a", b"NoColonHere"), 400, id="no-colon"),
    pytest.param(req(b"Host: a", b"X-Foo: a\x00b"), 400, id="value-nul"),
    pytest.param(req(b"Host: a", b"X-Foo: \x00"), 400, id="value-only-nul"),
    pytest.param(req(b"Host: a", b"X-Foo: a\rb"), 400, id="value-cr"),
    pytest.param(req(b"Host: a", b"X-Foo: a\r"), 400, id="value-trailing-cr"),
    pytest.param(req(b"Host: a\x00b"), 400, id="host-nul"),
    # controls other than HTAB, and obs-fold: refused by both codecs (h11 alone would pass them)
    pytest.param(req(b"Host: a", b"X-Foo: a\x01b"), 400, id="value-soh"),
    pytest.param(req(b"Host: a", b"X-Foo: a\x1fb"), 400, id="value-unit-separator"),
    pytest.param(req(b"Host: a", b"X-Foo: a\x7fb"), 400, id="value-del"),
    pytest.param(req(b"Host: a", b"X-Foo: abcdefgh\x7fijklmnop"), 400, id="value-del-in-word"),
    pytest.param(req(b"Host: a", b"X-Foo: a\x0bb"), 400, id="value-vt"),
    pytest.param(req(b"Host: a", b"X-Foo: a", b" folded"), 400, id="obs-fold-space"),
    pytest.param(req(b"Host: a", b"X-Foo: a", b"\tfolded"), 400, id="obs-fold-tab"),
    # request line
    pytest.param(req(b"Host: a", line=b"GET  / HTTP/1.1"), 400, id="line-double-space-1"),
    pytest.param(req(b"Host: a", line=b"GET /  HTTP/1.1"), 400, id="line-double-space-2"),
    pytest.param(req(b"Host: a", line=b" GET / HTTP/1.1"), 400, id="line-leading-space"),
    pytest.param(req(b"Host: a", line=b"GET / HTTP/1.1 "), 400, id="line-trailing-space"),
    pytest.param(req(b"Host: a", line=b"GET /a b HTTP/1.1"), 400, id="line-space-in-target"),
    pytest.param(req(b"Host: a", line=b"GET\t/ HTTP/1.1"), 400, id="line-tab"),
    pytest.param(req(b"Host: a", line=b"GET / http/1.1"), 400, id="line-lowercase-http"),
    pytest.param(req(b"Host: a", line=b"GET /"), 400, id="line-no-version"),
    pytest.param(req(b"Host: a", line=b"GET / HTTP/1"), 400, id="line-version-no-minor"),
    pytest.param(req(b"Host: a", line=b"G(T / HTTP/1.1"), 400, id="line-bad-method"),
    pytest.param(req(b"Host: a", line=b"GET /a\x7fb HTTP/1.1"), 400, id="line-del-in-target"),
    pytest.param(req(b"Host: a", line=b"GET /a\x00b HTTP/1.1"), 400, id="line-nul-in-target"),
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, id="tls-client-hello"),
    # Host
    pytest.param(req(b"Accept: */*"), 400, id="11-no-host"),
    pytest.param(req(b"Host: a", b"Host: b"), 400, id="two-hosts"),
    pytest.param(req(b"Host: a", b"host: a"), 400, id="two-hosts-same-value"),
    # transfer codings
    pytest.param(req(b"Host: a", b"Transfer-Encoding: gzip"), 501, id="te-gzip"),
    pytest.param(req(b"Host: a", b"Transfer-Encoding: gzip, chunked"), 501, id="te-gzip-chunked"),
    pytest.param(req(b"Host: a", b"Transfer-Encoding: deflate"), 501, id="te-deflate"),
    pytest.param(req(b"Host: a", b"Transfer-Encoding: identity"), 501, id="te-identity"),
    # expectations other than 100-continue (RFC 9110 section 10.1.1)
    pytest.param(req(b"Host: a", b"Expect: something-else"), 417, id="expect-other"),
    pytest.param(req(b"Host: a", b"Expect: 100-continue, foo=bar"), 417, id="expect-list-with-other"),
    pytest.param(req(b"Host: a", b"Expect: foo", b"Expect: 100-continue"), 417, id="expect-other-then-continue"),
    pytest.param(req(b"Host: a", b"Expect: 100-continue", b"Expect: foo"), 417, id="expect-continue-then-other"),
    # versions
    pytest.param(req(b"Host: a", line=b"GET / HTTP/2.0"), 505, id="http20"),
    pytest.param(req(b"Host: a", line=b"GET / HTTP/1.2"), 505, id="http12"),
    pytest.param(req(b"Host: a", line=b"GET / HTTP/3.0"), 505, id="http30"),
    pytest.param(req(b"Host: a", line=b"GET / HTTP/0.9"), 505, id="http09"),
    pytest.param(req(line=b"GET / HTTP/2.0"), 505, id="http20-no-host"),
]


@pytest.mark.parametrize(("raw", "status"), REJECT)
def test_rejected(impl, raw, status):
    err = rejected(impl, raw)
    assert err.status == status
    assert isinstance(err.code, str) and err.code


@pytest.mark.parametrize(("raw", "status"), REJECT)
def test_rejected_with_body_following(impl, raw, status):
    """Bytes after the head never change the verdict on the head."""
    err = rejected(impl, raw + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert err.status == status


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(req(b"Host: a", b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"), id="te-twice"),
        pytest.param(req(b"Host: a", b"Transfer-Encoding: chunked, chunked"), id="te-chunked-chunked"),
        pytest.param(req(b"Host: a", b"Transfer-Encoding: chunked, gzip"), id="te-chunked-not-last"),
    ],
)
def test_rejected_transfer_coding_400_or_501(impl, raw):
    """Refused; RFC 9112 allows 400 (chunked not final) or 501 (unsupported)."""
    assert rejected(impl, raw).status in (400, 501)
