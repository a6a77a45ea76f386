"""Fuzzing the whole proxy over real sockets.

Random byte streams and mutated valid requests go to the running proxy. For
every input the proxy must answer with a well-formed response or close the
connection, within a bound (never hang); it must never crash; and the
recording upstream must find every message it was sent to be a valid
HTTP/1.1 message (parsed with h11), never two where the client meant one.
"""

from __future__ import annotations

import asyncio
import socket
import time

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import Client, Upstream

FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture
def runtime():
    return ("uvloop", "default")  # the codecs are fuzzed against each other elsewhere


class Recording:
    """An upstream that parses what it receives with h11 and notes any violation."""

    def __init__(self):
        self.errors: list[str] = []
        self.messages = 0
        self.up = Upstream(raw=self.handle).__enter__()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            try:
                ev = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self.errors.append(f"upstream got an invalid message: {exc}")
                writer.close()
                return
            if ev is h11.NEED_DATA:
                data = await reader.read(65536)
                if not data:
                    return
                conn.receive_data(data)
            elif isinstance(ev, h11.Request):
                names = {k.lower() for k, _ in ev.headers}
                if b"content-length" in names and b"transfer-encoding" in names:
                    self.errors.append("upstream got both Content-Length and Transfer-Encoding")
            elif isinstance(ev, h11.EndOfMessage):
                self.messages += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                leftover = conn.trailing_data[0]  # answered by hand: a fresh parser for the next message
                conn = h11.Connection(h11.SERVER)
                if leftover:
                    conn.receive_data(leftover)
            elif isinstance(ev, h11.ConnectionClosed):
                return


def exchange(addr, data: bytes, timeout: float = 3.0) -> tuple[bytes, float]:
    """Send ``data``, half-close, read until the proxy closes: (bytes, seconds)."""
    t0 = time.monotonic()
    s = socket.create_connection(addr, timeout=timeout)
    out = []
    try:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the proxy may already have answered and closed
        deadline = t0 + timeout
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                raise AssertionError(f"the proxy neither answered nor closed within {timeout}s: {data[:120]!r}")
            if not chunk:
                break
            out.append(chunk)
    finally:
        s.close()
    return b"".join(out), time.monotonic() - t0


def well_formed(raw: bytes) -> None:
    """Every byte the client got parses as a sequence of HTTP/1.1 responses."""
    if not raw:
        return
    assert raw.startswith(b"HTTP/1.1 "), raw[:80]
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
    ev = conn.next_event()
    assert isinstance(ev, (h11.Response, h11.InformationalResponse)), ev


VALID = [
    b"GET /a?b=1 HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
]
INSERTS = [b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b"\x00", b"\x7f", b"Content-Length: 3\r\n",
           b"Transfer-Encoding: chunked\r\n", b"Content-Length: 0\r\n", b"Transfer-Encoding: gzip, chunked\r\n",
           b"Host: u\r\n", b" folded\r\n", b"0\r\n\r\n", b"GET / HTTP/1.1\r\n", b"ffffffffffffffffff\r\n", b";ext"]


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(data)))
        kind = draw(st.integers(0, 3))
        if kind == 0:
            data[pos:pos] = draw(st.sampled_from(INSERTS))
        elif kind == 1 and data:
            del data[pos:pos + draw(st.integers(1, 6))]
        elif kind == 2 and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


def proxy_for(proxy_factory, rec):
    return proxy_factory(upstreams={"app": [rec.up.address]}, extra=(
        '[downstream]\nheader_timeout = "1s"\nbody_timeout = "1s"\n'), cluster_extra='response_timeout = "1s"')


def check_after(px, rec) -> None:
    assert px.proc.poll() is None, "the proxy died"
    with Client(px.addr) as c:
        assert c.request("GET", "/still-alive").status == 200
    assert rec.errors == []


def test_mutated_requests(proxy_factory):
    rec = Recording()
    try:
        px = proxy_for(proxy_factory, rec)

        @FUZZ
        @given(data=mutated())
        def run(data):
            raw, took = exchange(px.addr, data)
            well_formed(raw)
            assert took < 3.0

        run()
        check_after(px, rec)
    finally:
        rec.up.close()


def test_random_bytes(proxy_factory):
    rec = Recording()
    try:
        px = proxy_for(proxy_factory, rec)

        @FUZZ
        @given(data=st.binary(min_size=1, max_size=300) | st.builds(
            lambda a, b: a + b, st.sampled_from([b"GET / HTTP/1.1\r\n", b"POST / HTTP/1.1\r\nHost: t\r\n"]),
            st.binary(max_size=200)))
        def run(data):
            raw, took = exchange(px.addr, data)
            well_formed(raw)
            assert took < 3.0

        run()
        check_after(px, rec)
    finally:
        rec.up.close()
