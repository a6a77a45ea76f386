# Types for compiling exchange.py with Cython (pure-Python mode): the .py
# stays the one source; compiled, Exchange is an extension type with typed
# slots and C-level calls between its internal methods. Methods that other
# modules call (or pass as callbacks) stay Python-visible. Its server,
# cluster, connection and client connection are typed with the other
# compiled modules' extension types (cimported), so their fields are read as
# C struct members and their per-request methods (cpdef) are C calls; the
# core therefore runs compiled as a whole or not at all (proxy/compiled.py).
cimport proxy.clock as clock
from proxy.balancer cimport ServerState
from proxy.downstream cimport Downstream
from proxy.heads cimport RequestHead, ResponseHead
from proxy.routing cimport Route
from proxy.upstream cimport Cluster, UpstreamConn

# the response phases and infinity are C constants (exchange.py assigns them)
cdef int WAIT_HEAD, BODY, DONE, TUNNEL
cdef int _F_NONE, _F_LENGTH, _F_CHUNKED
cdef double _INF
cdef dict _DECIMALS
cdef bytes _decimal(long long n)


cdef class Exchange:
    cdef public Downstream down
    cdef public Cluster cluster
    cdef public Route route
    cdef public RequestHead head
    cdef public ResponseHead resp
    cdef public bytes rid, trace, up_head
    cdef public bint chunk_up, reused, req_done, body_started, chunk_out, keep, finished, up_eof, upgrade
    cdef public bint fresh_retry, stale_retried, queued, trial, judged
    cdef public tuple tried
    cdef public int attempts, phase, rscan, status
    cdef public ServerState server
    cdef public UpstreamConn conn
    cdef public object rbuf, dec, connect_time, ttfb, last_error, held_up, held_down
    cdef public Cluster inflight_cluster
    cdef public object outcome
    cdef public long long bytes_in, bytes_out
    cdef public double req_done_at, last_up, stall_since, deadline, queued_until, attempt_at, started

    cdef _attempt(self)
    cdef _retry_or_fail(self, err, bint retryable=*)
    cdef _overflow(self, str kind)
    cdef _send(self, UpstreamConn conn, bint reused)
    cdef _request_sent(self)
    cdef _parse_response(self)
    cdef _start_response(self, ResponseHead head, bytes rest=*)
    cdef _relay(self, bytes data)
    cdef _response_complete(self, bytes rest, bint ended=*)
    cdef _start_tunnel(self, ResponseHead head)
    cdef _end_tunnel(self, str outcome)
    cdef _judge(self, outcome)
    cdef _unjudge(self)
    cdef _fallback(self, str reason)
    cdef _upstream_failed(self, err, bint stale)
    cdef _fail(self, err)
    cdef _abort_midstream(self, str outcome)
    cdef _arm(self, double when)
    cdef _arm_wait_head(self)
    cdef _release(self, bint reusable)
    cdef _finish(self, str outcome)
