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
* ``/debug/connections``, ``/debug/tasks``, ``/debug/pools``,
  ``/debug/config``: live diagnostics as JSON (see ``diagnostics``).

Under a supervisor (``supervisor.Supervisor`` is then the ``server``),
``/metrics`` and ``/debug/*`` gather the workers' answers: those two are
answered from a coroutine, and the connection reads no further request
until it is written.

With ``admin.token`` set, ``/metrics`` and ``/debug/*`` need
``Authorization: Bearer <token>`` (401 otherwise); ``/healthz`` and
``/readyz`` stay open for orchestrator probes.

Requests with a body are refused (405/400); admin connections are closed
after ``IDLE_TIMEOUT`` seconds idle.
"""

from __future__ import annotations

import asyncio
import hmac

import orjson

from . import codec, diagnostics
from .codec import ParseError

IDLE_TIMEOUT = 30.0
MAX_HEAD = 8192


_PATHS = ["/metrics", "/healthz", "/readyz", "/debug/connections", "/debug/tasks", "/debug/pools",
          "/debug/config"]


_DEBUG = (b"connections", b"tasks", b"pools", b"config")


def _authorized(head, token: str) -> bool:
    want = b"Bearer " + token.encode()
    for name, value in head.headers:
        if name.lower() == b"authorization":
            return hmac.compare_digest(value, want)
    return False


def _response(status: int, ctype: bytes, body: bytes, keep: bool, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d %b\r\nContent-Type: %b\r\nContent-Length: %d\r\nCache-Control: no-store\r\n%b%b\r\n%b" % (
        status,
        codec.reason_phrase(status),
        ctype,
        len(body),
        extra,
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
        self.busy = False  # an answer is being gathered (supervisor): later requests wait

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
        while self.buf and not self.transport.is_closing() and not self.busy:
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
            out = self.answer(head, keep)
            if not isinstance(out, bytes):
                self.busy = True
                asyncio.ensure_future(self._later(out, keep))
                return
            self.transport.write(out)
            if not keep:
                self.transport.close()

    async def _later(self, coro, keep: bool) -> None:
        try:
            out = await coro
        except Exception as exc:  # a worker's answer went wrong: say so, keep serving
            out = _json(502, {"error": "gather_failed", "detail": str(exc)[:200]}, keep)
        self.busy = False
        if self.transport.is_closing():
            return
        self.transport.write(out)
        if not keep:
            self.transport.close()
        elif self.buf:
            self.data_received(b"")

    def answer(self, head, keep: bool) -> bytes:
        path, _, query = head.target.partition(b"?")
        if head.method not in (b"GET", b"HEAD"):
            return _json(405, {"error": "method_not_allowed"}, keep)
        if path == b"/healthz":
            return _json(200, {"status": "ok"}, keep)
        if path == b"/readyz":
            ready, reasons = self.server.readiness()
            return _json(200 if ready else 503, {"ready": ready, "reasons": reasons}, keep)
        token = self.server.config.admin.token
        if token and not _authorized(head, token):
            return _response(401, b"application/json", b'{"error":"unauthorized"}', keep,
                             b'WWW-Authenticate: Bearer realm="edgeproxy"\r\n')
        gather = getattr(self.server, "debug", None)  # a supervisor asks its workers
        if gather is not None and (path == b"/metrics" or (path.startswith(b"/debug/") and path[7:] in _DEBUG)):
            return self._gathered(path, query, keep)
        if path.startswith(b"/debug/"):
            which = path[7:]
            if which == b"connections":
                top = 20
                for part in query.split(b"&"):
                    if part.startswith(b"n=") and part[2:].isdigit():
                        top = min(int(part[2:]), 1000)
                return _json(200, diagnostics.connections(self.server, top), keep)
            if which == b"tasks":
                return _json(200, diagnostics.tasks(), keep)
            if which == b"pools":
                return _json(200, diagnostics.pools(self.server), keep)
            if which == b"config":
                return _json(200, diagnostics.config(self.server), keep)
        if path == b"/metrics":
            body, ctype = self.server.metrics.render()
            return _response(200, ctype.encode(), body, keep)
        return _json(404, {"error": "not_found", "paths": _PATHS}, keep)


    async def _gathered(self, path: bytes, query: bytes, keep: bool) -> bytes:
        if path == b"/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST

            return _response(200, CONTENT_TYPE_LATEST.encode(), await self.server.metrics_text(), keep)
        which = path[7:].decode()
        return _json(200, await self.server.debug(which, query.decode("latin-1")), keep)


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
