"""Downstream side: one protocol per client connection.

Theory of operation
-------------------
A client connection is a small state machine over one input buffer:

``HEAD``       collecting a request head (``header_timeout`` from the first
               byte, or from accept for the first request; ``keepalive_timeout``
               while idle between requests);
``BODY_WAIT``  the head is routed, the body waits until the exchange has an
               upstream connection (reading is paused so nothing piles up);
``BODY``       request body bytes are decoded and handed to the exchange
               (``body_timeout`` idle, and an average of at least
               ``body_min_rate`` bytes/s once ``body_min_rate_after`` has
               passed; neither counts time the proxy itself paused reading
               for flow control);
``RESP``       the request is complete, its response is being relayed; bytes
               of pipelined requests wait in the buffer (reading pauses above
               ``max_pipelined_bytes``), so responses go out strictly in
               request order;
``DRAIN``      the response finished before the request body did: the rest
               of the body is read and discarded, up to ``drain_body_limit``,
               then the connection continues or closes — it is never reused
               with unread bytes in it;
``TUNNEL``     after a 101, bytes are relayed as they are;
``CLOSED``.

Reading is paused for up to three reasons at once (upstream cannot take
more, waiting for the upstream, pipeline buffer full) and resumes only when
none is left. Writing backpressure is passed to the exchange, which pauses
the upstream; a client that does not read for ``send_timeout`` is dropped.
"""

from __future__ import annotations

try:
    import cython
except ImportError:  # Cython absent: this module runs as plain Python
    class cython:  # noqa: N801
        compiled = False

import orjson

from . import clock
from .accesslog import request_record
from .answers import error_body, error_response, static_response
from .codec import LengthDecoder, ParseError, make_decoder, parse_request_head
from .exchange import Exchange
from .heads import RequestHead
from .routing import Route, Router, adopt_target_form

S_HEAD = 0
S_BODY_WAIT = 1
S_BODY = 2
S_RESP = 3
S_DRAIN = 4
S_TUNNEL = 5
S_CLOSED = 6
S_LINGER = 7  # answered and half-closed: reading and discarding until the client closes

P_UPSTREAM = 1
P_WAIT = 2
P_PIPELINE = 4

K_IDLE = 1
FIRST_REQUEST_GRACE = 1.0  # seconds a fresh connection may take to send its request during a drain
K_HEADER = 2
K_BODY = 3
K_LINGER = 4

# compiled, the names above are C constants, not module attributes: the state names for
# Python readers (diagnostics)
STATE_NAMES = {S_HEAD: "reading_head", S_BODY_WAIT: "waiting_upstream", S_BODY: "reading_body",
               S_RESP: "writing_response", S_DRAIN: "draining_body", S_TUNNEL: "tunnel", S_CLOSED: "closed",
               S_LINGER: "lingering"}


class Downstream:
    """The asyncio protocol of one client connection (asyncio.Protocol's methods, without the base:
    compiled, this is an extension type, which cannot derive from a Python class)."""

    if not cython.compiled:  # compiled (downstream.pxd), typed slots that start as None
        tls = None  # TLSInfo on a TLS listener (set before connection_made)
        peer_addr = None  # the client (ip, port): accept()'s, or a PROXY protocol header's (set before connection_made)

    def __init__(self, server, listener: str, admitted=None, ip: str = ""):
        self.server = server
        cfg = self.cfg = server.config.downstream
        # the limits read on every request, as typed slots (the config is fixed for the connection's life)
        self.max_head = cfg.max_header_size
        self.max_line = cfg.max_request_line
        self.max_headers = cfg.max_headers
        self.max_requests = cfg.keepalive_requests
        self.header_timeout = cfg.header_timeout
        self.keepalive_timeout = cfg.keepalive_timeout
        # what the server shares with every request, read per request (typed slots compiled): the server
        # keeps them for its whole life (a configuration reload starts new workers, each with a new server)
        self.router = server.router
        self.clusters = server.clusters
        self.requests_gate = server.requests_gate
        self.metrics = server.metrics
        self.accesslog = server.accesslog
        self.max_response_head = server.max_response_head
        self.first_heads = server.first_heads
        self.listener = listener
        self.headers = admitted.headers if admitted is not None else server.headers
        self.admitted = admitted  # the Listener whose admission slots this connection holds
        self.admitted_ip = ip
        self.transport = None
        self.client_ip = b""
        self.client_addr = ""
        self.buf = bytearray()
        self.scan = 0
        self.state = S_HEAD
        self.paused = 0
        self.exchange = None
        self.req_head = None
        self.decoder = None
        self.requests = 0
        self.drained = 0
        self.body_limit = 0  # the route's max_body_size for the current request (0 = none)
        self.body_seen = 0
        self.rate_t0 = 0.0  # body rate measurement: start time and wire bytes since
        self.rate_bytes = 0
        self.client_eof = False
        self.body_done = False  # the current request's body was read to its end
        self.timed_out = False  # the client was too slow: no lingering for it
        self.shutting_down = False  # the server drains: close once idle (close_if_idle, on every connection)
        self.linger_until = 0.0
        self.write_paused = False
        self.last_read = 0.0
        self._processing = False
        self._timer = None
        self._timer_due = 0.0
        self._deadline = 0.0
        self._tkind = 0
        self._send_timer = None
        self._xtimer = None  # the exchanges' timer (arm_exchange)
        self._xtimer_due = 0.0
        self._xowner = None

    # ------------------------------------------------------------------
    # asyncio callbacks
    def connection_made(self, transport):
        self.transport = transport
        self.created = clock.monotonic()
        peer = self.peer_addr or transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.client_ip = str(peer[0]).encode()
            self.client_addr = f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
        self.server.connection_opened(self)
        # the first request head's deadline: the server's queue of new connections stands for this
        # connection's timer handle (one event-loop timer for all of them, see deadlines.py) until
        # a deadline earlier than header_timeout's needs a timer of its own
        heads: DeadlineQueue = self.first_heads
        self._tkind = K_HEADER
        self._deadline = self._timer_due = self.created + self.header_timeout
        self._timer = heads
        heads.add(self, self.created)

    def data_received(self, data):
        state = self.state
        if state == S_BODY:
            self.last_read = clock.monotonic()
            self.rate_bytes += len(data)
            self._feed_body(data)
        elif state == S_HEAD:
            if self._tkind == K_IDLE:
                self._arm(K_HEADER, self.header_timeout)
            if self._processing or self.buf:
                self.buf += data
                if not self._processing:
                    self._process()
            elif not self._head_in(data):
                self.buf += data
                self._process()
        elif state == S_RESP or state == S_BODY_WAIT:
            self.buf += data
            if state == S_RESP and len(self.buf) > self.cfg.max_pipelined_bytes:
                self._pause(P_PIPELINE)
        elif state == S_DRAIN:
            self.last_read = clock.monotonic()
            self._feed_body(data)
        elif state == S_TUNNEL:
            self.exchange.tunnel_data(data)
        elif state == S_LINGER:  # discarded; the client is still sending, wait a little more
            self._arm(K_LINGER, max(0.0, min(self.cfg.lingering_timeout, self.linger_until - clock.monotonic())))

    def eof_received(self):
        self.client_eof = True
        if self.state == S_RESP or self.state == S_BODY_WAIT:
            # the client half-closed after sending its request: answer it,
            # then close (what nc-style clients expect); a body still waiting
            # in the buffer is checked for completeness in start_body
            return True
        # idle, mid-head or mid-body (a truncated request), or a tunnel:
        # close; connection_lost aborts any exchange
        return False

    def connection_lost(self, exc):
        self.state = S_CLOSED
        self._drop_timer()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        ex = self.exchange
        if ex is not None:
            self.exchange = None
            ex.client_gone()
        xo = self._xowner
        if self._xtimer is not None and (xo is None or xo.finished):
            self._xtimer.cancel()  # else an exchange still running (a tunnel's end) keeps its timer
            self._xtimer = None
        if self._xtimer is None:
            # the last exchange refers back to this connection: without the cycle, refcounting frees
            # the connection's objects now instead of the cyclic garbage collector later
            self._xowner = None
        self.server.connection_closed(self)

    def pause_writing(self):
        self.write_paused = True
        self._send_timer = self.server.loop.call_later(self.cfg.send_timeout, self._on_send_timeout)
        ex = self.exchange
        if ex is not None:
            ex.downstream_pause_writing(True)

    def resume_writing(self):
        self.write_paused = False
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        ex = self.exchange
        if ex is not None:
            ex.downstream_pause_writing(False)

    # ------------------------------------------------------------------
    # requests
    def _process(self) -> None:
        self._processing = True
        try:
            max_head = self.max_head
            max_line = self.max_line
            while self.state == S_HEAD and self.buf:
                buf: bytearray = self.buf
                # the request line limit (414), before parsing: a line without
                # its end within the limit is refused as soon as it is too long
                # (a buffer no longer than the limit cannot hold a line over it: no search)
                if (len(buf) > max_line + 1 and buf.find(b"\n", 0, max_line + 2) < 0
                        and buf.lstrip(b"\r\n")[: max_line + 2].find(b"\n") < 0):
                    self._reject(ParseError(414, "uri_too_long", "request line exceeds the limit"))
                    return
                try:
                    res = parse_request_head(buf, max_head, self.scan)
                except ParseError as exc:
                    self._reject(exc)
                    return
                if res is None:
                    self.scan = len(buf)
                    if self.client_eof:
                        self.close()  # a partial head that can never complete
                    return
                head: RequestHead
                n: cython.Py_ssize_t
                head, n = res
                if len(head.method) + len(head.target) + 10 > max_line:
                    self._reject(ParseError(414, "uri_too_long", "request line exceeds the limit"))
                    return
                # n bytes hold at most n line ends: a head that short needs no count
                if n - 2 > self.max_headers and buf.count(b"\n", 0, n) - 2 > self.max_headers:
                    self._reject(ParseError(431, "too_many_headers", "more header fields than allowed"))
                    return
                self.scan = 0
                del self.buf[:n]
                self._on_request(head)
        finally:
            self._processing = False

    def _head_in(self, data: bytes) -> bool:
        """With nothing buffered: handle a whole request head found at the start of ``data``
        where it lies, copying only what follows it (a pipelined request, a body) into the
        buffer. False, having done nothing, for anything else (a partial head, a limit, an
        error), which ``_process`` then meets in the buffer as usual."""
        n: cython.Py_ssize_t = len(data)
        if n > self.max_line + 1:
            return False  # the request line limit applies first (_process)
        try:
            res = parse_request_head(data, self.max_head, 0)
        except ParseError:
            return False
        if res is None:
            self.scan = n  # searched already: _process resumes the search where this one ended
            return False
        head: RequestHead
        head, n = res
        if len(head.method) + len(head.target) + 10 > self.max_line or (
                n - 2 > self.max_headers and data.count(b"\n", 0, n) - 2 > self.max_headers):
            return False  # _process refuses it (414, 431)
        if n < len(data):
            self.buf += data[n:]
        self._processing = True
        try:
            self._on_request(head)
            if self.state == S_HEAD and self.buf:
                self._process()  # pipelined requests (it loops)
        finally:
            self._processing = False
        return True

    def _on_request(self, head) -> None:
        self.requests += 1
        self._cancel_timer()
        now = clock.monotonic()
        self.req_head = head
        self.body_done = False
        framing = head.framing
        self.decoder = make_decoder(framing, head.content_length) if framing else None
        rid, trace, add_tp = self.headers.ids(head)
        rtarget = head.target
        if rtarget[0] != 47:  # not "/...": absolute-, asterisk- or authority-form
            status, code = adopt_target_form(head)
            if status:
                self._reject(ParseError(status, code, "request target form not served"))
                return
            rtarget = head.target if head.target != b"*" else b"/"
        if self.tls is not None and self._tls_refused(head, rid, trace, now):
            return
        router: Router = self.router
        route: Route = router.match(head.host, rtarget)
        if route is None:
            self.state = S_RESP
            self._local_answer(head, 404, "no_route", rid, trace, now)
            return
        limit = route.max_body_size
        if limit and head.content_length > limit:
            # known too large: answer before reading (or, with Expect:
            # 100-continue, before the client sends) the body, then close
            self.state = S_RESP
            self.decoder = None
            self.metrics.request_done(route.name, 413, clock.monotonic() - now)
            self._log_local(head, 413, "body_too_large", rid, trace, now)
            self.write(error_response(413, "body_too_large", rid, False))
            self.response_done(False)
            return
        self.body_limit = limit
        self.body_seen = 0
        if not self.requests_gate.try_acquire():
            # global in-flight cap ([server] max_requests): shed load cheaply
            self.state = S_RESP
            self.metrics.admission(self.listener, "max_requests")
            self._local_answer(head, 503, "overloaded", rid, trace, now)
            return
        ex = Exchange(self, head, route, self.clusters[route.upstream], now)
        self.exchange = ex
        if self.decoder is not None:
            self.state = S_BODY_WAIT
            self._pause(P_WAIT)
        else:
            self.state = S_RESP
        ex.start(rid, trace, add_tp)

    def _tls_refused(self, head, rid: bytes, trace: bytes, now: float) -> bool:
        """TLS connection policy per request: a refused client certificate
        gets 403 with its reason, a Host other than the SNI 421 (strict_host)."""
        tls = self.tls
        if tls.refusal:
            self.state = S_RESP
            self.decoder = None  # the body is not read: the connection closes after the answer
            self._log_local(head, 403, "client_certificate_refused", rid, trace, now)
            self.metrics.request_done("none", 403, clock.monotonic() - now)
            body = orjson.dumps({"error": "client_certificate_refused", "reason": tls.refusal,
                                 "request_id": rid.decode("latin-1")})
            self.write(static_response(403, b"application/json", body, rid, False))
            self.response_done(False)
            return True
        if tls.sni and self.admitted is not None and self.admitted.cfg.strict_host:
            host = head.host.decode("latin-1").lower()
            if host.startswith("["):
                host = host[: host.find("]") + 1]
            else:
                host = host.rsplit(":", 1)[0]
            if host.rstrip(".") != tls.sni:
                self.state = S_RESP
                self._local_answer(head, 421, "misdirected_request", rid, trace, now)
                return True
        return False

    def start_body(self, ex) -> None:
        """The exchange is ready for the request body."""
        if self.state != S_BODY_WAIT or ex is not self.exchange:
            return
        self.state = S_BODY
        now = self.last_read = self.rate_t0 = clock.monotonic()
        self.rate_bytes = len(self.buf)
        self._arm(K_BODY, self._body_check_in(now))
        self._resume(P_WAIT)
        if self.buf:
            data = bytes(self.buf)
            self.buf.clear()
            self._feed_body(data)
        if self.client_eof and self.decoder is not None and self.state == S_BODY:
            ex.client_gone()  # the client closed before its body was complete
            self.abort()

    def _feed_body(self, data: bytes) -> None:
        try:
            payload, rest = self.decoder.feed(data)
        except ParseError as exc:
            self._body_error(exc)
            return
        draining = self.state == S_DRAIN
        if payload and self.body_limit and not draining:
            self.body_seen += len(payload)
            if self.body_seen > self.body_limit:  # a chunked body grew past the route's limit
                self._body_error(ParseError(413, "body_too_large", "request body exceeds the limit"))
                return
        if payload:
            if draining:
                self.drained += len(payload)
                if self.drained > self.cfg.drain_body_limit:
                    self.close()
                    return
            else:
                self.exchange.body_data(payload)
        if rest is not None:
            self.decoder = None
            self.body_done = True
            self._cancel_timer()
            if rest:
                self.buf += rest
            if draining:
                self._next_request()
            else:
                self.state = S_RESP
                if len(self.buf) > self.cfg.max_pipelined_bytes:
                    self._pause(P_PIPELINE)
                self.exchange.body_done()

    def _body_error(self, exc: ParseError) -> None:
        """Malformed request body framing: the connection cannot continue."""
        self.decoder = None
        ex = self.exchange
        if ex is not None and ex.resp is None and not ex.finished:
            ex._fail_client(exc.status, exc.code)
        elif ex is not None:
            ex.client_gone()
            self.abort()
        else:
            self.abort()

    def _reject(self, exc: ParseError) -> None:
        """A request head we refuse: answer and close (framing is in doubt)."""
        from .headers import new_request_id

        rid = new_request_id()
        self.req_head = None
        self.decoder = None
        self.state = S_RESP
        self.metrics.request_done("none", exc.status, 0.0)
        self._log_local(None, exc.status, exc.code, rid, b"", clock.monotonic())
        self.write(error_response(exc.status, exc.code, rid, False))
        self.response_done(False)

    def _local_answer(self, head, status, code: str, rid: bytes, trace: bytes, started: float) -> None:
        """An answer made by the proxy itself (no upstream involved)."""
        self.metrics.request_done("none", status, clock.monotonic() - started)
        self._log_local(head, status, code, rid, trace, started)
        self.send_error(status, code, rid)

    def _log_local(self, head, status, code, rid, trace, started) -> None:
        log = self.accesslog
        if log is None:
            return
        log.log(request_record(self, head, status, code, rid, trace, clock.monotonic() - started))

    # ------------------------------------------------------------------
    # answers
    def can_keep_alive(self, head) -> bool:
        return (
            head is not None
            and head.keep_alive
            and not self.client_eof
            and not self.shutting_down
            and self.requests < self.max_requests
        )

    def can_drain(self) -> bool:
        """Whether the unread rest of the request body may be read and dropped."""
        dec = self.decoder
        if dec is None:
            return True
        return type(dec) is LengthDecoder and dec.remaining <= self.cfg.drain_body_limit

    def send_error(self, status: int, code: str, rid: bytes) -> None:
        self.send_static(status, b"application/json", error_body(code, rid), rid, 1 if status == 503 else 0)

    def send_static(self, status: int, content_type: bytes, body: bytes, rid: bytes, retry_after: int = 0,
                    headers=()) -> None:
        """Answer the current request with a response the proxy made."""
        head = self.req_head
        keep = self.can_keep_alive(head) and self.can_drain()
        http10 = head is not None and head.version == b"1.0"
        if head is not None and head.method == b"HEAD":
            body_out = static_response(status, content_type, body, rid, keep, http10, retry_after, headers)
            body_out = body_out[: len(body_out) - len(body)]  # same head, no body
        else:
            body_out = static_response(status, content_type, body, rid, keep, http10, retry_after, headers)
        self.write(body_out)
        self.response_done(keep)

    def response_done(self, keep: bool) -> None:
        """The response to the current request is complete."""
        self.exchange = None
        head = self.req_head
        self.req_head = None
        if self.state == S_CLOSED:
            return
        if not keep:
            if self.buf or (head is not None and head.framing and not self.body_done):
                self._linger()  # the client may still be sending
            else:
                self.close()
            return
        if self.decoder is not None:
            self.state = S_DRAIN
            self.drained = 0
            self.last_read = clock.monotonic()
            self._arm(K_BODY, self.cfg.body_timeout)
            self._resume(P_WAIT | P_UPSTREAM)
            if self.buf:
                data = bytes(self.buf)
                self.buf.clear()
                self._feed_body(data)
            return
        self._next_request()

    def _next_request(self) -> None:
        self.state = S_HEAD
        self._resume(P_PIPELINE | P_UPSTREAM | P_WAIT)
        if self.client_eof and not self.buf:
            self.close()
            return
        if self.buf:
            self._arm(K_HEADER, self.header_timeout)
            if not self._processing:
                self._process()
        else:
            self._arm(K_IDLE, self.keepalive_timeout)

    def start_tunnel(self, ex) -> None:
        self.state = S_TUNNEL
        self._cancel_timer()
        self._resume(P_WAIT | P_UPSTREAM | P_PIPELINE)
        if self.buf:
            data = bytes(self.buf)
            self.buf.clear()
            ex.tunnel_data(data)

    def _linger(self) -> None:
        """Close after an answer, nginx's lingering close: half-close, then read and discard.

        Closing a socket with unread input makes the kernel send a reset,
        which can destroy the answer (a 413, a 502 during an upload) before
        the client reads it. Instead the answer is followed by a FIN and the
        client's bytes are read and dropped until it closes, it stays quiet
        ``lingering_timeout``, or ``lingering_time`` has passed. Not for TLS
        (a half-close there would need close_notify first) nor for a client
        cut off for being too slow.
        """
        t = self.transport
        cfg = self.cfg
        if (self.client_eof or self.timed_out or self.tls is not None or cfg.lingering_time <= 0
                or not t.can_write_eof()):
            self.close()
            return
        self.state = S_LINGER
        self.buf.clear()
        self.decoder = None
        self._resume(P_PIPELINE | P_UPSTREAM | P_WAIT)
        t.write_eof()  # after the answer already queued
        self.linger_until = clock.monotonic() + cfg.lingering_time
        self._arm(K_LINGER, min(cfg.lingering_timeout, cfg.lingering_time))

    def write(self, data: bytes) -> None:
        if self.state != S_CLOSED:
            self.transport.write(data)

    def close(self) -> None:
        if self.state != S_CLOSED and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.state != S_CLOSED and self.transport is not None:
            self.transport.abort()

    def close_if_idle(self) -> bool:
        """Shutdown: close now if no request is in progress.

        A connection that has not sent its first request yet (just accepted:
        its request is likely on the way) gets ``FIRST_REQUEST_GRACE`` to
        send it, and is then served with ``Connection: close``; closing it at
        once would lose that request.
        """
        self.shutting_down = True  # no keep-alive from now on (can_keep_alive)
        if self.state == S_LINGER:
            self.close()
            return True
        if self.state == S_HEAD and not self.buf and self.exchange is None:
            if self.requests == 0:
                self._arm(K_IDLE, min(FIRST_REQUEST_GRACE, self.header_timeout))
                return False
            self.close()
            return True
        return False

    # ------------------------------------------------------------------
    # flow control
    def _pause(self, reason) -> None:
        if not self.paused and self.state != S_CLOSED:
            self.transport.pause_reading()
        self.paused |= reason

    def _resume(self, reasons) -> None:
        if self.paused:
            self.paused &= ~reasons
            if not self.paused and self.state != S_CLOSED:
                self.transport.resume_reading()

    def pause_for_upstream(self, paused: bool) -> None:
        if paused:
            self._pause(P_UPSTREAM)
        else:
            self._resume(P_UPSTREAM)

    # ------------------------------------------------------------------
    # timers
    # One timer handle per connection, armed lazily: arming only records the
    # kind and deadline; the loop timer is (re)scheduled only when it would
    # fire too late. When it fires early it re-arms for the recorded deadline.
    # A keep-alive connection thus costs no timer operation per request.
    def _arm(self, kind, delay: float) -> None:  # kind: a K_ constant (a C int compiled)
        when = clock.monotonic() + delay
        self._tkind = kind
        self._deadline = when
        t = self._timer
        if t is not None:
            if self._timer_due <= when:
                return
            self._stop_timer(t)
        self._timer_due = when
        self._timer = self.server.loop.call_later(delay, self._on_timer)

    def _cancel_timer(self) -> None:
        self._tkind = 0  # the handle may stay; it finds nothing to do

    def _drop_timer(self) -> None:
        if self._timer is not None:
            self._stop_timer(self._timer)
            self._timer = None
        self._tkind = 0

    def _stop_timer(self, t) -> None:
        """Cancel the timer handle ``t``: an event-loop timer, or the first-heads queue's entry."""
        if t is self.first_heads:
            heads: DeadlineQueue = t
            heads.remove(self)
        else:
            t.cancel()

    def on_deadline(self) -> None:
        """The first-heads queue's deadline for this connection passed: as its own timer firing."""
        self._on_timer()

    # The exchanges of this connection share one more lazy handle: an exchange
    # asks for a timer no later than its next deadline (``arm_exchange``); the
    # handle outlives it, and the next exchange on the keep-alive connection
    # finds it already due early enough (its deadlines are as far away), so a
    # keep-alive request schedules no loop timer. An early fire calls the
    # exchange that armed last, which re-evaluates its deadlines and re-arms;
    # a finished one does nothing.
    def arm_exchange(self, ex, when: float) -> None:
        """Call ``ex._on_timer`` no later than ``when`` (monotonic)."""
        self._xowner = ex
        t = self._xtimer
        if t is not None:
            if self._xtimer_due <= when:
                return
            t.cancel()
        self._xtimer_due = when
        self._xtimer = self.server.loop.call_later(max(0.0, when - clock.monotonic()), self._on_xtimer)

    def _on_xtimer(self) -> None:
        self._xtimer = None
        ex = self._xowner
        if ex is not None:
            ex._on_timer()

    def _on_timer(self) -> None:
        self._timer = None
        kind = self._tkind
        if not kind:
            return
        left = self._deadline - clock.monotonic()
        if left > 0.001:
            self._timer_due = self._deadline
            self._timer = self.server.loop.call_later(left, self._on_timer)
            return
        self._tkind = 0
        state = self.state
        metrics = self.metrics
        if kind == K_IDLE:
            if state == S_HEAD and not self.buf:
                metrics.timeout("downstream", "keepalive")
                self.close()
        elif kind == K_LINGER:
            if state == S_LINGER:
                self.close()
        elif kind == K_HEADER:
            if state == S_HEAD:
                self.timed_out = True
                metrics.timeout("downstream", "header")
                self._reject(ParseError(408, "request_header_timeout", "request head not received in time"))
        elif kind == K_BODY and (state == S_BODY or state == S_DRAIN):
            now = clock.monotonic()
            if self.paused & (P_UPSTREAM | P_WAIT):
                # we stopped reading; not the client's fault: both clocks restart
                self.last_read = self.rate_t0 = now
                self.rate_bytes = 0
                self._arm(K_BODY, self._body_check_in(now))
                return
            if self.last_read + self.cfg.body_timeout <= now:
                metrics.timeout("downstream", "body")
                code = "request_body_timeout"
            elif self._too_slow(now):
                metrics.timeout("downstream", "body_rate")
                code = "request_body_too_slow"
            else:
                self._arm(K_BODY, self._body_check_in(now))
                return
            self.timed_out = True
            ex = self.exchange
            if ex is not None and ex.resp is None and not ex.finished:
                ex._fail_client(408, code)
            else:
                if ex is not None:
                    ex.client_gone()
                self.abort()

    def _too_slow(self, now: float) -> bool:
        """The request body's average rate fell under ``body_min_rate``."""
        rate = self.cfg.body_min_rate
        if not rate or self.state != S_BODY:
            return False
        elapsed = now - self.rate_t0
        return elapsed >= self.cfg.body_min_rate_after and self.rate_bytes < rate * elapsed

    def _body_check_in(self, now: float) -> float:
        """Seconds until the body must be checked again: the idle deadline, or
        the moment the average rate would fall under the minimum if no more
        bytes came (so a steady upload never wakes the timer early)."""
        due = self.last_read + self.cfg.body_timeout
        rate = self.cfg.body_min_rate
        if rate and self.state == S_BODY:
            t0 = self.rate_t0
            due = min(due, max(t0 + self.cfg.body_min_rate_after, t0 + self.rate_bytes / rate))
        return max(due - now, 0.001)

    def _on_send_timeout(self) -> None:
        self._send_timer = None
        if self.write_paused and self.state != S_CLOSED:
            self.metrics.timeout("downstream", "send")
            self.abort()
