# Types for compiling breaker.py with Cython (pure-Python mode): compiled,
# Breaker is an extension type with typed slots, and the calls the exchange
# makes on every request (allow, outcome_for_status, record, cancel; peek
# through ServerState.available) are C calls from the typed ServerState.
# NullBreaker subclasses it so a server's breaker has one C type.
cdef class Breaker:
    cdef public object policy, transitions
    cdef object _rng, _on_transition, _window, _state
    cdef double _since, _open_until
    cdef long _consecutive, _trials, _trial_successes, _step, _max_step
    cdef frozenset _failure_statuses
    cdef double _slow_threshold, _failure_rate
    cdef long _min_requests, _consecutive_limit

    cpdef outcome_for_status(self, int status)
    cpdef double retry_after(self, double now)
    cpdef bint half_open(self)
    cpdef bint peek(self, double now)
    cpdef bint allow(self, double now)
    cpdef record(self, double now, outcome, double latency, bint trial_slot_released=*)
    cpdef cancel(self, double now, bint trial_slot_released=*)
    cdef _record_closed(self, double now, outcome, double latency)
    cdef double _open_wait(self)
    cpdef _transition(self, to, double now, str reason)


# NullBreaker declares the methods it overrides, so that a C call through the
# Breaker type reaches its own (a subclass's plain def would not).
cdef class NullBreaker(Breaker):
    cpdef outcome_for_status(self, int status)
    cpdef double retry_after(self, double now)
    cpdef bint half_open(self)
    cpdef bint peek(self, double now)
    cpdef bint allow(self, double now)
    cpdef record(self, double now, outcome, double latency, bint trial_slot_released=*)
    cpdef cancel(self, double now, bint trial_slot_released=*)
