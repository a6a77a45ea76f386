"""Live diagnostics and the admin token over real sockets."""

from __future__ import annotations

import asyncio

from support import Client, get


def admin_get(px, path, token=None):
    hdrs = [("Authorization", f"Bearer {token}")] if token else []
    with Client(px.admin_addr) as c:
        return c.request("GET", path, headers=hdrs)


def test_debug_connections_and_pools(proxy_factory, upstream_factory):
    gate = asyncio.Event()

    async def held(req, reply):
        if req.target == "/slow":
            await gate.wait()
        await reply.send(200, body=b"ok")

    up = upstream_factory(held)
    px = proxy_factory(upstreams={"app": [up.address]})
    idle = Client(px.addr)
    assert idle.request("GET", "/fast").status == 200  # then idle keep-alive
    waiting = [Client(px.addr) for _ in range(3)]
    for c in waiting:
        c.send_raw(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
    assert up.wait_requests(4)
    d = admin_get(px, "/debug/connections?n=2").json()
    assert d["total"] == 4
    assert d["states"]["waiting_upstream"]["count"] == 3
    assert d["states"]["idle_keepalive"]["count"] == 1
    assert len(d["oldest"]) == 2 and d["oldest"][0]["age"] >= d["oldest"][1]["age"]
    assert {r["route"] for r in d["oldest"] if r["state"] == "waiting_upstream"} <= {"default"}
    p = admin_get(px, "/debug/pools").json()
    srv = p["app"]["servers"][up.address]
    assert srv["active"] == 3 and srv["breaker"] == "closed" and srv["healthy"] is True
    assert srv["open_connections"] == 3 and srv["idle"] == 0  # the idle one was reused
    up.loop.call_soon_threadsafe(gate.set)
    assert [c.read_response().status for c in waiting] == [200] * 3
    t = admin_get(px, "/debug/tasks").json()
    assert t["total"] >= 1 and all(g["count"] >= 1 for g in t["groups"])
    for c in waiting + [idle]:
        c.close()


def test_admin_token_and_redacted_config(proxy_factory, upstream_factory, tmp_path):
    from support import base_config

    up = upstream_factory()
    cfg = base_config({"app": [up.address]}, tmp=tmp_path).replace(
        '[admin]\naddress = "127.0.0.1:0"\n', '[admin]\naddress = "127.0.0.1:0"\ntoken = "s3cret"\n')
    px = proxy_factory(config=cfg)
    assert admin_get(px, "/metrics").status == 401
    assert admin_get(px, "/debug/pools", token="wrong").status == 401
    assert admin_get(px, "/metrics", token="s3cret").status == 200
    assert get(px.admin_addr, "/healthz").status == 200  # probes stay open
    assert get(px.admin_addr, "/readyz").status == 200
    cfg = admin_get(px, "/debug/config", token="s3cret")
    assert cfg.status == 200 and b"s3cret" not in cfg.body
    data = cfg.json()
    assert data["admin"]["token"] == "<redacted>"
    assert data["upstreams"]["app"]["servers"][0]["address"][1] == up.port
