# Types for compiling acceptor.py with Cython (pure-Python mode): the
# descriptor handed to uvloop and each connection's start are extension
# types; the protocols they make are built through their C types.
cimport proxy.clock as clock
from proxy.admission cimport ListenerAdmission
from proxy.downstream cimport Downstream
from proxy.tls cimport TLSConnection

cdef class Accepted:
    cdef public int fd
    cdef public object family, type
    cdef public bint taken

cdef class CoroutineRunner:
    cdef public object loop, coro

cdef class ConnectionStart(CoroutineRunner):
    cdef public object server, listener, ip, addr, sock
    cdef public double accepted_at

cpdef start(server, listener, fd, addr, str ip)
