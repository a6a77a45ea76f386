"""Request-target forms (RFC 9112 section 3.2) through the running proxy."""

from __future__ import annotations

from support import Client, base_config, raw_exchange


def forms_config(a, b, tmp):
    return base_config({"a": [a.address], "b": [b.address]}, tmp=tmp, routes=[
        {"name": "api", "host": "api.test", "path_prefix": "/", "upstream": "a"},
        {"name": "any", "path_prefix": "/", "upstream": "b"}])


def test_absolute_form_routes_by_its_authority_and_goes_upstream_in_origin_form(proxy_factory, upstream_factory,
                                                                                 tmp_path):
    a, b = upstream_factory(), upstream_factory()
    px = proxy_factory(config=forms_config(a, b, tmp_path))
    with Client(px.addr) as c:
        # the Host header says other.test, the target's authority wins (RFC 9112 section 3.2.2)
        c.send_raw(b"GET http://API.test:8080/x/y?z=1 HTTP/1.1\r\nHost: other.test\r\n\r\n")
        assert c.read_response().status == 200
        c.send_raw(b"OPTIONS * HTTP/1.1\r\nHost: other.test\r\n\r\n")
        assert c.read_response("OPTIONS").status == 200
    got = a.requests[0]
    assert got.target == "/x/y?z=1" and got.header("host") == "API.test:8080"
    assert got.header("x-forwarded-host") == "API.test:8080"
    assert [(r.method, r.target) for r in b.requests] == [("OPTIONS", "*")]


def test_connect_and_odd_targets_are_refused(proxy_factory, upstream_factory, tmp_path):
    a, b = upstream_factory(), upstream_factory()
    px = proxy_factory(config=forms_config(a, b, tmp_path))
    out = raw_exchange(px.addr, b"CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 405") and b"method_not_allowed" in out
    for target in (b"http://user@api.test/", b"api.test:443", b"*"):
        out = raw_exchange(px.addr, b"GET " + target + b" HTTP/1.1\r\nHost: api.test\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400") and b"bad_request_target" in out, (target, out[:80])
    assert a.requests == [] and b.requests == []
