"""Upstream side: one protocol per connection, one Cluster per [upstreams.NAME].

Theory of operation
-------------------
``UpstreamConn`` is a thin asyncio Protocol. While an exchange owns it
(``owner``), every callback is forwarded to that exchange; while idle in the
pool, any byte or close from the server makes it unusable and it is evicted
at once, so a pooled connection found closed is never handed out.

``Cluster`` ties the sans-IO pieces of one cluster together: the balancer
(which server), the pool (which idle connection), and connection set-up
(``loop.create_connection`` with ``connect_timeout``, TCP_NODELAY and TCP
keep-alive). It reports connect outcomes to the exchange through two
callbacks, ``connected(conn)`` and ``connect_failed(error)``, so no Task
lives per request; a Task exists only while a new connection is being made.
"""

from __future__ import annotations

import asyncio
import errno
from collections import deque
import socket
import time

try:
    import cython
except ImportError:  # Cython absent: this module runs as plain Python
    class cython:  # noqa: N801
        compiled = False

from . import clock
from . import errors, log
from .balancer import ServerState, make_balancer
from . import accounting
from .breaker import BreakerPolicy, make_breaker
from .pool import IdleTiers, LoadSampler, Pool, WarmupPlanner
from .retry import RetryBudget

# Cluster.acquire results other than a connection
CONNECTING = 1
QUEUED = 2
OVERFLOW = 3


def set_tcp_keepalive(sock, cfg, listening: bool = False) -> None:
    """TCP_NODELAY plus SO_KEEPALIVE with the configured timings.

    ``listening``: ``sock`` is a listening socket. Linux copies these options
    into every socket accepted from it, so a listener sets them once instead
    of five system calls per accepted connection; a listening socket kept
    across a reload (the supervisor's) also has keep-alive switched off when
    the new configuration disables it."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not cfg.enabled:
            if listening:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if hasattr(socket, "TCP_KEEPIDLE"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, int(cfg.idle)))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, int(cfg.interval)))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, cfg.count)
    except OSError:
        pass  # not a TCP socket (tests with socketpair) or option unsupported


class UpstreamConn:
    """The asyncio protocol of one upstream connection (asyncio.Protocol's methods, without the base:
    compiled (upstream.pxd), this is an extension type, which cannot derive from a Python class)."""

    if not cython.compiled:
        __slots__ = ("cluster", "server", "transport", "owner", "requests", "closed", "paused", "idle",
                     "read_paused", "counted")

    def __init__(self, cluster: "Cluster", server: ServerState):
        self.cluster = cluster
        self.server = server
        self.transport = None
        self.owner = None  # the Exchange using this connection, if any
        self.requests = 0
        self.closed = False
        self.paused = False  # its write buffer is over the high-water mark
        self.idle = False
        self.read_paused = False  # we stopped reading it (the client is slow)
        self.counted = False  # holds one of its server's max_connections slots

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            set_tcp_keepalive(sock, self.cluster.cfg.pool.tcp_keepalive)

    def data_received(self, data):
        owner = self.owner
        if owner is not None:
            owner.upstream_data(data)
        else:
            # bytes from the server on an idle connection: the framing of this
            # connection is in doubt, never reuse it
            self.close()

    def eof_received(self):
        owner = self.owner
        if owner is not None:
            owner.upstream_eof()
        else:
            self.close()
        return False

    def connection_lost(self, exc):
        self.closed = True
        owner = self.owner
        if owner is not None:
            self.owner = None
            owner.upstream_lost(self, exc)
        self.cluster.forget(self)

    def pause_writing(self):
        self.paused = True
        owner = self.owner
        if owner is not None:
            owner.upstream_pause_writing()

    def resume_writing(self):
        self.paused = False
        owner = self.owner
        if owner is not None:
            owner.upstream_resume_writing()

    def pause_reading(self) -> None:
        if not self.read_paused and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()

    def close(self):
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            self.cluster.forget(self)

    def abort(self):
        if self.transport is not None:
            self.transport.abort()
        self.close()


def _connect_reason(exc: BaseException) -> tuple[str, type]:
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timeout", errors.ConnectTimeout
    if isinstance(exc, ConnectionRefusedError):
        return "refused", errors.ConnectRefused
    if isinstance(exc, ConnectionResetError):
        return "reset", errors.ConnectRefused
    if isinstance(exc, socket.gaierror):
        return "dns", errors.ConnectRefused
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return "unreachable", errors.ConnectRefused
    return "other", errors.ConnectRefused


class Cluster:
    """Runtime state of one upstream cluster."""

    def __init__(self, cfg, loop, metrics):
        self.cfg = cfg
        self.name = cfg.name
        self.loop = loop
        self.metrics = metrics
        now = clock.monotonic()
        policy = BreakerPolicy.from_config(cfg.breaker)
        self.servers = []
        for s in cfg.servers:
            st = ServerState(s.address.host, s.address.port, s.weight, clock=time.monotonic)
            st.breaker = make_breaker(policy, now, on_transition=self._transition_reporter(st))
            self.servers.append(st)
        self.balancer = make_balancer(cfg.balance, self.servers)
        # Host sent upstream when the client sent none (HTTP/1.0) and the
        # route does not rewrite it
        self.default_host = self.servers[0].name.encode()
        self.pool = Pool.from_config(cfg.pool)
        self.retry_methods = frozenset(m.encode() for m in cfg.retry_methods)
        # concurrency caps (Envoy-style, apart from the breaker): see acquire()
        limits = cfg.limits
        self.inflight = accounting.InFlight(limits.max_requests)  # requests of the cluster in flight
        self.retry_budget = RetryBudget.from_config(limits)
        self._served_before = 0  # attempts started, all servers, at the last tick
        self.max_connections = limits.max_connections
        self.max_pending = limits.max_pending
        self.pending_timeout = limits.pending_timeout
        # the exchange's deadlines, read per request (typed slots compiled)
        self.request_timeout = cfg.request_timeout
        self.response_timeout = cfg.response_timeout
        self.body_timeout = cfg.body_timeout
        self.conn_count = {s: 0 for s in self.servers}  # open + connecting, per server
        self.pending: deque = deque()  # (exchange, server) waiting for a connection slot
        # adaptive pool: per-server load, idle timeout of the moment, warm-up
        self.tiers = IdleTiers.from_config(cfg.pool)
        self.planner = WarmupPlanner.from_config(cfg.pool)
        self.load = {s: LoadSampler(now) for s in self.servers}
        self.idle_timeout_now = {s: self.tiers.timeout_for(0.0) for s in self.servers}
        self.opening = {s: 0 for s in self.servers}
        self.recovering: set[ServerState] = set()
        self.open_conns: set[UpstreamConn] = set()
        self.pending_connects: set[asyncio.Future] = set()
        self.closing = False

    def _transition_reporter(self, server: ServerState):
        def report(old, new, now, reason):
            a, b = old.name.lower(), new.name.lower()
            if b == "closed":
                self.recovering.add(server)
            self.metrics.breaker_transition(self.name, server.name, a, b)
            log.event("breaker_transition", level="warning" if new.name == "OPEN" else "info",
                      upstream=self.name, server=server.name, **{"from": a, "to": b}, reason=reason)

        return report

    def retry_after(self) -> float:
        """Seconds until the first of the cluster's open breakers probes again."""
        now = clock.monotonic()
        waits = [s.breaker.retry_after(now) for s in self.servers]
        return min(waits) if waits else 0.0

    # -- choosing -------------------------------------------------------
    def pick(self, exclude=()):
        return self.balancer.pick(exclude)

    def checkout(self, server: ServerState):
        """An idle pooled connection to ``server`` still open, or None."""
        pool: Pool = self.pool
        while True:
            conn: UpstreamConn = pool.take(server)
            if conn is None:
                return None
            conn.idle = False
            if not conn.closed and not conn.transport.is_closing():
                self.metrics.pool_reused(self.name, server.name)
                return conn
            conn.close()

    # -- capped acquisition ---------------------------------------------
    def acquire(self, server: ServerState, ex):
        """A connection for ``ex`` to ``server``.

        Returns an idle pooled connection, or CONNECTING (a new connection is
        being opened; ``ex._on_connect`` / ``_on_connect_failed`` follow),
        or QUEUED when the server is at ``max_connections`` (``ex._on_connect``
        follows when a connection frees up; the caller bounds the wait with
        ``pending_timeout``), or OVERFLOW when the pending queue is full too.
        """
        conn = self.checkout(server)
        if conn is not None:
            return conn
        cap = self.max_connections
        if cap and self.conn_count[server] >= cap:
            if self.max_pending and len(self.pending) >= self.max_pending:
                return OVERFLOW
            self.pending.append((ex, server))
            return QUEUED
        self.connect(server, ex._on_connect, ex._on_connect_failed)
        return CONNECTING

    def _next_pending(self, server: ServerState):
        """Remove and return the first live exchange waiting on ``server``."""
        pending = self.pending
        for i, (ex, srv) in enumerate(pending):
            if srv is server and not ex.finished and ex.queued:
                del pending[i]
                return ex
        while pending and (pending[0][0].finished or not pending[0][0].queued):
            pending.popleft()  # forget the dead at the head
        return None

    def _wake(self, server: ServerState) -> None:
        """A connection slot of ``server`` freed up: start a waiter's connect."""
        if self.pending and not self.closing and self.conn_count[server] < (self.max_connections or 1 << 62):
            ex = self._next_pending(server)
            if ex is not None:
                ex.queued = False
                self.connect(server, ex._on_connect, ex._on_connect_failed)

    # -- connecting -----------------------------------------------------
    def connect(self, server: ServerState, on_ok, on_fail) -> None:
        """Open a new connection; exactly one of the callbacks is called."""
        self.conn_count[server] += 1
        loop = self.loop
        fut = asyncio.ensure_future(
            loop.create_connection(lambda: UpstreamConn(self, server), server.host, server.port)
        )
        self.pending_connects.add(fut)
        timer = loop.call_later(self.cfg.pool.connect_timeout, _cancel_connect, fut)
        started = clock.monotonic()

        def done(f: asyncio.Future):
            self.pending_connects.discard(f)
            timer.cancel()
            if f.cancelled():
                exc: BaseException = asyncio.TimeoutError()
            else:
                exc = f.exception()
            if exc is None:
                transport, conn = f.result()
                conn.counted = True  # conn_count is given back when it closes
                if self.closing:
                    transport.close()
                    on_fail(errors.ConnectRefused("cluster closing"), 0.0)
                    return
                server.connect_failed = False
                self.metrics.pool_opened(self.name, server.name)
                self.open_conns.add(conn)
                on_ok(conn, clock.monotonic() - started)
                return
            self.conn_count[server] -= 1
            self._wake(server)
            reason, cls = _connect_reason(exc)
            server.connect_failed = True
            self.metrics.connect_error(self.name, server.name, reason)
            on_fail(cls(f"{server.name}: {reason}: {exc}"), clock.monotonic() - started)

        fut.add_done_callback(done)

    # -- returning ------------------------------------------------------
    def release(self, conn: UpstreamConn, reusable: bool) -> None:
        """Give a connection back after an exchange; closes it unless reusable."""
        conn.owner = None
        if not reusable or conn.closed or self.closing:
            conn.close()
            return
        conn.resume_reading()  # an idle connection must notice the server closing it
        if self.pending:
            ex = self._next_pending(conn.server)
            if ex is not None:  # a request waits for exactly this: hand it over
                ex.queued = False
                ex._on_connect(conn, 0.0, True)
                return
        conn.idle = True
        for victim in self.pool.give(conn.server, conn, conn.requests, clock.monotonic()):
            if victim is conn:
                reason = "max_requests" if conn.requests >= self.pool.max_requests else "idle_cap"
            else:
                reason = "total_cap"
            self.metrics.pool_evicted(self.name, reason)
            victim.idle = False
            victim.close()

    def forget(self, conn: UpstreamConn) -> None:
        """Called when a connection closes, wherever it was."""
        if conn.idle:
            conn.idle = False
            if self.pool.remove(conn.server, conn):
                self.metrics.pool_evicted(self.name, "closed_by_server")
        self.open_conns.discard(conn)
        if conn.counted:
            conn.counted = False
            self.conn_count[conn.server] -= 1
            self._wake(conn.server)

    def tick(self) -> None:
        """Once a second: sample load, adapt idle timeouts, expire, warm up.

        Each server's idle timeout follows its request rate (``IdleTiers``:
        quiet servers release connections, busy ones keep them). Warm-up
        (``WarmupPlanner``) opens connections ahead of need: ``min_idle`` at
        all times (so from the start), the recent peak concurrency after a
        server recovers, more when the rate surges over its one-minute average;
        at most ``warmup_parallel`` opening at once per server, each one a
        completed TCP connect before it joins the pool.
        """
        now = clock.monotonic()
        served = sum(s.served for s in self.servers)
        self.retry_budget.tick(served - self._served_before)
        self._served_before = served
        for s in self.servers:
            load = self.load[s]
            load.sample(now, s.served, s.peak_active)
            s.peak_active = s.active
            self.idle_timeout_now[s] = self.tiers.timeout_for(load.rate())
        for conn in self.pool.expire_each(now, self.idle_timeout_now.__getitem__):
            conn.idle = False
            self.metrics.pool_evicted(self.name, "idle_timeout")
            conn.close()
        if self.closing:
            return
        for s in self.servers:
            if not s.available():
                continue
            load = self.load[s]
            recovering = s in self.recovering
            # connections in use count toward the target too: the target is
            # the connections the server needs, not the idle ones on top
            # at start only min_idle applies (recent peak means nothing yet)
            n = self.planner.to_open(now, self.pool.idle_count(s) + s.active, self.opening[s], load.peak(),
                                     load.rate(), load.average(), recovering, False)
            if recovering and n == 0:
                self.recovering.discard(s)
            cap = self.max_connections
            for _ in range(n):
                if cap and self.conn_count[s] >= cap:
                    break
                self._warm(s)

    def _warm(self, server: ServerState) -> None:
        self.opening[server] += 1

        def ok(conn, _elapsed):
            self.opening[server] -= 1
            self.release(conn, True)

        def fail(_err, _elapsed):
            self.opening[server] -= 1

        self.connect(server, ok, fail)

    def mark_recovering(self, server: ServerState) -> None:
        """The server came back (breaker closed, health restored): warm it."""
        self.recovering.add(server)

    # -- observing ------------------------------------------------------
    def pool_gauges(self):
        """((upstream, server), idle) and ((upstream, server), active) pairs."""
        idle = [((self.name, s.name), self.pool.idle_count(s)) for s in self.servers]
        active = [((self.name, s.name), s.active) for s in self.servers]
        return idle, active

    def idle_timeout_gauges(self):
        """((upstream, server), seconds): the adaptive idle timeout in force."""
        return [((self.name, s.name), self.idle_timeout_now[s]) for s in self.servers]

    def breaker_gauges(self):
        """((upstream, server), state) pairs: 0 closed, 1 half-open, 2 open."""
        return [((self.name, s.name), int(s.breaker.state)) for s in self.servers]

    def usable(self) -> bool:
        """At least one server not known to be down (for /readyz)."""
        return any(s.available() and not s.connect_failed for s in self.servers)

    def close(self) -> None:
        self.closing = True
        for conn in self.pool.drain():
            conn.idle = False
            conn.close()
        for fut in list(self.pending_connects):
            fut.cancel()
        for conn in list(self.open_conns):
            conn.abort()


def _cancel_connect(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.cancel()
