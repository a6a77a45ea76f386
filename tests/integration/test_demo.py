"""`edgeproxy demo`: the built-in upstream behind the proxy, seen in metrics and the access log."""

from __future__ import annotations

from support import ProxyProcess, free_port, get, metric_value


def test_demo_proxies_a_request_into_metrics_and_access_log(tmp_path, loop_kind):
    up = free_port()
    cfg = f"""
[[listeners]]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[access_log]
path = "{tmp_path / 'access.log'}"
[upstreams.demo]
servers = ["127.0.0.1:{up}"]
[[routes]]
name = "demo"
upstream = "demo"
"""
    px = ProxyProcess(tmp_path, cfg, loop=loop_kind, command="demo").start()
    try:
        r = get(px.addr, "/hello")
        assert r.status == 200
        body = r.json()
        assert body["upstream"] == f"127.0.0.1:{up}" and body["path"] == "/hello"
        assert body["x-request-id"] == r.header("x-request-id")
        assert get(px.addr, "/bytes/100000").body == b"x" * 100000
        assert metric_value(px.metrics(), "http_server_requests_total", route="demo", code="200") == 2
        recs = px.access_records(2)
        assert [x["path"] for x in recs] == ["/hello", "/bytes/100000"]
        assert "curl" in "".join(px.stderr_lines)  # it prints the URLs to try
    finally:
        assert px.stop() == 0
