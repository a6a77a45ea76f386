"""Taking connections off a listening socket and handing them to the event loop.

Theory of operation
-------------------
``accept_ready(listener)`` is the listening socket's readiness callback. It
accepts in a batch of up to ``ACCEPT_BATCH`` (as many as the kernel reports
queued, from TCP_INFO, so no accept ends in EAGAIN; until EAGAIN where
TCP_INFO is missing), asking the listener's admission before each accept
and again once the peer is known (see admission.py). A refused connection
is reset or answered by the listener; an admitted one starts here.

``start(server, listener, fd, addr, ip)`` turns an admitted descriptor into a
transport with its protocol (a ``Downstream``, a ``TLSConnection`` on a TLS
listener, behind a ``ProxyHeaderReader`` where the listener expects a PROXY
protocol header): ``loop.connect_accepted_socket`` with a
``ConnectionStart``, one object per connection that is the protocol factory,
steps the event loop's coroutine to its end without an ``asyncio.Task``,
and reports a failure. The accepted address travels with it
(``peer_addr``), so nobody asks the transport for the peer name again.

On uvloop the descriptor goes to the loop as an ``Accepted``: the three
things ``connect_accepted_socket`` reads (``family``, ``type``,
``fileno()``) and a ``close()`` for the transport's end (libuv closes the
descriptor itself). A ``socket.socket`` would cost a Python ``__init__``, a
getsockname() system call and, at the end, a ``detach()`` per connection,
for an object nothing else uses. The asyncio loop's transports read and
write through the socket object, so there it is one.

This module is compiled with the core (compiled.py); the accept loop and
the start of a connection are C code calling the event loop.
"""

from __future__ import annotations

import errno
import os

import cython

from . import clock, log, sysinfo
from .admission import ACCEPTED, PAUSED, ListenerAdmission
from .downstream import Downstream
from .proxyheader import ProxyHeaderReader
from .tls import TLSConnection

ACCEPT_BATCH = 64
EMFILE_PAUSE = 0.1  # seconds a listener rests after running out of descriptors


def takes_descriptors(loop) -> bool:
    """Does this event loop's ``connect_accepted_socket`` take an ``Accepted`` (uvloop)?"""
    return type(loop).__module__.split(".")[0] == "uvloop"


class Accepted:
    """An accepted descriptor, as uvloop's ``connect_accepted_socket`` reads a socket."""

    def __init__(self, fd, family, type_):
        self.fd = fd
        self.family = family
        self.type = type_
        self.taken = False  # the event loop has the descriptor (it asked for it)

    def fileno(self):
        self.taken = True
        return self.fd

    def close(self) -> None:
        """The transport's close: libuv has closed the descriptor already."""

    def release(self) -> None:
        """No transport was made: close the descriptor here, unless the loop took it."""
        if not self.taken:
            self.taken = True
            os.close(self.fd)


class CoroutineRunner:
    """Runs a coroutine to its end without an ``asyncio.Task``; ``failed(exc)`` if it raises.

    For ``loop.connect_accepted_socket`` on every accepted connection: it
    awaits one future (the transport's connection_made) and returns. A Task
    would cost a Task object, its registration, two more event-loop
    callbacks and a done callback per connection; this sends the coroutine
    on when each future it waits on is done (or at the next loop iteration
    for a bare yield), exactly as a Task steps it, and nothing more. Nobody
    awaits the result and nothing cancels it (the transport's own close ends
    a connection).

    A method that the future calls back, rather than a closure that
    schedules itself: a closure in its own cell is a reference cycle, which
    left every connection's coroutine to the cyclic collector. The
    coroutine is dropped when it ends.
    """

    def __init__(self, loop):
        self.loop = loop
        self.coro = None

    def run(self, coro) -> None:
        self.coro = coro
        self.step()

    def step(self, _=None) -> None:
        try:
            waiting = self.coro.send(None)
        except StopIteration:
            self.coro = None
            return
        except BaseException as exc:  # noqa: BLE001 - reported, never raised into the loop
            self.coro = None
            self.failed(exc)
            return
        if waiting is None:
            self.loop.call_soon(self.step)
        else:
            waiting._asyncio_future_blocking = False  # as a Task does before it waits on the future
            waiting.add_done_callback(self.step)

    def failed(self, exc: BaseException) -> None:
        raise NotImplementedError


class ConnectionStart(CoroutineRunner):
    """One admitted connection on its way to a transport: the protocol factory the event
    loop calls, and the runner of its ``connect_accepted_socket`` coroutine."""

    def __init__(self, server, listener, ip: str, addr, sock):
        self.loop = server.loop
        self.coro = None
        self.server = server
        self.listener = listener
        self.ip = ip
        self.addr = addr
        self.sock = sock
        self.accepted_at = clock.monotonic()

    def __call__(self):
        """The protocol factory (the coroutine holds it: the cycle its end breaks)."""
        if self.listener.cfg.proxy_protocol:
            return ProxyHeaderReader(self.server, self.listener, self.ip, self.protocol)
        return self.protocol()

    def protocol(self):
        """The connection's own protocol (behind a PROXY header reader, once its header is read)."""
        listener = self.listener
        tls: TLSConnection
        down: Downstream
        if listener.tls is not None:
            tls = TLSConnection(self.server, listener, self.ip, self.accepted_at, self.downstream)
            tls.peer_addr = self.addr
            return tls
        down = Downstream(self.server, listener.name, listener, self.ip)
        down.peer_addr = self.addr
        return down

    def downstream(self):
        """A TLS connection's Downstream, once its handshake is done."""
        return Downstream(self.server, self.listener.name, self.listener, self.ip)

    def failed(self, exc: BaseException) -> None:
        log.warn("accept_failed", error=str(exc) or type(exc).__name__)
        if isinstance(self.sock, Accepted):
            self.sock.release()
        self.server.admission_released(self.listener, self.ip)  # no Downstream will release it


def start(server, listener, fd, addr, ip: str) -> None:
    """An admitted descriptor becomes a transport with its protocol."""
    family, type_, proto = listener.accept_as
    if listener.bare:
        sock = Accepted(fd, family, type_)
    else:
        sock = listener.socket_class(family, type_, proto, fileno=fd)
    conn = ConnectionStart(server, listener, ip, addr, sock)
    conn.run(server.loop.connect_accepted_socket(conn, sock))


def accept_ready(listener) -> None:
    """The listening socket is readable: accept what the kernel has queued, as admission allows."""
    sock = listener.sock
    server = listener.server
    adm: ListenerAdmission = listener.admission
    metrics = server.metrics
    name = listener.name
    # the kernel says how many connections wait (TCP_INFO of the listening socket): accept those,
    # not one more that could only fail with EAGAIN (a system call and a Python exception per
    # readiness event); any arriving meanwhile make the socket readable again. Without TCP_INFO
    # (not Linux), until EAGAIN.
    queued = sysinfo.accept_queue(sock)
    batch: cython.int = ACCEPT_BATCH if queued is None else min(max(queued[0], 1), ACCEPT_BATCH)
    i: cython.int
    for i in range(batch):
        decision = adm.before_accept(clock.monotonic())
        if decision is PAUSED:
            metrics.admission(name, "paused")
            listener.hold(clock.monotonic())
            return
        try:
            fd, addr = sock._accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                log.warn("accept_paused", listener=name, reason=exc.strerror)
                listener.pause()
                listener.loop.call_later(EMFILE_PAUSE, listener.start)
            return  # ECONNABORTED and friends: the next readiness event retries
        if decision is not ACCEPTED:
            metrics.admission(name, decision.value)
            listener.refuse(fd, decision)
            continue
        ip = addr[0] if isinstance(addr, tuple) else ""
        decision = adm.admit(ip, clock.monotonic())
        if decision is not ACCEPTED:
            metrics.admission(name, decision.value)
            listener.refuse(fd, decision)
            continue
        metrics.admission(name, "accepted")
        start(server, listener, fd, addr, ip)
