"""Process lifecycle: listeners with our own accept loop, signals, drain.

Theory of operation
-------------------
Each listener is a raw non-blocking socket (SO_REUSEADDR, configured
backlog) watched with ``loop.add_reader``; the proxy accepts connections
itself (acceptor.py: in batches, as many as the kernel reports queued), so
admission control can decide per connection at accept time or stop reading
the socket and let the kernel backlog hold the queue. An accept that fails
for lack of file descriptors pauses that listener for a moment instead of
spinning on a socket that stays readable.

Accepted sockets inherit TCP_NODELAY and TCP keep-alive from the listening
socket, then become asyncio transports with a ``Downstream`` protocol (a
``TLSConnection`` first on a TLS listener).

Shutdown (SIGTERM or SIGINT): stop accepting (listening sockets closed),
close idle keep-alive connections at once, let in-flight requests finish
(their responses carry ``Connection: close``) for up to ``drain_timeout``,
then abort what is left, stop the active health checks, close upstream
pools, flush the access log, and return 0.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import socket
import struct
import time

from . import __version__, codec, compiled, log, sysinfo
from .acceptor import accept_ready, takes_descriptors
from .accesslog import AccessLog
from .accounting import InFlight
from .admission import Decision, Gate, ListenerAdmission
from .admin import AdminServer
from .deadlines import DeadlineQueue
from .downstream import Downstream
from .headers import HeaderPolicy
from .tls import TLSContexts, TLSSetupError, load_listener_tls
from .healthcheck import HealthChecker
from .metrics import Metrics
from .routing import Router
from .upstream import Cluster, set_tcp_keepalive

MAX_RESPONSE_HEAD = 64 * 1024


def _bind(host: str, port: int, backlog: int, reuse_port: bool = False) -> socket.socket:
    """A listening socket. ``reuse_port``: one of several bound to the same
    address (SO_REUSEPORT), among which the kernel spreads new connections."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def accepted_socket_class(family: socket.AddressFamily, type_: socket.SocketKind) -> type:
    """A ``socket.socket`` subclass for the connections of one listener: ``family`` and ``type``
    are plain class attributes. On ``socket.socket`` they are properties that rebuild an enum
    from the descriptor's ints on every read, and the event loop reads them for every
    accepted connection (three enum conversions in Python per connection)."""
    return type("AcceptedSocket", (socket.socket,), {"__slots__": (), "family": family, "type": type_})


def upstream_reasons(config, routed) -> list[str]:
    """Readiness reasons from the routed clusters: one per cluster with no usable server
    (none when ``[admin] readyz_upstreams`` is off)."""
    if not config.admin.readyz_upstreams:
        return []
    return [f"upstream_down:{c.name}" for c in routed if not c.usable()]


def format_addr(addr) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_OVERLOAD_BODY = b'{"error":"overloaded"}'
OVERLOAD_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
    b"Retry-After: 1\r\nConnection: close\r\n\r\n%b" % (len(_OVERLOAD_BODY), _OVERLOAD_BODY)
)
_LINGER_RST = struct.pack("ii", 1, 0)


class Listener:
    """One listening socket with its own accept loop and admission control."""

    def __init__(self, cfg, server: "ProxyServer", sock: socket.socket | None = None):
        """``sock``: a listening socket made by the supervisor (worker mode); else one is bound here."""
        self.cfg = cfg
        self.name = cfg.name
        self.server = server
        self.loop = server.loop
        if sock is not None:
            sock.setblocking(False)
            self.sock = sock
        else:
            self.sock = _bind(cfg.address.host, cfg.address.port, cfg.backlog)
        self.address = format_addr(self.sock.getsockname())
        # accepted sockets inherit TCP_NODELAY and the keep-alive options from here (see set_tcp_keepalive)
        set_tcp_keepalive(self.sock, server.config.downstream.tcp_keepalive, listening=True)
        # socket.accept() rebuilds the family and type enums of the listening socket for every
        # connection; _accept() (the C call under it) with these ints saved does the same work
        s = self.sock
        self.accept_as = (int(s.family), int(s.type), s.proto)
        self.socket_class = accepted_socket_class(s.family, s.type)
        self.bare = takes_descriptors(self.loop)  # accepted descriptors go to the loop without a socket object
        self.tls = server.tls.get(cfg.name)  # TLSContexts, swapped whole by a certificate reload
        # the handshakes in progress, under one timer (they share handshake_timeout)
        self.handshakes = DeadlineQueue(self.loop, cfg.handshake_timeout) if cfg.tls else None
        self.tls_stats = None  # the metrics' TLSStats of this listener, from its first finished handshake
        self.headers = HeaderPolicy(
            server.config.headers, b"https" if cfg.tls else b"http",
            strip=(cfg.client_subject_header, cfg.client_san_header, cfg.client_fingerprint_header), hsts=cfg.hsts)
        self.admission = ListenerAdmission(cfg, server.gate, time.monotonic())
        self.accepting = False
        self.held = False  # paused by admission (a slot or a token will resume it)
        self._resume_timer = None
        self.closed = False

    def start(self) -> None:
        if not self.accepting and not self.closed:
            self.loop.add_reader(self.sock.fileno(), accept_ready, self)
            self.accepting = True

    def pause(self) -> None:
        if self.accepting:
            self.loop.remove_reader(self.sock.fileno())
            self.accepting = False

    def _on_acceptable(self) -> None:
        """One readiness event's accepts (what the event loop calls, as ``accept_ready(self)``)."""
        accept_ready(self)

    def hold(self, now: float) -> None:
        """Admission said pause: leave connections in the kernel queue until
        a token arrives (a timer) or a slot frees (``maybe_resume``)."""
        self.pause()
        self.held = True
        wait = self.admission.resume_in(now)
        if wait is not None and self._resume_timer is None:
            self._resume_timer = self.loop.call_later(max(wait, 0.001), self._timer_resume)

    def _timer_resume(self) -> None:
        self._resume_timer = None
        self.maybe_resume()

    def maybe_resume(self) -> None:
        if self.held and not self.closed:
            self.held = False
            self.start()  # the next readiness event asks admission again

    def refuse(self, fd: int, decision: Decision) -> None:
        """Accepted only to be refused: reset, or a minimal 503, then close."""
        family, type_, proto = self.accept_as
        conn = self.socket_class(family, type_, proto, fileno=fd)
        try:
            if decision is Decision.RESPONDED or (decision is Decision.PER_IP and self.cfg.on_limit == "respond"):
                conn.setblocking(False)
                conn.send(OVERLOAD_RESPONSE)
            else:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        except OSError:
            pass
        conn.close()

    def close(self) -> None:
        self.pause()
        if self._resume_timer is not None:
            self._resume_timer.cancel()
            self._resume_timer = None
        if not self.closed:
            self.closed = True
            self.sock.close()


class ProxyServer:
    def __init__(self, config, loop: asyncio.AbstractEventLoop, *, sockets: dict | None = None,
                 probe_health: bool = True, worker: int | None = None, ticket_keys: bytes | None = None):
        """``sockets``: {listener name: listening socket} made by the supervisor
        (worker mode). ``probe_health``: run the active health checks here;
        a worker leaves them to its supervisor, which sends the results
        (``apply_health``). ``ticket_keys``: the TLS session-ticket key block
        its supervisor shares among the workers of a generation; None keeps
        OpenSSL's per-process keys."""
        self.config = config
        self.loop = loop
        self.sockets = sockets or {}
        self.worker = worker  # this process's worker number under a supervisor, else None
        self.metrics = Metrics(codec=codec.NAME, version=__version__, core=compiled.core_kind())
        self.gate = Gate(config.server.max_connections)  # global connection cap
        self.requests_gate = InFlight(config.server.max_requests)  # global in-flight request cap
        self.headers = HeaderPolicy(config.headers)
        self.ticket_keys = ticket_keys
        self.tls = load_listener_tls(config, ticket_keys)  # ConfigError when a certificate cannot be used
        self.router = Router.from_config(config.routes)
        self.clusters = {name: Cluster(cfg, loop, self.metrics) for name, cfg in config.upstreams.items()}
        self.routed = [self.clusters[n] for n in dict.fromkeys(r.upstream for r in config.routes)]
        alc = config.access_log
        self.accesslog = (
            AccessLog(alc.path, buffer_lines=alc.buffer_lines, sample_rate=alc.sample_rate,
                      on_drop=self.metrics.accesslog_dropped)
            if alc.enabled
            else None
        )
        self.max_response_head = MAX_RESPONSE_HEAD
        # new client connections waiting for their first request head, under one timer
        # (they share header_timeout; Downstream.connection_made)
        self.first_heads = DeadlineQueue(loop, config.downstream.header_timeout)
        self.listeners: list[Listener] = []
        self.admin: AdminServer | None = None
        self.connections: set[Downstream] = set()
        self.draining = False
        self._drained: asyncio.Event | None = None
        self._sweeper = None
        self.metrics.set_gauge_source("http_server_connections_active", lambda: len(self.connections))
        # a single process counts itself; workers report 0 and their supervisor the ready ones
        self.metrics.set_gauge_source("edgeproxy_workers", lambda: 1 if self.worker is None else 0)
        self.metrics.set_gauge_source("http_client_conn_pool_idle", lambda: self._pool_gauge(0))
        self.metrics.set_gauge_source("http_client_conn_pool_active", lambda: self._pool_gauge(1))
        self.metrics.set_gauge_source(
            "http_client_conn_pool_idle_timeout_seconds",
            lambda: [g for c in self.clusters.values() for g in c.idle_timeout_gauges()])
        self.metrics.set_gauge_source(
            "circuit_breaker_state", lambda: [g for c in self.clusters.values() for g in c.breaker_gauges()])
        self.metrics.set_gauge_source("http_server_connections", self._connection_states)
        self.metrics.set_gauge_source("http_server_accept_queue_len", lambda: self._accept_queues(0))
        self.metrics.set_gauge_source("http_server_accept_queue_max", lambda: self._accept_queues(1))
        listen = lambda i: (lambda: (sysinfo.listen_counters() or (None, None))[i])  # noqa: E731
        self.metrics.set_gauge_source("http_server_listen_overflows_total", listen(0))
        self.metrics.set_gauge_source("http_server_listen_drops_total", listen(1))
        # active health checks, when any cluster enables them (started by start())
        self.health: HealthChecker | None = None
        if probe_health and any(c.cfg.health.enabled for c in self.clusters.values()):
            self.health = HealthChecker(self)
            self.metrics.set_gauge_source("upstream_health", self.health.gauges)

    def _connection_states(self):
        from collections import Counter

        from .diagnostics import connection_state

        counts = Counter((c.listener, connection_state(c)) for c in list(self.connections))
        counts.update((hs.listener.name, "handshaking") for hs in list(self.handshaking))
        return list(counts.items())

    def _accept_queues(self, which: int):
        out = []
        for lst in self.listeners:
            if not lst.closed:
                q = sysinfo.accept_queue(lst.sock)
                if q is not None:
                    out.append(((lst.name,), q[which]))
        return out

    def _pool_gauge(self, which: int):
        out = []
        for c in self.clusters.values():
            out.extend(c.pool_gauges()[which])
        return out

    # ------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.config
        # raise the descriptor limit toward what the caps can hold open (the figure `check` judges too);
        # uncapped, as far as the hard limit allows
        needed = sysinfo.descriptors_needed(cfg)
        soft, _hard = sysinfo.raise_nofile(needed or sysinfo.FD_UNCAPPED)
        if needed is not None and soft < needed:
            log.warn("nofile_limit", soft=soft, needed=needed)
        for w in sysinfo.system_warnings(cfg):
            log.warn("system", detail=w)
        if self.accesslog is not None:
            self.accesslog.start()
        try:
            for lc in self.config.listeners:
                self.listeners.append(Listener(lc, self, self.sockets.get(lc.name)))
            if self.config.admin.enabled:
                self.admin = AdminServer(self)
                await self.admin.start()
        except OSError:
            for lst in self.listeners:
                lst.close()
            raise
        for lst in self.listeners:
            lst.start()
            if self.worker is None:  # under a supervisor, it reports the listeners
                log.event("listening", listener=lst.name, address=lst.address)
        if self.admin is not None and self.worker is None:
            log.event("admin", address=self.admin.address)
        self._sweeper = self.loop.call_later(1.0, self._sweep)
        if self.health is not None:
            self.health.start()  # first checks at once; servers start healthy
        log.event("ready" if self.worker is None else "worker_ready", codec=codec.NAME, version=__version__,
                  loop=type(self.loop).__module__.split(".")[0])

    def _sweep(self) -> None:
        for c in self.clusters.values():
            c.tick()
        self._sweeper = self.loop.call_later(1.0, self._sweep)

    def admission_released(self, listener: Listener, ip: str) -> None:
        """An admitted connection is gone: its slots free, paused listeners resume."""
        listener.admission.release(ip)
        for lst in self.listeners:
            if lst.held:
                lst.maybe_resume()

    def apply_health(self, cluster: str, server: str, healthy: bool, failing: bool) -> None:
        """A health check result from the supervisor's prober (worker mode)."""
        c = self.clusters.get(cluster)
        if c is None:
            return
        for s in c.servers:
            if s.name == server:
                s.check_failing = failing
                if s.healthy != healthy:
                    s.healthy = healthy
                    if healthy:
                        c.mark_recovering(s)
                return

    @property
    def handshaking(self) -> list:
        """The TLS connections still in their handshake, on every listener."""
        return [conn for lst in self.listeners if lst.handshakes is not None for conn in lst.handshakes.pending]

    def reload_certificates(self) -> bool:
        """Re-read every TLS listener's certificate files (SIGHUP).

        All or nothing per listener: a listener whose new files fail keeps
        serving its old certificates, and the reason is logged. Established
        connections keep the contexts they were made with.
        """
        ok = True
        for lst in self.listeners:
            if lst.tls is None:
                continue
            try:
                lst.tls = TLSContexts(lst.cfg, self.ticket_keys)
            except TLSSetupError as exc:
                ok = False
                log.event("tls_reload_failed", level="error", listener=lst.name, key=exc.key, value=exc.value,
                          reason=exc.reason)
                continue
            log.event("tls_reloaded", listener=lst.name,
                      certificates=[", ".join(c.names) for c in lst.tls.certificates])
        return ok

    def connection_opened(self, conn: Downstream) -> None:
        self.connections.add(conn)
        if self.draining:
            conn.close_if_idle()

    def connection_closed(self, conn: Downstream) -> None:
        self.connections.discard(conn)
        if conn.admitted is not None:
            listener, conn.admitted = conn.admitted, None
            self.admission_released(listener, conn.admitted_ip)
        if self.draining and not self.connections and self._drained is not None:
            self._drained.set()

    def readiness(self) -> tuple[bool, list[str]]:
        """Ready to take traffic? Computed from state already held, no I/O."""
        reasons = []
        if self.draining:
            reasons.append("draining")
        if not self.listeners or any(lst.closed for lst in self.listeners):
            reasons.append("listener_closed")
        reasons += upstream_reasons(self.config, self.routed)
        return not reasons, reasons

    # ------------------------------------------------------------------
    async def shutdown(self) -> None:
        """Graceful drain, bounded by ``drain_timeout``."""
        if self.draining:
            return
        self.draining = True
        log.event("draining", connections=len(self.connections))
        for lst in self.listeners:
            lst.close()
        # a connection accepted in the last instant becomes a client connection at the loop's next
        # iteration (its connection_made is scheduled): let it, so the drain below counts it and
        # waits for its request instead of closing the upstream pools under it
        await asyncio.sleep(0)
        for hs in list(self.handshaking):
            hs.abort()  # no request started on it yet
        for conn in list(self.connections):
            conn.close_if_idle()
        if self.connections:
            self._drained = asyncio.Event()
            try:
                await asyncio.wait_for(self._drained.wait(), self.config.server.drain_timeout)
            except asyncio.TimeoutError:
                log.warn("drain_timeout", connections=len(self.connections))
        for conn in list(self.connections):
            conn.abort()
        if self.health is not None:
            self.health.stop()
        for c in self.clusters.values():
            c.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.first_heads.close()
        for lst in self.listeners:
            if lst.handshakes is not None:
                lst.handshakes.close()
        if self.admin is not None:
            self.admin.close()
        # let transports run their connection_lost callbacks
        await asyncio.sleep(0)
        if self.accesslog is not None:
            self.accesslog.close()
        log.event("stopped")


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


# Allocations (net) between young-generation collections, once serving (700 by default).
# A connection's objects are freed by reference counting when it closes; the collector
# only has to find what some rare path leaves in a cycle, and under churn the default
# runs it every few dozen connections for nothing.
GC_YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """Once a serving process has started: collect, then freeze what is left.

    Start-up leaves a large heap that lives as long as the process (modules,
    configuration, contexts, the metrics registry). ``gc.freeze`` moves it
    out of the cyclic collector's generations, so the collections that
    connection churn triggers never walk it again. The connections' own
    objects stay collectable (and are normally freed by reference counting
    alone: closing a connection leaves no cycle), and the young generation is
    collected less often (``GC_YOUNG_THRESHOLD``).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


async def serve(config) -> int:
    loop = asyncio.get_running_loop()
    server = ProxyServer(config, loop)
    await server.start()
    settle_heap()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload_certificates)
    await stop.wait()
    await server.shutdown()
    return 0


def run(config, loop_kind: str | None = None) -> int:
    kind = loop_kind or config.server.loop
    with asyncio.Runner(loop_factory=lambda: new_event_loop(kind)) as runner:
        return runner.run(serve(config))
