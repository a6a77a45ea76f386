"""Active health checks: the I/O around ``proxy.health``.

Theory of operation
-------------------
``proxy.health`` decides (when a check is due, what to send, what answer
means healthy, when a server falls or rises); this module only does the
I/O, in protocol-callback style, on the proxy's own event loop.

One ``HealthChecker`` per proxy covers every server of every cluster whose
``[upstreams.NAME.health]`` is enabled, one ``HealthState`` per server. A
single loop timer (``call_at``) is armed for the earliest ``next_at`` among
the servers without a check in flight; when it fires, every due server gets
a check, then the timer is re-armed. A finished check re-arms it too (its
``record`` scheduled the server's next check). No task sleeps in a loop and
nothing polls: with no check due, the only cost is that one timer.

A check (``_Check``) is one NEW TCP connection (``loop.create_connection``
with a small protocol; the request pool is never used, so a check neither
takes nor leaves an idle connection): the request of
``HealthState.request_bytes`` (``Connection: close``, ``User-Agent:
edgeproxy-health``), then the response head parsed with the codec and, when
``body_contains`` is set, up to ``MAX_CHECK_BODY`` decoded body bytes. A
status outside ``expected_statuses`` is judged at once, without reading the
body. One deadline timer bounds the whole check, connect included
(``policy.timeout``). Each check ends exactly once, with a result:

* ``ok``: an answer that ``judge`` accepts;
* ``failed``: a complete answer that ``judge`` refuses;
* ``timeout``: no complete answer within ``timeout``;
* ``error``: connect refused or failed, reset, closed before a complete
  answer, or an invalid response.

``record(now, ok)`` then counts the result (``health_check_total``) and, on
a transition, sets ``ServerState.healthy`` (the balancer skips an unhealthy
server, ``/readyz`` reports a cluster with no available server down) and
logs one ``health_transition`` event. A check whose connection succeeded
also clears the server's ``connect_failed`` mark: the server accepts
connections again, so ``/readyz`` need not wait for client traffic to learn
it.

``stop()`` cancels the timer and aborts the checks in flight without
recording them.
"""

from __future__ import annotations

import asyncio
import random

from . import codec, log
from .codec import ParseError
from .health import MAX_CHECK_BODY, HealthPolicy, HealthState
from .upstream import set_tcp_keepalive

__all__ = ["HealthChecker", "MAX_CHECK_HEAD", "RESULTS"]

RESULTS = ("ok", "failed", "timeout", "error")
# A check response head larger than this is an invalid answer.
MAX_CHECK_HEAD = 16 * 1024
# A timer may fire a hair before its deadline (clock resolution): a check due
# within this much is started rather than re-arming the timer for it.
_SLACK = 0.001


class _Target:
    """One checked server: its cluster, its ServerState, its HealthState."""

    __slots__ = ("cluster", "server", "state", "request", "method", "check")

    def __init__(self, cluster, server, state: HealthState):
        self.cluster = cluster
        self.server = server
        self.state = state
        self.request = state.request_bytes(server.name)
        self.method = state.policy.method.encode("ascii")
        self.check: _Check | None = None  # the check in flight, if any


class _CheckProtocol(asyncio.Protocol):
    __slots__ = ("check",)

    def __init__(self, check: "_Check"):
        self.check = check

    def connection_made(self, transport):
        self.check.connected(transport)

    def data_received(self, data):
        self.check.received(data)

    def eof_received(self):
        self.check.ended(None)
        return False

    def connection_lost(self, exc):
        self.check.ended(exc)


class _Check:
    """One check of one server: connect, send, read, judge; ends exactly once."""

    __slots__ = ("checker", "target", "deadline", "timer", "connecting", "transport", "buf", "scanned",
                 "head", "decoder", "body", "done")

    def __init__(self, checker: "HealthChecker", target: _Target, deadline: float):
        self.checker = checker
        self.target = target
        self.deadline = deadline
        self.timer = None
        self.connecting: asyncio.Future | None = None
        self.transport = None
        self.buf = bytearray()
        self.scanned = 0  # bytes of buf already scanned for the end of the head
        self.head = None
        self.decoder = None
        self.body = bytearray()
        self.done = False

    def start(self) -> None:
        loop = self.checker.loop
        server = self.target.server
        self.timer = loop.call_at(self.deadline, self._timed_out)
        self.connecting = asyncio.ensure_future(
            loop.create_connection(lambda: _CheckProtocol(self), server.host, server.port))
        self.connecting.add_done_callback(self._connect_done)

    # -- connection ------------------------------------------------------
    def _connect_done(self, fut: asyncio.Future) -> None:
        if fut.cancelled():
            return  # cancelled by the end of the check (timeout or stop)
        exc = fut.exception()
        if exc is not None:
            self.finish("error", f"connect: {type(exc).__name__}: {exc}")
            return
        transport, _ = fut.result()
        if self.done:
            transport.abort()

    def connected(self, transport) -> None:
        self.transport = transport
        if self.done:
            transport.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            set_tcp_keepalive(sock, self.target.cluster.cfg.pool.tcp_keepalive)
        self.target.server.connect_failed = False
        transport.write(self.target.request)

    def _timed_out(self) -> None:
        self.timer = None
        if self.head is None:
            phase = "connect" if self.transport is None else "response head"
        else:
            phase = "response body"
        self.finish("timeout", f"no {phase} within {self.target.state.policy.timeout:g}s")

    # -- response --------------------------------------------------------
    def received(self, data: bytes) -> None:
        if self.done:
            return
        try:
            if self.head is None:
                self.buf += data
                if not self._parse_head():
                    return
                data, self.buf = bytes(self.buf), bytearray()
                if not self._after_head():
                    return
            self._feed(data)
        except (ParseError, ValueError) as exc:
            self.finish("error", f"invalid response: {exc}")

    def _parse_head(self) -> bool:
        """Parse the final response head from buf (skipping 1xx); False: need more bytes."""
        while True:
            res = codec.parse_response_head(self.buf, self.target.method, MAX_CHECK_HEAD, self.scanned)
            if res is None:
                self.scanned = len(self.buf)
                return False
            head, n = res
            del self.buf[:n]
            self.scanned = 0
            if 100 <= head.status < 200:
                continue  # interim answer (e.g. 100 Continue): the final one follows
            self.head = head
            return True

    def _after_head(self) -> bool:
        """Judge at once when the body cannot matter; False when the check ended."""
        head = self.head
        policy = self.target.state.policy
        if head.status not in policy.expected_statuses or not policy.body_contains:
            self._judge()
            return False
        self.decoder = codec.make_decoder(head.framing, head.content_length, 502)
        if self.decoder is None:
            self._judge()
            return False
        return True

    def _feed(self, data: bytes) -> None:
        if not data:
            return
        payload, rest = self.decoder.feed(data)
        self.body += payload
        if rest is not None or len(self.body) >= MAX_CHECK_BODY:
            self._judge()

    def ended(self, exc) -> None:
        """The server closed the connection (or it broke)."""
        if self.done:
            return
        if self.head is not None and self.decoder is not None and self.decoder.eof():
            self._judge()  # a body delimited by the close
            return
        if exc is not None:
            self.finish("error", f"connection lost: {type(exc).__name__}: {exc}")
        else:
            self.finish("error", "closed before a complete response")

    def _judge(self) -> None:
        status = self.head.status
        body = bytes(self.body[:MAX_CHECK_BODY])
        if self.target.state.judge(status, body):
            self.finish("ok", f"status {status}")
        elif status not in self.target.state.policy.expected_statuses:
            self.finish("failed", f"status {status}")
        else:
            self.finish("failed", f"status {status}, body without the expected text")

    # -- end ---------------------------------------------------------------
    def abort(self) -> bool:
        """End without a result; False if it had already ended."""
        if self.done:
            return False
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
        if self.transport is not None:
            self.transport.abort()
        return True

    def finish(self, result: str, detail: str) -> None:
        if self.abort():
            self.checker.finished(self.target, result, detail)


class HealthChecker:
    """Runs the active health checks of a ``ProxyServer``'s clusters."""

    def __init__(self, server, rng=random.random):
        self.loop = server.loop
        self.metrics = server.metrics
        self.targets: list[_Target] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running = False
        self.on_result = None  # fn(cluster, server, healthy, failing) after each check
        now = self.loop.time()
        for cluster in server.clusters.values():
            if not cluster.cfg.health.enabled:
                continue
            policy = HealthPolicy.from_config(cluster.cfg.health)
            for s in cluster.servers:
                self.targets.append(_Target(cluster, s, HealthState(policy, now, rng)))

    def start(self) -> None:
        """Begin checking: the first check of every server is due at once."""
        if self._running:
            return
        self._running = True
        now = self.loop.time()
        for t in self.targets:
            t.state.next_at = min(t.state.next_at, now)
        self._arm()

    def stop(self) -> None:
        """Cancel the timer and abort the checks in flight (not recorded)."""
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for t in self.targets:
            if t.check is not None:
                t.check.abort()
                t.check = None

    def gauges(self):
        """((upstream, server), 1 healthy / 0 unhealthy) pairs, for ``upstream_health``."""
        return [((t.cluster.name, t.server.name), int(t.server.healthy)) for t in self.targets]

    # ------------------------------------------------------------------
    def _arm(self) -> None:
        """One timer, for the earliest next check of a server with none in flight."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._running:
            return
        when = min((t.state.next_at for t in self.targets if t.check is None), default=None)
        if when is not None:
            self._timer = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if not self._running:
            return
        now = self.loop.time()
        for t in self.targets:
            if t.check is None and t.state.due(now + _SLACK):
                check = _Check(self, t, t.state.begin(now))
                t.check = check
                check.start()
        self._arm()

    def finished(self, target: _Target, result: str, detail: str) -> None:
        """A check ended with ``result``: count it, record it, report a transition."""
        target.check = None
        if not self._running:
            return
        cluster, server = target.cluster, target.server
        self.metrics.health_check(cluster.name, server.name, result)
        server.check_failing = result != "ok"
        change = target.state.record(self.loop.time(), result == "ok")
        if change is not None:
            old, new = change
            server.healthy = new
            if new:
                cluster.mark_recovering(server)  # warm it before it takes full traffic
            log.event("health_transition", level="info" if new else "warning",
                      upstream=cluster.name, server=server.name,
                      **{"from": "healthy" if old else "unhealthy", "to": "healthy" if new else "unhealthy"},
                      result=result, detail=detail)
        if self.on_result is not None:  # the supervisor passes every result on to its workers
            self.on_result(cluster.name, server.name, server.healthy, server.check_failing)
        self._arm()
