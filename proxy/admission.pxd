# Types for compiling admission.py with Cython (pure-Python mode): the
# decisions made around every accept are C calls from the accept loop.
cdef class Gate:
    cdef public long long limit, count

    cpdef bint full(self)


cdef class ListenerAdmission:
    cdef public long long max_connections, per_ip, count
    cdef public str on_limit
    cdef public object bucket
    cdef public Gate gate
    cdef public dict by_ip

    cpdef bint full(self)
    cpdef before_accept(self, double now)
    cpdef admit(self, str ip, double now)
    cpdef release(self, str ip)
