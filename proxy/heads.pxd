# Types for compiling heads.py with Cython (pure-Python mode): compiled, the
# heads are extension types with one object slot per field and nothing else
# (no vtable), so the native codec can still fill a fresh one field by field
# (native/codec.pyx, _offsets); the client connection and the exchange
# cimport them and read their fields as struct members.
cdef class RequestHead:
    cdef public object method, target, version, host, framing, content_length, keep_alive, connection, upgrade
    cdef public object expect_continue, xff, request_id, traceparent, raw, _headers


cdef class ResponseHead:
    cdef public object status, reason, version, framing, content_length, keep_alive, connection, upgrade, raw
    cdef public object _headers
