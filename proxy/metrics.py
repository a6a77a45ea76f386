"""Prometheus metrics for edgeproxy.

Theory of operation
-------------------
Every series the proxy exports is declared once, in ``METRICS_DOC`` below
(name, type, label names, help text).  ``Metrics`` builds its collectors from
that table, and the README's metrics list is generated from it, so the code
and the documentation cannot drift apart (a unit test checks that what
``render()`` emits and what ``METRICS_DOC`` lists are the same set).

Each ``Metrics`` instance owns a private ``CollectorRegistry``; several proxies
can therefore live in one process (as they do in the test suite) without
their series colliding.

Hot path.  Counters and the request-duration histogram are updated from the
event loop for every request, so they are plain numbers: ints in dicts keyed
by label tuples (``self._retry[(upstream, result)] += 1``), and for the
series moved by every request, one object per route or upstream that counts
statuses in a C array (``accounting.CodeCounts``) or durations per bucket
(``accounting.Histogram``), so a request costs a dict lookup by name and a
C call rather than building, hashing and comparing a label tuple twice. A
collector turns them into metric families only when ``/metrics`` is
scraped, on the same thread, so no lock is taken; prometheus_client's own
Counter takes a mutex on every increment. Label values come from
configuration (route and upstream names) or from small closed sets (status
codes, reasons), so the dicts stay small.

Scrape-time gauges.  Values that are state rather than events (open
connections, pool sizes) are not pushed from the hot path.  The proxy
registers callbacks with ``set_gauge_source``; a custom collector evaluates
them only when ``/metrics`` is scraped.  A callback that is not set yields
``0`` for the unlabelled gauge and no samples for the labelled ones; a
callback that raises is logged and its series is left out of that scrape
rather than failing the whole scrape.

Exposition.  ``render()`` returns the classic Prometheus text format, without
``*_created`` companion series (they would double the number of series and
are not part of the documented set).

``NullMetrics`` has the same interface and does nothing; it lets the core be
unit tested without a registry. (It subclasses ``Metrics`` only so that the
compiled core holds one type; it overrides every method.)
"""

from __future__ import annotations

import logging
from typing import Callable, Iterator

from . import accounting

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

__all__ = [
    "METRICS_DOC",
    "REQUEST_DURATION_BUCKETS",
    "CONNECT_ERROR_REASONS",
    "HEALTH_CHECK_RESULTS",
    "GAUGE_SOURCES",
    "Metrics",
    "NullMetrics",
]

_log = logging.getLogger(__name__)

REQUEST_DURATION_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
)

# Reasons accepted by ``Metrics.connect_error``; anything else is counted as "other".
CONNECT_ERROR_REASONS = frozenset({"refused", "timeout", "reset", "unreachable", "dns", "other"})

# Handshake phases (``tls_handshake_duration_seconds{phase}``): TCP accept to
# the first ClientHello bytes, certificate selection in the SNI callback,
# ClientHello to handshake done, the proxy's client-certificate policy check,
# and accept to ready for the first request.
TLS_PHASES: tuple[str, ...] = ("client_hello", "sni", "handshake", "client_verify", "total")
TLS_DURATION_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1, 2.5, 5, 10,
)

# Results accepted by ``Metrics.health_check``; anything else is counted as "error".
HEALTH_CHECK_RESULTS = frozenset({"ok", "failed", "timeout", "error"})

# (name, type, label names, help).  Names are the exposed family names, so a
# counter is listed with its ``_total`` suffix.
METRICS_DOC: list[tuple[str, str, tuple[str, ...], str]] = [
    ("http_server_requests_total", "counter", ("route", "code"),
     "Downstream requests completed, by route and response status code."),
    ("http_server_request_duration_seconds", "histogram", ("route",),
     "Time from the first byte of a downstream request to the last byte of its response."),
    ("http_server_upgrades_total", "counter", ("route",),
     "Downstream connections switched to another protocol (e.g. WebSocket), by route."),
    ("http_server_connections_active", "gauge", (),
     "Downstream connections currently open."),
    ("http_server_admission_total", "counter", ("listener", "decision"),
     "Admission decisions: connections at accept time (accepted, paused, rejected, responded, per_ip) "
     "and requests over [server] max_requests (max_requests)."),
    ("http_server_connections", "gauge", ("listener", "state"),
     "Client connections by listener and state (handshaking, reading_head, reading_body, waiting_upstream, writing_response, "
     "draining_body, tunnel, idle_keepalive), read at scrape."),
    ("http_server_accept_queue_len", "gauge", ("listener",),
     "Connections waiting in the kernel accept queue of the listening socket (TCP_INFO), read at scrape."),
    ("http_server_accept_queue_max", "gauge", ("listener",),
     "Accept queue limit of the listening socket as the kernel applies it (backlog capped by somaxconn)."),
    ("http_server_listen_overflows_total", "counter", (),
     "Host-wide TcpExt ListenOverflows: connections dropped because an accept queue was full."),
    ("http_server_listen_drops_total", "counter", (),
     "Host-wide TcpExt ListenDrops: SYNs dropped at a listening socket for any reason."),
    ("http_client_requests_total", "counter", ("upstream", "code"),
     "Upstream request attempts, by upstream and status code or failure "
     "(connect_error, timeout, reset, invalid_response)."),
    ("http_client_connect_errors_total", "counter", ("upstream", "server", "reason"),
     "Failed upstream connection attempts, by reason "
     "(refused, timeout, reset, unreachable, dns, other)."),
    ("http_client_retries_total", "counter", ("upstream", "result"),
     "Retry decisions: result=retried (an attempt repeated) or budget_exhausted (refused by the retry budget)."),
    ("upstream_overflow_total", "counter", ("upstream", "kind"),
     "Requests refused by a concurrency cap (max_requests, max_pending, pending_timeout), answered by the fallback."),
    ("http_client_conn_pool_idle", "gauge", ("upstream", "server"),
     "Idle keep-alive connections held in the upstream pool."),
    ("http_client_conn_pool_active", "gauge", ("upstream", "server"),
     "Upstream connections currently carrying a request."),
    ("http_timeouts_total", "counter", ("side", "phase"),
     "Timeouts fired, by side (downstream, upstream) and phase "
     "(header, body, body_rate, tls_handshake, send, keepalive, connect, response, request)."),
    ("accesslog_dropped_total", "counter", (),
     "Access log lines dropped because the writer fell behind or the write failed."),
    ("http_client_conn_pool_opened_total", "counter", ("upstream", "server"),
     "Upstream connections opened (for requests or by warm-up)."),
    ("http_client_conn_pool_reused_total", "counter", ("upstream", "server"),
     "Requests sent on an idle pooled connection instead of a new one."),
    ("http_client_conn_pool_evicted_total", "counter", ("upstream", "reason"),
     "Pooled connections closed by the pool, by reason (idle_timeout, idle_cap, total_cap, max_requests, "
     "closed_by_server)."),
    ("http_client_conn_pool_idle_timeout_seconds", "gauge", ("upstream", "server"),
     "Idle timeout currently applied to the server's pooled connections (adaptive to its request rate)."),
    ("circuit_breaker_state", "gauge", ("upstream", "server"),
     "Circuit breaker state of each upstream server: 0 closed, 1 half-open, 2 open."),
    ("circuit_breaker_transitions_total", "counter", ("upstream", "server", "from", "to"),
     "Circuit breaker state changes, by server and the states left and entered."),
    ("fallback_responses_total", "counter", ("upstream", "reason"),
     "Requests answered by a cluster's fallback (static response or another cluster), by reason."),
    ("upstream_health", "gauge", ("upstream", "server"),
     "Active health check verdict of each server of a cluster with health checks: 1 healthy, 0 unhealthy."),
    ("health_check_total", "counter", ("upstream", "server", "result"),
     "Active health checks completed, by server and result (ok, failed, timeout, error)."),
    ("tls_handshake_duration_seconds", "histogram", ("listener", "phase"),
     "TLS handshake time by phase: client_hello (accept to first ClientHello bytes), sni (certificate "
     "selection), handshake (ClientHello to finished, OpenSSL's client chain check included), client_verify "
     "(the proxy's client-certificate policy check), total (accept to ready)."),
    ("tls_handshakes_total", "counter", ("listener", "result"),
     "TLS handshakes ended, by result (ok, failed)."),
    ("tls_handshake_failures_total", "counter", ("listener", "reason"),
     "Failed TLS handshakes by reason (timeout, eof, sni_unknown, no_sni, no_client_cert, unknown_ca, expired, "
     "not_yet_valid, eku_mismatch, bad_cert, protocol_version, no_shared_cipher, http_request, peer_alert, error)."),
    ("tls_sni_mismatch_total", "counter", ("listener",),
     "ClientHellos whose SNI names no configured certificate (served the default or refused, per sni_policy)."),
    ("tls_sni_missing_total", "counter", ("listener",),
     "ClientHellos without SNI (served the default or refused, per no_sni_policy)."),
    ("tls_mtls_cert_purpose_total", "counter", ("listener", "code"),
     "Client-certificate policy checks after the handshake, by result code (ok, no_cert, unknown_ca, expired, "
     "not_yet_valid, eku_missing, eku_mismatch, san_not_allowed, subject_not_allowed, bad_cert)."),
    ("tls_sessions_resumed_total", "counter", ("listener",),
     "TLS handshakes that resumed an earlier session (ticket) instead of a full handshake."),
    ("http_server_proxy_protocol_errors_total", "counter", ("listener",),
     "Connections closed because they did not start with a valid PROXY protocol header in time."),
    ("edgeproxy_workers", "gauge", (),
     "Worker processes serving: the supervisor's ready workers, or 1 for a single process."),
    ("edgeproxy_worker_restarts_total", "counter", (),
     "Workers that died and were started again by the supervisor."),
    ("edgeproxy_worker_hangs_total", "counter", (),
     "Workers killed by the supervisor's watchdog: their event loop left pings unanswered for worker_watchdog."),
    ("edgeproxy_reloads_total", "counter", ("result",),
     "Configuration reloads (SIGHUP) by result: ok, or failed (the old configuration keeps serving)."),
    ("edgeproxy_build_info", "gauge", ("version", "codec", "core"),
     "Constant 1, labelled with the running version, HTTP codec (native or pure) and core (compiled or source)."),
]

_SPEC: dict[str, tuple[str, tuple[str, ...], str]] = {
    name: (kind, labels, help_) for name, kind, labels, help_ in METRICS_DOC
}

# Gauges evaluated at scrape time from callbacks (see Metrics.set_gauge_source).
_UNLABELLED_GAUGES = ("http_server_connections_active", "edgeproxy_workers")
_LABELLED_GAUGES = ("http_client_conn_pool_idle", "http_client_conn_pool_active",
                    "http_client_conn_pool_idle_timeout_seconds", "circuit_breaker_state", "upstream_health",
                    "http_server_accept_queue_len", "http_server_accept_queue_max", "http_server_connections")
# cumulative counters kept by the kernel, read at scrape (fn() -> number or None)
_KERNEL_COUNTERS = ("http_server_listen_overflows_total", "http_server_listen_drops_total")
GAUGE_SOURCES = frozenset(_UNLABELLED_GAUGES + _LABELLED_GAUGES + _KERNEL_COUNTERS)


class _ScrapeGauges:
    """Collector yielding the callback-backed gauges, evaluated at each scrape."""

    def __init__(self, sources: dict[str, Callable]) -> None:
        self._sources = sources

    def describe(self) -> Iterator[Metric]:
        for name in _UNLABELLED_GAUGES + _LABELLED_GAUGES:
            _, labels, help_ = _SPEC[name]
            yield GaugeMetricFamily(name, help_, labels=labels or None)

    def collect(self) -> Iterator[Metric]:
        for name in _UNLABELLED_GAUGES:
            _, _, help_ = _SPEC[name]
            fn = self._sources.get(name)
            try:
                value = float(fn()) if fn is not None else 0.0
            except Exception:
                _log.exception("gauge source %s failed; series omitted from this scrape", name)
                continue
            yield GaugeMetricFamily(name, help_, value=value)
        for name in _LABELLED_GAUGES:
            _, labels, help_ = _SPEC[name]
            fam = GaugeMetricFamily(name, help_, labels=labels)
            fn = self._sources.get(name)
            if fn is not None:
                try:
                    rows = [(tuple(str(x) for x in key), float(v)) for key, v in fn()]
                except Exception:
                    _log.exception("gauge source %s failed; series omitted from this scrape", name)
                    continue
                for label_values, value in rows:
                    fam.add_metric(label_values, value)
            yield fam
        for name in _KERNEL_COUNTERS:
            _, _, help_ = _SPEC[name]
            fn = self._sources.get(name)
            try:
                value = fn() if fn is not None else None
            except Exception:
                _log.exception("counter source %s failed; series omitted from this scrape", name)
                continue
            if value is not None:
                yield CounterMetricFamily(name, help_, value=float(value))


class _EventSeries:
    """Counters and histograms kept as plain numbers, exported at scrape.

    The hot path only adds to ints in dicts keyed by label tuples; families
    are built when ``/metrics`` is scraped. Recording and scraping both run
    on the event-loop thread, so no lock is needed (prometheus_client's own
    counters take a lock on every increment).
    """

    def __init__(self, metrics: "Metrics") -> None:
        self._m = metrics

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        m = self._m
        for name, values in (
            ("http_server_requests_total", _by_code(m._req)),
            ("http_server_upgrades_total", m._upgrade),
            ("http_client_requests_total", {**_by_code(m._client), **m._client_failed}),
            ("http_client_connect_errors_total", m._conn_err),
            ("http_client_retries_total", m._retry),
            ("http_timeouts_total", m._timeout),
            ("circuit_breaker_transitions_total", m._transitions),
            ("fallback_responses_total", m._fallback),
            ("upstream_overflow_total", m._overflow),
            ("http_server_admission_total", m._admission),
            ("http_client_conn_pool_opened_total", m._opened),
            ("http_client_conn_pool_reused_total", _flat(m._reused)),
            ("http_client_conn_pool_evicted_total", m._evicted),
            ("health_check_total", m._health_checks),
            ("tls_handshakes_total", m._tls_handshakes),
            ("tls_handshake_failures_total", m._tls_failures),
            ("tls_sni_mismatch_total", m._tls_sni_mismatch),
            ("tls_sni_missing_total", m._tls_sni_missing),
            ("tls_mtls_cert_purpose_total", m._tls_purpose),
            ("tls_sessions_resumed_total", m._tls_resumed),
            ("edgeproxy_worker_restarts_total", m._restarts),
            ("edgeproxy_worker_hangs_total", m._hangs),
            ("http_server_proxy_protocol_errors_total", m._pp_errors),
            ("edgeproxy_reloads_total", m._reloads),
        ):
            _, labels, help_ = _SPEC[name]
            fam = CounterMetricFamily(name, help_, labels=labels)
            for key, v in list(values.items()):
                fam.add_metric([str(k) for k in key], v)
            yield fam
        _, _, help_ = _SPEC["accesslog_dropped_total"]
        yield CounterMetricFamily("accesslog_dropped_total", help_, value=m._dropped)
        yield _histogram("http_server_request_duration_seconds", REQUEST_DURATION_BUCKETS, m._dur)
        yield _histogram("tls_handshake_duration_seconds", TLS_DURATION_BUCKETS, m._tls_dur)


def _by_code(counts_by_name: dict) -> dict:
    """``{name: CodeCounts}`` as ``{(name, code): n}``."""
    return {(name, code): n for name, counts in list(counts_by_name.items()) for code, n in counts.items()}


def _flat(nested: dict) -> dict:
    """``{a: {b: n}}`` as ``{(a, b): n}``."""
    return {(a, b): n for a, inner in list(nested.items()) for b, n in list(inner.items())}


def _histogram(name: str, buckets: tuple[float, ...], by_key: dict) -> Metric:
    """A histogram family from ``Histogram`` objects keyed by a label value or tuple."""
    _, labels, help_ = _SPEC[name]
    fam = HistogramMetricFamily(name, help_, labels=labels)
    bounds = [repr(float(b)) for b in buckets] + ["+Inf"]
    for key, hist in list(by_key.items()):
        acc = 0
        cum = []
        for le, c in zip(bounds, hist.counts()):
            acc += c
            cum.append((le, acc))
        fam.add_metric([key] if isinstance(key, str) else list(key), cum, hist.sum)
    return fam


def _bump(counts: dict, key: tuple) -> None:
    counts[key] = counts.get(key, 0) + 1


def _tls_histogram(dur: dict, listener: str, phase: str) -> Histogram:
    key = (listener, phase)
    hist = dur.get(key)
    if hist is None:
        hist = dur[key] = accounting.Histogram(TLS_DURATION_BUCKETS)
    return hist


class TLSStats:
    """One TLS listener's handshake series: its phase histograms and the label keys of its
    counters, held directly (the same objects the scrape reads), so a finished handshake is
    four histogram updates and a counter, with no label tuple built."""

    def __init__(self, listener: str, dur: dict, handshakes: dict, resumed: dict) -> None:
        self.hello = _tls_histogram(dur, listener, "client_hello")
        self.sni = _tls_histogram(dur, listener, "sni")
        self.handshake = _tls_histogram(dur, listener, "handshake")
        self.total = _tls_histogram(dur, listener, "total")
        self.handshakes = handshakes
        self.resumed = resumed
        self.ok_key = (listener, "ok")
        self.resumed_key = (listener,)

    def finished(self, hello, sni, handshake, total, resumed) -> None:
        """A finished handshake: its phase durations (seconds) and whether it resumed a session."""
        self.hello.observe(hello)
        self.sni.observe(sni)
        self.handshake.observe(handshake)
        self.total.observe(total)
        counts = self.handshakes
        counts[self.ok_key] = counts.get(self.ok_key, 0) + 1
        if resumed:
            counts = self.resumed
            counts[self.resumed_key] = counts.get(self.resumed_key, 0) + 1


class Metrics:
    """All of the proxy's Prometheus series, on a private registry."""

    def __init__(self, *, codec: str, version: str, core: str = "source") -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        kind, labels, help_ = _SPEC["edgeproxy_build_info"]
        self._build_info = Gauge("edgeproxy_build_info", help_, labels, registry=reg)
        self._build_info.labels(version=version, codec=codec, core=core).set(1)

        # event series: label tuple -> count (see _EventSeries)
        self._req: dict[str, CodeCounts] = {}  # route -> statuses
        self._dur: dict[str, Histogram] = {}  # route -> durations
        self._client: dict[str, CodeCounts] = {}  # upstream -> statuses
        self._client_failed: dict[tuple[str, str], int] = {}  # (upstream, failure name)
        self._conn_err: dict[tuple[str, str, str], int] = {}
        self._retry: dict[tuple[str, str], int] = {}
        self._overflow: dict[tuple[str, str], int] = {}
        self._admission: dict[tuple[str, str], int] = {}
        self._opened: dict[tuple[str, str], int] = {}
        self._reused: dict[str, dict[str, int]] = {}  # upstream -> server -> count
        self._evicted: dict[tuple[str, str], int] = {}
        self._upgrade: dict[tuple[str], int] = {}
        self._timeout: dict[tuple[str, str], int] = {}
        self._transitions: dict[tuple[str, str, str, str], int] = {}
        self._fallback: dict[tuple[str, str], int] = {}
        self._health_checks: dict[tuple[str, str, str], int] = {}
        self._tls_handshakes: dict[tuple[str, str], int] = {}
        self._tls_failures: dict[tuple[str, str], int] = {}
        self._tls_sni_mismatch: dict[tuple[str], int] = {}
        self._tls_sni_missing: dict[tuple[str], int] = {}
        self._tls_purpose: dict[tuple[str, str], int] = {}
        self._tls_resumed: dict[tuple[str], int] = {}
        self._restarts: dict[tuple, int] = {}
        self._hangs: dict[tuple, int] = {}
        self._pp_errors: dict[tuple[str], int] = {}
        self._reloads: dict[tuple[str], int] = {}
        self._tls_dur: dict[tuple[str, str], Histogram] = {}
        self._dropped = 0
        reg.register(_EventSeries(self))

        self._gauge_sources: dict[str, Callable] = {}
        reg.register(_ScrapeGauges(self._gauge_sources))

    # -- hot path ---------------------------------------------------------

    def request_done(self, route: str, code, duration: float) -> None:  # code: the status, an int
        codes: CodeCounts = self._req.get(route)
        if codes is None:
            codes = self._req[route] = accounting.CodeCounts()
            self._dur[route] = accounting.Histogram(REQUEST_DURATION_BUCKETS)
        codes.add(code)
        hist: Histogram = self._dur[route]
        hist.observe(duration)

    def client_request(self, upstream: str, code: int | str) -> None:
        """``code``: the status (int) or a failure name (str)."""
        if type(code) is not int:
            _bump(self._client_failed, (upstream, code))
            return
        codes: CodeCounts = self._client.get(upstream)
        if codes is None:
            codes = self._client[upstream] = accounting.CodeCounts()
        codes.add(code)

    def connect_error(self, upstream: str, server: str, reason: str) -> None:
        _bump(self._conn_err, (upstream, server, reason if reason in CONNECT_ERROR_REASONS else "other"))

    def retry(self, upstream: str, result: str = "retried") -> None:
        _bump(self._retry, (upstream, result))

    def overflow(self, upstream: str, kind: str) -> None:
        _bump(self._overflow, (upstream, kind))

    def admission(self, listener: str, decision: str) -> None:
        _bump(self._admission, (listener, decision))

    def pool_opened(self, upstream: str, server: str) -> None:
        _bump(self._opened, (upstream, server))

    def pool_reused(self, upstream: str, server: str) -> None:
        by_server: dict = self._reused.get(upstream)  # per request: no label tuple
        if by_server is None:
            by_server = self._reused[upstream] = {}
        by_server[server] = by_server.get(server, 0) + 1

    def pool_evicted(self, upstream: str, reason: str) -> None:
        _bump(self._evicted, (upstream, reason))

    def upgrade(self, route: str) -> None:
        _bump(self._upgrade, (route,))

    def timeout(self, side: str, phase: str) -> None:
        _bump(self._timeout, (side, phase))

    def accesslog_dropped(self, n: int = 1) -> None:
        self._dropped += n

    def breaker_transition(self, upstream: str, server: str, from_state: str, to_state: str) -> None:
        _bump(self._transitions, (upstream, server, from_state, to_state))

    def fallback(self, upstream: str, reason: str) -> None:
        _bump(self._fallback, (upstream, reason))

    def health_check(self, upstream: str, server: str, result: str) -> None:
        _bump(self._health_checks, (upstream, server, result if result in HEALTH_CHECK_RESULTS else "error"))

    def tls_phases(self, listener: str, phases: dict) -> None:
        dur = self._tls_dur
        for phase, seconds in phases.items():
            _tls_histogram(dur, listener, phase).observe(seconds)

    def tls_stats(self, listener: str) -> TLSStats:
        """The series every finished handshake on ``listener`` moves, found once (a TLS listener
        keeps what this returns; another call gives an object over the same series)."""
        return TLSStats(listener, self._tls_dur, self._tls_handshakes, self._tls_resumed)

    def tls_failure(self, listener: str, reason: str) -> None:
        _bump(self._tls_handshakes, (listener, "failed"))
        _bump(self._tls_failures, (listener, reason))

    def tls_sni(self, listener: str, missing: bool) -> None:
        """A ClientHello whose SNI named no certificate (or, ``missing``, had none)."""
        _bump(self._tls_sni_missing if missing else self._tls_sni_mismatch, (listener,))

    def tls_client_cert(self, listener: str, code: str) -> None:
        _bump(self._tls_purpose, (listener, code))

    def worker_restarted(self) -> None:
        _bump(self._restarts, ())

    def worker_hung(self) -> None:
        _bump(self._hangs, ())

    def proxy_protocol_error(self, listener: str) -> None:
        _bump(self._pp_errors, (listener,))

    def reload(self, result: str) -> None:
        _bump(self._reloads, (result,))

    # -- scrape time ------------------------------------------------------

    def set_gauge_source(self, name: str, fn: Callable | None) -> None:
        """Register (or, with ``fn=None``, remove) the callback behind a scrape-time gauge.

        ``http_server_connections_active``: ``fn() -> float``.
        ``http_client_conn_pool_idle`` / ``http_client_conn_pool_active``:
        ``fn() -> iterable of ((upstream, server), value)``; so are
        ``circuit_breaker_state`` and ``upstream_health``.
        Callbacks run on the thread that calls ``render()``.
        """
        if name not in GAUGE_SOURCES:
            raise ValueError(f"unknown gauge source {name!r}; expected one of {sorted(GAUGE_SOURCES)}")
        if fn is None:
            self._gauge_sources.pop(name, None)
        else:
            self._gauge_sources[name] = fn

    def render(self) -> tuple[bytes, str]:
        """Return ``(body, content_type)`` for a ``/metrics`` response."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class NullMetrics(Metrics):
    """Same interface as ``Metrics``; records nothing. (A subclass so that the
    core's metrics sink is one type; it overrides every method.)"""

    def __init__(self, *, codec: str = "", version: str = "") -> None:
        self.registry = CollectorRegistry()

    def request_done(self, route: str, code, duration: float) -> None:  # code: the status, an int
        pass

    def client_request(self, upstream: str, code: int | str) -> None:
        pass

    def connect_error(self, upstream: str, server: str, reason: str) -> None:
        pass

    def retry(self, upstream: str, result: str = "retried") -> None:
        pass

    def overflow(self, upstream: str, kind: str) -> None:
        pass

    def admission(self, listener: str, decision: str) -> None:
        pass

    def tls_stats(self, listener: str) -> TLSStats:
        return TLSStats(listener, {}, {}, {})

    def pool_opened(self, upstream: str, server: str) -> None:
        pass

    def pool_reused(self, upstream: str, server: str) -> None:
        pass

    def pool_evicted(self, upstream: str, reason: str) -> None:
        pass

    def upgrade(self, route: str) -> None:
        pass

    def timeout(self, side: str, phase: str) -> None:
        pass

    def accesslog_dropped(self, n: int = 1) -> None:
        pass

    def breaker_transition(self, upstream: str, server: str, from_state: str, to_state: str) -> None:
        pass

    def fallback(self, upstream: str, reason: str) -> None:
        pass

    def health_check(self, upstream: str, server: str, result: str) -> None:
        pass

    def tls_phases(self, listener: str, phases: dict) -> None:
        pass

    def tls_failure(self, listener: str, reason: str) -> None:
        pass

    def tls_sni(self, listener: str, missing: bool) -> None:
        pass

    def tls_client_cert(self, listener: str, code: str) -> None:
        pass

    def worker_restarted(self) -> None:
        pass

    def worker_hung(self) -> None:
        pass

    def proxy_protocol_error(self, listener: str) -> None:
        pass

    def reload(self, result: str) -> None:
        pass

    def set_gauge_source(self, name: str, fn: Callable | None) -> None:
        pass

    def render(self) -> tuple[bytes, str]:
        return b"", CONTENT_TYPE_LATEST
