"""Pure codec: h11 parses, plain Python derives and serialises.

h11 is the reference HTTP/1.1 codec: every head and every chunked body goes
through an ``h11.Connection`` so its validation (token characters, header
syntax, duplicate Host, conflicting Content-Length, chunk syntax) applies.
A fresh connection is used per head, fed only the head's bytes (found with
``head_end``), so a body that arrived with the head is never copied into it.
On top of h11 this module adds the proxy's own, stricter decisions:

* a request with both Content-Length and Transfer-Encoding is refused (400)
  instead of letting chunked win: the two hops could disagree (smuggling);
* a response with both is refused too (the caller answers 502);
* versions other than HTTP/1.0 and HTTP/1.1 are refused with 505;
* empty lines before a request line are skipped (RFC 9112 section 2.2).

Bare-LF line endings are accepted by h11 and normalised: the proxy never
forwards a head as received, it always re-serialises it with CRLF.
"""

from __future__ import annotations

import re

import h11

from .base import (
    FRAMING_CHUNKED,
    FRAMING_CLOSE,
    FRAMING_LENGTH,
    FRAMING_NONE,
    HOP_BY_HOP,
    CloseDecoder,
    LengthDecoder,
    ParseError,
    RequestHead,
    ResponseHead,
    head_end,
)

NAME = "pure"

_NEED_DATA = h11.NEED_DATA
_Data = h11.Data
_EndOfMessage = h11.EndOfMessage
_VERSIONS = (b"1.1", b"1.0")


_BLANK_LINES = re.compile(rb"(?:\r?\n)*")


# Stricter than h11, the same as the native codec: control bytes other than
# HTAB (h11 lets 0x01-0x08, 0x0E-0x1F and DEL through in field values) and
# obs-fold (a line starting with SP/HTAB, which h11 joins) are refused.
_BAD_HEAD = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\n[ \t]")


def _skip_blank_lines(buf) -> int:
    """Length of the empty lines before a request line (RFC 9112 section 2.2)."""
    if buf[:1] not in (b"\r", b"\n"):
        return 0
    return _BLANK_LINES.match(buf).end()


def _tokens(value: bytes) -> list[bytes]:
    return [t.strip().lower() for t in value.split(b",") if t.strip()]


_REQUEST_TOO_LARGE = (431, "header_too_large", "request head exceeds the size limit")
_RESPONSE_TOO_LARGE = (502, "invalid_response", "response head exceeds the size limit")


def _head_end_within(buf, scan_from: int, max_size: int, too_large) -> int:
    """``head_end`` of ``buf`` (-1 while incomplete), refusing a head over ``max_size``."""
    end = head_end(buf, scan_from)
    if (end < 0 and len(buf) > max_size) or end > max_size:
        raise ParseError(*too_large)
    return end


def parse_request_head(buf, max_size: int, scan_from: int = 0):
    """Parse one request head from the start of ``buf``.

    Returns ``(head, consumed)`` or None when the head is not complete yet.
    Raises ParseError(431) when the head exceeds ``max_size`` and
    ParseError(400/501/505) for what h11 or the proxy's rules refuse.
    """
    start = _skip_blank_lines(buf)
    # the size limit counts skipped empty lines too: they are not free to send
    end = _head_end_within(buf, max(start, scan_from - 3), max_size, _REQUEST_TOO_LARGE)
    if end < 0:
        return None
    block = bytes(buf[start:end])
    if _BAD_HEAD.search(block):
        raise ParseError(400, "bad_request", "control character or obs-fold in the request head")
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_size + 4)
    conn.receive_data(block)
    try:
        ev = conn.next_event()
    except h11.RemoteProtocolError as exc:
        status = exc.error_status_hint
        raise ParseError(status, "bad_request" if status == 400 else "unsupported", str(exc)) from None
    if type(ev) is not h11.Request:
        raise ParseError(400, "bad_request", "incomplete request head")
    version = ev.http_version
    if version not in _VERSIONS:
        raise ParseError(505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1")
    head = RequestHead(ev.method, ev.target, version)
    hdrs = ev.headers
    head.headers = hdrs.raw_items()
    content_length = -1
    chunked = False
    conn_tokens: list[bytes] = []
    xff: list[bytes] = []
    expect_other = False
    for name, value in hdrs:
        if name == b"host":
            head.host = value
        elif name == b"content-length":
            content_length = int(value)
        elif name == b"transfer-encoding":
            chunked = True  # h11 refuses anything but exactly "chunked" (501)
        elif name == b"connection":
            conn_tokens.extend(_tokens(value))
        elif name == b"upgrade":
            head.upgrade = value
        elif name == b"expect":
            # RFC 9110 section 10.1.1: 100-continue is the only expectation
            # defined; any other (even in a list with it) is refused with 417
            if value.lower() == b"100-continue":
                head.expect_continue = True
            elif value:
                expect_other = True
        elif name == b"x-forwarded-for":
            xff.append(value)
        elif name == b"x-request-id":
            if not head.request_id:
                head.request_id = value
        elif name == b"traceparent":
            head.traceparent = value
    if chunked and content_length >= 0:
        raise ParseError(400, "ambiguous_framing", "both Content-Length and Transfer-Encoding")
    if expect_other:
        raise ParseError(417, "expectation_failed", "only Expect: 100-continue is supported")
    if chunked:
        head.framing = FRAMING_CHUNKED
    elif content_length > 0:
        head.framing = FRAMING_LENGTH
    head.content_length = content_length
    head.connection = frozenset(conn_tokens)
    if version == b"1.1":
        head.keep_alive = b"close" not in head.connection
    else:
        # RFC 9112 section 6.1: Transfer-Encoding in an HTTP/1.0 message means
        # its framing is faulty; process it, then close the connection
        head.keep_alive = (
            b"keep-alive" in head.connection and b"close" not in head.connection and not chunked
        )
    if xff:
        head.xff = b", ".join(xff)
    return head, end


_PLAIN_REQUEST = ((b"host", b"h"),)
_UPGRADE_REQUEST = ((b"host", b"h"), (b"connection", b"upgrade"), (b"upgrade", b"websocket"))


def parse_response_head(buf, method: bytes, max_size: int, scan_from: int = 0, upgrade: bool = False):
    """Parse one response (or 1xx) head; ``method`` is the request's.

    ``upgrade`` says the request proposed a protocol switch, the only case
    where a 101 is valid. Returns ``(head, consumed)`` or None;
    ParseError(502) for anything invalid, including a head over ``max_size``.
    """
    end = _head_end_within(buf, max(0, scan_from - 3), max_size, _RESPONSE_TOO_LARGE)
    if end < 0:
        return None
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_size + 4)
    conn.send(h11.Request(method=method, target=b"/", headers=_UPGRADE_REQUEST if upgrade else _PLAIN_REQUEST))
    block = bytes(buf[:end])
    if _BAD_HEAD.search(block):
        raise ParseError(502, "invalid_response", "control character or obs-fold in the response head")
    conn.receive_data(block)
    try:
        ev = conn.next_event()
    except h11.RemoteProtocolError as exc:
        raise ParseError(502, "invalid_response", str(exc)) from None
    if type(ev) not in (h11.Response, h11.InformationalResponse):
        raise ParseError(502, "invalid_response", "incomplete response head")
    version = ev.http_version
    if version not in _VERSIONS:
        raise ParseError(502, "invalid_response", "unsupported response version")
    status = ev.status_code
    head = ResponseHead(status, ev.reason, version)
    hdrs = ev.headers
    head.headers = hdrs.raw_items()
    content_length = -1
    chunked = False
    conn_tokens: list[bytes] = []
    for name, value in hdrs:
        if name == b"content-length":
            content_length = int(value)
        elif name == b"transfer-encoding":
            chunked = True
        elif name == b"connection":
            conn_tokens.extend(_tokens(value))
        elif name == b"upgrade":
            head.upgrade = value
    if chunked and content_length >= 0:
        raise ParseError(502, "invalid_response", "both Content-Length and Transfer-Encoding")
    head.content_length = content_length
    head.connection = frozenset(conn_tokens)
    if version == b"1.1":
        head.keep_alive = b"close" not in head.connection
    else:
        head.keep_alive = b"keep-alive" in head.connection and b"close" not in head.connection
    if status < 200 or status == 204 or status == 304 or method == b"HEAD":
        head.framing = FRAMING_NONE
    elif chunked:
        head.framing = FRAMING_CHUNKED
    elif content_length >= 0:
        head.framing = FRAMING_LENGTH if content_length > 0 else FRAMING_NONE
    else:
        head.framing = FRAMING_CLOSE
        head.keep_alive = False
    return head, end


_TAIL = 20 * 1024  # more than h11 lets a trailer section hold (16 KiB)
_LAST_CHUNK = re.compile(rb"0+[ \t]*(?:;.*)?")
_PRIME_CHUNKED = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"


class ChunkedDecoder:
    """Chunked body decoded by an h11 connection primed past a head.

    Trailers are read and dropped (the proxy re-frames and sends none).
    ``status`` is the answer for a malformed body: 400 for requests, 502 for
    responses.
    """

    __slots__ = ("_conn", "_status", "_tail")

    def __init__(self, status: int = 400):
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(_PRIME_CHUNKED)
        conn.next_event()
        self._conn = conn
        self._status = status
        self._tail = b""  # the last bytes fed: where the trailers are checked

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        if not data:
            return b"", None  # h11 would take empty bytes as end of stream
        conn = self._conn
        conn.receive_data(data)
        self._tail = (self._tail + data)[-_TAIL:]
        out = []
        try:
            while True:
                ev = conn.next_event()
                if ev is _NEED_DATA:
                    return b"".join(out), None
                if ev is h11.PAUSED:  # fed again after the end: all of it is leftover
                    return b"", data
                if type(ev) is _Data:
                    out.append(ev.data)
                elif type(ev) is _EndOfMessage:
                    rest = conn.trailing_data[0]
                    if ev.headers:
                        self._check_trailers(self._tail[: len(self._tail) - len(rest)])
                    return b"".join(out), rest
        except h11.RemoteProtocolError as exc:
            code = "bad_request" if self._status == 400 else "invalid_response"
            raise ParseError(self._status, code, str(exc)) from None

    def _check_trailers(self, stream: bytes) -> None:
        """Refuse trailers h11 accepted but the proxy does not (as the native
        codec does): control bytes and obs-fold. ``stream`` ends with the
        blank line closing the trailer section; the last-chunk line is the
        nearest line before it that is all zeros (a trailer line has a colon)."""
        lines = stream.split(b"\n")[:-2]  # drop what follows the blank line and the blank line
        i = len(lines) - 1
        while i >= 0 and not _LAST_CHUNK.fullmatch(lines[i].rstrip(b"\r")):
            i -= 1
        for line in lines[i + 1:]:
            if _BAD_HEAD.search(b"\n" + line.rstrip(b"\r")):
                code = "bad_request" if self._status == 400 else "invalid_response"
                raise ParseError(self._status, code, "control character or obs-fold in a trailer")

    def eof(self) -> bool:
        return False


def make_decoder(framing: int, content_length: int, error_status: int = 400):
    """A body decoder for a head's framing (None when there is no body)."""
    if framing == FRAMING_LENGTH:
        return LengthDecoder(content_length)
    if framing == FRAMING_CHUNKED:
        return ChunkedDecoder(error_status)
    if framing == FRAMING_CLOSE:
        return CloseDecoder()
    return None


def build_request_head(head: RequestHead, target: bytes, host: bytes, drop: frozenset, extra: list) -> bytes:
    """Serialise the request head sent upstream (always HTTP/1.1).

    Host comes first; received headers follow in order minus hop-by-hop,
    Connection-named and ``drop`` names (all lowercase); ``extra`` pairs last.
    """
    parts = [b"%b %b HTTP/1.1\r\nHost: %b\r\n" % (head.method, target, host)]
    conn = head.connection
    for name, value in head.headers:
        low = name.lower()
        if low in HOP_BY_HOP or low in drop or low in conn or low == b"host":
            continue
        parts.append(b"%b: %b\r\n" % (name, value))
    for name, value in extra:
        parts.append(b"%b: %b\r\n" % (name, value))
    parts.append(b"\r\n")
    return b"".join(parts)


def build_response_head(head: ResponseHead, drop: frozenset, extra: list) -> bytes:
    """Serialise the response head sent downstream (status line HTTP/1.1)."""
    parts = [b"HTTP/1.1 %d %b\r\n" % (head.status, head.reason)]
    conn = head.connection
    for name, value in head.headers:
        low = name.lower()
        if low in HOP_BY_HOP or low in drop or low in conn:
            continue
        parts.append(b"%b: %b\r\n" % (name, value))
    for name, value in extra:
        parts.append(b"%b: %b\r\n" % (name, value))
    parts.append(b"\r\n")
    return b"".join(parts)
