"""Broken upstream servers, as raw asyncio connection handlers.

Every factory here returns ``async def handler(reader, writer)``: one call
per accepted connection, before any parsing, the shape of
``asyncio.start_server`` callbacks and of ``tests/support.Upstream(raw=...)``.
Handlers read the proxy's request head themselves (``read_request``), then
misbehave in one precise way. After their script they wait for the proxy to
close the connection (``discard_until_eof``) instead of sleeping, so the
number of upstream connections still open says whether the proxy let go of
them; a write to a connection the proxy dropped raises ``ConnectionError``,
which ends the handler too.

Only the standard library is used (no test-suite imports), so ``bench/``
can serve these behind its own listener.
"""

from __future__ import annotations

import asyncio
import socket
import struct

HEAD_END = b"\r\n\r\n"

OK_BODY = b"hello, fault kit"


def ok_response(body: bytes = OK_BODY, extra: bytes = b"") -> bytes:
    """A plain, valid keep-alive 200 with a Content-Length body."""
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%b\r\n%b" % (len(body), extra, body)


# ----------------------------------------------------------------------
# wire helpers
async def read_head(reader: asyncio.StreamReader, buf: bytearray) -> bytes | None:
    """One head from ``reader`` without its blank line (``buf`` keeps the
    bytes after it); None on EOF or reset before a whole head."""
    while True:
        i = buf.find(HEAD_END)
        if i >= 0:
            head = bytes(buf[:i])
            del buf[: i + 4]
            return head
        try:
            data = await reader.read(65536)
        except ConnectionError:
            return None
        if not data:
            return None
        buf += data


def content_length(head: bytes) -> int:
    """The Content-Length of a (proxy-serialised, so well-formed) head, 0 if none."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def is_chunked(head: bytes) -> bool:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
            return True
    return False


async def read_body(reader: asyncio.StreamReader, buf: bytearray, head: bytes) -> bool:
    """Consume the request body after ``head`` (Content-Length or chunked);
    False when the connection ended first."""
    if is_chunked(head):
        while True:
            i = buf.find(b"0\r\n\r\n")
            # good enough for bodies the proxy re-chunked: the last chunk
            # follows a CRLF (or starts the body)
            if i == 0 or (i > 0 and buf[i - 2:i] == b"\r\n"):
                del buf[: i + 5]
                return True
            data = await _read(reader)
            if not data:
                return False
            buf += data
    n = content_length(head)
    while len(buf) < n:
        data = await _read(reader)
        if not data:
            return False
        buf += data
    del buf[:n]
    return True


async def read_request(reader: asyncio.StreamReader, buf: bytearray, body: bool = True) -> bytes | None:
    """One whole request (head, then its body when ``body``); returns the
    head or None when the connection ended first."""
    head = await read_head(reader, buf)
    if head is None:
        return None
    if body and not await read_body(reader, buf, head):
        return None
    return head


async def _read(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.read(262144)
    except ConnectionError:
        return b""


async def discard_until_eof(reader: asyncio.StreamReader) -> int:
    """Read and drop everything until the peer closes; returns the byte count."""
    n = 0
    while True:
        data = await _read(reader)
        if not data:
            return n
        n += len(data)


async def send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def drip(writer: asyncio.StreamWriter, data: bytes, delay: float, step: int = 1) -> None:
    """Write ``data`` ``step`` bytes at a time, ``delay`` seconds apart."""
    for i in range(0, len(data), step):
        writer.write(data[i:i + step])
        await writer.drain()
        if delay:
            await asyncio.sleep(delay)


def reset(writer: asyncio.StreamWriter) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


# ----------------------------------------------------------------------
# generic scripted answer
def respond(data: bytes, then: str = "keep", read_body: bool = True, delay_after_head: float = 0.0):
    """Answer every request with ``data`` (raw bytes, valid or not), then:

    ``keep``   serve the next request on the connection the same way;
    ``wait``   send nothing more, wait until the proxy closes;
    ``close``  FIN; ``abort`` RST; ``half_close`` shut down writing only,
               then wait until the proxy closes.
    """

    async def handler(reader, writer):
        buf = bytearray()
        while True:
            if await read_request(reader, buf, read_body) is None:
                return
            if delay_after_head:
                await asyncio.sleep(delay_after_head)
            await send(writer, data)
            if then == "keep":
                continue
            if then == "close":
                writer.close()
            elif then == "abort":
                reset(writer)
            elif then == "half_close":
                writer.write_eof()
                await discard_until_eof(reader)
            else:
                await discard_until_eof(reader)
            return

    return handler


# ----------------------------------------------------------------------
# the faults
def drip_head(delay: float = 0.005, body: bytes = OK_BODY, step: int = 1):
    """The response head ``step`` bytes at a time, ``delay`` apart, then the body at once."""
    resp = ok_response(body)
    head_len = resp.index(HEAD_END) + 4

    async def handler(reader, writer):
        buf = bytearray()
        while await read_request(reader, buf) is not None:
            await drip(writer, resp[:head_len], delay, step)
            await send(writer, resp[head_len:])

    return handler


def drip_body(delay: float = 0.005, body: bytes = b"x" * 64, step: int = 1, chunked: bool = False):
    """A whole head, then the body ``step`` bytes at a time, ``delay`` apart
    (as chunks of ``step`` bytes when ``chunked``)."""

    async def handler(reader, writer):
        buf = bytearray()
        while await read_request(reader, buf) is not None:
            if chunked:
                await send(writer, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for i in range(0, len(body), step):
                    part = body[i:i + step]
                    await send(writer, b"%x\r\n%b\r\n" % (len(part), part))
                    await asyncio.sleep(delay)
                await send(writer, b"0\r\n\r\n")
            else:
                await send(writer, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
                await drip(writer, body, delay, step)

    return handler


def reset_mid_body(framing: str = "length", sent: int = 10, length: int = 1000, pause: float = 0.02):
    """A head announcing ``length`` bytes (``framing``: "length", "chunked"
    or "close" for a read-until-close body), ``sent`` body bytes, a short
    pause so they leave first, then RST (SO_LINGER 0)."""

    async def handler(reader, writer):
        buf = bytearray()
        if await read_request(reader, buf) is None:
            return
        part = b"x" * sent
        if framing == "chunked":
            await send(writer, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%b\r\n" % (sent, part))
        elif framing == "close":
            await send(writer, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + part)
        else:
            await send(writer, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (length, part))
        await asyncio.sleep(pause)
        reset(writer)

    return handler


def half_close_after_head(length: int = 100):
    """A head announcing ``length`` body bytes, then a half-close (FIN, still
    reading) without any body byte; waits for the proxy to close."""
    return respond(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % length, then="half_close")


def short_body(sent: int = 10, length: int = 1000):
    """Fewer body bytes than the Content-Length, then a close (FIN)."""
    return respond(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (length, b"x" * sent), then="close")


SMUGGLED_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned"


def long_body(body: bytes = b"hello", extra: bytes = SMUGGLED_RESPONSE):
    """More bytes than the Content-Length: ``body`` then ``extra`` in the
    same write (by default a whole second response, to poison a reused
    connection), then keeps serving the connection."""
    return respond(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b%b" % (len(body), body, extra))


def informational_flood(count: int | None = 100, status: int = 100, interval: float = 0.0,
                        final: bytes | None = None):
    """``count`` interim ``status`` responses (endless when None, one every
    ``interval`` seconds) before the final one (``ok_response()`` by default)."""
    final = ok_response() if final is None else final
    interim = b"HTTP/1.1 %d Continue\r\n\r\n" % status

    async def handler(reader, writer):
        buf = bytearray()
        while await read_request(reader, buf) is not None:
            if count is None:
                while True:
                    await send(writer, interim)
                    await asyncio.sleep(interval)
            if interval:
                for _ in range(count):
                    await send(writer, interim)
                    await asyncio.sleep(interval)
            else:
                await send(writer, interim * count)
            await send(writer, final)

    return handler


MAX_RESPONSE_HEAD = 64 * 1024  # proxy/server.py MAX_RESPONSE_HEAD


def huge_head(size: int = MAX_RESPONSE_HEAD + 8 * 1024, endless: bool = False, field: int = 4000):
    """A response head over the proxy's limit: ``size`` bytes of header fields
    of ``field`` bytes each, then the end of the head (or, with ``endless``,
    header fields forever, one per event-loop turn, until the proxy hangs up)."""
    line = b"X-Pad: " + b"p" * (field - 9) + b"\r\n"

    async def handler(reader, writer):
        buf = bytearray()
        if await read_request(reader, buf) is None:
            return
        await send(writer, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n")
        if endless:
            while True:
                await send(writer, line * 4)
                await asyncio.sleep(0)
        await send(writer, line * (size // len(line) + 1) + b"\r\nok")
        await discard_until_eof(reader)

    return handler


def bad_chunk_later(pause: float = 0.02, bad: bytes = b"zz\r\nhello\r\n0\r\n\r\n"):
    """A chunked response whose first chunk is fine and, after ``pause``
    (so the head and that chunk have left the proxy), a malformed one."""

    async def handler(reader, writer):
        buf = bytearray()
        if await read_request(reader, buf) is None:
            return
        await send(writer, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await asyncio.sleep(pause)
        await send(writer, bad)
        await discard_until_eof(reader)

    return handler


def never_answer(on_request=None):
    """Accept, read whatever comes, never answer (until the proxy closes).
    ``on_request(head)``, when given, is called once a whole request head
    has arrived (from the upstream's thread: set a ``threading.Event``)."""

    async def handler(reader, writer):
        if on_request is not None:
            buf = bytearray()
            head = await read_head(reader, buf)
            if head is None:
                return
            on_request(head)
        await discard_until_eof(reader)

    return handler


def early_answer(status: int = 413, read_rest: bool = False, close: bool = True, abort: bool = False,
                 body: bytes = b"early", gate=None):
    """Answer right after the request head, before reading its body. Then
    ``read_rest``: read the body (keep-alive unless ``close``); else
    ``close`` the connection with the body unread (FIN; the kernel resets it
    when more bytes arrive), ``abort`` it (RST at once), or leave it open
    reading nothing more. ``gate`` (a ``threading.Event``), when given, holds
    the answer until it is set, so a test can order events around it."""
    conn_hdr = b"Connection: close\r\n" if close or abort else b""
    resp = b"HTTP/1.1 %d X\r\n%bContent-Length: %d\r\n\r\n%b" % (status, conn_hdr, len(body), body)

    async def handler(reader, writer):
        buf = bytearray()
        while True:
            head = await read_head(reader, buf)
            if head is None:
                return
            if gate is not None:
                await asyncio.to_thread(gate.wait, 30)
            await send(writer, resp)
            if abort:
                reset(writer)
                return
            if read_rest:
                if not await read_body(reader, buf, head):
                    return
                if close:
                    writer.close()
                    return
                continue
            if close:
                writer.close()
                return
            await asyncio.Event().wait()  # never read again; the proxy must give up

    return handler


def idle_close(after: float = 0.05, abort: bool = False):
    """Serve keep-alive requests (``ok_response()``), but close a connection
    left idle for ``after`` seconds: silently (FIN), or with RST when ``abort``."""

    async def handler(reader, writer):
        buf = bytearray()
        while True:
            try:
                head = await asyncio.wait_for(read_request(reader, buf), after if buf == b"" else None)
            except asyncio.TimeoutError:
                if abort:
                    reset(writer)
                else:
                    writer.close()
                return
            if head is None:
                return
            await send(writer, ok_response())

    return handler


class _Replay:
    """A reader that gives back ``prefix`` before reading on (what
    ``by_target`` already consumed), for handlers that only call ``read``."""

    def __init__(self, prefix: bytes, reader: asyncio.StreamReader):
        self._prefix = prefix
        self._reader = reader

    async def read(self, n: int = -1) -> bytes:
        if self._prefix:
            n = len(self._prefix) if n < 0 else n
            out, self._prefix = self._prefix[:n], self._prefix[n:]
            return out
        return await self._reader.read(n)


def by_target(handlers: dict, default=None):
    """One listener, many faults: the request target of the first request on
    a connection (exact match, bytes) picks the handler that serves the whole
    connection, replayed from its first byte; unknown targets get ``default``
    or a 404."""

    async def handler(reader, writer):
        buf = bytearray()
        head = await read_head(reader, buf)
        if head is None:
            return
        parts = head.split(b" ", 2)
        chosen = handlers.get(parts[1] if len(parts) > 1 else b"", default)
        if chosen is None:
            await send(writer, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            writer.close()
            return
        await chosen(_Replay(head + HEAD_END + bytes(buf), reader), writer)

    return handler


# ----------------------------------------------------------------------
# malformed answers, each sent with ``respond(...)``
INVALID_STATUS_LINES = {
    "http2": b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    "two_digit_status": b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
    "four_digit_status": b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    "no_version": b"200 OK\r\nContent-Length: 0\r\n\r\n",
    "lowercase_http": b"http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "nul_in_reason": b"HTTP/1.1 200 O\x00K\r\nContent-Length: 0\r\n\r\n",
    "header_without_colon": b"HTTP/1.1 200 OK\r\nContent-Length 0\r\n\r\n",
}

CONFLICTING_FRAMING = {
    "cl_and_te": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te_and_cl": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "two_lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "length_list": b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!",
    "te_not_chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "negative_length": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhello",
}

HEADER_INJECTION = {
    "bare_cr": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Evil: a\rSet-Cookie: pwned=1\r\n\r\nok",
    "nul": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Evil: a\x00b\r\n\r\nok",
    "ctl_0x01": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Evil: a\x01b\r\n\r\nok",
    "del": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Evil: a\x7fb\r\n\r\nok",
    "obs_fold": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Evil: a\r\n Set-Cookie: pwned=1\r\n\r\nok",
}

UNEXPECTED = {
    # a protocol switch nobody asked for: the connection's framing is gone
    "unsolicited_101": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
}

# a response that cannot have a body, and bytes after it in the same write
# (by default a whole second response): the connection is out of step
BODILESS_WITH_EXTRA = {
    "204": b"HTTP/1.1 204 No Content\r\n\r\n" + SMUGGLED_RESPONSE,
    "304": b"HTTP/1.1 304 Not Modified\r\n\r\n" + SMUGGLED_RESPONSE,
    "content_length_0": b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" + SMUGGLED_RESPONSE,
    "head_with_body": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",  # answer to a HEAD
}

BAD_CHUNKS = {
    "bad_size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "size_overflow": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 40 + b"\r\nhello\r\n0\r\n\r\n",
    "missing_crlf": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
}
