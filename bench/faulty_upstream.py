#!/usr/bin/env python3
"""An HTTP/1.1 upstream whose failure mode is switched at run time.

    python3 bench/faulty_upstream.py --port 8001 --control 9001 [--mode ok]

Two listeners on 127.0.0.1: the data port, which the proxy under test talks
to, and a control port, which never fails:

    PUT /mode/ok        200 "ok\\n", keep-alive (the normal server)
    PUT /mode/hang      accept and read, never answer; requests already read
                        on open connections are not answered either
    PUT /mode/refuse    stop listening (new connects are refused) and reset
                        every open connection (RST, SO_LINGER 0)
    PUT /mode/error503  answer 503 with a small body, keep-alive
    GET /mode           the mode in force
    GET /stats          JSON: mode, cumulative counters and requests served
                        per wall-clock second over the last two minutes

``/healthz`` on the data port is answered like any other request (so health
checks see the fault) but counted apart. "served" counts the other
requests answered, any status; "received" counts the other requests read,
answered or not. Leaving ``hang`` for ``ok`` or ``error503`` answers the
requests held on the connections still open, as a server recovering from a
stall would; leaving it for ``refuse`` resets them. The request parser is
deliberately small: request line, headers, Content-Length bodies (chunked
request bodies get 400 and a close), HTTP/1.0 and 1.1 keep-alive rules.

SIGTERM or SIGINT stops it at once.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import signal
import socket
import struct
import time

import uvloop

MODES = ("ok", "hang", "refuse", "error503")
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n%b\r\nok\n"
E503 = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n%b\r\nunavailable\n"
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
CLOSE = b"Connection: close\r\n"
MAX_HEAD = 65536


class Upstream:
    """Mode, counters and the data listener of one faulty server."""

    def __init__(self, port: int, mode: str):
        self.port = port
        self.mode = mode
        self.server: asyncio.AbstractServer | None = None
        self.conns: set[DataProtocol] = set()
        self.received = 0
        self.served = 0
        self.status = collections.Counter()
        self.healthz = 0
        self.connections = 0
        self.second = 0
        self.in_second = 0
        self.per_second: collections.deque = collections.deque(maxlen=120)

    def count_served(self, healthz: bool, status: int) -> None:
        if healthz:
            self.healthz += 1
            return
        self.served += 1
        self.status[status] += 1
        sec = int(time.time())
        if sec != self.second:
            if self.second:
                self.per_second.append((self.second, self.in_second))
            self.second = sec
            self.in_second = 0
        self.in_second += 1

    async def listen(self) -> None:
        if self.server is None:
            loop = asyncio.get_running_loop()
            self.server = await loop.create_server(lambda: DataProtocol(self), "127.0.0.1", self.port,
                                                   reuse_address=True, backlog=4096)

    async def set_mode(self, mode: str) -> None:
        old, self.mode = self.mode, mode
        if mode == "refuse":
            if self.server is not None:
                self.server.close()
                self.server = None
            for c in list(self.conns):
                c.reset()
            return
        await self.listen()
        if old == "hang":
            for c in list(self.conns):
                if c.paused:
                    c.paused = False
                    c.transport.resume_reading()
                c.process()

    def stats(self) -> dict:
        sec = int(time.time())
        per = list(self.per_second)
        if self.second:
            per.append((self.second, self.in_second))
        return {
            "mode": self.mode,
            "port": self.port,
            "received": self.received,
            "served": self.served,
            "status": {str(k): v for k, v in sorted(self.status.items())},
            "healthz": self.healthz,
            "connections_open": len(self.conns),
            "connections_total": self.connections,
            "now": sec,
            "per_second": [[s, n] for s, n in per if s > sec - 120],
        }


class DataProtocol(asyncio.Protocol):
    def __init__(self, up: Upstream):
        self.up = up
        self.transport = None
        self.buf = bytearray()
        self.closing = False
        self.held = False  # a complete request is being held (hang mode), already counted
        self.paused = False

    def connection_made(self, transport):
        self.transport = transport
        self.up.conns.add(self)
        self.up.connections += 1
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.up.mode == "refuse":  # accepted from the backlog as the listener closed
            self.reset()

    def connection_lost(self, exc):
        self.up.conns.discard(self)
        self.closing = True

    def data_received(self, data):
        self.buf += data
        if len(self.buf) > 4 * MAX_HEAD and self.up.mode == "hang" and not self.paused:
            self.paused = True  # a hung server stops reading: the client's writes back up
            self.transport.pause_reading()
        self.process()

    def reset(self) -> None:
        if self.closing:
            return
        self.closing = True
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.transport.abort()

    def process(self) -> None:
        """Answer every complete request in the buffer, unless hanging."""
        up = self.up
        buf = self.buf
        out = []
        while not self.closing:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    out.append(BAD)
                    self.closing = True
                break
            lines = bytes(buf[:end]).split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
                out.append(BAD)
                self.closing = True
                break
            length = 0
            conn_hdr = b""
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value.strip() or b"0")
                elif name == b"connection":
                    conn_hdr = value.strip().lower()
                elif name == b"transfer-encoding":
                    length = -1
            if length < 0:
                out.append(BAD)
                self.closing = True
                break
            if len(buf) < end + 4 + length:
                break
            # a complete request
            healthz = parts[1] == b"/healthz"
            if up.mode == "hang":
                if not self.held:
                    self.held = True
                    up.received += not healthz
                break  # held: read on, never answer
            if not self.held:
                up.received += not healthz
            self.held = False
            del buf[: end + 4 + length]
            keep = (b"close" not in conn_hdr) if parts[2] == b"HTTP/1.1" else (b"keep-alive" in conn_hdr)
            if up.mode == "error503":
                out.append(E503 % (b"" if keep else CLOSE))
                up.count_served(healthz, 503)
            else:
                out.append(OK % (b"" if keep else CLOSE))
                up.count_served(healthz, 200)
            if not keep:
                self.closing = True
        if out:
            self.transport.write(b"".join(out))
        if self.closing and not self.transport.is_closing():
            self.transport.close()


class ControlProtocol(asyncio.Protocol):
    def __init__(self, up: Upstream):
        self.up = up
        self.transport = None
        self.buf = bytearray()
        self.busy = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        if not self.busy:
            asyncio.ensure_future(self.serve())

    async def serve(self) -> None:
        self.busy = True
        try:
            while True:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buf[:end]).decode("latin-1")
                del self.buf[: end + 4]
                method, target = (head.split("\r\n")[0].split(" ") + ["", ""])[:2]
                if method == "PUT" and target.startswith("/mode/") and target[6:] in MODES:
                    await self.up.set_mode(target[6:])
                    status, body = 200, {"mode": self.up.mode}
                elif method == "GET" and target == "/mode":
                    status, body = 200, {"mode": self.up.mode}
                elif method == "GET" and target == "/stats":
                    status, body = 200, self.up.stats()
                else:
                    status, body = 404, {"error": "PUT /mode/ok|hang|refuse|error503, GET /mode, GET /stats"}
                data = json.dumps(body).encode() + b"\n"
                self.transport.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b"
                                     % (status, len(data), data))
        finally:
            self.busy = False


async def main(args) -> None:
    up = Upstream(args.port, "ok")
    loop = asyncio.get_running_loop()
    await up.listen()
    if args.mode != "ok":
        await up.set_mode(args.mode)
    control = await loop.create_server(lambda: ControlProtocol(up), "127.0.0.1", args.control, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    control.close()
    if up.server is not None:
        up.server.close()
    for c in list(up.conns):
        c.transport.abort()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True, help="data port (what the proxy connects to)")
    ap.add_argument("--control", type=int, required=True, help="control port (mode switches, stats)")
    ap.add_argument("--mode", choices=MODES, default="ok")
    uvloop.run(main(ap.parse_args()))
