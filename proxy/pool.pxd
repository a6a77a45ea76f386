# Types for compiling pool.py with Cython (pure-Python mode): compiled, Pool
# is an extension type with typed slots; the cluster holds it typed and its
# per-request take/give are C calls. The deciders below it stay Python classes.
cdef class Pool:
    cdef public long max_idle_per_server, max_idle_total, max_requests
    cdef public double idle_timeout
    cdef public dict _by_server
    cdef public object _all

    cpdef take(self, server)
    cpdef list give(self, server, conn, long requests_served, double now)
