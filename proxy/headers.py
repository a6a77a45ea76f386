"""Header rewrite rules: what the proxy adds, replaces and removes.

Theory of operation
-------------------
The codec's head builders always drop hop-by-hop headers (``HOP_BY_HOP``),
every header named in the message's Connection header, and Host (it writes
its own first). This module decides the rest, once per proxy:

* ``request_drop``: received headers the proxy manages and re-adds itself:
  X-Forwarded-For/-Proto/-Host (when ``x_forwarded``) and X-Request-ID.
  X-Forwarded-For is appended to (the client's list, then the peer address);
  X-Forwarded-Proto and -Host are replaced, because an edge proxy is the
  first hop that knows them for sure.
* ``request_extra``: the headers appended to the upstream request.
* ``response_drop`` / ``response_extra``: X-Request-ID is replaced by the
  request's id on the way back so client, upstream and access log agree;
  Via is added when configured.

Request ids: a client-sent X-Request-ID is kept when it is 1..128 visible
ASCII characters without spaces (h11 already refused control bytes);
otherwise a new one (32 hex digits: a per-process random prefix and a
counter) is generated. W3C ``traceparent``
(``00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>``) is passed
through untouched; with ``traceparent = "generate"`` one is created when
the request has none. The trace id (when valid) goes to the access log.
"""

from __future__ import annotations

import os
import re

_VALID_ID = re.compile(rb"[!-~]{1,128}\Z")
_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})\Z")

VIA = b"1.1 edgeproxy"


# Request ids: a random 64-bit prefix drawn once per process, then a 64-bit
# counter, 32 hex digits in all. Unique within the process by construction
# and across processes with overwhelming probability, and no system call per
# request (os.urandom per request cost about 5% of a small proxied GET). The
# id is built from the prefix and the counter's hex digits but the last two
# (rebuilt once every 256 ids) plus the last two from a table: formatting
# 64-bit hex per request cost about 4% of a small proxied GET.
_ID_PREFIX = int.from_bytes(os.urandom(8), "big")
_ID_PREFIX_HEX = b"%016x" % _ID_PREFIX
_HEX2 = tuple(b"%02x" % i for i in range(256))
_ID_MASK = 0xFFFFFFFFFFFFFFFF
_id_next = int.from_bytes(os.urandom(4), "big")  # the counter's next value
_id_base = _ID_PREFIX_HEX + b"%014x" % (_id_next >> 8)


def new_request_id() -> bytes:
    # (no locals: compiled, the module variables are C integers, headers.pxd)
    global _id_next, _id_base
    if _id_next & 0xFF == 0:
        _id_base = _ID_PREFIX_HEX + b"%014x" % (_id_next >> 8)
    rid = _id_base + _HEX2[_id_next & 0xFF]
    _id_next = (_id_next + 1) & _ID_MASK
    return rid


def request_id_for(received: bytes) -> bytes:
    if received and _VALID_ID.match(received):
        return received
    return new_request_id()


def trace_id_of(traceparent: bytes) -> bytes:
    m = _TRACEPARENT.match(traceparent) if traceparent else None
    if m is None or m.group(1) == b"ff" or m.group(2) == b"0" * 32:
        return b""
    return m.group(2)


def new_traceparent() -> bytes:
    return b"00-%b-%b-01" % (os.urandom(16).hex().encode(), os.urandom(8).hex().encode())


class HeaderPolicy:
    """The per-proxy header rules, built once from the [headers] section."""

    def __init__(self, cfg, proto: bytes = b"http", strip=(), hsts: str = ""):
        """``strip``: header names never forwarded from a client (the TLS
        client-identity headers the proxy itself sets). ``hsts``: the
        Strict-Transport-Security value of a TLS listener, set on every
        proxied response in place of the upstream's."""
        self.x_forwarded = cfg.x_forwarded
        self.request_id = cfg.request_id
        self.via = cfg.via
        self.generate_trace = cfg.traceparent == "generate"
        self.proto = proto
        drop = {b"x-request-id"}
        if self.x_forwarded:
            drop |= {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}
        drop |= {name.lower().encode("latin-1") for name in strip if name}
        self.request_drop = frozenset(drop)
        self.response_drop = frozenset({b"x-request-id", b"strict-transport-security"} if hsts else {b"x-request-id"})
        self.hsts = hsts.encode("latin-1")

    def ids(self, head) -> tuple[bytes, bytes, bytes]:
        """(request id, trace id, traceparent to add or b"") for a request."""
        rid = request_id_for(head.request_id) if self.request_id else (head.request_id or new_request_id())
        tp = head.traceparent
        trace = trace_id_of(tp)
        add_tp = b""
        if not tp and self.generate_trace:
            add_tp = new_traceparent()
            trace = add_tp[3:35]
        return rid, trace, add_tp

    def request_extra(self, head, client_ip: bytes, rid: bytes, add_traceparent: bytes) -> list:
        extra = []
        if self.x_forwarded:
            extra.append((b"X-Forwarded-For", head.xff + b", " + client_ip if head.xff else client_ip))
            extra.append((b"X-Forwarded-Proto", self.proto))
            if head.host:
                extra.append((b"X-Forwarded-Host", head.host))
        extra.append((b"X-Request-ID", rid))
        if add_traceparent:
            extra.append((b"traceparent", add_traceparent))
        if self.via:
            extra.append((b"Via", VIA))
        return extra

    def response_extra(self, rid: bytes) -> list:
        extra = [(b"X-Request-ID", rid)]
        if self.hsts:
            extra.append((b"Strict-Transport-Security", self.hsts))
        if self.via:
            extra.append((b"Via", VIA))
        return extra
