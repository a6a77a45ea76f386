"""Process lifecycle: listeners with our own accept loop, signals, drain.

Theory of operation
-------------------
Each listener is a raw non-blocking socket (SO_REUSEADDR, configured
backlog) watched with ``loop.add_reader``; the proxy accepts connections
itself, in batches of up to ``ACCEPT_BATCH`` per readiness event, so later
admission control can decide per connection at accept time or stop reading
the socket and let the kernel backlog hold the queue. An accept that fails
for lack of file descriptors pauses that listener for a moment instead of
spinning on a socket that stays readable.

Accepted sockets get TCP_NODELAY and TCP keep-alive, then become asyncio
transports with a ``Downstream`` protocol.

Shutdown (SIGTERM or SIGINT): stop accepting (listening sockets closed),
close idle keep-alive connections at once, let in-flight requests finish
(their responses carry ``Connection: close``) for up to ``drain_timeout``,
then abort what is left, stop the active health checks, close upstream
pools, flush the access log, and return 0.
"""

from __future__ import annotations

import asyncio
import errno
import signal
import socket

from . import __version__, codec, log
from .accesslog import AccessLog
from .admin import AdminServer
from .downstream import Downstream
from .headers import HeaderPolicy
from .healthcheck import HealthChecker
from .metrics import Metrics
from .routing import Router
from .upstream import Cluster, set_tcp_keepalive

ACCEPT_BATCH = 64
EMFILE_PAUSE = 0.1  # seconds a listener rests after running out of descriptors
MAX_RESPONSE_HEAD = 64 * 1024


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def format_addr(addr) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Listener:
    def __init__(self, cfg, server: "ProxyServer"):
        self.cfg = cfg
        self.name = cfg.name
        self.server = server
        self.loop = server.loop
        self.sock = _bind(cfg.address.host, cfg.address.port, cfg.backlog)
        self.address = format_addr(self.sock.getsockname())
        self.accepting = False
        self.closed = False

    def start(self) -> None:
        if not self.accepting and not self.closed:
            self.loop.add_reader(self.sock.fileno(), self._on_acceptable)
            self.accepting = True

    def pause(self) -> None:
        if self.accepting:
            self.loop.remove_reader(self.sock.fileno())
            self.accepting = False

    def _on_acceptable(self) -> None:
        sock = self.sock
        server = self.server
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warn("accept_paused", listener=self.name, reason=exc.strerror)
                    self.pause()
                    self.loop.call_later(EMFILE_PAUSE, self.start)
                return  # ECONNABORTED and friends: the next readiness event retries
            server.accept(conn, self)

    def close(self) -> None:
        self.pause()
        if not self.closed:
            self.closed = True
            self.sock.close()


class ProxyServer:
    def __init__(self, config, loop: asyncio.AbstractEventLoop):
        self.config = config
        self.loop = loop
        self.metrics = Metrics(codec=codec.NAME, version=__version__)
        self.headers = HeaderPolicy(config.headers)
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
        self.listeners: list[Listener] = []
        self.admin: AdminServer | None = None
        self.connections: set[Downstream] = set()
        self.draining = False
        self._drained: asyncio.Event | None = None
        self._sweeper = None
        self._accepting_tasks: set[asyncio.Task] = set()
        self.metrics.set_gauge_source("http_server_connections_active", lambda: len(self.connections))
        self.metrics.set_gauge_source("http_client_conn_pool_idle", lambda: self._pool_gauge(0))
        self.metrics.set_gauge_source("http_client_conn_pool_active", lambda: self._pool_gauge(1))
        self.metrics.set_gauge_source(
            "http_client_conn_pool_idle_timeout_seconds",
            lambda: [g for c in self.clusters.values() for g in c.idle_timeout_gauges()])
        self.metrics.set_gauge_source(
            "circuit_breaker_state", lambda: [g for c in self.clusters.values() for g in c.breaker_gauges()])
        # active health checks, when any cluster enables them (started by start())
        self.health: HealthChecker | None = None
        if any(c.cfg.health.enabled for c in self.clusters.values()):
            self.health = HealthChecker(self)
            self.metrics.set_gauge_source("upstream_health", self.health.gauges)

    def _pool_gauge(self, which: int):
        out = []
        for c in self.clusters.values():
            out.extend(c.pool_gauges()[which])
        return out

    # ------------------------------------------------------------------
    async def start(self) -> None:
        if self.accesslog is not None:
            self.accesslog.start()
        try:
            for lc in self.config.listeners:
                self.listeners.append(Listener(lc, self))
            if self.config.admin.enabled:
                self.admin = AdminServer(self)
                await self.admin.start()
        except OSError:
            for lst in self.listeners:
                lst.close()
            raise
        for lst in self.listeners:
            lst.start()
            log.event("listening", listener=lst.name, address=lst.address)
        if self.admin is not None:
            log.event("admin", address=self.admin.address)
        self._sweeper = self.loop.call_later(1.0, self._sweep)
        if self.health is not None:
            self.health.start()  # first checks at once; servers start healthy
        log.event("ready", codec=codec.NAME, version=__version__,
                  loop=type(self.loop).__module__.split(".")[0])

    def _sweep(self) -> None:
        for c in self.clusters.values():
            c.tick()
        self._sweeper = self.loop.call_later(1.0, self._sweep)

    def accept(self, sock: socket.socket, listener: Listener) -> None:
        sock.setblocking(False)
        set_tcp_keepalive(sock, self.config.downstream.tcp_keepalive)
        name = listener.name
        task = self.loop.create_task(self.loop.connect_accepted_socket(lambda: Downstream(self, name), sock))
        self._accepting_tasks.add(task)
        task.add_done_callback(self._accepted)

    def _accepted(self, task: asyncio.Task) -> None:
        self._accepting_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warn("accept_failed", error=str(task.exception()))

    def connection_opened(self, conn: Downstream) -> None:
        self.connections.add(conn)
        if self.draining:
            conn.close_if_idle()

    def connection_closed(self, conn: Downstream) -> None:
        self.connections.discard(conn)
        if self.draining and not self.connections and self._drained is not None:
            self._drained.set()

    def readiness(self) -> tuple[bool, list[str]]:
        """Ready to take traffic? Computed from state already held, no I/O."""
        reasons = []
        if self.draining:
            reasons.append("draining")
        if not self.listeners or any(lst.closed for lst in self.listeners):
            reasons.append("listener_closed")
        for c in self.routed:
            if not c.usable():
                reasons.append(f"upstream_down:{c.name}")
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


async def serve(config) -> int:
    loop = asyncio.get_running_loop()
    server = ProxyServer(config, loop)
    await server.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.shutdown()
    return 0


def run(config, loop_kind: str | None = None) -> int:
    kind = loop_kind or config.server.loop
    with asyncio.Runner(loop_factory=lambda: new_event_loop(kind)) as runner:
        return runner.run(serve(config))
