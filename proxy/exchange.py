"""One proxied request, from a parsed head to a finished response.

Theory of operation
-------------------
The downstream protocol parses a request head, routes it and creates an
``Exchange``. The exchange owns everything on the upstream side for that
request and runs it as named phases driven by callbacks (no Task):

``attempt``   pick a server (balancer, skipping servers this request already
              tried), take an idle pooled connection or open a new one.
``send``      write the rewritten head; ask the downstream to stream the
              body (``body_data`` / ``body_done``), re-framed for upstream.
``wait head`` parse the response head (1xx are relayed to HTTP/1.1 clients;
              101 turns the exchange into a tunnel when the route allows).
``relay``     decode the response body by its framing and re-encode it for
              the client (Content-Length passes through; chunked or
              read-until-close becomes chunked for HTTP/1.1 clients and
              read-until-close for HTTP/1.0 ones).
``finish``    give the upstream connection back (reused only when both
              messages ended cleanly), log, count, tell the downstream.

Failures are ``errors.ProxyError`` values. Before any response byte went to
the client the exchange may retry (idempotent method, tries left, deadline
not passed, and no request body byte sent) or answer with the error's status
and a JSON body; after the response started, the only honest signal left is
closing the client connection.

Timers: one handle per exchange, re-armed at phase changes. While waiting for
the response head it enforces ``response_timeout`` (from the moment the
request was fully sent) and the overall ``request_timeout``; while relaying
it enforces ``body_timeout`` as an idle timeout between upstream reads; while
the request body is stalled because the upstream stopped reading, it
enforces ``body_timeout`` too. Flow control is symmetric: a side whose
transport buffer is over its high-water mark pauses reading on the other.
"""

from __future__ import annotations

import math

try:
    import cython
except ImportError:  # Cython absent: this module runs as plain Python
    class cython:  # noqa: N801
        compiled = False

from . import clock
from . import errors
from .accesslog import request_record
from .answers import error_body, error_response
from .balancer import ServerState
from .breaker import Outcome
from .heads import ResponseHead
from .upstream import OVERFLOW, QUEUED
from .codec import (FRAMING_CHUNKED, FRAMING_LENGTH, FRAMING_NONE, LAST_CHUNK, ParseError, build_request_head,
                    build_response_head, encode_chunk, make_decoder, parse_response_head)

# response phases
WAIT_HEAD = 0
BODY = 1
DONE = 2
TUNNEL = 3

_INF = math.inf
# Outcome.SUCCESS is an enum class attribute lookup (~75 ns); a module name is a cached read
_SUCCESS = Outcome.SUCCESS
# the codec's framing kinds, as C constants compiled (exchange.pxd)
_F_NONE, _F_LENGTH, _F_CHUNKED = FRAMING_NONE, FRAMING_LENGTH, FRAMING_CHUNKED

# Content-Length values as bytes, remembered (formatting an int costs ~400 instructions; the
# lengths a proxy sees repeat): at most _DECIMALS_MAX of them
_DECIMALS = {}
_DECIMALS_MAX = 4096


def _decimal(n):  # n: the length, an int (a C long long compiled)
    b = _DECIMALS.get(n)
    if b is None:
        b = b"%d" % n
        if len(_DECIMALS) < _DECIMALS_MAX:
            _DECIMALS[n] = b
    return b


class Exchange:
    if not cython.compiled:
        # Per-exchange state lives in class-level defaults: an attribute reaches
        # the instance only when it changes, so creating an exchange (once per
        # request) stores a handful of fields instead of forty. Compiled
        # (exchange.pxd), the fields are typed slots set in __init__.
        rid = b""
        trace = b""
        up_head = b""
        chunk_up = False
        tried = ()  # servers tried so far (a tuple, grown on retry)
        attempts = 0
        server = None
        conn = None
        reused = False
        req_done = False
        req_done_at = 0.0
        body_started = False
        phase = WAIT_HEAD
        rbuf = None
        rscan = 0
        resp = None
        dec = None
        chunk_out = False
        keep = False
        status = 0
        outcome = ""
        bytes_in = 0
        bytes_out = 0
        connect_time = None
        ttfb = None
        last_up = 0.0
        finished = False
        up_eof = False
        upgrade = False
        fresh_retry = False
        stall_since = 0.0
        last_error = None
        stale_retried = False
        held_up = None  # upstream head waiting to leave with the first body bytes
        held_down = None  # response head waiting to leave with the first body bytes
        deadline = float("inf")
        queued = False  # waiting in the cluster's pending queue for a connection slot
        queued_until = 0.0
        inflight_cluster = None  # the cluster whose max_requests slot this request holds
        trial = False  # this attempt holds a half-open trial slot of its server's breaker
        judged = True  # this attempt's outcome went to the breaker (or there is none)
        attempt_at = 0.0

    def __init__(self, down: Downstream, head: RequestHead, route: Route, cluster: Cluster, now: float):
        self.down = down
        self.head = head
        self.route = route
        self.cluster = cluster
        self.started = now
        if cython.compiled:  # the class-level defaults that are not a C zero
            self.rid = self.trace = self.up_head = b""
            self.tried = ()
            self.outcome = ""
            self.judged = True
            self.deadline = _INF
        rt = cluster.request_timeout
        if rt > 0:
            self.deadline = now + rt

    # ------------------------------------------------------------------
    # start
    def start(self, rid: bytes, trace: bytes, add_traceparent: bytes) -> None:
        head = self.head
        route = self.route
        self.rid = rid
        self.trace = trace
        target = route.rewrite_target(head.target)
        host = route.host_rewrite or head.host or self.cluster.default_host
        down = self.down
        extra = down.headers.request_extra(head, down.client_ip, rid, add_traceparent)
        if down.tls is not None and down.tls.identity:
            extra += down.tls.identity  # the verified client certificate, for the upstream
        if head.upgrade and route.websocket and b"websocket" in head.upgrade.lower():
            self.upgrade = True
            extra.append((b"Connection", b"upgrade"))
            extra.append((b"Upgrade", head.upgrade))
        framing: cython.int = head.framing
        self.chunk_up = framing == _F_CHUNKED
        if framing == _F_LENGTH:
            extra.append((b"Content-Length", _decimal(head.content_length)))
        elif self.chunk_up:
            extra.append((b"Transfer-Encoding", b"chunked"))
        elif head.content_length == 0:
            extra.append((b"Content-Length", b"0"))
        self.up_head = build_request_head(head, target, host, down.headers.request_drop, extra)
        cluster = self.cluster
        if not cluster.inflight.try_acquire():
            self._overflow("max_requests")
            return
        self.inflight_cluster = cluster
        self._attempt()

    # ------------------------------------------------------------------
    # attempt
    def _attempt(self) -> None:
        now = clock.monotonic()
        if now >= self.deadline:
            self._fail(errors.RequestDeadline("request deadline passed before a response head"))
            return
        cluster = self.cluster
        server: ServerState = None
        if self.fresh_retry:
            server = self.server  # same server, new connection
            if not server.breaker.allow(now):
                self.fresh_retry = False
                server = None
        while server is None:
            server = cluster.pick(self.tried)
            if server is None:
                left = [s for s in cluster.servers if s not in self.tried]
                if left:
                    # the servers left are not available: health checks say
                    # down, or their breakers are open
                    self._fallback("breaker_open" if any(s.healthy for s in left) else "unhealthy")
                else:
                    self._fail(self.last_error or errors.NoServer("every server was tried"))
                return
            self.tried += (server,)
            if not server.breaker.allow(now):
                server = None  # its last trial slot just went; try another
        # the breaker admitted this attempt; it is judged exactly once
        self.trial = server.breaker.half_open()
        self.judged = False
        self.attempt_at = now
        self.attempts += 1
        self.server = server
        server.active += 1
        server.served += 1
        if server.active > server.peak_active:
            server.peak_active = server.active
        if self.fresh_retry:
            self.fresh_retry = False
            cluster.connect(server, self._on_connect, self._on_connect_failed)
            return
        res = cluster.acquire(server, self)
        if type(res) is not int:
            self.connect_time = 0.0
            self._send(res, True)
        elif res == QUEUED:
            # the server is at max_connections: wait for a free one, bounded
            self.queued = True
            self.queued_until = now + cluster.pending_timeout
            self._arm(self.queued_until)
        elif res == OVERFLOW:
            self._overflow("max_pending")
        # CONNECTING: _on_connect or _on_connect_failed follows

    def _on_connect(self, conn, elapsed: float, reused: bool = False) -> None:
        if self.finished:
            self._unjudge()
            self.server.active -= 1
            self.cluster.release(conn, True)
            return
        self.connect_time = elapsed
        self._send(conn, reused)

    def _on_connect_failed(self, err: errors.ProxyError, elapsed: float) -> None:
        self._judge(Outcome.CONNECT_TIMEOUT if isinstance(err, errors.ConnectTimeout) else Outcome.CONNECT_FAILED)
        self.server.active -= 1
        if self.finished:
            return
        self.cluster.metrics.client_request(self.cluster.name, "connect_error" if err.status == 502 else "timeout")
        self._retry_or_fail(err)

    def _retry_or_fail(self, err: errors.ProxyError, retryable: bool = False) -> None:
        cluster = self.cluster
        if (
            (err.retryable or retryable)
            and not self.body_started
            and self.attempts < cluster.cfg.tries
            and len(self.tried) < len(cluster.servers)
            and self.head.method in cluster.retry_methods
            and clock.monotonic() < self.deadline
        ):
            # the retry budget keeps retries from multiplying an outage
            if not cluster.retry_budget.try_acquire():
                cluster.metrics.retry(cluster.name, "budget_exhausted")
                self._fail(err)
                return
            self.last_error = err
            cluster.metrics.retry(cluster.name, "retried")
            self._attempt()
        else:
            self._fail(err)

    def _overflow(self, kind: str) -> None:
        """A concurrency cap said no: fallback, counted as overflow, not failure."""
        if self.server is not None and not self.judged:
            self._unjudge()
            self.server.active -= 1
        self.cluster.metrics.overflow(self.cluster.name, kind)
        self._fallback("overflow")

    # ------------------------------------------------------------------
    # send
    def _send(self, conn, reused: bool) -> None:
        self.conn = conn
        self.reused = reused
        conn.owner = self
        conn.requests += 1
        self.phase = WAIT_HEAD
        self.rbuf = b""  # the response head's bytes (see upstream_data)
        self.rscan = 0
        if self.down.write_paused:
            conn.pause_reading()
        if self.deadline != _INF:
            self._arm(self.deadline)
        framing: cython.int = self.head.framing
        if framing != _F_NONE:
            # hold the head so it leaves with the first body bytes already
            # buffered downstream: one write (one system call) instead of two
            self.held_up = self.up_head
            if conn.paused:
                self.upstream_pause_writing()
            self.down.start_body(self)
            held = self.held_up
            if held is not None and self.conn is conn:
                self.held_up = None
                conn.transport.write(held)
        else:
            conn.transport.write(self.up_head)
            self._request_sent()

    def body_data(self, payload: bytes) -> None:
        """Request body payload from the downstream decoder."""
        self.body_started = True
        self.bytes_in += len(payload)
        conn = self.conn
        if conn is None or conn.closed:
            return  # upstream gone (early response or failure): discard
        out = encode_chunk(payload) if self.chunk_up else payload
        held = self.held_up
        if held is not None:
            self.held_up = None
            out = held + out
        conn.transport.write(out)

    def body_done(self) -> None:
        """The request body ended (downstream decoder reached its end)."""
        conn = self.conn
        if conn is not None and not conn.closed:
            out = LAST_CHUNK if self.chunk_up else b""
            held = self.held_up
            if held is not None:
                self.held_up = None
                out = held + out
            if out:
                conn.transport.write(out)
        self._request_sent()

    def _request_sent(self) -> None:
        self.req_done = True
        self.req_done_at = clock.monotonic()
        if self.phase == WAIT_HEAD and self.conn is not None:
            self._arm_wait_head()

    # ------------------------------------------------------------------
    # upstream events
    def upstream_data(self, data: bytes) -> None:
        phase = self.phase
        if phase == BODY:
            self._relay(data)
        elif phase == WAIT_HEAD:
            if self.rbuf:
                self.rbuf += data  # a bytearray (see _parse_response)
            else:
                # nothing held: parse the bytes as they came (most heads arrive whole), with
                # no buffer to copy them into and the rest out of
                self.rbuf = data
            self._parse_response()
        elif phase == TUNNEL:
            self.last_up = clock.monotonic()
            self.bytes_out += len(data)
            self.down.write(data)
        else:
            # bytes after the end of the response: never reuse this connection
            conn = self.conn
            if conn is not None:
                conn.close()

    def _parse_response(self) -> None:
        max_head = self.down.max_response_head
        while True:
            rbuf = self.rbuf
            try:
                res = parse_response_head(rbuf, self.head.method, max_head, self.rscan,
                                                self.upgrade)
            except ParseError as exc:
                self._upstream_failed(errors.InvalidResponse(exc.detail), stale=False)
                return
            if res is None:
                if type(rbuf) is not bytearray:
                    self.rbuf = bytearray(rbuf)  # more to come: accumulate
                self.rscan = len(rbuf)
                return
            head: ResponseHead
            head, n = res
            self.rscan = 0
            status = head.status
            if status >= 200:
                break
            if type(rbuf) is not bytearray:
                rbuf = self.rbuf = bytearray(rbuf)
            del rbuf[:n]
            if status == 101:
                if self.upgrade:
                    self._start_tunnel(head)
                    return
                self._upstream_failed(errors.InvalidResponse("101 to a request that did not upgrade"), stale=False)
                return
            if self.head.version == b"1.1":
                self.down.write(build_response_head(head, self.down.headers.response_drop, ()))
        rest = rbuf[n:] if type(rbuf) is bytes else bytes(rbuf[n:])
        self.rbuf = None
        self._start_response(head, rest)
        if self.phase == BODY:
            if rest:
                self._relay(rest)
            held = self.held_down
            if held is not None:
                self.held_down = None
                self.down.write(held)

    def _start_response(self, head, rest: bytes = b"") -> None:
        """``rest``: bytes that came after the head (for a response without a
        body, any byte there means the connection cannot be reused)."""
        status = head.status
        self._judge(self.server.breaker.outcome_for_status(status))
        now = clock.monotonic()
        self.ttfb = now - self.started
        self.resp = head
        self.status = status
        req = self.head
        client11 = req.version == b"1.1"
        down = self.down
        keep = down.can_keep_alive(req) and (self.req_done or down.can_drain())
        headers = down.headers
        extra = headers.response_extra(self.rid)
        framing: cython.int = head.framing
        length: cython.longlong = head.content_length
        if framing == _F_LENGTH:
            extra.append((b"Content-Length", _decimal(length)))
        elif framing == _F_NONE:
            if req.method == b"HEAD":
                if length >= 0:
                    extra.append((b"Content-Length", _decimal(length)))
            elif status != 204 and status != 304:
                extra.append((b"Content-Length", b"0"))
        elif client11:
            extra.append((b"Transfer-Encoding", b"chunked"))
            self.chunk_out = True
        else:
            keep = False
        if not keep:
            extra.append((b"Connection", b"close"))
        elif not client11:
            extra.append((b"Connection", b"keep-alive"))
        self.keep = keep
        out = build_response_head(head, headers.response_drop, extra)
        if framing == _F_NONE:
            down.write(out)
            self._response_complete(rest)
            return
        if framing == _F_LENGTH and len(rest) >= length:
            # the whole body came with the head (most small responses): head and body in one write,
            # no decoder, no body timer
            self.bytes_out += length
            down.write(out + rest[:length])
            self._response_complete(rest[length:], True)
            return
        # the head is held and leaves with the first body bytes (one write)
        self.held_down = out
        self.phase = BODY
        self.dec = make_decoder(framing, length, 502)
        self.last_up = now
        self._arm(now + self.cluster.body_timeout)

    def _relay(self, data: bytes) -> None:
        self.last_up = clock.monotonic()
        try:
            payload, rest = self.dec.feed(data)
        except ParseError:
            self._abort_midstream("invalid_upstream_response")
            return
        out = self.held_down
        if out is not None:
            self.held_down = None
        if payload:
            self.bytes_out += len(payload)
            if self.chunk_out:
                payload = encode_chunk(payload)
            out = payload if out is None else out + payload
        if rest is not None:
            if self.chunk_out:
                out = LAST_CHUNK if out is None else out + LAST_CHUNK
            if out is not None:
                self.down.write(out)
            self._response_complete(rest, True)
        elif out is not None:
            self.down.write(out)

    def _response_complete(self, rest: bytes, ended: bool = False) -> None:
        """The response ended; ``ended`` when its last bytes were written."""
        if self.chunk_out and not ended:
            self.down.write(LAST_CHUNK)
        self.phase = DONE
        reusable = (
            rest == b""
            and self.req_done
            and not self.up_eof
            and self.resp.keep_alive
        )
        self._release(reusable)
        self._finish("ok")
        self.down.response_done(self.keep)

    def upstream_eof(self) -> None:
        self.up_eof = True
        if self.phase == BODY and self.dec.eof():
            self._response_complete(b"")
        elif self.phase == TUNNEL:
            self._end_tunnel("upstream_closed")
        # otherwise connection_lost follows at once and decides

    def upstream_lost(self, conn, exc) -> None:
        if conn is not self.conn:
            return
        phase = self.phase
        if phase == WAIT_HEAD:
            retry = self.reused and not self.rbuf
            self._upstream_failed(errors.UpstreamReset(str(exc) if exc else "closed before a response"), stale=retry)
        elif phase == BODY:
            # a body read until close ends with a clean close, not a reset
            # (RFC 9112 section 8: an error means it is incomplete)
            if self.dec.eof() and exc is None:
                self._response_complete(b"")
            else:
                self._abort_midstream("upstream_reset")
        elif phase == TUNNEL:
            self._end_tunnel("upstream_closed")

    def upstream_pause_writing(self) -> None:
        self.stall_since = clock.monotonic()
        self.down.pause_for_upstream(True)
        if self.phase == WAIT_HEAD and not self.req_done:
            self._arm_wait_head()

    def upstream_resume_writing(self) -> None:
        self.stall_since = 0.0
        self.down.pause_for_upstream(False)

    def downstream_pause_writing(self, paused: bool) -> None:
        conn = self.conn
        if conn is not None:
            if paused:
                conn.pause_reading()
            else:
                conn.resume_reading()

    # ------------------------------------------------------------------
    # tunnel (Upgrade)
    def _start_tunnel(self, head) -> None:
        self._judge(_SUCCESS)
        self.ttfb = clock.monotonic() - self.started
        self.resp = head
        self.status = 101
        self.phase = TUNNEL
        extra = self.down.headers.response_extra(self.rid)
        extra.append((b"Connection", b"upgrade"))
        if head.upgrade:
            extra.append((b"Upgrade", head.upgrade))
        self.down.write(build_response_head(head, self.down.headers.response_drop, extra))
        self.cluster.metrics.upgrade(self.route.name)
        rest = bytes(self.rbuf)
        self.rbuf = None
        if rest:
            self.down.write(rest)
        self.last_up = clock.monotonic()
        self._arm(self.last_up + self.cluster.body_timeout)
        self.down.start_tunnel(self)

    def tunnel_data(self, data: bytes) -> None:
        """Bytes from the client after a 101."""
        self.last_up = clock.monotonic()
        self.bytes_in += len(data)
        conn = self.conn
        if conn is not None and not conn.closed:
            conn.transport.write(data)

    def _end_tunnel(self, outcome: str) -> None:
        if self.finished:
            return
        self._release(False)
        self._finish(outcome)
        self.down.close()

    # ------------------------------------------------------------------
    # breaker judgement and fallback
    def _judge(self, outcome: Outcome) -> None:
        """Report this attempt's outcome to its server's breaker (once)."""
        if not self.judged:
            self.judged = True
            now = clock.monotonic()
            if outcome is not _SUCCESS:
                self.server.last_error = outcome.name.lower()
            self.server.breaker.record(now, outcome, now - self.attempt_at, self.trial)

    def _unjudge(self) -> None:
        """The attempt ended without saying anything about the server."""
        if not self.judged:
            self.judged = True
            self.server.breaker.cancel(clock.monotonic(), self.trial)

    def _fallback(self, reason: str) -> None:
        """Every server left is unavailable: the cluster's fallback answers.

        Immediate and cheap: no connect attempt. Either another cluster takes
        the request (config forbids cycles), or a static response: the
        configured one, or by default 503 JSON with Retry-After set to the
        time until the first open breaker probes again.
        """
        cluster = self.cluster
        fb = cluster.cfg.fallback
        cluster.metrics.fallback(cluster.name, reason)
        if fb.upstream:
            self.cluster = self.down.clusters[fb.upstream]
            self.tried = ()
            self._attempt()
            return
        if fb.retry_after == "auto":
            retry_after = max(1, math.ceil(cluster.retry_after()))
        elif fb.retry_after == "off":
            retry_after = 0
        else:
            retry_after = max(1, math.ceil(fb.retry_after))
        if fb.content:
            body = fb.content
            ctype = fb.content_type.encode("latin-1")
        else:
            body = error_body("upstream_unavailable", self.rid)
            ctype = b"application/json"
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in fb.headers]
        self.status = fb.status
        self._finish("fallback")
        self.down.send_static(fb.status, ctype, body, self.rid, retry_after, headers)

    # ------------------------------------------------------------------
    # failures
    def _upstream_failed(self, err: errors.ProxyError, stale: bool) -> None:
        """The upstream failed before a response head reached the client.

        ``stale``: it happened on a reused pooled connection before any
        response byte, the signature of a server closing an idle connection
        as we reused it. An idempotent request without a body byte sent is
        then retried once on a fresh connection to the same server, outside
        the ``tries`` budget (nginx and Envoy do the same). Other retryable
        failures go through the normal budget, to another server.
        """
        if stale:
            self._unjudge()  # the pool's race with an idle close, not the server's fault
        elif isinstance(err, (errors.ResponseTimeout, errors.RequestDeadline)):
            self._judge(Outcome.RESPONSE_TIMEOUT)
        else:
            self._judge(Outcome.RESET)
        self._release(False)
        cluster = self.cluster
        cluster.metrics.client_request(cluster.name, "reset" if err.status == 502 else "timeout")
        if (
            stale
            and not self.stale_retried
            and not self.body_started
            and self.head.method in cluster.retry_methods
            and clock.monotonic() < self.deadline
        ):
            self.stale_retried = True
            self.fresh_retry = True
            cluster.metrics.retry(cluster.name, "retried")
            self._attempt()
        elif err.retryable:
            self._retry_or_fail(err)
        elif type(err) is errors.ResponseTimeout and cluster.cfg.retry_on_timeout:
            # a hung server: the request goes to another one, within tries
            # and the retry budget (which keeps a slow cluster from doubling
            # its load); the hung server is judged above, so its breaker opens
            self._retry_or_fail(err, True)
        else:
            self._fail(err)

    def _fail(self, err: errors.ProxyError) -> None:
        """Answer the client with the error (no response byte was sent yet)."""
        if self.finished:
            return
        self._release(False)
        self.status = err.status
        self._finish(err.code)
        self.down.send_error(err.status, err.code, self.rid)

    def _fail_client(self, status: int, code: str) -> None:
        """The client broke its request (bad body framing, body timeout) before
        any response byte: answer with ``status`` and close, the framing of
        the connection being in doubt."""
        if self.finished:
            return
        self._release(False)
        self.status = status
        self._finish(code)
        self.down.write(error_response(status, code, self.rid, False))
        self.down.response_done(False)

    def _abort_midstream(self, outcome: str) -> None:
        """The response head went out already; closing is the only signal left."""
        if self.finished:
            return
        self._release(False)
        self._finish(outcome)
        self.down.abort()

    def client_gone(self) -> None:
        """The client connection closed before the exchange finished."""
        if self.finished:
            return
        self._release(False)
        if not self.status:
            self.status = 499
        self._finish("client_closed")

    # ------------------------------------------------------------------
    # timers
    def _arm(self, when: float) -> None:
        """Make sure ``_on_timer`` runs no later than ``when``.

        The timer handle belongs to the client connection
        (``Downstream.arm_exchange``) and is shared by its exchanges: one
        already due earlier is kept, since ``_on_timer`` re-evaluates the
        phase's deadlines from state and re-arms, so neither a deadline moved
        later nor the next keep-alive request costs a timer operation.
        """
        self.down.arm_exchange(self, when)
        # Nothing is ever cancelled: a fire with nothing due (``finished``, or no
        # deadline in the current phase) does nothing.

    def _arm_wait_head(self) -> None:
        """Arm the earliest deadline that applies while waiting for a head."""
        cluster = self.cluster
        nxt = self.deadline
        if self.req_done:
            nxt = min(nxt, self.req_done_at + cluster.response_timeout)
        if self.stall_since:
            nxt = min(nxt, self.stall_since + cluster.body_timeout)
        if nxt != _INF:
            self._arm(nxt)

    def _on_timer(self) -> None:
        if self.finished:
            return
        now = clock.monotonic()
        cluster = self.cluster
        phase = self.phase
        metrics = cluster.metrics
        if phase == WAIT_HEAD:
            if self.conn is None:
                if self.queued:
                    if now >= self.queued_until:
                        self.queued = False
                        self._overflow("pending_timeout")
                    else:
                        self._arm(self.queued_until)
                return
            if now >= self.deadline:
                metrics.timeout("upstream", "request")
                self._upstream_failed(errors.RequestDeadline("no response head before the request deadline"), stale=False)
            elif self.req_done and now >= self.req_done_at + cluster.response_timeout:
                metrics.timeout("upstream", "response")
                self._upstream_failed(errors.ResponseTimeout("no response head in time"), stale=False)
            elif self.stall_since and now >= self.stall_since + cluster.body_timeout:
                metrics.timeout("upstream", "send")
                self._upstream_failed(errors.ResponseTimeout("upstream stopped reading the request body"), stale=False)
            else:
                self._arm_wait_head()
        elif phase == BODY or phase == TUNNEL:
            idle_until = self.last_up + cluster.body_timeout
            if now >= idle_until:
                metrics.timeout("upstream", "body")
                if phase == TUNNEL:
                    self._end_tunnel("idle_timeout")
                else:
                    self._abort_midstream("upstream_timeout")
            else:
                self._arm(idle_until)

    # ------------------------------------------------------------------
    # finish
    def _release(self, reusable: bool) -> None:
        conn = self.conn
        if conn is None:
            return
        self.conn = None
        self.server.active -= 1
        if conn.owner is self:
            conn.owner = None
        if conn.paused and self.down is not None:
            self.down.pause_for_upstream(False)
        self.cluster.release(conn, reusable)

    def _finish(self, outcome: str) -> None:
        if self.queued:  # left while waiting for a connection slot
            self.queued = False
            self.server.active -= 1
        self._unjudge()  # an attempt still open (client gone, bad body) judges nothing
        self.finished = True
        self.down.requests_gate.release()
        if self.inflight_cluster is not None:
            self.inflight_cluster.inflight.release()
            self.inflight_cluster = None
        self.outcome = outcome
        now = clock.monotonic()
        duration = now - self.started
        route = self.route.name
        metrics = self.cluster.metrics  # the server's, shared by its clusters
        metrics.request_done(route, self.status, duration)
        if self.resp is not None:
            metrics.client_request(self.cluster.name, self.resp.status)
        log = self.down.accesslog
        if log is not None:
            server: ServerState = self.server
            log.log(request_record(self.down, self.head, self.status, outcome, self.rid, self.trace, duration,
                                   route=route, upstream=self.cluster.name,
                                   server=server.name if server is not None else None, bytes_in=self.bytes_in,
                                   bytes_out=self.bytes_out, connect_time=self.connect_time, ttfb=self.ttfb))
