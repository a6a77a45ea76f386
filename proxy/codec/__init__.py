"""HTTP/1.1 codec, chosen once at import.

The native (Cython) implementation is used when it is importable and
``EDGEPROXY_PURE`` is not set to a true value; otherwise the pure one (h11 +
plain Python). Both expose the same functions, listed in ``__all__``; the
protocols import them from here, never from an implementation, so the swap is
this one choice. ``NAME`` says which one is in use ("native" or "pure").
"""

from __future__ import annotations

import os

from .base import (
    FRAMING_CHUNKED,
    FRAMING_CLOSE,
    FRAMING_LENGTH,
    FRAMING_NAMES,
    FRAMING_NONE,
    HOP_BY_HOP,
    LAST_CHUNK,
    ParseError,
    RequestHead,
    ResponseHead,
    encode_chunk,
    head_end,
    reason_phrase,
)


def _load():
    if os.environ.get("EDGEPROXY_PURE", "").strip().lower() not in ("", "0", "false", "no"):
        from . import pure

        return pure
    try:
        from . import native  # type: ignore[attr-defined]
    except ImportError:
        from . import pure

        return pure
    return native


_impl = _load()
NAME: str = _impl.NAME
parse_request_head = _impl.parse_request_head
parse_response_head = _impl.parse_response_head
make_decoder = _impl.make_decoder
LengthDecoder = _impl.LengthDecoder  # the type make_decoder returns for a Content-Length body
build_request_head = _impl.build_request_head
build_response_head = _impl.build_response_head

__all__ = [
    "NAME",
    "FRAMING_CHUNKED",
    "FRAMING_CLOSE",
    "FRAMING_LENGTH",
    "FRAMING_NAMES",
    "FRAMING_NONE",
    "HOP_BY_HOP",
    "LAST_CHUNK",
    "LengthDecoder",
    "ParseError",
    "RequestHead",
    "ResponseHead",
    "build_request_head",
    "build_response_head",
    "encode_chunk",
    "head_end",
    "make_decoder",
    "parse_request_head",
    "parse_response_head",
    "reason_phrase",
]
