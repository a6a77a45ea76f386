# Declarations of the native accounting extension (native/accounting.pyx,
# built as proxy._accounting), for the compiled core to cimport: the client
# connection and the cluster hold their in-flight counters as InFlight and
# call try_acquire/release in C on every request, and the metrics count
# statuses and durations with CodeCounts and Histogram. The layout here is the
# extension's own (Cython reads this file when it compiles the .pyx).
cdef class InFlight:
    cdef long long _count
    cdef long long _limit

    cpdef bint try_acquire(self)
    cpdef release(self)


cdef class CodeCounts:
    cdef long long _counts[1000]

    cpdef add(self, code)


cdef class Histogram:
    cdef double *_bounds
    cdef long long *_counts
    cdef Py_ssize_t _n
    cdef double _sum

    cdef void _free(self)
    cpdef observe(self, double value)
