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


# The cluster holds its balancer as a Balancer and calls pick in C on every
# attempt; the kinds re-declare pick so the C call reaches their own.
cdef class Balancer:
    cdef public list servers

    cpdef ServerState pick(self, exclude=*)


cdef class RoundRobin(Balancer):
    cpdef ServerState pick(self, exclude=*)


cdef class LeastRequest(Balancer):
    cdef object _rng

    cpdef ServerState _draw(self, list cands, long total)
    cpdef ServerState pick(self, exclude=*)
