# Types for compiling metrics.py with Cython (pure-Python mode): compiled,
# Metrics is an extension type whose event series are typed dict slots (the
# per-request counters are C-level dict operations) and the cluster holds it
# typed, so the exchange's per-request calls are C calls. NullMetrics
# subclasses it so the slot has one type. Statuses and durations are counted
# by the native accounting types, cimported (C calls).
from proxy._accounting cimport CodeCounts, Histogram

cdef class TLSStats:
    cdef public Histogram hello, sni, handshake, total
    cdef public dict handshakes, resumed
    cdef public tuple ok_key, resumed_key

    cpdef finished(self, double hello, double sni, double handshake, double total, bint resumed)


cdef class Metrics:
    cdef public object registry, _build_info
    cdef public long long _dropped
    cdef public dict _req, _dur, _client, _client_failed, _conn_err, _retry, _overflow, _admission, _opened, _reused
    cdef public dict _evicted, _upgrade, _timeout, _transitions, _fallback, _health_checks, _tls_handshakes
    cdef public dict _tls_failures, _tls_sni_mismatch, _tls_sni_missing, _tls_purpose, _tls_resumed, _restarts
    cdef public dict _hangs, _pp_errors, _reloads, _tls_dur, _gauge_sources

    cpdef request_done(self, str route, int code, double duration)
    cpdef client_request(self, str upstream, code)
    cpdef pool_reused(self, str upstream, str server)


# NullMetrics declares the methods it overrides, so that a C call through the
# Metrics type reaches its own (a subclass's plain def would not).
cdef class NullMetrics(Metrics):
    cpdef request_done(self, str route, int code, double duration)
    cpdef client_request(self, str upstream, code)
    cpdef pool_reused(self, str upstream, str server)
