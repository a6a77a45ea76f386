"""Reading the PROXY protocol header before a connection is handed on.

Theory of operation
-------------------
On a listener with ``proxy_protocol = true`` (edgeproxy behind an L4 load
balancer), every connection must start with a PROXY protocol header, v1 or
v2 (``proxyproto.parse``). ``ProxyHeaderReader`` is the first protocol on
such a transport: it buffers until the header is complete, then hands the
transport to the real protocol (a ``Downstream``, or a ``TLSConnection``
whose ClientHello follows the header), setting ``peer_addr`` on it first so
the client address the load balancer saw is the one logged, forwarded in
X-Forwarded-For and used in the access log. A LOCAL header (the balancer's
own health check) keeps the socket's peer address.

A connection whose first bytes are not a valid header, or that does not
complete it within ``header_timeout``, is closed without an answer (its
peer is a load balancer, not an HTTP client), logged once and counted in
``http_server_proxy_protocol_errors_total``. Admission (caps, per-IP
limits) happens at accept time, before the header: per-IP limits then see
the balancer's address.
"""

from __future__ import annotations

import asyncio

from . import log
from .proxyproto import ProxyHeaderError, parse

__all__ = ["ProxyHeaderReader"]


class ProxyHeaderReader(asyncio.Protocol):
    def __init__(self, server, listener, ip: str, make_protocol):
        self.server = server
        self.listener = listener
        self.ip = ip
        self.make_protocol = make_protocol
        self.transport = None
        self.buf = bytearray()
        self.timer = None
        self.handed = None  # the protocol that took over

    def connection_made(self, transport):
        self.transport = transport
        self.timer = self.server.loop.call_later(self.server.config.downstream.header_timeout, self._timed_out)

    def data_received(self, data):
        if self.handed is not None:  # only before set_protocol took effect
            self.handed.data_received(data)
            return
        self.buf += data
        try:
            res = parse(self.buf)
        except ProxyHeaderError as exc:
            self._refuse(exc.reason)
            return
        if res is None:
            return
        info, used = res
        self.timer.cancel()
        inner = self.make_protocol()
        if info.command == "PROXY" and info.src_addr is not None and info.family in ("TCP4", "TCP6"):
            inner.peer_addr = (info.src_addr, info.src_port)
        self.handed = inner
        self.transport.set_protocol(inner)
        inner.connection_made(self.transport)
        rest = bytes(self.buf[used:])
        self.buf.clear()
        if rest:
            inner.data_received(rest)

    def _refuse(self, reason: str) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.server.metrics.proxy_protocol_error(self.listener.name)
        peer = self.transport.get_extra_info("peername")
        log.event("proxy_protocol_error", level="info", listener=self.listener.name, reason=reason,
                  client=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else None)
        self.transport.abort()

    def _timed_out(self) -> None:
        self.timer = None
        if self.handed is None:
            self._refuse("no complete PROXY header within header_timeout")

    def eof_received(self):
        if self.handed is not None:
            return self.handed.eof_received()
        return False

    def connection_lost(self, exc):
        if self.handed is not None:
            self.handed.connection_lost(exc)
            return
        if self.timer is not None:
            self.timer.cancel()
        self.server.admission_released(self.listener, self.ip)  # no protocol took over its slot

    def pause_writing(self):
        if self.handed is not None:
            self.handed.pause_writing()

    def resume_writing(self):
        if self.handed is not None:
            self.handed.resume_writing()
