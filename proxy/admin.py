"""Admin listener: /metrics, /healthz, /readyz.

Theory of operation
-------------------
A separate listener (default 127.0.0.1:9901) with its own tiny protocol. It
shares nothing with the proxied path but the process: every answer is
computed from state the proxy already holds, synchronously, in the same
callback that parsed the request. ``/readyz`` in particular never waits on
upstream I/O, so it answers in well under a millisecond even when every
upstream connection hangs — a readiness probe that blocks on a saturated
pool is one of the failures this project exists to prevent.

* ``/healthz``: 200 while the process runs its event loop.
* ``/readyz``: 200 when listeners are open, the proxy is not draining, and
  every routed cluster has at least one server not known to be down; else
  503 with the reasons.
* ``/metrics``: Prometheus text format.

Requests with a body are refused (405/400); admin connections are closed
after ``IDLE_TIMEOUT`` seconds idle.
"""

from __future__ import annotations

import asyncio

import orjson

from . import codec
from .codec import ParseError

IDLE_TIMEOUT = 30.0
MAX_HEAD = 8192


def _response(status: int, ctype: bytes, body: bytes, keep: bool) -> bytes:
    return b"HTTP/1.1 %d %b\r\nContent-Type: %b\r\nContent-Length: %d\r\nCache-Control: no-store\r\n%b\r\n%b" % (
        status,
        codec.reason_phrase(status),
        ctype,
        len(body),
        b"" if keep else b"Connection: close\r\n",
        body,
    )


def _json(status: int, obj, keep: bool) -> bytes:
    return _response(status, b"application/json", orjson.dumps(obj), keep)


class AdminProtocol(asyncio.Protocol):
    def __init__(self, server):
        self.server = server
        self.transport = None
        self.buf = bytearray()
        self.timer = None

    def connection_made(self, transport):
        self.transport = transport
        self._arm()

    def _arm(self):
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.server.loop.call_later(IDLE_TIMEOUT, self.transport.close)

    def connection_lost(self, exc):
        if self.timer is not None:
            self.timer.cancel()

    def data_received(self, data):
        self.buf += data
        self._arm()
        while self.buf and not self.transport.is_closing():
            try:
                res = codec.parse_request_head(self.buf, MAX_HEAD)
            except ParseError as exc:
                self.transport.write(_json(exc.status, {"error": exc.code}, False))
                self.transport.close()
                return
            if res is None:
                return
            head, n = res
            del self.buf[:n]
            if head.framing != codec.FRAMING_NONE:
                self.transport.write(_json(400, {"error": "body_not_accepted"}, False))
                self.transport.close()
                return
            keep = head.keep_alive
            self.transport.write(self.answer(head, keep))
            if not keep:
                self.transport.close()

    def answer(self, head, keep: bool) -> bytes:
        path = head.target.split(b"?", 1)[0]
        if head.method not in (b"GET", b"HEAD"):
            return _json(405, {"error": "method_not_allowed"}, keep)
        if path == b"/metrics":
            body, ctype = self.server.metrics.render()
            return _response(200, ctype.encode(), body, keep)
        if path == b"/healthz":
            return _json(200, {"status": "ok"}, keep)
        if path == b"/readyz":
            ready, reasons = self.server.readiness()
            return _json(200 if ready else 503, {"ready": ready, "reasons": reasons}, keep)
        return _json(404, {"error": "not_found", "paths": ["/metrics", "/healthz", "/readyz"]}, keep)


class AdminServer:
    def __init__(self, server):
        self.server = server
        self.cfg = server.config.admin
        self._srv = None
        self.address = ""

    async def start(self) -> None:
        from .server import format_addr

        loop = self.server.loop
        self._srv = await loop.create_server(
            lambda: AdminProtocol(self.server), self.cfg.address.host, self.cfg.address.port, reuse_address=True
        )
        self.address = format_addr(self._srv.sockets[0].getsockname())

    def close(self) -> None:
        if self._srv is not None:
            self._srv.close()
