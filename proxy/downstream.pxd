# Types for compiling downstream.py with Cython (pure-Python mode), as
# exchange.pxd does for exchange.py: typed slots, C calls between the
# internal methods; everything the transport, the server, the exchange and
# the diagnostics use stays Python-visible.
cimport proxy.clock as clock
from proxy._accounting cimport InFlight
from proxy.deadlines cimport DeadlineQueue
from proxy.headers cimport HeaderPolicy
from proxy.metrics cimport Metrics
from proxy.heads cimport RequestHead
from proxy.routing cimport Route, Router


# the connection states, pause reasons and timer kinds are C constants
# (downstream.py assigns them; STATE_NAMES is their Python-visible table)
cdef int S_HEAD, S_BODY_WAIT, S_BODY, S_RESP, S_DRAIN, S_TUNNEL, S_CLOSED, S_LINGER
cdef int P_UPSTREAM, P_WAIT, P_PIPELINE
cdef int K_IDLE, K_HEADER, K_BODY, K_LINGER
cdef double FIRST_REQUEST_GRACE

cdef class Downstream:
    cdef public object tls, peer_addr
    cdef public HeaderPolicy headers
    cdef public object server, cfg, listener, admitted, admitted_ip, transport
    cdef public bytes client_ip
    cdef public str client_addr
    cdef public RequestHead req_head
    cdef public bytearray buf
    cdef public object exchange, decoder
    cdef public int scan, state, paused, requests, drained, _tkind
    cdef public long long body_limit, body_seen, rate_bytes
    cdef public double rate_t0, last_read, created, _timer_due, _deadline, _xtimer_due
    cdef public bint client_eof, write_paused, _processing, body_done, timed_out, shutting_down
    cdef public double linger_until
    cdef public long long max_head, max_line, max_headers, max_requests
    cdef public double header_timeout, keepalive_timeout
    # what the server shares with every request (fixed for the server's life)
    cdef public Router router
    cdef public dict clusters
    cdef public InFlight requests_gate
    cdef public Metrics metrics
    cdef public object accesslog
    cdef public long long max_response_head
    cdef public DeadlineQueue first_heads
    cdef public object _timer, _send_timer, _xtimer, _xowner

    cdef _process(self)
    cdef bint _head_in(self, bytes data)
    cdef _on_request(self, RequestHead head)
    cdef bint _tls_refused(self, head, bytes rid, bytes trace, double now)
    cdef _feed_body(self, bytes data)
    cdef _body_error(self, exc)
    cdef _reject(self, exc)
    cdef _local_answer(self, head, status, str code, bytes rid, bytes trace, double started)
    cdef _log_local(self, head, status, code, rid, trace, started)
    cdef _next_request(self)
    cdef _linger(self)
    cdef _pause(self, int reason)
    cdef _resume(self, int reasons)
    cdef _arm(self, int kind, double delay)
    cdef _cancel_timer(self)
    cdef _drop_timer(self)
    cdef _stop_timer(self, t)
    cdef bint _too_slow(self, double now)
    cdef double _body_check_in(self, double now)

    # called by the exchange on every request (C calls from a typed exchange)
    cpdef start_body(self, ex)
    cpdef bint can_keep_alive(self, RequestHead head)
    cpdef bint can_drain(self)
    cpdef response_done(self, bint keep)
    cpdef write(self, bytes data)
    cpdef pause_for_upstream(self, bint paused)
    cpdef arm_exchange(self, ex, double when)
