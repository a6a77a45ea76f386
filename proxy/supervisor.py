"""The supervisor: N worker processes, their sockets, restarts, reloads, one admin endpoint.

Theory of operation
-------------------
With ``[server] workers`` above 1, ``edgeproxy run`` becomes a supervisor.
It serves no request itself. It owns:

* the listening sockets: for every listener, one socket per worker slot,
  all bound to the same address with SO_REUSEPORT, so the kernel spreads
  new connections over the workers. The supervisor keeps every socket open
  and hands slot ``i``'s socket to worker ``i``: when a worker stops
  accepting (it is draining, being replaced, or died), connections already
  queued on its socket stay queued for its successor instead of being
  reset, which is what makes a reload lose nothing;
* the workers (``python -m proxy.worker``, see ``worker``): started with
  their sockets and a control channel, restarted with a backoff
  (``RestartBackoff``) and counted when one dies, and killed first when
  one hangs: the watchdog (``_watchdog``) pings them over the channel and
  a worker whose loop stays silent for ``worker_watchdog`` gets SIGKILL;
* the active health checks: one prober for all workers, each result sent
  to every worker over its control channel, so N workers do not probe
  every server N times;
* the admin endpoint: ``/metrics`` merges the workers' and its own series
  at scrape time (``metrics_merge``), ``/debug/*`` answers per worker,
  ``/readyz`` is ready when every current worker is and (unless
  ``readyz_upstreams`` is off) no routed cluster is known to be down.

Reload (SIGHUP, or ``edgeproxy reload``): the configuration file is read and
validated again, TLS certificates included; a bad one is refused with the
reason (``reload_failed``) and nothing changes. Otherwise a new generation
of workers starts with it, on the same sockets (new ones only for new or
changed listeners), and once every new worker is ready the old generation
gets SIGTERM: it stops accepting and finishes its in-flight requests within
``drain_timeout``. The admin address, ``pid_file`` and the event loop kind
are fixed at start.

TLS session tickets: each generation gets one random ticket key block
(``tls.new_ticket_keys``), sent to its workers in their bootstrap (and to a
restarted worker of that generation), so a ticket any worker issued
resumes on every other. A reload makes a new block, as nginx does: tickets
of the previous generation then get a full handshake once, and no key
protects sessions for longer than a generation lives. The block is never
written to disk or logged.

SIGTERM or SIGINT drains every worker and exits when they have; SIGQUIT or
a second SIGTERM stops them at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pickle
import signal
import socket
import sys
import time

import orjson

from . import __version__, codec, compiled, log
from .config import ConfigError, load_config
from .metrics import Metrics
from .metrics_merge import merge
from .server import _bind, format_addr, upstream_reasons
from .tls import load_listener_tls, new_ticket_keys
from .worker import Bootstrap

__all__ = ["RestartBackoff", "Supervisor", "run_supervisor"]

READY_TIMEOUT = 30.0  # a new worker must report ready within this
FETCH_TIMEOUT = 2.0  # a worker's admin answer, for /metrics and /debug


class RestartBackoff:
    """When to restart a worker that died (sans-IO; time passed in).

    The first restart is immediate; each quick death after it (the worker
    ran under ``stable_after`` seconds) doubles the wait, up to ``max_wait``;
    a worker that ran long enough resets it.
    """

    def __init__(self, first: float = 0.5, max_wait: float = 30.0, stable_after: float = 10.0):
        self.first = first
        self.max_wait = max_wait
        self.stable_after = stable_after
        self.wait = 0.0

    def died(self, uptime: float) -> float:
        """A worker died after ``uptime`` seconds: seconds to wait before starting its successor."""
        if uptime >= self.stable_after:
            self.wait = 0.0
            return 0.0
        self.wait = self.first if self.wait == 0.0 else min(self.wait * 2, self.max_wait)
        return self.wait


class _Worker:
    """One worker process of one generation."""

    def __init__(self, slot: int, generation: int):
        self.slot = slot
        self.generation = generation
        self.proc: asyncio.subprocess.Process | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.admin = ""
        self.ready = asyncio.Event()
        self.started = time.monotonic()
        self.last_heard = self.started  # the last control message from it (the watchdog's clock)
        self.hung = False  # killed by the watchdog
        self.retiring = False  # told to drain (replaced or stopping): its exit is expected
        self.watch: asyncio.Task | None = None

    def send(self, msg: dict) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(orjson.dumps(msg) + b"\n")

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass


class _ProbeHost:
    """What ``HealthChecker`` needs of a server: loop, metrics, clusters (no traffic)."""

    def __init__(self, config, loop, metrics):
        from .upstream import Cluster

        self.loop = loop
        self.metrics = metrics
        self.clusters = {name: Cluster(cfg, loop, metrics) for name, cfg in config.upstreams.items()}
        self.routed = [self.clusters[n] for n in dict.fromkeys(r.upstream for r in config.routes)]


class Supervisor:
    def __init__(self, config, config_path: str | None, loop_kind: str, workers: int):
        self.config = config
        self.config_path = config_path
        self.loop_kind = loop_kind
        self.count = workers
        self.loop = asyncio.get_event_loop()
        self.metrics = Metrics(codec=codec.NAME, version=__version__, core=compiled.core_kind())
        self.sockets: dict[tuple, list[socket.socket]] = {}  # (name, address, backlog) -> per-slot sockets
        self.generation = 0
        self.ticket_keys: bytes | None = None  # the current generation's TLS session-ticket keys
        self.workers: list[_Worker] = []  # the current generation, by slot
        self.retired: set[_Worker] = set()  # older generations still draining
        self.backoff = [RestartBackoff() for _ in range(workers)]
        self.restarts = 0
        self.stopping = False
        self.draining = False
        self.admin = None
        self.probe = None
        self.health = None
        self.done = asyncio.Event()
        self._reloading = False
        self._watchdog_timer: asyncio.TimerHandle | None = None
        self._watchdog_due = 0.0  # when the watchdog's timer should fire
        self.metrics.set_gauge_source("edgeproxy_workers", lambda: sum(
            1 for w in self.workers if w.ready.is_set() and w.proc is not None and w.proc.returncode is None))

    # -- sockets -------------------------------------------------------------
    def _sockets_for(self, config, n: int) -> dict:
        """Per-slot sockets of ``config``'s listeners, reusing those of the same address."""
        out = {}
        for lc in config.listeners:
            key = (lc.name, lc.address, lc.backlog)
            have = self.sockets.get(key, [])
            socks = list(have[:n])
            if not socks:
                first = _bind(lc.address.host, lc.address.port, lc.backlog, reuse_port=True)
                socks = [first]
            host, port = socks[0].getsockname()[:2]
            while len(socks) < n:
                socks.append(_bind(host, port, lc.backlog, reuse_port=True))
            out[key] = socks
        return out

    def _release_sockets(self, keep: dict) -> None:
        for key, socks in self.sockets.items():
            kept = keep.get(key, [])
            for s in socks:
                if s not in kept:
                    s.close()

    # -- workers -------------------------------------------------------------
    async def _spawn(self, slot: int, generation: int, config, sockets: dict, ticket_keys: bytes) -> _Worker:
        w = _Worker(slot, generation)
        parent, child = socket.socketpair()
        fds = {lc.name: sockets[(lc.name, lc.address, lc.backlog)][slot].fileno() for lc in config.listeners}
        boot = Bootstrap(config=config, worker=slot, generation=generation, fds=fds, control_fd=child.fileno(),
                         ticket_keys=ticket_keys)
        w.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy.worker", stdin=asyncio.subprocess.PIPE,
            pass_fds=[*fds.values(), child.fileno()])
        child.close()
        w.proc.stdin.write(pickle.dumps(boot))
        w.proc.stdin.close()
        reader, w.writer = await asyncio.open_connection(sock=parent)
        w.watch = asyncio.ensure_future(self._watch(w, reader))
        return w

    async def _watch(self, w: _Worker, reader: asyncio.StreamReader) -> None:
        """Read a worker's control messages until it exits; then decide what follows."""
        while True:
            try:
                line = await reader.readline()
            except (ConnectionError, OSError):
                # a worker that dies with our messages unread in its socket (health results, pings)
                # resets the channel instead of closing it: the same end, it must be restarted too
                line = b""
            if not line:
                break
            w.last_heard = time.monotonic()
            try:
                msg = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if msg.get("t") == "ready":
                w.admin = msg.get("admin") or ""
                w.ready.set()
                self._send_health_state(w)
        code = await w.proc.wait()
        if w.writer is not None:
            w.writer.close()
        self.retired.discard(w)
        if w.retiring or self.stopping:
            log.event("worker_exited", worker=w.slot, generation=w.generation, code=code)
        else:
            self._died(w, code)
        if self.stopping and not self._alive():
            self.done.set()

    def _watchdog(self) -> None:
        """Ping the serving workers; kill one whose loop has been silent for ``worker_watchdog``.

        A worker stuck in a busy loop, a blocking call or a deadlock keeps
        its process alive and its listening socket's queue filling: only its
        silence shows it. Pings go out four times per period, so a live
        worker is heard from well within it; a silent one gets SIGKILL (the
        only signal a stuck or stopped process cannot ignore), and its exit
        then takes the ordinary path: counted, logged, restarted with the
        backoff, its socket's queue waiting for the successor.
        """
        self._watchdog_timer = None
        if self.stopping:
            return
        timeout = self.config.server.worker_watchdog
        now = time.monotonic()
        # this loop running late itself (the supervisor was stopped or starved) is no evidence
        # against the workers: their answers may be waiting unread; judge at the next tick
        judge = now - self._watchdog_due < timeout / 4
        if timeout > 0:
            for w in self.workers:
                if (w.hung or w.retiring or not w.ready.is_set() or w.proc is None
                        or w.proc.returncode is not None):
                    continue
                silent = now - w.last_heard
                if judge and silent > timeout:
                    w.hung = True
                    self.metrics.worker_hung()
                    log.event("worker_hung", level="error", worker=w.slot, generation=w.generation,
                              pid=w.proc.pid, silent=round(silent, 3))
                    w.signal(signal.SIGKILL)
                else:
                    w.send({"t": "ping"})
        interval = timeout / 4 if timeout > 0 else 1.0
        self._watchdog_due = now + interval
        self._watchdog_timer = self.loop.call_later(interval, self._watchdog)

    def _died(self, w: _Worker, code: int) -> None:
        uptime = time.monotonic() - w.started
        wait = self.backoff[w.slot].died(uptime)
        self.restarts += 1
        self.metrics.worker_restarted()
        log.event("worker_died", level="error", worker=w.slot, generation=w.generation, code=code,
                  uptime=round(uptime, 3), restart_in=wait)
        self.loop.call_later(wait, lambda: asyncio.ensure_future(self._restart(w)))

    async def _restart(self, old: _Worker) -> None:
        if self.stopping or old.generation != self.generation or self.workers[old.slot] is not old:
            return
        sockets = {k: v for k, v in self.sockets.items()}
        w = await self._spawn(old.slot, old.generation, self.config, sockets, self.ticket_keys)
        self.workers[old.slot] = w
        try:
            await asyncio.wait_for(w.ready.wait(), READY_TIMEOUT)
            log.event("worker_restarted", worker=w.slot, generation=w.generation, pid=w.proc.pid)
        except asyncio.TimeoutError:
            log.event("worker_not_ready", level="error", worker=w.slot)

    def _alive(self) -> bool:
        return any(w.proc is not None and w.proc.returncode is None for w in [*self.workers, *self.retired])

    async def _start_generation(self, config, sockets: dict) -> list[_Worker] | None:
        gen = self.generation + 1
        # one ticket key block per generation, fresh at each reload (as nginx does): sessions of the
        # previous generation get one full handshake, and a key never outlives its generation
        keys = new_ticket_keys()
        new = [await self._spawn(i, gen, config, sockets, keys) for i in range(self.count)]
        try:
            await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in new)), READY_TIMEOUT)
        except asyncio.TimeoutError:
            for w in new:
                w.retiring = True
                w.signal(signal.SIGQUIT)
            return None
        self.generation = gen
        self.ticket_keys = keys
        return new

    # -- health ----------------------------------------------------------------
    def _start_health(self, config) -> None:
        from .healthcheck import HealthChecker

        if self.health is not None:
            self.health.stop()
            self.health = None
        self.probe = _ProbeHost(config, self.loop, self.metrics)
        if any(c.cfg.health.enabled for c in self.probe.clusters.values()):
            self.health = HealthChecker(self.probe)
            self.health.on_result = self._broadcast_health
            self.metrics.set_gauge_source("upstream_health", self.health.gauges)
            self.health.start()

    def _broadcast_health(self, cluster: str, server: str, healthy: bool, failing: bool) -> None:
        msg = {"t": "health", "c": cluster, "s": server, "healthy": healthy, "failing": failing}
        for w in self.workers:
            w.send(msg)

    def _send_health_state(self, w: _Worker) -> None:
        if self.health is None:
            return
        for t in self.health.targets:
            w.send({"t": "health", "c": t.cluster.name, "s": t.server.name, "healthy": t.server.healthy,
                    "failing": t.server.check_failing})

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        from .admin import AdminServer

        self.sockets = self._sockets_for(self.config, self.count)
        for (name, _, _), socks in self.sockets.items():
            log.event("listening", listener=name, address=format_addr(socks[0].getsockname()), workers=self.count)
        if self.config.admin.enabled:
            self.admin = AdminServer(self)
            await self.admin.start()
            log.event("admin", address=self.admin.address)
        self._start_health(self.config)
        new = await self._start_generation(self.config, self.sockets)
        if new is None:
            raise RuntimeError("workers did not become ready")
        self.workers = new
        self._watchdog()
        log.event("ready", codec=codec.NAME, version=__version__, loop=self.loop_kind, workers=self.count,
                  supervisor=os.getpid())

    async def reload(self) -> None:
        if self._reloading or self.stopping:
            return
        self._reloading = True
        try:
            await self._reload()
        finally:
            self._reloading = False

    async def _reload(self) -> None:
        if self.config_path is None:
            self.metrics.reload("failed")
            log.event("reload_failed", level="error", reason="started without a config file: nothing to reload")
            return
        try:
            config = load_config(self.config_path)
            load_listener_tls(config)  # every certificate must load before anything changes
        except ConfigError as exc:
            self.metrics.reload("failed")
            log.event("reload_failed", level="error", reason=str(exc))
            return
        config = dataclasses.replace(config, server=dataclasses.replace(
            config.server, workers=self.count, loop=self.config.server.loop))
        try:
            sockets = self._sockets_for(config, self.count)
        except OSError as exc:
            self.metrics.reload("failed")
            log.event("reload_failed", level="error", reason=f"cannot listen: {exc}")
            return
        new = await self._start_generation(config, sockets)
        if new is None:
            self.metrics.reload("failed")
            self._release_new(sockets)
            log.event("reload_failed", level="error", reason="new workers did not become ready")
            return
        old = self.workers
        self.workers = new
        for w in old:
            w.retiring = True
            self.retired.add(w)
            w.signal(signal.SIGTERM)
        previous = self.sockets
        self.sockets = sockets
        self.config = config
        self._start_health(config)
        self.metrics.reload("ok")
        log.event("reloaded", generation=self.generation, workers=self.count)
        # sockets of listeners that went away close once the old workers are gone
        asyncio.ensure_future(self._close_unused(previous, old))

    def _release_new(self, sockets: dict) -> None:
        for key, socks in sockets.items():
            kept = self.sockets.get(key, [])
            for s in socks:
                if s not in kept:
                    s.close()

    async def _close_unused(self, previous: dict, old: list[_Worker]) -> None:
        await asyncio.gather(*(w.proc.wait() for w in old if w.proc is not None), return_exceptions=True)
        for key, socks in previous.items():
            kept = self.sockets.get(key, [])
            for s in socks:
                if s not in kept:
                    s.close()

    def stop(self, at_once: bool = False) -> None:
        if self.stopping and not at_once:
            at_once = True  # a second SIGTERM
        first = not self.stopping
        self.stopping = True
        self.draining = True
        if first:
            # The listening sockets close now, as nginx's do: a new connection is refused at once
            # (a balancer or client retries elsewhere) instead of waiting in an accept queue nobody
            # will serve and being reset at exit. The workers close their copies as they drain.
            self._close_sockets()
            log.event("draining", workers=len(self.workers))
        for w in [*self.workers, *self.retired]:
            w.retiring = True
            w.signal(signal.SIGQUIT if at_once else signal.SIGTERM)
        if not self._alive():
            self.done.set()

    async def close(self) -> None:
        if self._watchdog_timer is not None:
            self._watchdog_timer.cancel()
        if self.health is not None:
            self.health.stop()
        if self.admin is not None:
            self.admin.close()
        self._close_sockets()
        log.event("stopped")

    def _close_sockets(self) -> None:
        for socks in self.sockets.values():
            for s in socks:
                s.close()

    # -- admin -------------------------------------------------------------------
    def readiness(self) -> tuple[bool, list[str]]:
        reasons = []
        if self.draining:
            reasons.append("draining")
        for w in self.workers:
            if not w.ready.is_set() or w.proc is None or w.proc.returncode is not None:
                reasons.append(f"worker_not_ready:{w.slot}")
        if self.probe is not None:
            reasons += upstream_reasons(self.config, self.probe.routed)
        return not reasons, reasons

    async def fetch(self, w: _Worker, path: str) -> bytes | None:
        """GET ``path`` from a worker's private admin endpoint; the body, or None."""
        if not w.admin:
            return None
        host, _, port = w.admin.rpartition(":")
        token = self.config.admin.token
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), FETCH_TIMEOUT)
        except (OSError, asyncio.TimeoutError):
            return None
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: w\r\nConnection: close\r\n{auth}\r\n".encode())
            raw = await asyncio.wait_for(reader.read(-1), FETCH_TIMEOUT)
        except (OSError, asyncio.TimeoutError):
            return None
        finally:
            writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        return body if head.startswith(b"HTTP/1.1 200") else None

    async def metrics_text(self) -> bytes:
        live = [w for w in self.workers if w.ready.is_set()]
        bodies = await asyncio.gather(*(self.fetch(w, "/metrics") for w in live))
        texts = [(None, self.metrics.render()[0].decode())]
        texts += [(str(w.slot), b.decode()) for w, b in zip(live, bodies) if b is not None]
        return merge(texts)

    async def debug(self, which: str, query: str) -> dict:
        path = f"/debug/{which}" + (f"?{query}" if query else "")
        live = [w for w in self.workers if w.ready.is_set()]
        bodies = await asyncio.gather(*(self.fetch(w, path) for w in live))
        return {"workers": {str(w.slot): (orjson.loads(b) if b is not None else None) for w, b in zip(live, bodies)},
                "pids": {str(w.slot): w.proc.pid for w in live}, "generation": self.generation,
                "restarts": self.restarts}


async def _main(config, config_path: str | None, loop_kind: str, workers: int) -> int:
    sup = Supervisor(config, config_path, loop_kind, workers)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, sup.stop)
    loop.add_signal_handler(signal.SIGQUIT, lambda: sup.stop(at_once=True))
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(sup.reload()))
    try:
        await sup.start()
    except BaseException:
        sup.stop(at_once=True)
        await sup.close()
        raise
    await sup.done.wait()
    await sup.close()
    return 0


def run_supervisor(config, config_path: str | None, loop_kind: str | None = None, workers: int = 2) -> int:
    from .server import new_event_loop

    kind = loop_kind or config.server.loop
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, loop=kind, workers=workers))
    with asyncio.Runner(loop_factory=lambda: new_event_loop(kind)) as runner:
        return runner.run(_main(config, config_path, kind, workers))
