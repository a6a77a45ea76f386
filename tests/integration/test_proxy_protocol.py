"""PROXY protocol v1/v2 on a listener behind an L4 balancer: the client address it carries is the one used."""

from __future__ import annotations

import socket
import ssl

from proxy.proxyproto import ProxyInfo, build_v1, build_v2
from support import Client, base_config, metric_value
from tls_kit import Kit, tls_config


def pp_config(up, tmp):
    return base_config({"app": [up.address]}, tmp=tmp).replace(
        'address = "127.0.0.1:0"\n', 'address = "127.0.0.1:0"\nproxy_protocol = true\n', 1)


def test_v1_and_v2_client_address_forwarded_and_logged(proxy_factory, upstream_factory, tmp_path):
    up = upstream_factory()
    px = proxy_factory(config=pp_config(up, tmp_path))
    v1 = build_v1(ProxyInfo(1, "PROXY", "TCP4", "203.0.113.7", 40000, "192.0.2.1", 443))
    v2 = build_v2(ProxyInfo(2, "PROXY", "TCP6", "2001:db8::9", 40001, "2001:db8::1", 443))
    local = build_v2(ProxyInfo(2, "LOCAL", "UNKNOWN"))
    for header, target in ((v1, "/v1"), (v2, "/v2"), (local, "/local")):
        with Client(px.addr) as c:
            c.send_raw(header)
            assert c.request("GET", target, headers=[("X-Forwarded-For", "10.9.9.9")]).status == 200
    xff = {r.target: r.header("x-forwarded-for") for r in up.requests}
    assert xff == {"/v1": "10.9.9.9, 203.0.113.7", "/v2": "10.9.9.9, 2001:db8::9", "/local": "10.9.9.9, 127.0.0.1"}
    clients = [rec["client"] for rec in px.access_records(3)]
    assert clients[0] == "203.0.113.7:40000" and clients[1] == "[2001:db8::9]:40001"
    assert clients[2].startswith("127.0.0.1:")


def test_header_split_across_packets_and_sent_with_the_request(proxy_factory, upstream_factory, tmp_path):
    up = upstream_factory()
    px = proxy_factory(config=pp_config(up, tmp_path))
    v1 = build_v1(ProxyInfo(1, "PROXY", "TCP4", "198.51.100.2", 1234, "192.0.2.1", 80))
    with Client(px.addr) as c:
        c.send_raw(v1[:9])
        c.send_raw(v1[9:] + b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().status == 200
    assert up.requests[0].header("x-forwarded-for") == "198.51.100.2"


def test_missing_or_invalid_header_is_closed_and_counted(proxy_factory, upstream_factory, tmp_path):
    up = upstream_factory()
    px = proxy_factory(config=pp_config(up, tmp_path))
    for data in (b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n"):
        s = socket.create_connection(px.addr, timeout=5)
        s.sendall(data)
        try:
            assert s.recv(100) == b""  # closed without an HTTP answer
        except ConnectionResetError:
            pass
        s.close()
    assert up.requests == []
    assert metric_value(px.metrics(), "http_server_proxy_protocol_errors_total", listener="main") == 2


def test_proxy_protocol_before_tls(proxy_factory, upstream_factory, tmp_path):
    up = upstream_factory()
    kit = Kit(tmp_path)
    pair = kit.server("a", ["a.test"])
    cfg = tls_config(base_config({"app": [up.address]}, tmp=tmp_path), [pair], proxy_protocol=True)
    px = proxy_factory(config=cfg)
    raw = socket.create_connection(px.addr, timeout=5)
    raw.sendall(build_v2(ProxyInfo(2, "PROXY", "TCP4", "203.0.113.50", 5555, "192.0.2.1", 443)))
    s = kit.context().wrap_socket(raw, server_hostname="a.test")
    try:
        s.sendall(b"GET /tls HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200")
    except ssl.SSLError:
        raise
    finally:
        s.close()
    assert up.requests[0].header("x-forwarded-for") == "203.0.113.50"
    assert px.access_records(1)[0]["client"] == "203.0.113.50:5555"
