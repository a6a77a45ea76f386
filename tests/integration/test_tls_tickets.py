"""TLS session tickets under a supervisor: any worker resumes a session another issued.

Every worker of a generation seals tickets with the key block its supervisor
gave it; a reload brings a new generation with a new block.
"""

from __future__ import annotations

import os
import signal
import ssl

import pytest

from support import Client, ProxyProcess, base_config, metric_value, wait_for
from tls_kit import Kit, TLSClient, tls_config

RESUMES = 12  # new connections per session; with per-worker keys about half would not resume
MAX_CONNECTIONS = 64  # opened until the kernel has given both workers some (it spreads them by hash)


@pytest.fixture
def runtime():
    return ("uvloop", "default")


@pytest.fixture
def supervised(tmp_path, upstream_factory):
    """A proxy with two workers and one TLS listener (certificate for a.test), and a client context."""
    kit = Kit(tmp_path)
    up = upstream_factory()
    cfg = tls_config(base_config({"app": [up.address]}, tmp=tmp_path, access_log=False),
                     [kit.server("a", ["a.test"])])
    px = ProxyProcess(tmp_path, cfg, workers=2)
    try:
        yield px.start(), kit
    finally:
        try:
            px.stop(10)
        finally:
            px.kill()


def debug_totals(px) -> dict:
    """Open client connections per worker, from the supervisor's /debug/connections."""
    with Client(px.admin_addr) as c:
        return {w: v["total"] for w, v in c.request("GET", "/debug/connections").json()["workers"].items()}


def settled_totals(px, n: int) -> dict:
    """``debug_totals`` once the workers hold ``n`` connections (earlier ones seen closed)."""
    seen = {}

    def settled() -> bool:
        seen.clear()
        seen.update(debug_totals(px))
        return sum(seen.values()) == n

    assert wait_for(settled), seen
    return seen


def resumed_total(px) -> float:
    return metric_value(px.metrics(), "tls_sessions_resumed_total", listener="main")


def client_context(kit: Kit, version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = kit.context()
    ctx.minimum_version = ctx.maximum_version = version
    return ctx


def new_session(px, ctx: ssl.SSLContext):
    """A full handshake and one exchange (a TLS 1.3 ticket arrives after the handshake): its session."""
    with TLSClient(px.addr, ctx, "a.test", timeout=5) as c:
        assert c.request("GET", "/first", host="a.test").status == 200
        assert not c.sock.session_reused
        session = c.sock.session
    assert session is not None
    return session


def resume_everywhere(px, ctx: ssl.SSLContext, session) -> int:
    """Connect with ``session`` until both workers hold some of the connections (at least RESUMES);
    every one must have resumed. Returns how many were made."""
    clients = []
    try:
        while True:
            c = TLSClient(px.addr, ctx, "a.test", timeout=5, session=session)
            clients.append(c)
            assert c.request("GET", f"/resumed{len(clients)}", host="a.test").status == 200
            assert c.sock.session_reused, f"connection {len(clients)} did a full handshake"
            if len(clients) >= RESUMES:
                per_worker = settled_totals(px, len(clients))
                if len(per_worker) == 2 and min(per_worker.values()) > 0:
                    return len(clients)
                assert len(clients) < MAX_CONNECTIONS, per_worker
    finally:
        for c in clients:
            c.close()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
def test_a_session_resumes_on_every_worker_and_keys_change_at_reload(supervised, version):
    px, kit = supervised
    ctx = client_context(kit, version)
    session = new_session(px, ctx)
    n = resume_everywhere(px, ctx, session)
    assert resumed_total(px) == n  # the merged counter: each worker resumed its share

    # a reload starts a generation with new keys
    px.signal(signal.SIGHUP)
    assert px.wait_event("reloaded", 20) is not None
    # the old workers have stopped accepting once they are gone: then only the new generation answers
    assert wait_for(lambda: sum(e["event"] == "worker_exited" for e in px.events) == 2, 15)
    with TLSClient(px.addr, ctx, "a.test", timeout=5, session=session) as c:
        assert c.request("GET", "/old-ticket", host="a.test").status == 200
        assert not c.sock.session_reused  # the previous generation's ticket: one full handshake
    fresh = new_session(px, ctx)
    n = resume_everywhere(px, ctx, fresh)
    assert resumed_total(px) == n


def test_a_restarted_worker_gets_its_generations_keys(supervised):
    px, kit = supervised
    ctx = client_context(kit, ssl.TLSVersion.TLSv1_3)
    session = new_session(px, ctx)
    with Client(px.admin_addr) as c:
        pid = c.request("GET", "/debug/connections").json()["pids"]["0"]
    os.kill(pid, signal.SIGKILL)
    assert px.wait_event("worker_restarted", 15) is not None
    resume_everywhere(px, ctx, session)  # the ticket issued before the restart resumes on the new worker too
