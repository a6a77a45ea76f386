"""Body decoders from make_decoder: length, chunked and close-delimited.

A decoder's ``feed(data)`` returns ``(payload, rest)``: ``rest`` is None while
the body is incomplete and, once complete, the bytes that followed the body
in ``data``. Whatever the split of the wire bytes, the joined payload must
be the body and the leftover must be exactly what followed the message.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.codec.base import (
    FRAMING_CHUNKED,
    FRAMING_CLOSE,
    FRAMING_LENGTH,
    FRAMING_NONE,
    LAST_CHUNK,
    ParseError,
    encode_chunk,
)

NEXT_REQUEST = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
AFTERS = [pytest.param(b"", id="nothing-after"), pytest.param(NEXT_REQUEST, id="pipelined-after")]

HYPOTHESIS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def drive(dec, pieces):
    """Feed pieces until the decoder reports the end; (payload, leftover|None)."""
    out = []
    for i, piece in enumerate(pieces):
        payload, rest = dec.feed(piece)
        out.append(bytes(payload))
        if rest is not None:
            return b"".join(out), bytes(rest) + b"".join(pieces[i + 1 :])
    return b"".join(out), None


def split_at(data, points):
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


# --------------------------------------------------------------------------
# well-formed messages


LENGTH_CASES = [
    pytest.param(b"x", id="one-byte"),
    pytest.param(b"hello world", id="text"),
    pytest.param(b"0\r\n\r\nGET / HTTP/1.1\r\n\r\n", id="looks-like-chunked-and-head"),
    pytest.param(bytes(range(256)), id="all-bytes"),
]

CHUNKED_CASES = [
    # wire, payload
    pytest.param(b"5\r\nhello\r\n0\r\n\r\n", b"hello", id="one-chunk"),
    pytest.param(b"0\r\n\r\n", b"", id="empty-body"),
    pytest.param(b"3\r\nabc\r\n4\r\ndefg\r\n1\r\nh\r\n0\r\n\r\n", b"abcdefgh", id="three-chunks"),
    pytest.param(b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", id="hex-upper"),
    pytest.param(b"a\r\n0123456789\r\n0\r\n\r\n", b"0123456789", id="hex-lower"),
    pytest.param(b"1f\r\n" + b"z" * 31 + b"\r\n0\r\n\r\n", b"z" * 31, id="hex-two-digits"),
    pytest.param(b"005\r\nhello\r\n000\r\n\r\n", b"hello", id="leading-zeros"),
    pytest.param(b"5;ext=1\r\nhello\r\n0;last\r\n\r\n", b"hello", id="extensions"),
    pytest.param(b'5;a=b;c="x; y"\r\nhello\r\n0\r\n\r\n', b"hello", id="extension-quoted"),
    pytest.param(b"5;novalue\r\nhello\r\n0\r\n\r\n", b"hello", id="extension-no-value"),
    pytest.param(b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\nChecksum: abc\r\n\r\n", b"hello", id="trailers"),
    pytest.param(b"0\r\nX-Only-Trailer: yes\r\n\r\n", b"", id="trailers-empty-body"),
    pytest.param(b"4\r\n\r\n\r\n\r\n0\r\n\r\n", b"\r\n\r\n", id="crlf-in-data"),
    pytest.param(b"5\r\n0\r\n\r\n\r\n0\r\n\r\n", b"0\r\n\r\n", id="last-chunk-in-data"),
    pytest.param(b"100\r\n" + bytes(range(256)) + b"\r\n0\r\n\r\n", bytes(range(256)), id="binary-256"),
]


def _length_message(body):
    return FRAMING_LENGTH, len(body), body, body


def _check_all_splits(impl, framing, cl, wire, payload, after):
    msg = wire + after
    for k in range(1, len(msg)):
        dec = impl.make_decoder(framing, cl)
        got = drive(dec, [msg[:k], msg[k:]])
        assert got == (payload, after), (k, msg[:k], msg[k:])


def _check_bytewise(impl, framing, cl, wire, payload, after):
    msg = wire + after
    dec = impl.make_decoder(framing, cl)
    got = drive(dec, [msg[i : i + 1] for i in range(len(msg))])
    assert got == (payload, after)


@pytest.mark.parametrize("after", AFTERS)
@pytest.mark.parametrize("body", LENGTH_CASES)
def test_length_whole(impl, body, after):
    dec = impl.make_decoder(FRAMING_LENGTH, len(body))
    assert drive(dec, [body + after]) == (body, after)


@pytest.mark.parametrize("length", [2**63 - 1, 2**63, 2**70])
def test_length_beyond_64_bits(impl, length):
    """A Content-Length past a C long long still counts (native hands it to the Python decoder)."""
    dec = impl.make_decoder(FRAMING_LENGTH, length)
    assert dec.feed(b"abc") == (b"abc", None)
    assert dec.remaining == length - 3 and not dec.eof()


def test_length_decoder_is_the_type_the_codec_exports(impl):
    """The client connection recognises a Content-Length body by ``type(dec) is codec.LengthDecoder``."""
    assert type(impl.make_decoder(FRAMING_LENGTH, 10)) is impl.LengthDecoder
    dec = impl.LengthDecoder(4)
    assert dec.feed(b"abcdef") == (b"abcd", b"ef") and dec.remaining == 0 and dec.eof()


@pytest.mark.parametrize("after", AFTERS)
@pytest.mark.parametrize("body", LENGTH_CASES)
def test_length_every_split(impl, body, after):
    _check_all_splits(impl, *_length_message(body), after)


@pytest.mark.parametrize("after", AFTERS)
@pytest.mark.parametrize("body", LENGTH_CASES)
def test_length_bytewise(impl, body, after):
    _check_bytewise(impl, *_length_message(body), after)


@pytest.mark.parametrize("after", AFTERS)
@pytest.mark.parametrize(("wire", "payload"), CHUNKED_CASES)
def test_chunked_whole(impl, wire, payload, after):
    dec = impl.make_decoder(FRAMING_CHUNKED, -1)
    assert drive(dec, [wire + after]) == (payload, after)


@pytest.mark.parametrize("after", AFTERS)
@pytest.mark.parametrize(("wire", "payload"), CHUNKED_CASES)
def test_chunked_every_split(impl, wire, payload, after):
    _check_all_splits(impl, FRAMING_CHUNKED, -1, wire, payload, after)


@pytest.mark.parametrize("after", AFTERS)
@pytest.mark.parametrize(("wire", "payload"), CHUNKED_CASES)
def test_chunked_bytewise(impl, wire, payload, after):
    _check_bytewise(impl, FRAMING_CHUNKED, -1, wire, payload, after)


@pytest.mark.parametrize(("wire", "payload"), CHUNKED_CASES)
def test_chunked_incomplete_never_ends(impl, wire, payload):
    """Every strict prefix of a chunked body leaves the decoder waiting."""
    for k in range(len(wire)):
        dec = impl.make_decoder(FRAMING_CHUNKED, -1)
        part, rest = dec.feed(wire[:k]) if k else (b"", None)
        assert rest is None, wire[:k]
        assert payload.startswith(bytes(part))


@pytest.mark.parametrize(("wire", "payload"), CHUNKED_CASES)
def test_chunked_as_response_body(impl, wire, payload):
    dec = impl.make_decoder(FRAMING_CHUNKED, -1, 502)
    assert drive(dec, [wire + b"HTTP/1.1 200 OK\r\n\r\n"]) == (payload, b"HTTP/1.1 200 OK\r\n\r\n")


@pytest.mark.parametrize("container", [bytes, bytearray, memoryview], ids=["bytes", "bytearray", "memoryview"])
@pytest.mark.parametrize("framing", [FRAMING_LENGTH, FRAMING_CHUNKED], ids=["length", "chunked"])
def test_feed_accepts_buffer_types(impl, framing, container):
    if framing == FRAMING_LENGTH:
        wire, cl = b"hello", 5
    else:
        wire, cl = b"5\r\nhello\r\n0\r\n\r\n", -1
    dec = impl.make_decoder(framing, cl)
    payload, rest = dec.feed(container(wire + b"NEXT"))
    assert bytes(payload) == b"hello"
    assert bytes(rest) == b"NEXT"


# --------------------------------------------------------------------------
# empty feeds


@pytest.mark.parametrize(
    ("framing", "cl", "first", "second", "payload"),
    [
        pytest.param(FRAMING_LENGTH, 5, b"he", b"llo", b"hello", id="length"),
        pytest.param(FRAMING_CHUNKED, -1, b"5\r\nhe", b"llo\r\n0\r\n\r\n", b"hello", id="chunked"),
    ],
)
def test_empty_feed_is_a_no_op(impl, framing, cl, first, second, payload):
    """feed(b"") means "no new bytes", never "end of stream"."""
    dec = impl.make_decoder(framing, cl)
    out = []
    for piece in (b"", first, b"", b"", second):
        part, rest = dec.feed(piece)
        out.append(bytes(part))
    assert rest == b""
    assert b"".join(out) == payload


def test_close_decoder_passes_everything(impl):
    dec = impl.make_decoder(FRAMING_CLOSE, -1)
    assert dec.eof() is True
    out = []
    for piece in (b"abc", b"0\r\n\r\n", b"", b"HTTP/1.1 200 OK\r\n\r\n"):
        payload, rest = dec.feed(piece)
        assert rest is None
        out.append(bytes(payload))
    assert b"".join(out) == b"abc0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"
    assert dec.eof() is True


def test_no_decoder_for_no_body(impl):
    assert impl.make_decoder(FRAMING_NONE, -1) is None
    assert impl.make_decoder(FRAMING_NONE, 0) is None


def test_length_eof(impl):
    dec = impl.make_decoder(FRAMING_LENGTH, 4)
    assert not dec.eof()
    assert dec.feed(b"ab") == (b"ab", None)
    assert not dec.eof()
    payload, rest = dec.feed(b"cdEF")
    assert (bytes(payload), bytes(rest)) == (b"cd", b"EF")
    assert dec.eof()


def test_chunked_eof_midway_is_not_clean(impl):
    dec = impl.make_decoder(FRAMING_CHUNKED, -1)
    assert not dec.eof()
    dec.feed(b"5\r\nhel")
    assert not dec.eof()


# --------------------------------------------------------------------------
# malformed chunked bodies


MALFORMED = [
    pytest.param(b"zz\r\nhello\r\n0\r\n\r\n", id="size-not-hex"),
    pytest.param(b"-5\r\nhello\r\n0\r\n\r\n", id="size-negative"),
    pytest.param(b"0x5\r\nhello\r\n0\r\n\r\n", id="size-0x"),
    pytest.param(b"+5\r\nhello\r\n0\r\n\r\n", id="size-plus"),
    pytest.param(b" 5\r\nhello\r\n0\r\n\r\n", id="size-leading-space"),
    pytest.param(b"\r\nhello\r\n0\r\n\r\n", id="size-empty"),
    pytest.param(b"5\r\r\nhello\r\n0\r\n\r\n", id="size-cr-cr-lf"),
    pytest.param(b"5\r\nhelloXX0\r\n\r\n", id="data-not-followed-by-crlf"),
    pytest.param(b"5\r\nhello0\r\n\r\n", id="data-crlf-missing"),
    pytest.param(b"5\r\nhello\n0\r\n\r\n", id="data-bare-lf"),
    pytest.param(b"3\r\nhello\r\n0\r\n\r\n", id="data-longer-than-size"),
    pytest.param(b"5\r\nhello\r\n0\r\nbad trailer line\r\n\r\n", id="bad-trailer"),
    pytest.param(b"5\r\nhello\r\n0\r\nX : y\r\n\r\n", id="trailer-space-before-colon"),
    pytest.param(b"5\r\nhello\r\n0\r\nX: a\x01\r\n\r\n", id="trailer-control"),
    pytest.param(b"5\r\nhello\r\n0\r\nX: a\r\n folded\r\n\r\n", id="trailer-obs-fold"),
    pytest.param(b"1\r\n\x01\r\n0 ;e\r\nX: a\x7f\r\n\r\n", id="trailer-del-after-binary-data"),
]


@pytest.mark.parametrize("wire", MALFORMED)
def test_malformed_default_status_400(impl, wire):
    dec = impl.make_decoder(FRAMING_CHUNKED, -1)
    with pytest.raises(ParseError) as info:
        drive(dec, [wire])
    assert info.value.status == 400


@pytest.mark.parametrize("status", [400, 502])
@pytest.mark.parametrize("wire", MALFORMED)
def test_malformed_error_status(impl, wire, status):
    dec = impl.make_decoder(FRAMING_CHUNKED, -1, status)
    with pytest.raises(ParseError) as info:
        drive(dec, [wire])
    assert info.value.status == status
    assert isinstance(info.value.code, str) and info.value.code


@pytest.mark.parametrize("wire", MALFORMED)
def test_malformed_bytewise(impl, wire):
    dec = impl.make_decoder(FRAMING_CHUNKED, -1, 502)
    with pytest.raises(ParseError) as info:
        drive(dec, [wire[i : i + 1] for i in range(len(wire))])
    assert info.value.status == 502


# --------------------------------------------------------------------------
# encode_chunk / LAST_CHUNK


def test_encode_chunk_format():
    assert encode_chunk(b"") == b""
    assert encode_chunk(b"hello") == b"5\r\nhello\r\n"
    assert encode_chunk(b"z" * 26) == b"1a\r\n" + b"z" * 26 + b"\r\n"
    assert encode_chunk(b"q" * 4096) == b"1000\r\n" + b"q" * 4096 + b"\r\n"
    assert LAST_CHUNK == b"0\r\n\r\n"


@pytest.mark.parametrize(
    "chunks",
    [
        [],
        [b""],
        [b"a"],
        [b"hello", b"", b"world"],
        [b"\r\n", b"0\r\n\r\n"],
        [bytes(range(256))] * 3,
        [b"x" * 70000],
    ],
    ids=["none", "empty", "one", "with-empty", "crlf-data", "binary", "large"],
)
def test_encode_chunk_round_trip(impl, chunks):
    wire = b"".join(encode_chunk(c) for c in chunks) + LAST_CHUNK
    dec = impl.make_decoder(FRAMING_CHUNKED, -1)
    assert drive(dec, [wire + NEXT_REQUEST]) == (b"".join(chunks), NEXT_REQUEST)


# --------------------------------------------------------------------------
# property tests (pure always; every other implementation must agree)


ext_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=8)
extensions = st.lists(
    st.tuples(ext_names, st.one_of(st.none(), st.text(alphabet="abcxyz0189", min_size=1, max_size=6))),
    max_size=2,
).map(lambda pairs: "".join(f";{n}" + (f"={v}" if v is not None else "") for n, v in pairs).encode())

trailers = st.lists(
    st.tuples(
        st.sampled_from([b"X-Trailer", b"Checksum", b"expires", b"Server-Timing"]),
        st.binary(max_size=10).map(lambda b: bytes(c for c in b if 0x21 <= c <= 0x7E)),
    ),
    max_size=3,
).map(lambda pairs: b"".join(n + b": " + v + b"\r\n" for n, v in pairs))

afters = st.one_of(st.just(b""), st.just(NEXT_REQUEST), st.binary(max_size=30))


@st.composite
def chunked_messages(draw):
    chunks = draw(st.lists(st.binary(min_size=1, max_size=80), max_size=8))
    parts = []
    for c in chunks:
        size = "%x" % len(c)
        size = draw(st.sampled_from([size, size.upper()]))
        zeros = "0" * draw(st.integers(0, 2))
        parts.append(f"{zeros}{size}".encode() + draw(extensions) + b"\r\n" + c + b"\r\n")
    parts.append(b"0" + draw(extensions) + b"\r\n" + draw(trailers) + b"\r\n")
    return b"".join(parts), b"".join(chunks)


def random_pieces(draw, msg):
    points = draw(st.lists(st.integers(1, max(1, len(msg) - 1)), max_size=6, unique=True))
    points = sorted(p for p in points if 0 < p < len(msg))
    return split_at(msg, points)


@HYPOTHESIS
@given(data=st.data())
def test_chunked_property(impls, data):
    wire, payload = data.draw(chunked_messages())
    after = data.draw(afters)
    pieces = random_pieces(data.draw, wire + after)
    for impl in impls:
        dec = impl.make_decoder(FRAMING_CHUNKED, -1)
        assert drive(dec, pieces) == (payload, after), impl.NAME


@HYPOTHESIS
@given(body=st.binary(min_size=1, max_size=400), after=afters, data=st.data())
def test_length_property(impls, body, after, data):
    pieces = random_pieces(data.draw, body + after)
    for impl in impls:
        dec = impl.make_decoder(FRAMING_LENGTH, len(body))
        assert drive(dec, pieces) == (body, after), impl.NAME


@HYPOTHESIS
@given(chunks=st.lists(st.binary(max_size=100), max_size=10), after=afters, data=st.data())
def test_encode_chunk_property(impls, chunks, after, data):
    wire = b"".join(encode_chunk(c) for c in chunks) + LAST_CHUNK
    pieces = random_pieces(data.draw, wire + after)
    for impl in impls:
        dec = impl.make_decoder(FRAMING_CHUNKED, -1)
        assert drive(dec, pieces) == (b"".join(chunks), after), impl.NAME


def _outcome(impl, pieces, status):
    dec = impl.make_decoder(FRAMING_CHUNKED, -1, status)
    out = []
    try:
        for i, piece in enumerate(pieces):
            payload, rest = dec.feed(piece)
            out.append(bytes(payload))
            if rest is not None:
                return ("done", b"".join(out), bytes(rest) + b"".join(pieces[i + 1 :]))
    except ParseError as exc:
        return ("error", exc.status)
    return ("waiting", b"".join(out))


chunkish = st.lists(
    st.sampled_from([b"0", b"5", b"a", b"F", b";", b"=", b"\r\n", b"\r", b"\n", b" ", b"hello", b"x", b":"]),
    max_size=25,
).map(b"".join)


@HYPOTHESIS
@given(raw=st.one_of(chunkish, st.binary(max_size=60)), status=st.sampled_from([400, 502]), data=st.data())
def test_chunked_arbitrary_input(impls, raw, status, data):
    """Any input either decodes, waits or raises ParseError(status); all agree."""
    pieces = random_pieces(data.draw, raw) if raw else [b"x"]
    outcomes = [_outcome(impl, pieces, status) for impl in impls]
    first = outcomes[0]
    if first[0] == "error":
        assert first[1] == status
    for impl, other in zip(impls[1:], outcomes[1:]):
        assert other == first, impl.NAME
