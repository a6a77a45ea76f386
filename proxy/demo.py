"""A small built-in upstream for ``edgeproxy demo`` and benchmarks.

It answers every request with a short JSON document (method, path, the
forwarding headers it received, request id) or, for ``POST``/``PUT``,
echoes the body's byte count. ``/bytes/N`` returns N bytes, so a download
can be tried through the proxy. It is deliberately minimal: HTTP/1.1
keep-alive, Content-Length and chunked request bodies (via the codec).
"""

from __future__ import annotations

import asyncio

import orjson

from . import codec
from .codec import ParseError

_CHUNK = b"x" * 65536


class DemoProtocol(asyncio.Protocol):
    def __init__(self, name: str):
        self.name = name
        self.transport = None
        self.buf = bytearray()
        self.head = None
        self.dec = None
        self.received = 0

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        while True:
            if self.head is None:
                try:
                    res = codec.parse_request_head(self.buf, 65536)
                except ParseError as exc:
                    self.transport.write(b"HTTP/1.1 %d Bad\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % exc.status)
                    self.transport.close()
                    return
                if res is None:
                    return
                self.head, n = res
                del self.buf[:n]
                self.received = 0
                self.dec = codec.make_decoder(self.head.framing, self.head.content_length)
            if self.dec is not None:
                data = bytes(self.buf)
                self.buf.clear()
                try:
                    payload, rest = self.dec.feed(data)
                except ParseError:
                    self.transport.close()
                    return
                self.received += len(payload)
                if rest is None:
                    return
                self.buf += rest
                self.dec = None
            self._respond(self.head)
            self.head = None
            if not self.buf:
                return

    def _respond(self, head) -> None:
        path = head.target.decode("latin-1")
        keep = head.keep_alive
        if path.startswith("/bytes/"):
            try:
                n = max(0, min(int(path[7:].split("?")[0]), 1 << 30))
            except ValueError:
                n = 0
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n%b\r\n"
                                 % (n, b"" if keep else b"Connection: close\r\n"))
            while n > 0:
                k = min(n, len(_CHUNK))
                self.transport.write(_CHUNK[:k])
                n -= k
        else:
            hdrs = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in head.headers}
            body = orjson.dumps(
                {
                    "upstream": self.name,
                    "method": head.method.decode(),
                    "path": path,
                    "body_bytes": self.received,
                    "x-forwarded-for": hdrs.get("x-forwarded-for"),
                    "x-forwarded-host": hdrs.get("x-forwarded-host"),
                    "x-request-id": hdrs.get("x-request-id"),
                },
                option=orjson.OPT_APPEND_NEWLINE,
            )
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%b\r\n%b"
                % (len(body), b"" if keep else b"Connection: close\r\n", body)
            )
        if not keep:
            self.transport.close()


async def start_demo_upstream(host: str, port: int) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    name = f"{host}:{port}"
    return await loop.create_server(lambda: DemoProtocol(name), host, port, reuse_address=True)
