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


def error_response(status: int, code: str, rid: bytes, keep: bool, http10: bool = False,
                   retry_after: int = 0) -> bytes:
    """A complete JSON error response."""
    body = orjson.dumps({"error": code, "request_id": rid.decode("latin-1")})
    parts = [
        b"HTTP/1.1 %d %b\r\nContent-Type: application/json\r\nContent-Length: %d\r\nX-Request-ID: %b\r\n"
        % (status, reason_phrase(status), len(body), rid)
    ]
    if retry_after:
        parts.append(b"Retry-After: %d\r\n" % retry_after)
    if not keep:
        parts.append(b"Connection: close\r\n")
    elif http10:
        parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    parts.append(body)
    return b"".join(parts)
