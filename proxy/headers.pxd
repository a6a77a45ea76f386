# Types for compiling headers.py with Cython (pure-Python mode): compiled,
# HeaderPolicy is an extension type; the client connection holds it typed
# and the exchange's per-request calls (ids, request_extra, response_extra)
# are C calls.
from proxy.heads cimport RequestHead


cdef class HeaderPolicy:
    cdef public bint x_forwarded, request_id, via, generate_trace
    cdef public bytes proto, hsts
    cdef public frozenset request_drop, response_drop

    cpdef tuple ids(self, RequestHead head)
    cpdef list request_extra(self, RequestHead head, bytes client_ip, bytes rid, bytes add_traceparent)
    cpdef list response_extra(self, bytes rid)
