# Types for compiling headers.py with Cython (pure-Python mode): compiled,
# HeaderPolicy is an extension type; the client connection holds it typed
# and the exchange's per-request calls (ids, request_extra, response_extra)
# are C calls.
from proxy.heads cimport RequestHead

# Request ids (new_request_id): the counter and the cached head of the id
# are C module variables, the functions C calls from ids().
cdef unsigned long long _id_next, _ID_MASK
cdef bytes _id_base, _ID_PREFIX_HEX
cdef tuple _HEX2

cpdef bytes new_request_id()
cpdef bytes request_id_for(bytes received)


cdef class HeaderPolicy:
    cdef public bint x_forwarded, request_id, via, generate_trace
    cdef public bytes proto, hsts
    cdef public frozenset request_drop, response_drop

    cpdef tuple ids(self, RequestHead head)
    cpdef list request_extra(self, RequestHead head, bytes client_ip, bytes rid, bytes add_traceparent)
    cpdef list response_extra(self, bytes rid)
