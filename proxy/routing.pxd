# Types for compiling routing.py with Cython (pure-Python mode): compiled,
# Route and Router are extension types; the exchange holds its route typed
# and the client connection calls Router.match as a C call.
cdef class Route:
    cdef public str name, host, upstream
    cdef public bytes prefix, host_rewrite
    cdef public bint strip_prefix, websocket
    cdef public long order
    cdef public long long max_body_size

    cpdef bytes rewrite_target(self, bytes target)


cdef class Router:
    cdef public dict _exact, _hosts
    cdef public list _wild, _any
    cdef public bint _by_host

    cpdef Route match(self, bytes host, bytes target)
