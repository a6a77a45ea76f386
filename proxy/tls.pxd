# Types for compiling tls.py with Cython (pure-Python mode): the TLS
# connection (handshake driver and record relay) and the transport it hands
# the Downstream are extension types with typed slots; their internal steps
# are C calls. Everything the event loop, the server and the Downstream call
# stays Python-visible; the rest of the module (contexts, setup) compiles as
# plain Python classes and functions.
cimport proxy.clock as clock
from proxy.deadlines cimport DeadlineQueue
from proxy.metrics cimport TLSStats
cdef class TLSConnection:
    cdef object __weakref__  # the OpenSSL object's owner is held weakly
    cdef public object server, listener, ip, make_downstream, contexts, raw, records
    cdef public object incoming, outgoing, app, peer, peer_addr, sni, fail_reason
    cdef public double accepted_at, hello_at, sni_time
    cdef public bint app_paused, ended, held

    cdef _flush(self)
    cdef _end_handshake(self)
    cdef _failed(self, str reason, exc)
    cdef _established(self)


cdef class TLSTransport:
    cdef TLSConnection _conn
    cdef object _raw, _records, _outgoing
