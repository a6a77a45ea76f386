# Declarations of the native accounting extension (native/accounting.pyx,
# built as proxy._accounting), for the compiled core to cimport: the client
# connection and the cluster hold their in-flight counters as InFlight and
# call try_acquire/release in C on every request. The layout here is the
# extension's own (Cython reads this file when it compiles the .pyx).
cdef class InFlight:
    cdef long long _count
    cdef long long _limit

    cpdef bint try_acquire(self)
    cpdef release(self)
