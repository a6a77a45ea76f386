"""Small raw-socket helpers for the proxying tests.

``support.Client`` parses responses with h11, which hides framing details
(chunked vs. length vs. close). These helpers keep the exact bytes so tests
can assert on how a response was framed on the wire.
"""

from __future__ import annotations

import asyncio
import socket


def parse_head(raw: bytes) -> tuple[bytes, list[tuple[str, str]]]:
    """(status or request line, [(lowercase name, value)]) of a head ending in a blank line."""
    lines = raw.split(b"\r\n")
    first = lines[0]
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        headers.append((name.decode("latin-1").strip().lower(), value.decode("latin-1").strip()))
    return first, headers


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    vals = [v for k, v in headers if k == name.lower()]
    return ", ".join(vals) if vals else None


class RawConn:
    """A blocking client socket that reads exactly what the proxy sent."""

    def __init__(self, addr, timeout: float = 5.0):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def read_head(self) -> tuple[bytes, list[tuple[str, str]], bytes]:
        """Read up to and including the blank line: (first line, headers, raw head)."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError(f"closed before a complete head: {self.buf!r}")
        end = self.buf.index(b"\r\n\r\n") + 4
        raw, self.buf = self.buf[:end], self.buf[end:]
        first, headers = parse_head(raw)
        return first, headers, raw

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError(f"closed after {len(self.buf)} of {n} bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_until_close(self) -> tuple[bytes, bool]:
        """Everything until the peer closes; (bytes, closed) where closed is False on timeout."""
        try:
            while self._fill():
                pass
            closed = True
        except socket.timeout:
            closed = False
        except ConnectionResetError:
            closed = True
        out, self.buf = self.buf, b""
        return out, closed

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


async def read_request_head(reader: asyncio.StreamReader) -> bytes:
    """For raw upstreams: the request head bytes (request line to blank line)."""
    return await reader.readuntil(b"\r\n\r\n")
