"""Parsed message heads: what a codec hands the proxy.

Theory of operation
-------------------
A head carries only what the proxy reads (see ``proxy.codec.base``): the
start line, the derived facts (Host, framing, keep-alive, Connection
tokens, Upgrade, Expect, X-Forwarded-For, X-Request-ID, traceparent) and
the header block as received (``raw``), split into ``headers`` pairs only
if someone asks. Both codecs build these same classes; the native one fills
every field of a fresh object directly.

Compiled with the core (``heads.pxd``), the classes are extension types that
the client connection and the exchange hold typed, so reading a field is a
C struct member rather than an attribute lookup; as plain Python they are
slotted classes.
"""

from __future__ import annotations

try:
    import cython
except ImportError:  # Cython absent: this module runs as plain Python
    class cython:  # noqa: N801
        compiled = False

FRAMING_NONE = 0  # no body (HEAD, 1xx, 204, 304, request without length)
FRAMING_LENGTH = 1  # Content-Length bytes
FRAMING_CHUNKED = 2  # Transfer-Encoding: chunked
FRAMING_CLOSE = 3  # response body runs until the connection closes


def split_header_block(raw: bytes) -> list[tuple[bytes, bytes]]:
    """(name, value) pairs of an already validated header block.

    ``raw`` is the bytes between the start line and the blank line, as
    received (CRLF or bare LF); values lose their surrounding whitespace.
    """
    out = []
    for line in raw.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            continue
        name, _, value = line.partition(b":")
        out.append((name, value.strip(b" \t")))
    return out


def _get_headers(self) -> list[tuple[bytes, bytes]]:
    h = self._headers
    if h is None:
        h = self._headers = split_header_block(self.raw)
    return h


def _set_headers(self, value) -> None:
    self._headers = value


class RequestHead:
    """A parsed request head.

    ``headers`` is the list of (name, value) pairs in received order and
    case. A codec may fill it directly, or leave the header block as received
    in ``raw`` (a slice of the input buffer) and let ``headers`` split it on
    first access, so the hot path builds no per-header Python objects.
    """

    if not cython.compiled:  # compiled (heads.pxd), the fields are typed slots
        __slots__ = (
            "method",
            "target",
            "version",
            "host",
            "framing",
            "content_length",
            "keep_alive",
            "connection",
            "upgrade",
            "expect_continue",
            "xff",
            "request_id",
            "traceparent",
            "raw",
            "_headers",
        )

    def __init__(self, method: bytes, target: bytes, version: bytes):
        self.method = method
        self.target = target
        self.version = version
        self.raw = b""
        self._headers = None
        self.host = b""
        self.framing = FRAMING_NONE
        self.content_length = 0
        self.keep_alive = True
        self.connection = frozenset()
        self.upgrade = b""
        self.expect_continue = False
        self.xff = b""
        self.request_id = b""
        self.traceparent = b""

    headers = property(_get_headers, _set_headers)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"RequestHead({self.method!r} {self.target!r} HTTP/{self.version.decode()})"


class ResponseHead:
    """A parsed response (or interim 1xx) head."""

    if not cython.compiled:  # compiled (heads.pxd), the fields are typed slots
        __slots__ = (
            "status",
            "reason",
            "version",
            "framing",
            "content_length",
            "keep_alive",
            "connection",
            "upgrade",
            "raw",
            "_headers",
        )

    def __init__(self, status: int, reason: bytes, version: bytes):
        self.status = status
        self.reason = reason
        self.version = version
        self.raw = b""
        self._headers = None
        self.framing = FRAMING_NONE
        self.content_length = 0
        self.keep_alive = True
        self.connection = frozenset()
        self.upgrade = b""

    headers = property(_get_headers, _set_headers)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"ResponseHead({self.status} {self.reason!r})"


