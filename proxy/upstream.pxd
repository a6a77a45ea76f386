# Types for compiling upstream.py with Cython (pure-Python mode), as
# exchange.pxd does for exchange.py. Everything stays Python-visible: the
# exchange, the server, health checks and diagnostics use these objects.
cimport proxy.clock as clock
from proxy._accounting cimport InFlight
from proxy.balancer cimport Balancer, ServerState
from proxy.metrics cimport Metrics
from proxy.pool cimport Pool


cdef class UpstreamConn:
    cdef public object cluster, transport, owner
    cdef public ServerState server
    cdef public int requests
    cdef public bint closed, paused, idle, read_paused, counted

    cpdef pause_reading(self)
    cpdef resume_reading(self)


cdef class Cluster:
    cdef public Pool pool
    cdef public Metrics metrics
    cdef public Balancer balancer
    cdef public object cfg, name, loop, servers, default_host, retry_methods
    cdef public InFlight inflight
    cdef public object retry_budget, conn_count, pending, tiers, planner, load, idle_timeout_now
    cdef public object opening, recovering, open_conns, pending_connects
    cdef public object max_connections, max_pending, pending_timeout, _served_before
    cdef public bint closing
    cdef public double request_timeout, response_timeout, body_timeout

    cpdef pick(self, exclude=*)
    cpdef checkout(self, ServerState server)
    cpdef acquire(self, ServerState server, ex)
    cpdef release(self, UpstreamConn conn, bint reusable)
