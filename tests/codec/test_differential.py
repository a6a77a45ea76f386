"""Differential fuzzing: the native codec must behave exactly like pure.

Random valid heads, heads mutated byte by byte, every prefix and random
trickles of them, chunked bodies with random chunkings, extensions, trailers
and split points: native and pure must agree on "incomplete" vs result vs
ParseError, on the error's status and code, on ``consumed``, on every head
field (``headers`` included) and on the bytes the builders produce.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.codec import pure
from proxy.codec.base import FRAMING_CHUNKED, ParseError, split_header_block

native = pytest.importorskip("proxy.codec.native")

FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
FUZZ_SLOW = settings(FUZZ, max_examples=150)  # examples that parse every prefix

TCHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
VCHARS = bytes(range(0x21, 0x7F))
# h11's field-vchar: anything but NUL and ASCII whitespace (other controls and obs-text pass)
FIELD_VCHARS = bytes(b for b in range(256) if b not in (0, 9, 10, 11, 12, 13, 32))
# bytes that break things: line ends, NUL, whitespace, separators, obs-text, other controls
NASTY = b"\r\n\x00 \t:,;\x0b\x0c\x7f\x80\xff\x01Aa0"

REQUEST_NAMES = [
    b"host", b"content-length", b"transfer-encoding", b"connection", b"upgrade", b"expect",
    b"x-forwarded-for", b"x-request-id", b"traceparent", b"keep-alive", b"te", b"proxy-connection",
    b"trailer", b"cookie", b"accept",
]
RESPONSE_NAMES = [
    b"content-length", b"transfer-encoding", b"connection", b"upgrade", b"keep-alive", b"server",
    b"set-cookie", b"x-request-id", b"trailer",
]
SPECIAL_VALUES = {
    b"content-length": [b"0", b"5", b"007", b"5, 5", b"5,5", b"5 ,  5", b"5, 6", b"", b",", b"abc", b"-1",
                        b"+1", b"1 2", b"99999999999999999999", b"18446744073709551616", b"1" * 21,
                        b"1099511627776"],
    b"transfer-encoding": [b"chunked", b"Chunked", b"CHUNKED", b"gzip", b"chunked, chunked", b"gzip, chunked",
                           b"identity", b""],
    b"connection": [b"close", b"keep-alive", b"Keep-Alive", b"Upgrade", b"upgrade, close", b"X-Foo, close",
                    b"te", b"TE, keep-alive", b"", b",,", b" , x-hop ,", b"Close\tx", b"x,\tclose", b"keep-alive ,\tTE"],
    b"expect": [b"100-continue", b"100-Continue", b"100-continue, x", b"x"],
    b"upgrade": [b"websocket", b"h2c", b""],
    b"x-forwarded-for": [b"1.2.3.4", b"", b"1.1.1.1, 2.2.2.2", b"::1"],
    b"x-request-id": [b"abc-123", b"", b"r"],
    b"host": [b"example.com", b"a", b"", b"example.com:443"],
}


def _case(draw, name: bytes) -> bytes:
    flips = draw(st.integers(0, (1 << len(name)) - 1))
    return bytes(c ^ 0x20 if flips >> i & 1 and 0x61 <= c <= 0x7A else c for i, c in enumerate(name))


def _bytes_from(alphabet: bytes, min_size=0, max_size=12):
    """Bytes over ``alphabet`` (one binary draw, mapped: cheap to generate)."""
    n = len(alphabet)
    return st.binary(min_size=min_size, max_size=max_size).map(lambda b: bytes(alphabet[x % n] for x in b))


tokens = _bytes_from(TCHARS, 1, 10)
ows = _bytes_from(b" \t", 0, 2)
plain_values = _bytes_from(FIELD_VCHARS + b" \t" * 8, 0, 16)
eols = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"])


@st.composite
def header_lines(draw, names):
    """One header line (without its line end), mostly well formed."""
    kind = draw(st.integers(0, 9))
    if kind == 0:  # obs-fold continuation of the previous line
        return draw(st.sampled_from([b" ", b"\t", b"  "])) + draw(plain_values)
    if kind <= 5:
        base = draw(st.sampled_from(names))
        name = _case(draw, base)
        if base in SPECIAL_VALUES and draw(st.booleans()):
            value = draw(st.sampled_from(SPECIAL_VALUES[base]))
        else:
            value = draw(plain_values)
    else:
        name = draw(tokens)
        value = draw(plain_values)
    return name + b":" + draw(ows) + value + draw(ows)


@st.composite
def request_heads(draw):
    method = draw(st.one_of(st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"CONNECT", b"OPTIONS"]), tokens))
    target = draw(st.one_of(st.sampled_from([b"/", b"*", b"/a?b=c", b"http://h/x", b"h:443"]),
                            _bytes_from(VCHARS, 1, 20)))
    version = draw(st.sampled_from([b"1.1"] * 6 + [b"1.0"] * 3 + [b"2.0", b"0.9", b"1.2"]))
    lines = draw(st.lists(header_lines(REQUEST_NAMES), max_size=8))
    if draw(st.integers(0, 9)) == 0:  # both framings, each valid alone
        lines.insert(draw(st.integers(0, len(lines))), b"Content-Length: " + draw(st.sampled_from([b"0", b"5"])))
        lines.insert(draw(st.integers(0, len(lines))), b"Transfer-Encoding: chunked")
    if draw(st.integers(0, 4)):
        lines.insert(draw(st.integers(0, len(lines))), b"Host: " + draw(st.sampled_from(SPECIAL_VALUES[b"host"])))
    leading = draw(st.sampled_from([b""] * 6 + [b"\r\n", b"\n", b"\r\n\n", b"\r\n\r\n"]))
    parts = [leading, method + b" " + target + b" HTTP/" + version, draw(eols)]
    for line in lines:
        parts += [line, draw(eols)]
    parts.append(draw(eols))
    return b"".join(parts)


@st.composite
def response_heads(draw):
    status = draw(st.one_of(
        st.sampled_from([b"200", b"204", b"304", b"100", b"101", b"103", b"404", b"500", b"099", b"000", b"999"]),
        _bytes_from(b"0123456789", 3, 3),
    ))
    reason = draw(st.one_of(
        st.sampled_from([b" OK", b"", b" ", b" Not Found", b"  two spaces", b" tab\there", b" trailing "]),
        _bytes_from(FIELD_VCHARS + b" \t", 0, 10).map(lambda b: b" " + b),
    ))
    version = draw(st.sampled_from([b"1.1"] * 6 + [b"1.0"] * 3 + [b"2.0", b"1.2"]))
    lines = draw(st.lists(header_lines(RESPONSE_NAMES), max_size=7))
    parts = [b"HTTP/" + version + b" " + status + reason, draw(eols)]
    for line in lines:
        parts += [line, draw(eols)]
    parts.append(draw(eols))
    return b"".join(parts)


@st.composite
def mutated(draw, heads):
    """A head with a few bytes inserted, deleted or replaced."""
    raw = bytearray(draw(heads))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.integers(0, 2))
        i = draw(st.integers(0, len(raw)))
        if op == 0:
            raw[i:i] = bytes([draw(st.sampled_from(list(NASTY)))])
        elif raw and i < len(raw):
            if op == 1:
                del raw[i]
            else:
                raw[i] = draw(st.sampled_from(list(NASTY)))
    return bytes(raw)


# --------------------------------------------------------------------------
# outcomes


def _request_fields(head):
    fields = {
        "method": head.method,
        "target": head.target,
        "version": head.version,
        "host": head.host,
        "framing": head.framing,
        "content_length": head.content_length,
        "keep_alive": bool(head.keep_alive),
        "connection": head.connection,
        "upgrade": head.upgrade,
        "expect_continue": bool(head.expect_continue),
        "xff": head.xff,
        "request_id": head.request_id,
        "traceparent": head.traceparent,
        "headers": list(head.headers),
    }
    for name in ("method", "target", "version", "host", "upgrade", "xff", "request_id", "traceparent"):
        assert type(fields[name]) is bytes, name
    assert type(head.connection) is frozenset
    assert type(head.content_length) is int
    return fields


def _response_fields(head):
    fields = {
        "status": head.status,
        "reason": head.reason,
        "version": head.version,
        "framing": head.framing,
        "content_length": head.content_length,
        "keep_alive": bool(head.keep_alive),
        "connection": head.connection,
        "upgrade": head.upgrade,
        "headers": list(head.headers),
    }
    assert type(head.reason) is bytes and type(head.upgrade) is bytes and type(head.status) is int
    return fields


def _check_raw(impl, head):
    if impl is native:
        # native leaves headers as the raw block; it must split to pure's pairs
        assert head._headers is None or head._headers == split_header_block(head.raw)


def request_outcome(impl, buf, max_size=8192, scan_from=0):
    try:
        res = impl.parse_request_head(buf, max_size, scan_from)
    except ParseError as exc:
        return ("error", exc.status, exc.code)
    if res is None:
        return ("incomplete",)
    head, consumed = res
    _check_raw(impl, head)
    return ("ok", consumed, _request_fields(head))


def response_outcome(impl, buf, method=b"GET", max_size=8192, scan_from=0, upgrade=False):
    try:
        res = impl.parse_response_head(buf, method, max_size, scan_from, upgrade)
    except ParseError as exc:
        return ("error", exc.status, exc.code)
    if res is None:
        return ("incomplete",)
    head, consumed = res
    _check_raw(impl, head)
    return ("ok", consumed, _response_fields(head))


def agree_request(buf, **kw):
    want = request_outcome(pure, buf, **kw)
    got = request_outcome(native, buf, **kw)
    assert got == want, (bytes(buf), kw)
    return want


def agree_response(buf, **kw):
    want = response_outcome(pure, buf, **kw)
    got = response_outcome(native, buf, **kw)
    assert got == want, (bytes(buf), kw)
    return want


# --------------------------------------------------------------------------
# request heads


@FUZZ
@given(raw=request_heads(), after=st.sampled_from([b"", b"body", b"GET / HTTP/1.1\r\nHost: b\r\n\r\n"]),
       container=st.sampled_from([bytes, bytearray]))
def test_request_valid_heads(raw, after, container):
    agree_request(container(raw + after))


@FUZZ
@given(raw=mutated(request_heads()), after=st.sampled_from([b"", b"x\r\n\r\n"]))
def test_request_mutated_heads(raw, after):
    agree_request(raw + after)


@FUZZ
@given(raw=st.one_of(request_heads(), mutated(request_heads())), data=st.data())
def test_request_size_limit(raw, data):
    limit = data.draw(st.one_of(st.integers(0, len(raw) + 4), st.just(len(raw)), st.just(len(raw) - 1)))
    agree_request(raw, max_size=limit)


@FUZZ_SLOW
@given(raw=st.one_of(request_heads(), mutated(request_heads())))
def test_request_every_prefix(raw):
    for i in range(len(raw) + 1):
        agree_request(raw[:i])


@FUZZ
@given(raw=st.one_of(request_heads(), mutated(request_heads())), data=st.data())
def test_request_trickled_with_scan_from(raw, data):
    """Random pieces appended to a bytearray, scan_from = the previous length."""
    points = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(raw))), max_size=6))))
    buf = bytearray()
    prev = 0
    for p in points + [len(raw)]:
        buf += raw[prev:p]
        outcome = agree_request(buf, scan_from=prev)
        if outcome[0] != "incomplete":
            break
        prev = p


@FUZZ
@given(raw=st.one_of(request_heads(), mutated(request_heads())), scan_from=st.integers(0, 200))
def test_request_arbitrary_scan_from(raw, scan_from):
    agree_request(raw + raw, scan_from=scan_from)


@pytest.mark.parametrize("buf, scan_from, kind", [
    # a scan resumed past the real end of the head: the end found from there
    # takes in bytes after the first empty line, checked as the pure codec
    # checks its whole block (found by fuzzing)
    (b"HTTP/1.1 200 \n\r\n \r\n\r\n" * 2, 17, "response"),
    (b"HTTP/1.1 200 OK\r\n\r\nX: \x01\r\n\r\n", 20, "response"),
    (b"HTTP/1.1 200 OK\r\n\r\nX: y\r\n\r\n", 20, "response"),
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\tX: y\r\n\r\n", 30, "request"),
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\nX: y\r\n\r\n", 30, "request"),
])
def test_scan_resumed_past_the_end_of_a_head(buf, scan_from, kind):
    outcome = (agree_response if kind == "response" else agree_request)(buf, scan_from=scan_from)
    assert outcome[0] in ("ok", "error")


@FUZZ
@given(raw=st.binary(max_size=60), tail=st.sampled_from([b"\r\n\r\n", b"\n\n", b""]))
def test_request_garbage(raw, tail):
    agree_request(raw + tail)


# --------------------------------------------------------------------------
# response heads


methods = st.sampled_from([b"GET", b"HEAD", b"POST", b"CONNECT"])


@FUZZ
@given(raw=response_heads(), method=methods, upgrade=st.booleans(),
       after=st.sampled_from([b"", b"body", b"HTTP/1.1 200 OK\r\n\r\n"]), container=st.sampled_from([bytes, bytearray]))
def test_response_valid_heads(raw, method, upgrade, after, container):
    agree_response(container(raw + after), method=method, upgrade=upgrade)


@FUZZ
@given(raw=mutated(response_heads()), method=methods, upgrade=st.booleans())
def test_response_mutated_heads(raw, method, upgrade):
    agree_response(raw, method=method, upgrade=upgrade)


@FUZZ_SLOW
@given(raw=st.one_of(response_heads(), mutated(response_heads())), method=methods, data=st.data())
def test_response_every_prefix_and_limit(raw, method, data):
    for i in range(len(raw) + 1):
        agree_response(raw[:i], method=method)
    limit = data.draw(st.integers(0, len(raw) + 2))
    agree_response(raw, method=method, max_size=limit)
    agree_response(raw + raw, method=method, scan_from=data.draw(st.integers(0, len(raw) + 5)))


@FUZZ
@given(raw=st.binary(max_size=60), tail=st.sampled_from([b"\r\n\r\n", b"\n\n", b""]))
def test_response_garbage(raw, tail):
    agree_response(raw + tail)


# --------------------------------------------------------------------------
# builders

drop_names = st.frozensets(
    st.one_of(st.sampled_from(REQUEST_NAMES + RESPONSE_NAMES + [b"x-a", b"X-A", b"server"]), tokens.map(bytes.lower)),
    max_size=5,
)
extras = st.lists(st.tuples(tokens, plain_values.map(lambda v: v.strip(b" \t"))), max_size=4)


@FUZZ
@given(raw=request_heads(), drop=drop_names, extra=extras, target=_bytes_from(VCHARS, 1, 10),
       host=_bytes_from(VCHARS, 0, 10), pairs=st.booleans())
def test_build_request(raw, drop, extra, target, host, pairs):
    heads = []
    for impl in (pure, native):
        try:
            heads.append(impl.parse_request_head(raw, 8192)[0])
        except ParseError:
            return
    if pairs:  # heads whose headers were set as pairs (the non-raw path)
        for head in heads:
            head.headers = list(head.headers) + [(b"X-Set", b"v"), (b"Keep-Alive", b"1")]
    want = pure.build_request_head(heads[0], target, host, drop, extra)
    assert native.build_request_head(heads[1], target, host, drop, extra) == want
    # and native can build from a pure head and vice versa
    assert native.build_request_head(heads[0], target, host, drop, extra) == want
    assert pure.build_request_head(heads[1], target, host, drop, extra) == want


@FUZZ
@given(raw=response_heads(), method=methods, drop=drop_names, extra=extras, pairs=st.booleans())
def test_build_response(raw, method, drop, extra, pairs):
    heads = []
    for impl in (pure, native):
        try:
            heads.append(impl.parse_response_head(raw, method, 8192, 0, True)[0])
        except ParseError:
            return
    if pairs:
        for head in heads:
            head.headers = [(n.upper(), v) for n, v in head.headers]
    want = pure.build_response_head(heads[0], drop, extra)
    assert native.build_response_head(heads[1], drop, extra) == want
    assert native.build_response_head(heads[0], drop, extra) == want


def test_build_many_connection_tokens():
    """More Connection tokens than native compares in C: it falls back to sets."""
    tokens_ = [b"X-H%d" % i for i in range(60)]
    raw = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: " + b", ".join(tokens_) + b"\r\n"
    raw += b"".join(t + b": 1\r\n" for t in tokens_[::3]) + b"X-Keep: 1\r\n\r\n"
    out = [impl.build_request_head(impl.parse_request_head(raw, 65536)[0], b"/", b"h", frozenset(), [])
           for impl in (pure, native)]
    assert out[0] == out[1]
    assert out[1].endswith(b"Host: h\r\nX-Keep: 1\r\n\r\n")


def test_many_repeated_headers():
    """Connection / X-Forwarded-For repeated more often than native keeps in place."""
    raw = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(
        b"Connection: x-%d\r\nX-Forwarded-For: 10.0.0.%d\r\n" % (i, i) for i in range(20)) + b"\r\n"
    assert agree_request(raw)[0] == "ok"


# --------------------------------------------------------------------------
# chunked bodies


@st.composite
def size_lines(draw, size):
    digits = b"%x" % size
    if draw(st.booleans()):
        digits = digits.upper()
    digits = b"0" * draw(st.sampled_from([0, 0, 0, 1, 3, 20 - len(digits), 21 - len(digits)])) + digits
    ext = b""
    if draw(st.integers(0, 3)) == 0:
        ext = b"".join(
            b";" + draw(_bytes_from(b"abz=\"; \t\r\x00\x80-", 0, 6))
            for _ in range(draw(st.integers(1, 2)))
        )
    ws = draw(_bytes_from(b" \t", 0, 2)) if not ext and draw(st.integers(0, 3)) == 0 else b""
    return digits + ext + ws + b"\r\n"


@st.composite
def chunked_bodies(draw):
    chunks = draw(st.lists(st.binary(min_size=1, max_size=40), max_size=5))
    parts = []
    for c in chunks:
        parts += [draw(size_lines(len(c))), c, b"\r\n"]
    parts.append(draw(size_lines(0)))
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.integers(0, 5)):
            name = draw(st.one_of(st.sampled_from([b"X-T", b"Content-Length", b"transfer-encoding", b"Expires"]), tokens))
            value = draw(st.one_of(plain_values, st.sampled_from([b"5", b"x", b"chunked", b"gzip"])))
            parts.append(name + b":" + draw(ows) + value)
        else:
            parts.append(draw(st.sampled_from([b" folded", b"\tfolded", b"no colon", b"X : y", b"X: a\x00b"])))
        parts.append(draw(eols))
    parts.append(draw(eols))
    return b"".join(parts)


def chunked_outcome(impl, pieces, status):
    dec = impl.make_decoder(FRAMING_CHUNKED, -1, status)
    out = []
    try:
        for i, piece in enumerate(pieces):
            payload, rest = dec.feed(piece)
            assert type(payload) is bytes
            out.append(payload)
            if rest is not None:
                assert type(rest) is bytes
                return ("done", b"".join(out), rest + b"".join(pieces[i + 1:]))
    except ParseError as exc:
        return ("error", exc.status, exc.code)
    return ("waiting", b"".join(out))


def _pieces(draw, data):
    points = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=8))))
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


def agree_chunked(pieces, status):
    want = chunked_outcome(pure, pieces, status)
    assert chunked_outcome(native, pieces, status) == want, pieces
    return want


@FUZZ
@given(body=chunked_bodies(), after=st.sampled_from([b"", b"GET / HTTP/1.1\r\n\r\n", b"\r\n"]),
       status=st.sampled_from([400, 502]), data=st.data())
def test_chunked_bodies(body, after, status, data):
    agree_chunked(_pieces(data.draw, body + after), status)


@FUZZ
@given(body=mutated(chunked_bodies()), status=st.sampled_from([400, 502]), data=st.data())
def test_chunked_mutated(body, status, data):
    agree_chunked(_pieces(data.draw, body), status)


@FUZZ
@given(body=chunked_bodies(), data=st.data())
def test_chunked_bytewise_and_prefixes(body, data):
    agree_chunked([body[i:i + 1] for i in range(len(body))], 400)
    k = data.draw(st.integers(0, len(body)))
    agree_chunked([body[:k]], 400)


@pytest.mark.parametrize("filler", [16380, 16381, 16382, 16383, 20000], ids=str)
@pytest.mark.parametrize("split", [None, 100, 16383, 16384, 16385, 16386, 18000], ids=str)
@pytest.mark.parametrize("where", ["size-line", "trailer"])
def test_chunked_incomplete_line_limit(filler, split, where):
    """h11 refuses an incomplete size line or trailer section over 16384
    bytes when it runs out of data, so the verdict depends on the split."""
    if where == "size-line":
        body = b"5;" + b"x" * filler + b"\r\nhello\r\n0\r\n\r\n"
    else:
        body = b"5\r\nhello\r\n0\r\nX-Big: " + b"v" * filler + b"\r\n\r\n"
    pieces = [body] if split is None else [body[:split], body[split:]]
    agree_chunked(pieces, 400)


@pytest.mark.parametrize(
    "wire",
    [
        b"FFFFFFFFFFFFFFFFFFFF\r\nabc",
        b"fffffffffffffffffffff\r\nabc",
        b"10000000000000000\r\nabc",
        b"00000000000000000005\r\nhello\r\n0\r\n\r\n",
        b"000000000000000000005\r\nhello\r\n0\r\n\r\n",
        b"5;a\rb\r\nhello\r\n0\r\n\r\n",
        b"5\t\r\nhello\r\n0\r\n\r\n",
        b"5 ;x\r\nhello\r\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"0\r\n\n",
        b"0\r\n\rX",
        b"0\r\nX: y\n\n",
        b"0\r\nX: y\r\n z\r\n\r\n",
        b"0\r\n z\r\n\r\n",
        b"0\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\n",
        b"0\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    ],
)
@pytest.mark.parametrize("bytewise", [False, True])
def test_chunked_edges(wire, bytewise):
    pieces = [wire[i:i + 1] for i in range(len(wire))] if bytewise else [wire + b"NEXT"]
    agree_chunked(pieces, 502)


def test_chunked_error_is_sticky():
    for impl in (pure, native):
        dec = impl.make_decoder(FRAMING_CHUNKED, -1)
        with pytest.raises(ParseError):
            dec.feed(b"zz\r\n")
        with pytest.raises(ParseError):
            dec.feed(b"5\r\nhello\r\n")
        assert dec.feed(b"") == (b"", None)


# --------------------------------------------------------------------------
# hand-picked cases where the two could plausibly part ways


EDGE_REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n  b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\t\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n 5\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\r\n\r\n",
    b"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\ncontent-length: 5\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX: y\r\ncontent-length: 5\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 05\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x,\tclose\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: upgrade ,\tkeep-alive\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nBad Line\r\n\r\n",
    b"GET / HTTP/2.0\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\x7f\xff\x1f\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x0bb\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-ID:\r\nX-Request-ID: second\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nExpect: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: a, B ,\tc\r\nConnection: CLOSE\r\n\r\n",
    b"\r\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n",
]


@pytest.mark.parametrize("raw", EDGE_REQUESTS, ids=range(len(EDGE_REQUESTS)))
def test_request_edges(raw):
    agree_request(raw)
    for i in range(len(raw)):
        agree_request(raw[:i])


EDGE_RESPONSES = [
    b"HTTP/1.1 200  OK \r\n\r\n",
    b"HTTP/1.1 200\tOK\r\n\r\n",
    b"HTTP/1.1 200 O\x01K\x80\r\nContent-Length: 0\r\n\r\n",
    b"\r\nHTTP/1.1 200 OK\r\n\r\n",
    b"HTTP/1.1 099 Low\r\n\r\n",
    b"HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\r\n  b\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: gzip\r\n\r\n",
]


@pytest.mark.parametrize("raw", EDGE_RESPONSES, ids=range(len(EDGE_RESPONSES)))
@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
@pytest.mark.parametrize("upgrade", [False, True])
def test_response_edges(raw, method, upgrade):
    agree_response(raw, method=method, upgrade=upgrade)
