# Types for compiling deadlines.py with Cython (pure-Python mode): adding and
# removing an entry are C calls from the connections that use a queue.
cimport proxy.clock as clock

cdef class DeadlineQueue:
    cdef public object loop, timer
    cdef public double timeout
    cdef public dict pending

    cpdef add(self, entry, double now)
    cpdef remove(self, entry)
