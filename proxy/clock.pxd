# The compiled core's monotonic clock (see clock.py): a C call returning a C
# double, the same value time.monotonic() gives on Linux (CLOCK_MONOTONIC,
# nanoseconds converted to seconds as CPython converts them). Modules cimport
# this file as `clock` and the source .py imports clock.py under the same
# name, so `clock.monotonic()` is this inline function compiled and
# time.monotonic run as source.
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec


cdef inline double monotonic() noexcept:
    cdef timespec ts
    cdef long long ns
    clock_gettime(CLOCK_MONOTONIC, &ts)
    ns = <long long>ts.tv_sec * 1000000000 + ts.tv_nsec
    if ns % 1000000000 == 0:
        return <double>(ns // 1000000000)
    return <double>ns / 1e9
