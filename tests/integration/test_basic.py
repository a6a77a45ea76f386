from support import Client, metric_value


def test_get_roundtrip_keepalive_and_pool_reuse(proxy_factory, upstream_factory):
    up = upstream_factory()
    px = proxy_factory(upstreams={"app": [up.address]})
    with Client(px.addr) as c:
        for i in range(20):
            r = c.request("GET", f"/item/{i}")
            assert r.status == 200
            assert r.json()["target"] == f"/item/{i}"
            assert not r.closed
    # one upstream connection served all twenty requests
    assert up.connections == 1
    assert len(up.requests) == 20
    recs = px.access_records(20)
    assert recs[-1]["status"] == 200 and recs[-1]["route"] == "default"
    m = px.metrics()
    assert metric_value(m, "http_server_requests_total", route="default", code="200") == 20
