"""The codec interface: what a proxy does with HTTP/1.1 bytes.

Theory of operation
-------------------
A proxy does five things with the bytes of a message, and the interface is
shaped around exactly those, not around any parser's event API:

1. find whether a buffer holds a whole head (``head_end``) and parse it
   (``parse_request_head`` / ``parse_response_head``) into a small head
   object that carries only what the proxy reads: method, target, version,
   the raw header list, and the derived facts (Host, framing, keep-alive,
   Connection tokens, Upgrade, Expect, X-Forwarded-For, X-Request-ID,
   traceparent);
2. decide the body framing (``FRAMING_*`` + ``content_length`` on the head,
   per RFC 9112 section 6);
3. decode body bytes with a resumable decoder (``make_decoder``) that never
   holds a body: ``feed(data)`` returns the payload bytes it could decode and,
   once the message is complete, the bytes that follow it;
4. re-encode the payload for the other side (``encode_chunk`` /
   ``LAST_CHUNK``, or pass-through for a known length);
5. serialise a rewritten head as one bytes object (``build_request_head`` /
   ``build_response_head``): hop-by-hop headers and every header named in
   Connection are dropped, managed headers are replaced, and the caller's
   extra headers (framing, forwarding, request id) are appended.

Two implementations provide this module's functions: ``pure`` (h11 plus
plain Python) and, when compiled, ``native`` (Cython). ``proxy.codec`` picks
one at import. This module holds what both share: the head classes and
framing constants (defined in ``proxy.heads``, compiled with the core, and
re-exported here), the parse error and the length/close decoders.
"""

from __future__ import annotations

from ..heads import (  # noqa: F401  (re-exported: the codec interface)
    FRAMING_CHUNKED,
    FRAMING_CLOSE,
    FRAMING_LENGTH,
    FRAMING_NONE,
    RequestHead,
    ResponseHead,
    split_header_block,
)

FRAMING_NAMES = {
    FRAMING_NONE: "none",
    FRAMING_LENGTH: "length",
    FRAMING_CHUNKED: "chunked",
    FRAMING_CLOSE: "close",
}

# Headers that describe one hop, never forwarded (RFC 9110 section 7.6.1),
# plus Proxy-Connection, a pre-standard alias still sent by some clients.
# Transfer-Encoding and Content-Length are always dropped because the proxy
# re-frames every body it forwards; the caller appends the framing header.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
    }
)

LAST_CHUNK = b"0\r\n\r\n"


class ParseError(Exception):
    """A message the proxy refuses. ``status`` is the answer to give."""

    def __init__(self, status: int, code: str, detail: str = ""):
        super().__init__(detail or code)
        self.status = status
        self.code = code
        self.detail = detail


def head_end(buf: bytes | bytearray, start: int = 0) -> int:
    """Index just past the blank line ending a head in ``buf``, or -1.

    Only delimits; parsing is the codec's. ``start`` lets a caller resume the
    scan where the last one stopped (minus 3 bytes of overlap), so a client
    trickling a head one byte at a time costs linear, not quadratic, work.
    Accepts CRLF and bare-LF line endings (the parser then decides).
    """
    i = buf.find(b"\n\r\n", start)
    j = buf.find(b"\n\n", start)
    if i < 0:
        return -1 if j < 0 else j + 2
    if j < 0 or i < j:
        return i + 3
    return j + 2


class LengthDecoder:
    """Content-Length body: pass bytes through while counting them."""

    __slots__ = ("remaining",)

    def __init__(self, length: int):
        self.remaining = length

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        rem = self.remaining
        n = len(data)
        if n < rem:
            self.remaining = rem - n
            return data, None
        self.remaining = 0
        if n == rem:
            return data, b""
        return data[:rem], data[rem:]

    def eof(self) -> bool:
        """True if the connection closing now ends the body cleanly."""
        return self.remaining == 0


class CloseDecoder:
    """Body delimited by the connection closing (responses only)."""

    __slots__ = ()

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        return data, None

    def eof(self) -> bool:
        return True


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (empty data encodes to nothing)."""
    if not data:
        return b""
    return b"%x\r\n%b\r\n" % (len(data), data)


def reason_phrase(status: int) -> bytes:
    return _REASONS.get(status, b"Unknown")


_REASONS = {
    100: b"Continue",
    101: b"Switching Protocols",
    200: b"OK",
    201: b"Created",
    204: b"No Content",
    301: b"Moved Permanently",
    302: b"Found",
    304: b"Not Modified",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    417: b"Expectation Failed",
    421: b"Misdirected Request",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
}
