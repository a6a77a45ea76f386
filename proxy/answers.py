"""Answers the proxy makes itself: short JSON error responses.

Every error a client gets from edgeproxy (404 no route, 502, 503, 504, 4xx
for malformed requests) has the same shape: a JSON body
``{"error": "<stable code>", "request_id": "<id>"}`` built with orjson, an
explicit Content-Length, the request id also in X-Request-ID, Retry-After on
503, and ``Connection: close`` whenever the connection will not be reused.
"""

from __future__ import annotations

import orjson

from .codec import reason_phrase


def static_response(status: int, content_type: bytes, body: bytes, rid: bytes, keep: bool,
                    http10: bool = False, retry_after: int = 0, headers=()) -> bytes:
    """A complete response made by the proxy (error or configured fallback)."""
    parts = [
        b"HTTP/1.1 %d %b\r\nContent-Type: %b\r\nContent-Length: %d\r\nX-Request-ID: %b\r\n"
        % (status, reason_phrase(status), content_type, len(body), rid)
    ]
    for name, value in headers:
        parts.append(b"%b: %b\r\n" % (name, value))
    if retry_after:
        parts.append(b"Retry-After: %d\r\n" % retry_after)
    if not keep:
        parts.append(b"Connection: close\r\n")
    elif http10:
        parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    parts.append(body)
    return b"".join(parts)


def error_body(code: str, rid: bytes) -> bytes:
    return orjson.dumps({"error": code, "request_id": rid.decode("latin-1")})


def error_response(status: int, code: str, rid: bytes, keep: bool, http10: bool = False,
                   retry_after: int = 0) -> bytes:
    """A complete JSON error response."""
    return static_response(status, b"application/json", error_body(code, rid), rid, keep, http10, retry_after)
