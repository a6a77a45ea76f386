import inspect

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from proxy.metrics import (
    GAUGE_SOURCES,
    METRICS_DOC,
    REQUEST_DURATION_BUCKETS,
    Metrics,
    NullMetrics,
)


def scrape(m):
    """Parse render() output into {family name: family}, using exposed names."""
    body, ctype = m.render()
    assert ctype == CONTENT_TYPE_LATEST
    fams = {}
    for fam in text_string_to_metric_families(body.decode()):
        name = fam.name + "_total" if fam.type == "counter" else fam.name
        fams[name] = fam
    return fams


def sample(fams, family, sample_name=None, **labels):
    fam = fams[family]
    sample_name = sample_name or family
    for s in fam.samples:
        if s.name == sample_name and s.labels == labels:
            return s.value
    raise AssertionError(f"no sample {sample_name}{labels} in {fam.samples}")


def exercise_everything(m):
    m.request_done("api", 200, 0.003)
    m.client_request("backend", "200")
    m.connect_error("backend", "10.0.0.1:80", "refused")
    m.retry("backend")
    m.upgrade("ws")
    m.timeout("upstream", "connect")
    m.accesslog_dropped()
    m.set_gauge_source("http_server_connections_active", lambda: 3)
    m.set_gauge_source("http_client_conn_pool_idle", lambda: [(("backend", "10.0.0.1:80"), 2)])
    m.set_gauge_source("http_client_conn_pool_active", lambda: [(("backend", "10.0.0.1:80"), 1)])
    m.set_gauge_source("circuit_breaker_state", lambda: [(("backend", "10.0.0.1:80"), 2)])
    m.breaker_transition("backend", "10.0.0.1:80", "closed", "open")
    m.fallback("backend", "breaker_open")
    m.set_gauge_source("upstream_health", lambda: [(("backend", "10.0.0.1:80"), 0)])
    m.health_check("backend", "10.0.0.1:80", "timeout")
    m.overflow("backend", "max_pending")
    m.pool_opened("backend", "10.0.0.1:80")
    m.admission("main", "accepted")
    m.set_gauge_source("http_server_accept_queue_len", lambda: [(("main",), 3)])
    m.set_gauge_source("http_server_connections", lambda: [(("main", "idle_keepalive"), 2)])
    m.set_gauge_source("http_server_accept_queue_max", lambda: [(("main",), 511)])
    m.set_gauge_source("http_server_listen_overflows_total", lambda: 7)
    m.set_gauge_source("http_server_listen_drops_total", lambda: 9)
    m.pool_reused("backend", "10.0.0.1:80")
    m.pool_evicted("backend", "idle_timeout")
    m.set_gauge_source("http_client_conn_pool_idle_timeout_seconds", lambda: [(("backend", "10.0.0.1:80"), 30.0)])
    m.tls_stats("tls").finished(0.001, 0.00002, 0.002, 0.004, True)
    m.tls_failure("tls", "unknown_ca")
    m.tls_sni("tls", missing=False)
    m.tls_sni("tls", missing=True)
    m.tls_client_cert("tls", "eku_mismatch")
    m.set_gauge_source("edgeproxy_workers", lambda: 2)
    m.worker_restarted()
    m.worker_hung()
    m.proxy_protocol_error("main")
    m.reload("ok")


def test_counters_and_histogram_rendered_with_labels():
    m = Metrics(codec="h11", version="1.2.3")
    m.request_done("api", 200, 0.003)
    m.request_done("api", 200, 0.2)
    m.request_done("api", 502, 7.0)
    m.request_done("static", 404, 0.0001)
    m.client_request("backend", "200")
    m.client_request("backend", "timeout")
    m.client_request("backend", "timeout")
    m.connect_error("backend", "10.0.0.1:80", "refused")
    m.connect_error("backend", "10.0.0.1:80", "something-new")
    m.retry("backend")
    m.upgrade("ws")
    m.timeout("downstream", "header")
    m.timeout("downstream", "header")
    m.accesslog_dropped()
    m.accesslog_dropped(4)

    f = scrape(m)
    assert sample(f, "http_server_requests_total", route="api", code="200") == 2
    assert sample(f, "http_server_requests_total", route="api", code="502") == 1
    assert sample(f, "http_server_requests_total", route="static", code="404") == 1

    d = "http_server_request_duration_seconds"
    assert sample(f, d, d + "_count", route="api") == 3
    assert sample(f, d, d + "_sum", route="api") == pytest.approx(7.203)
    assert sample(f, d, d + "_bucket", route="api", le="0.005") == 1
    assert sample(f, d, d + "_bucket", route="api", le="0.25") == 2
    assert sample(f, d, d + "_bucket", route="api", le="10.0") == 3
    assert sample(f, d, d + "_bucket", route="static", le="0.0005") == 1
    les = sorted(
        float(s.labels["le"]) for s in f[d].samples
        if s.name == d + "_bucket" and s.labels["route"] == "api" and s.labels["le"] != "+Inf"
    )
    assert les == sorted(float(b) for b in REQUEST_DURATION_BUCKETS)

    assert sample(f, "http_client_requests_total", upstream="backend", code="200") == 1
    assert sample(f, "http_client_requests_total", upstream="backend", code="timeout") == 2
    ce = "http_client_connect_errors_total"
    assert sample(f, ce, upstream="backend", server="10.0.0.1:80", reason="refused") == 1
    assert sample(f, ce, upstream="backend", server="10.0.0.1:80", reason="other") == 1
    assert sample(f, "http_client_retries_total", upstream="backend", result="retried") == 1
    assert sample(f, "http_server_upgrades_total", route="ws") == 1
    assert sample(f, "http_timeouts_total", side="downstream", phase="header") == 2
    assert sample(f, "accesslog_dropped_total") == 5
    assert sample(f, "edgeproxy_build_info", version="1.2.3", codec="h11", core="source") == 1


def test_no_created_series_in_render():
    m = Metrics(codec="h11", version="0")
    exercise_everything(m)
    body, _ = m.render()
    assert b"_created" not in body


def _samples(m):
    body, _ = m.render()
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for smp in fam.samples:
            out[(smp.name, tuple(sorted(smp.labels.items())))] = smp.value
    return out


def test_event_series_accumulate_and_histogram_is_cumulative():
    m = Metrics(codec="h11", version="0")
    for d in (0.0004, 0.003, 0.003, 7.0, 100.0):
        m.request_done("api", 200, d)
    m.request_done("api", 502, 0.01)
    for _ in range(3):
        m.client_request("u", "200")
        m.retry("u")
    m.connect_error("u", "s", "weird")  # outside the closed set -> "other"
    m.accesslog_dropped(4)
    s = _samples(m)
    assert s[("http_server_requests_total", (("code", "200"), ("route", "api")))] == 5
    assert s[("http_server_requests_total", (("code", "502"), ("route", "api")))] == 1
    h = "http_server_request_duration_seconds"
    assert s[(h + "_bucket", (("le", "0.0005"), ("route", "api")))] == 1
    assert s[(h + "_bucket", (("le", "0.005"), ("route", "api")))] == 3
    assert s[(h + "_bucket", (("le", "10.0"), ("route", "api")))] == 5  # 0.01 and 7.0 added
    assert s[(h + "_bucket", (("le", "60.0"), ("route", "api")))] == 5
    assert s[(h + "_bucket", (("le", "+Inf"), ("route", "api")))] == 6
    assert s[(h + "_count", (("route", "api"),))] == 6
    assert abs(s[(h + "_sum", (("route", "api"),))] - 107.0164) < 1e-9
    assert s[("http_client_requests_total", (("code", "200"), ("upstream", "u")))] == 3
    assert s[("http_client_retries_total", (("result", "retried"), ("upstream", "u")))] == 3
    assert s[("http_client_connect_errors_total", (("reason", "other"), ("server", "s"), ("upstream", "u")))] == 1
    assert s[("accesslog_dropped_total", ())] == 4


def test_gauge_sources_evaluated_at_render():
    m = Metrics(codec="h11", version="0")
    f = scrape(m)
    # Not set: unlabelled gauge reads 0, labelled ones have no samples.
    assert sample(f, "http_server_connections_active") == 0
    assert f["http_client_conn_pool_idle"].samples == []

    calls = []
    state = {"conns": 7, "idle": {("b", "s1"): 2, ("b", "s2"): 0}}

    def conns():
        calls.append("conns")
        return state["conns"]

    m.set_gauge_source("http_server_connections_active", conns)
    m.set_gauge_source("http_client_conn_pool_idle", lambda: state["idle"].items())
    m.set_gauge_source("http_client_conn_pool_active", lambda: [(("b", "s1"), 4)])
    assert calls == []  # nothing evaluated until a scrape

    f = scrape(m)
    assert calls == ["conns"]
    assert sample(f, "http_server_connections_active") == 7
    assert sample(f, "http_client_conn_pool_idle", upstream="b", server="s1") == 2
    assert sample(f, "http_client_conn_pool_idle", upstream="b", server="s2") == 0
    assert sample(f, "http_client_conn_pool_active", upstream="b", server="s1") == 4

    state["conns"] = 1
    state["idle"] = {("b", "s1"): 5}
    f = scrape(m)
    assert sample(f, "http_server_connections_active") == 1
    assert sample(f, "http_client_conn_pool_idle", upstream="b", server="s1") == 5
    assert len(f["http_client_conn_pool_idle"].samples) == 1

    m.set_gauge_source("http_server_connections_active", None)
    assert sample(scrape(m), "http_server_connections_active") == 0


def test_failing_gauge_source_does_not_break_scrape():
    m = Metrics(codec="h11", version="0")
    m.request_done("api", 200, 0.01)

    def boom():
        raise RuntimeError("pool gone")

    m.set_gauge_source("http_server_connections_active", boom)
    m.set_gauge_source("http_client_conn_pool_idle", boom)
    f = scrape(m)
    assert "http_server_connections_active" not in f
    assert "http_client_conn_pool_idle" not in f
    assert sample(f, "http_server_requests_total", route="api", code="200") == 1


def test_unknown_gauge_source_rejected():
    m = Metrics(codec="h11", version="0")
    with pytest.raises(ValueError):
        m.set_gauge_source("http_nope", lambda: 1)


def test_instances_have_private_registries():
    a = Metrics(codec="h11", version="0")
    b = Metrics(codec="h11", version="0")
    a.request_done("api", 200, 0.01)
    assert sample(scrape(a), "http_server_requests_total", route="api", code="200") == 1
    assert not scrape(b)["http_server_requests_total"].samples


def public(obj):
    return {n for n in dir(obj) if not n.startswith("_")}


def test_null_metrics_matches_interface():
    real = Metrics(codec="h11", version="0")
    null = NullMetrics(codec="h11", version="0")
    assert public(real) <= public(null)
    for name in public(Metrics):
        attr = getattr(Metrics, name)
        if callable(attr):
            assert name in vars(NullMetrics), f"NullMetrics inherits {name} instead of doing nothing"
            assert inspect.signature(getattr(NullMetrics, name)) == inspect.signature(attr), name
    exercise_everything(null)
    null.accesslog_dropped(3)
    body, ctype = null.render()
    assert body == b"" and ctype == CONTENT_TYPE_LATEST


def test_metrics_doc_matches_render():
    m = Metrics(codec="h11", version="0")
    exercise_everything(m)
    assert {n for n in GAUGE_SOURCES} <= {d[0] for d in METRICS_DOC}
    fams = scrape(m)
    doc = {name: (kind, labels, help_) for name, kind, labels, help_ in METRICS_DOC}
    assert len(doc) == len(METRICS_DOC), "duplicate names in METRICS_DOC"
    assert set(fams) == set(doc)
    for name, fam in fams.items():
        kind, labels, help_ = doc[name]
        assert fam.type == kind, name
        assert fam.documentation == help_, name
        assert fam.samples, f"{name} has no samples after exercising every method"
        for s in fam.samples:
            assert set(s.labels) - {"le"} == set(labels), (name, s)


def test_readme_lists_every_metric():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name, kind, labels, _ in METRICS_DOC:
        row = f"| `{name}` | {kind} | {', '.join(labels) or '-'} |"
        assert row in readme, f"README metrics table lacks {row}"


def test_tls_phase_histogram_and_counters():
    m = Metrics(codec="h11", version="0")
    stats = m.tls_stats("edge")
    stats.finished(0.0001, 0.00001, 0.003, 0.02, False)
    m.tls_stats("edge").finished(0.0001, 0.00001, 0.0004, 0.001, True)  # the same series
    m.tls_failure("edge", "timeout")
    m.tls_phases("edge", {"total": 10.0})  # a failed handshake's total: the same series
    text = m.render()[0].decode()
    assert 'tls_handshake_duration_seconds_bucket{le="0.0005",listener="edge",phase="handshake"} 1.0' in text
    assert 'tls_handshake_duration_seconds_count{listener="edge",phase="total"} 3.0' in text
    assert 'tls_handshake_duration_seconds_count{listener="edge",phase="client_hello"} 2.0' in text
    assert 'tls_handshake_duration_seconds_sum{listener="edge",phase="sni"} 2e-05' in text
    assert 'tls_handshakes_total{listener="edge",result="ok"} 2.0' in text
    assert 'tls_handshakes_total{listener="edge",result="failed"} 1.0' in text
    assert 'tls_handshake_failures_total{listener="edge",reason="timeout"} 1.0' in text
    assert 'tls_sessions_resumed_total{listener="edge"} 1.0' in text
