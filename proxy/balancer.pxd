# Types for compiling balancer.py with Cython (pure-Python mode): compiled,
# ServerState is an extension type whose fields the exchange and the cluster
# read as C struct members (they cimport it); everything stays Python-visible.
from proxy.breaker cimport Breaker


cdef class ServerState:
    cdef public Breaker breaker
    cdef public object host, name, clock, last_error
    cdef public long port, weight, active, current, served, peak_active
    cdef public bint connect_failed, healthy, check_failing

    cpdef bint available(self)
