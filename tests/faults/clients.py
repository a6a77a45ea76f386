"""Hostile HTTP/1.1 clients on blocking sockets, every one bounded by a timeout.

Each function connects to ``addr`` (host, port), misbehaves in one precise
way and returns a ``Seen``: the final responses it got (parsed with h11),
whether the server closed the connection (FIN or RST) and when. A function
never waits longer than its ``timeout``; a server that neither answers nor
closes in time shows up as ``closed=False`` with ``elapsed ~ timeout``.

Only the standard library and h11 are used (no test-suite imports), so
``bench/`` can drive these against any server.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

import h11

GET = b"GET /fault HTTP/1.1\r\nHost: test\r\n\r\n"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    complete: bool  # the whole body arrived (False: cut by the close)
    interim: list[int] = field(default_factory=list)

    @property
    def error(self) -> str | None:
        """The proxy's JSON ``error`` code, when the body is one."""
        try:
            return json.loads(self.body).get("error")
        except (ValueError, AttributeError):
            return None


@dataclass
class Seen:
    """What the hostile client observed."""

    answers: list[Answer]  # final responses in order (the last may be incomplete)
    closed: bool  # the server closed (FIN) or reset the connection
    reset: bool  # ... with a RST
    elapsed: float  # from connect to the close, or to the last answer
    raw: bytes = b""  # every byte received
    send_error: str | None = None  # the server stopped accepting our bytes

    @property
    def status(self) -> int | None:
        """The status of the first final response, None when there was none."""
        return self.answers[0].status if self.answers else None

    @property
    def error(self) -> str | None:
        return self.answers[0].error if self.answers else None

    @property
    def statuses(self) -> list[int]:
        return [a.status for a in self.answers]


# ----------------------------------------------------------------------
# response parsing
def parse_answers(data: bytes, methods=(b"GET",), eof: bool = True) -> list[Answer]:
    """Responses in ``data`` (bytes in arrival order); ``methods`` are those
    of the requests they answer (the last one repeats). A response cut short
    (by ``eof``, or not arrived yet) is the last one with ``complete=False``;
    bytes that are not HTTP end the list."""
    out: list[Answer] = []
    rest = data
    i = 0
    while rest:
        method = methods[min(i, len(methods) - 1)]
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        conn.receive_data(rest)
        if eof:
            conn.receive_data(b"")
        status, headers, body, interim = None, {}, [], []
        complete = False
        try:
            while True:
                ev = conn.next_event()
                if ev is h11.NEED_DATA or ev is h11.PAUSED or isinstance(ev, h11.ConnectionClosed):
                    break
                if isinstance(ev, h11.InformationalResponse):
                    interim.append(ev.status_code)
                elif isinstance(ev, h11.Response):
                    status = ev.status_code
                    headers = {k.decode().lower(): v.decode("latin-1") for k, v in ev.headers}
                elif isinstance(ev, h11.Data):
                    body.append(ev.data)
                elif isinstance(ev, h11.EndOfMessage):
                    complete = True
                    break
        except h11.RemoteProtocolError:
            pass
        if status is None:
            break
        out.append(Answer(status, headers, b"".join(body), complete, interim))
        if not complete:
            break
        rest = conn.trailing_data[0]
        i += 1
    return out


# ----------------------------------------------------------------------
# the engine every client below uses
class Conn:
    """A raw client connection that records what comes back."""

    def __init__(self, addr, timeout: float):
        self.t0 = time.monotonic()
        self.deadline = self.t0 + timeout
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.data = bytearray()
        self.closed = False
        self.reset = False
        self.send_error: str | None = None
        self.t_end: float | None = None

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def send(self, data: bytes) -> bool:
        """Send, noting (not raising) a server that stopped taking bytes."""
        if self.send_error is not None:
            return False
        try:
            self.sock.sendall(data)
            return True
        except OSError as exc:
            self.send_error = type(exc).__name__
            return False

    def send_in_thread(self, chunks) -> threading.Thread:
        """Send each of ``chunks`` (any iterable of bytes) from a thread, on a
        duplicate of the socket (its own timeout, so the reads here cannot
        cut a blocked send short), stopping at the first error."""
        dup = self.sock.dup()
        dup.settimeout(self.left())

        def run():
            try:
                for chunk in chunks:
                    dup.sendall(chunk)
            except OSError as exc:
                self.send_error = type(exc).__name__
            finally:
                dup.close()

        th = threading.Thread(target=run, daemon=True)
        th.start()
        return th

    def drip(self, data: bytes, delay: float, step: int = 1) -> bool:
        """Send ``step`` bytes at a time; stop early when the server answered
        or closed (checked without blocking between pieces)."""
        for i in range(0, len(data), step):
            if not self.send(data[i:i + step]):
                return False
            if self.poll(delay):
                return False
        return True

    def poll(self, wait: float) -> bool:
        """Read what arrives within ``wait`` seconds; True once the server closed."""
        end = min(time.monotonic() + wait, self.deadline)
        while not self.closed:
            left = end - time.monotonic()
            if left <= 0:
                break
            self._recv(left)
            if not self.closed and self.data:
                break  # something arrived; let the caller decide
        return self.closed

    def _recv(self, timeout: float) -> None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            chunk = self.sock.recv(262144)
        except socket.timeout:
            return
        except ConnectionResetError:
            self.closed = self.reset = True
            self.t_end = time.monotonic()
            return
        except OSError:
            self.closed = True
            self.t_end = time.monotonic()
            return
        if not chunk:
            self.closed = True
            self.t_end = time.monotonic()
            return
        self.data += chunk

    def shutdown_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def abort(self) -> None:
        """Close with a RST (SO_LINGER 0)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()
        self.closed = self.reset = False  # we did it; the server said nothing
        self.t_end = time.monotonic()

    def finish(self, methods=(b"GET",), answers: int = 1) -> Seen:
        """Read until the server closes, or ``answers`` complete responses
        arrived and the last one keeps the connection open, or the timeout."""
        while not self.closed and self.left() > 0:
            got = parse_answers(bytes(self.data), methods, eof=False)
            done = [a for a in got if a.complete]
            if len(done) >= answers and (done[-1].headers.get("connection", "").lower() != "close"):
                self.t_end = time.monotonic()
                break
            self._recv(self.left())
        try:
            self.sock.close()
        except OSError:
            pass
        end = self.t_end if self.t_end is not None else time.monotonic()
        return Seen(parse_answers(bytes(self.data), methods, eof=self.closed), self.closed, self.reset,
                    end - self.t0, bytes(self.data), self.send_error)


# ----------------------------------------------------------------------
# hostile clients
def send_raw(addr, data: bytes, timeout: float = 5.0, answers: int = 1, methods=(b"GET",),
             half_close: bool = False) -> Seen:
    """Send ``data`` at once (optionally half-close), then read the outcome."""
    c = Conn(addr, timeout)
    c.send(data)
    if half_close:
        c.shutdown_write()
    return c.finish(methods, answers)


def drip_head(addr, request: bytes = GET, delay: float = 0.005, step: int = 1, timeout: float = 5.0) -> Seen:
    """The request head ``step`` bytes at a time, ``delay`` apart (slowloris
    with a head that does end)."""
    c = Conn(addr, timeout)
    c.drip(request, delay, step)
    return c.finish()


def post_head(length: int, target: bytes = b"/fault") -> bytes:
    return b"POST %b HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n" % (target, length)


def drip_body(addr, body: bytes = b"x" * 32, delay: float = 0.005, step: int = 1, stall: float = 0.0,
              timeout: float = 5.0) -> Seen:
    """A whole POST head, then the body ``step`` bytes at a time ``delay``
    apart; with ``stall``, a pause that long after the first piece."""
    c = Conn(addr, timeout)
    c.send(post_head(len(body)))
    for i in range(0, len(body), step):
        if not c.send(body[i:i + step]) or c.poll(delay):
            break
        if i == 0 and stall and c.poll(stall):
            break
    return c.finish((b"POST",))


def reset_after_send(addr, data: bytes, before_reset=None, timeout: float = 5.0) -> Seen:
    """Send ``data``, call ``before_reset()`` (if given: e.g. wait until the
    proxy holds the request in the state to test), then close with a RST.
    The returned ``Seen`` has no answers and ``closed=False``: the client
    hung up, not the server."""
    c = Conn(addr, timeout)
    c.send(data)
    if before_reset is not None:
        before_reset()
    c.abort()
    return Seen([], False, False, c.t_end - c.t0)


def reset_mid_body(addr, length: int = 100_000, sent: int = 1000, before_reset=None,
                   timeout: float = 5.0) -> Seen:
    """Part of a POST body (``sent`` of ``length`` bytes), then RST."""
    return reset_after_send(addr, post_head(length) + b"b" * sent, before_reset, timeout)


def half_close_after_head(addr, request: bytes = GET, timeout: float = 5.0) -> Seen:
    """A request head, then shutdown(SHUT_WR): a POST head without its body
    is a truncated request, a GET head a complete one."""
    method = request.split(b" ", 1)[0]
    return send_raw(addr, request, timeout, methods=(method,), half_close=True)


def short_body_then_close(addr, length: int = 1000, sent: int = 10, timeout: float = 5.0) -> Seen:
    """Fewer body bytes than the Content-Length, then a (half-)close (FIN)."""
    return send_raw(addr, post_head(length) + b"b" * sent, timeout, methods=(b"POST",), half_close=True)


def pipeline_garbage(addr, garbage: bytes = b"\x16\x03\x01\x02\x00garbage\r\n\r\n", request: bytes = GET,
                     timeout: float = 5.0) -> Seen:
    """A valid request and, in the same packet, bytes that are not HTTP."""
    return send_raw(addr, request + garbage, timeout, answers=2)


def random_bytes(addr, seed: int, size: int = 2048, timeout: float = 5.0) -> Seen:
    """``size`` random bytes (``random.Random(seed)``, so a failure replays),
    then an empty line so the head ends."""
    data = random.Random(seed).randbytes(size) + b"\r\n\r\n"
    return send_raw(addr, data, timeout)


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: test\r\n\r\n"


def _smuggle(headers: bytes, body: bytes) -> bytes:
    return b"POST /front HTTP/1.1\r\nHost: test\r\n" + headers + b"\r\n" + body


# request smuggling attempts: a front that frames the body one way and a
# back end the other way would see a second request (GET /smuggled)
SMUGGLING = {
    # CL.TE: the front reads 4+len bytes by Content-Length, a TE back end
    # reads the empty chunked body and takes GET /smuggled as next request
    "cl_te": _smuggle(b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % (5 + len(SMUGGLED)),
                      b"0\r\n\r\n" + SMUGGLED),
    "te_cl": _smuggle(b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
                      b"%x\r\n%b\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED)),
    "duplicate_cl": _smuggle(b"Content-Length: 0\r\nContent-Length: %d\r\n" % len(SMUGGLED), SMUGGLED),
    "cl_list": _smuggle(b"Content-Length: 0, %d\r\n" % len(SMUGGLED), SMUGGLED),
    "te_xchunked": _smuggle(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n" + SMUGGLED),
    "te_space_before_colon": _smuggle(b"Transfer-Encoding : chunked\r\nContent-Length: %d\r\n" % (5 + len(SMUGGLED)),
                                      b"0\r\n\r\n" + SMUGGLED),
    "te_chunked_twice": _smuggle(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                                 b"0\r\n\r\n" + SMUGGLED),
    "te_obs_fold": _smuggle(b"Transfer-Encoding:\r\n chunked\r\nContent-Length: %d\r\n" % (5 + len(SMUGGLED)),
                            b"0\r\n\r\n" + SMUGGLED),
    "cl_plus_sign": _smuggle(b"Content-Length: +%d\r\n" % len(SMUGGLED), SMUGGLED),
    "chunk_size_lf_only": _smuggle(b"Transfer-Encoding: chunked\r\n", b"0\n\n" + SMUGGLED),
}


def smuggle(addr, variant: str, timeout: float = 5.0) -> Seen:
    """Send one of ``SMUGGLING``; a second response would mean the proxy saw
    GET /smuggled as a request of its own."""
    return send_raw(addr, SMUGGLING[variant], timeout, answers=2, methods=(b"POST", b"GET"))


def oversized_head(addr, size: int = 1024 * 1024, timeout: float = 5.0) -> Seen:
    """A head of ``size`` bytes (one header field after another), sent by a
    thread that keeps going while the answer is read, as a flooding client
    would."""
    line = b"X-Pad: " + b"p" * 1000 + b"\r\n"
    data = b"GET /fault HTTP/1.1\r\nHost: test\r\n" + line * (size // len(line)) + b"\r\n"
    c = Conn(addr, timeout)
    th = c.send_in_thread([data])
    seen = c.finish()
    th.join(timeout)
    seen.send_error = c.send_error
    return seen


def post_streaming(addr, length: int, then: bytes = b"", timeout: float = 5.0) -> Seen:
    """A POST announcing a ``length``-byte body that a thread sends 64 KiB at
    a time (so the server can answer, stop reading or close meanwhile; a huge
    ``length`` costs nothing until it is sent), followed by the ``then``
    request on the same connection; reads up to two answers."""

    def chunks():
        yield post_head(length)
        piece = b"b" * 65536
        left = length
        while left > 0:
            yield piece[:left]
            left -= min(left, len(piece))
        if then:
            yield then

    c = Conn(addr, timeout)
    th = c.send_in_thread(chunks())
    seen = c.finish((b"POST", b"GET"), 2 if then else 1)
    th.join(timeout)
    seen.send_error = c.send_error
    return seen


def obs_fold(addr, timeout: float = 5.0) -> Seen:
    """A header field continued on the next line (obs-fold)."""
    return send_raw(addr, b"GET /fault HTTP/1.1\r\nHost: test\r\nX-Folded: a\r\n b\r\n\r\n", timeout)


def control_byte(addr, byte: bytes = b"\x00", timeout: float = 5.0) -> Seen:
    """A header value holding ``byte`` (NUL, bare CR, 0x01, DEL ...)."""
    return send_raw(addr, b"GET /fault HTTP/1.1\r\nHost: test\r\nX-Ctl: a%bb\r\n\r\n" % byte, timeout)
