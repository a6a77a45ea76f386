"""TLS termination: real handshakes against the running proxy, certificates made at test time.

Each test checks the client-visible outcome and that exactly the right
counters moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import ssl
import threading

import pytest

from proxy.gencert import SERVER_AUTH
from support import base_config, metric_value
from tls_kit import DAY, NOW, Kit, TLSClient, tls_config


@pytest.fixture
def kit(tmp_path):
    return Kit(tmp_path)


def start(proxy_factory, up, tmp_path, pairs, **keys):
    cfg = tls_config(base_config({"app": [up.address]}, tmp=tmp_path), pairs, **keys)
    return proxy_factory(config=cfg)


def total(m: str, name: str, **labels) -> float:
    return metric_value(m, name, listener="main", **labels)


def handshake_fails(px, ctx, sni) -> ssl.SSLError | OSError:
    """Connect and do one request; the error the client gets (the handshake or, in TLS 1.3, the first read)."""
    try:
        with TLSClient(px.addr, ctx, sni, timeout=5) as c:
            r = c.request("GET", "/")
    except (ssl.SSLError, OSError) as exc:
        return exc
    raise AssertionError(f"the request succeeded: {r.status}")


# ----------------------------------------------------------------------
# certificates and SNI
def test_certificate_chosen_by_sni_exact_then_wildcard(proxy_factory, upstream_factory, tmp_path, kit):
    up = upstream_factory()
    a = kit.server("a", ["a.test"])
    b = kit.server("b", ["*.b.test"], key_kind="rsa")  # RSA and ECDSA certificates both work
    px = start(proxy_factory, up, tmp_path, [a, b])
    with TLSClient(px.addr, kit.context(), "a.test") as c:
        assert c.peer_names() == ["a.test"]
        r = c.request("GET", "/x", host="a.test")
        assert r.status == 200
        assert c.sock.selected_alpn_protocol() in (None, "http/1.1")
    with TLSClient(px.addr, kit.context(), "api.b.test") as c:
        assert c.peer_names() == ["*.b.test"]
        assert c.request("GET", "/y", host="api.b.test").status == 200
    # the wildcard covers one label only: deeper names get the default (and are counted)
    with TLSClient(px.addr, kit.context(check_hostname=False), "x.api.b.test") as c:
        assert c.peer_names() == ["a.test"]
    m = px.metrics()
    assert total(m, "tls_sni_mismatch_total") == 1
    assert total(m, "tls_handshakes_total", result="ok") == 3
    assert total(m, "tls_handshakes_total", result="failed") == 0
    # X-Forwarded-Proto says https
    assert {r.header("x-forwarded-proto") for r in up.requests} == {"https"}
    # the access log carries the connection's TLS facts
    recs = px.access_records(2)
    assert recs[0]["tls_sni"] == "a.test" and recs[0]["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert recs[0]["tls_cipher"] and recs[0]["tls_resumed"] is False and recs[0]["tls_handshake"] > 0
    assert recs[0]["client_subject"] is None


def test_hsts_replaces_the_upstreams_on_a_tls_listener(proxy_factory, upstream_factory, tmp_path, kit):
    async def handler(req, reply):
        await reply.send(200, headers=[("Strict-Transport-Security", "max-age=5")], body=b"ok")

    up = upstream_factory(handler)
    px = start(proxy_factory, up, tmp_path, [kit.server("a", ["a.test"])],
               hsts="max-age=31536000; includeSubDomains")
    with TLSClient(px.addr, kit.context(), "a.test") as c:
        r = c.request("GET", "/x", host="a.test")
    assert r.status == 200
    assert [v for k, v in r.headers if k == "strict-transport-security"] == ["max-age=31536000; includeSubDomains"]


def test_unknown_sni_default_or_reject(proxy_factory, upstream_factory, tmp_path, kit):
    up = upstream_factory()
    a = kit.server("a", ["a.test"])
    px = start(proxy_factory, up, tmp_path, [a], sni_policy="reject")
    exc = handshake_fails(px, kit.context(check_hostname=False), "nope.test")
    assert "UNRECOGNIZED_NAME" in str(exc).upper()
    # without SNI: the default certificate (no_sni_policy = "default")
    with TLSClient(px.addr, kit.context(check_hostname=False), None) as c:
        assert c.peer_names() == ["a.test"]
        assert c.request("GET", "/", host="a.test").status == 200
    m = px.metrics()
    assert total(m, "tls_handshake_failures_total", reason="sni_unknown") == 1
    assert total(m, "tls_sni_mismatch_total") == 1
    assert total(m, "tls_sni_missing_total") == 1
    assert up.requests and len(up.requests) == 1


def test_missing_sni_rejected_when_asked(proxy_factory, upstream_factory, tmp_path, kit):
    up = upstream_factory()
    px = start(proxy_factory, up, tmp_path, [kit.server("a", ["a.test"])], no_sni_policy="reject")
    handshake_fails(px, kit.context(check_hostname=False), None)
    with TLSClient(px.addr, kit.context(), "a.test") as c:
        assert c.request("GET", "/", host="a.test").status == 200
    m = px.metrics()
    assert total(m, "tls_handshake_failures_total", reason="no_sni") == 1
    assert total(m, "tls_handshakes_total", result="ok") == 1


def test_strict_host_answers_421_for_another_host(proxy_factory, upstream_factory, tmp_path, kit):
    up = upstream_factory()
    pair = kit.server("ab", ["a.test", "b.test"])
    px = start(proxy_factory, up, tmp_path, [pair], strict_host=True)
    with TLSClient(px.addr, kit.context(), "a.test") as c:
        assert c.request("GET", "/1", host="a.test:443").status == 200
        r = c.request("GET", "/2", host="b.test")
        assert r.status == 421 and r.json()["error"] == "misdirected_request"
        assert c.request("GET", "/3", host="A.TEST").status == 200  # case does not matter
    assert [r.target for r in up.requests] == ["/1", "/3"]


# ----------------------------------------------------------------------
# mTLS
def mtls_proxy(proxy_factory, up, tmp_path, kit, **keys):
    return start(proxy_factory, up, tmp_path, [kit.server("srv", ["a.test"])], client_auth="required",
                 client_ca=kit.ca_file, **keys)


def test_mtls_valid_client_identity_forwarded_and_spoofing_stripped(proxy_factory, upstream_factory, tmp_path,
                                                                   kit):
    up = upstream_factory()
    px = mtls_proxy(proxy_factory, up, tmp_path, kit)
    good = kit.client("good", cn="app", sans=("app.clients.test",))
    with TLSClient(px.addr, kit.context(good), "a.test") as c:
        r = c.request("GET", "/who", host="a.test",
                      headers=[("X-Client-Subject", "CN=admin"), ("X-Client-Cert-SHA256", "00")])
        assert r.status == 200
    got = up.requests[0]
    assert got.header("x-client-subject") == "CN=app"  # ours, not the client's
    assert got.header("x-client-san") == "app.clients.test"
    fp = got.header("x-client-cert-sha256")
    assert fp and len(fp) == 64 and fp != "00"
    m = px.metrics()
    assert total(m, "tls_mtls_cert_purpose_total", code="ok") == 1
    assert total(m, "tls_handshakes_total", result="ok") == 1
    for phase in ("client_hello", "sni", "handshake", "client_verify", "total"):
        assert metric_value(m, "tls_handshake_duration_seconds_count", listener="main", phase=phase) == 1, phase
    rec = px.access_records(1)[-1]
    assert rec["client_subject"] == "CN=app"


def test_identity_headers_from_a_client_without_certificate_are_dropped(proxy_factory, upstream_factory, tmp_path,
                                                                       kit):
    up = upstream_factory()
    px = start(proxy_factory, up, tmp_path, [kit.server("srv", ["a.test"])], client_auth="optional",
               client_ca=kit.ca_file)
    with TLSClient(px.addr, kit.context(), "a.test") as c:
        r = c.request("GET", "/", host="a.test", headers=[("X-Client-Subject", "CN=admin"),
                                                          ("x-client-san", "admin.test")])
        assert r.status == 200
    got = up.requests[0]
    assert got.header("x-client-subject") is None and got.header("x-client-san") is None
    assert total(px.metrics(), "tls_mtls_cert_purpose_total", code="no_cert") == 1


@pytest.mark.parametrize(("case", "reason"), [
    ("missing", "no_client_cert"),
    ("wrong_ca", "unknown_ca"),
    ("expired", "expired"),
    ("not_yet_valid", "not_yet_valid"),
    ("server_auth_only", "eku_mismatch"),
])
def test_mtls_refused_in_the_handshake(proxy_factory, upstream_factory, tmp_path, kit, case, reason):
    up = upstream_factory()
    px = mtls_proxy(proxy_factory, up, tmp_path, kit)
    client = {
        "missing": None,
        "wrong_ca": lambda: kit.client("c", ca=kit.other_ca),
        "expired": lambda: kit.client("c", not_before=NOW - 10 * DAY, not_after=NOW - DAY),
        "not_yet_valid": lambda: kit.client("c", not_before=NOW + DAY, not_after=NOW + 10 * DAY),
        "server_auth_only": lambda: kit.client("c", ekus=(SERVER_AUTH,)),
    }[case]
    handshake_fails(px, kit.context(client() if client else None), "a.test")
    m = px.metrics()
    assert total(m, "tls_handshake_failures_total", reason=reason) == 1
    assert total(m, "tls_handshakes_total", result="failed") == 1
    assert total(m, "tls_handshakes_total", result="ok") == 0
    assert up.requests == []
    ev = px.wait_event("tls_handshake_failed")
    assert ev["reason"] == reason


def test_mtls_san_not_allowed_gets_403_with_reason(proxy_factory, upstream_factory, tmp_path, kit):
    up = upstream_factory()
    px = mtls_proxy(proxy_factory, up, tmp_path, kit, client_allowed_sans=["billing.clients.test"])
    other = kit.client("other", sans=("app.clients.test",))
    with TLSClient(px.addr, kit.context(other), "a.test") as c:
        r = c.request("POST", "/pay", host="a.test", body=b"{}")
        assert r.status == 403
        assert r.json()["error"] == "client_certificate_refused" and r.json()["reason"] == "san_not_allowed"
        assert c.is_closed()
    allowed = kit.client("billing", sans=("billing.clients.test",))
    with TLSClient(px.addr, kit.context(allowed), "a.test") as c:
        assert c.request("GET", "/pay", host="a.test").status == 200
    m = px.metrics()
    assert total(m, "tls_mtls_cert_purpose_total", code="san_not_allowed") == 1
    assert total(m, "tls_mtls_cert_purpose_total", code="ok") == 1
    assert total(m, "tls_handshakes_total", result="ok") == 2  # the handshake itself completed
    assert [r.target for r in up.requests] == ["/pay"]


# ----------------------------------------------------------------------
# handshake timeout, failures, resumption
def test_stalled_handshake_closed_at_deadline_and_slot_released(proxy_factory, upstream_factory, tmp_path, kit):
    import time

    up = upstream_factory()
    px = start(proxy_factory, up, tmp_path, [kit.server("a", ["a.test"])], handshake_timeout="300ms",
               max_connections=1)
    s = socket.create_connection(px.addr, timeout=5)
    t0 = time.monotonic()
    s.sendall(b"\x16\x03\x01\x00")  # the first bytes of a ClientHello, then nothing
    assert s.recv(100) == b""  # closed by the proxy
    waited = time.monotonic() - t0
    s.close()
    assert 0.25 <= waited < 3.0, waited
    # the only slot is free again: a full handshake and request work
    with TLSClient(px.addr, kit.context(), "a.test") as c:
        assert c.request("GET", "/", host="a.test").status == 200
    m = px.metrics()
    assert total(m, "tls_handshake_failures_total", reason="timeout") == 1
    assert metric_value(m, "http_timeouts_total", side="downstream", phase="tls_handshake") == 1


def test_plain_http_on_a_tls_listener_is_counted(proxy_factory, upstream_factory, tmp_path, kit):
    up = upstream_factory()
    px = start(proxy_factory, up, tmp_path, [kit.server("a", ["a.test"])])
    s = socket.create_connection(px.addr, timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
    s.recv(100)
    s.close()
    px.wait_event("tls_handshake_failed")
    assert total(px.metrics(), "tls_handshake_failures_total", reason="http_request") == 1
    assert up.requests == []


def test_session_resumption(proxy_factory, upstream_factory, tmp_path, kit):
    up = upstream_factory()
    px = start(proxy_factory, up, tmp_path, [kit.server("a", ["a.test"])])
    ctx = kit.context()
    with TLSClient(px.addr, ctx, "a.test") as c:
        assert c.request("GET", "/1", host="a.test").status == 200  # the ticket arrives with the response
        session = c.sock.session
    assert session is not None
    with TLSClient(px.addr, ctx, "a.test", session=session) as c:
        assert c.request("GET", "/2", host="a.test").status == 200
        assert c.sock.session_reused
    m = px.metrics()
    assert total(m, "tls_sessions_resumed_total") == 1
    assert px.access_records(2)[-1]["tls_resumed"] is True


@contextlib.contextmanager
def _released(event: threading.Event):
    try:
        yield
    finally:
        event.set()  # a failing test leaves no upstream handler waiting


def test_tls13_session_tickets_leave_with_the_first_answer(proxy_factory, upstream_factory, tmp_path, kit):
    # a client whose first request comes with its Finished gets the session tickets in the same
    # write as the answer, not in a write of their own before it
    got, release = threading.Event(), threading.Event()

    async def held(req, reply):
        got.set()
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 10)
        await reply.send(200, body=b"ok")

    up = upstream_factory(held)
    px = start(proxy_factory, up, tmp_path, [kit.server("a", ["a.test"])])
    ctx = kit.context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="a.test")
    with socket.create_connection(px.addr, timeout=5) as raw, _released(release):
        while True:  # the handshake by hand, so the Finished and the request leave in one send
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                raw.sendall(outgoing.read())
                incoming.write(raw.recv(65536))
        tls.write(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        raw.sendall(outgoing.read())
        assert got.wait(5)
        # the request reached the upstream; on loopback anything written before it is already here
        raw.setblocking(False)
        with pytest.raises(BlockingIOError):
            raw.recv(65536)
        raw.setblocking(True)
        release.set()
        answer = b""
        while b"ok" not in answer:
            data = raw.recv(65536)
            assert data, answer
            incoming.write(data)
            try:
                answer += tls.read(65536)
            except ssl.SSLWantReadError:
                pass
        assert answer.startswith(b"HTTP/1.1 200")
        session = tls.session
    assert session is not None and session.has_ticket
    with TLSClient(px.addr, ctx, "a.test", session=session) as c:
        assert c.request("GET", "/2", host="a.test").status == 200
        assert c.sock.session_reused


def test_tls12_minimum_refuses_older_versions(proxy_factory, upstream_factory, tmp_path, kit):
    up = upstream_factory()
    px = start(proxy_factory, up, tmp_path, [kit.server("a", ["a.test"])], min_tls_version="1.3")
    ctx = kit.context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    handshake_fails(px, ctx, "a.test")
    assert total(px.metrics(), "tls_handshake_failures_total", reason="protocol_version") == 1


# ----------------------------------------------------------------------
# reload
def test_sighup_reloads_certificates_for_new_connections_only(proxy_factory, upstream_factory, tmp_path, kit):
    up = upstream_factory()
    cert, key = kit.server("live", ["old.test"])
    px = start(proxy_factory, up, tmp_path, [(cert, key)])
    old = TLSClient(px.addr, kit.context(), "old.test")
    try:
        assert old.request("GET", "/before", host="old.test").status == 200
        # replace the files in place, as a certificate renewal does, and signal
        new_cert, new_key = kit.server("next", ["new.test"])
        with open(new_cert, "rb") as f, open(cert, "wb") as g:
            g.write(f.read())
        with open(new_key, "rb") as f, open(key, "wb") as g:
            g.write(f.read())
        px.signal(signal.SIGHUP)
        assert px.wait_event("tls_reloaded") is not None
        with TLSClient(px.addr, kit.context(), "new.test") as c:
            assert c.peer_names() == ["new.test"]
            assert c.request("GET", "/new", host="new.test").status == 200
        # the connection made before the reload keeps working
        assert old.request("GET", "/after", host="old.test").status == 200
        # a broken file: refused, logged, the current certificate keeps serving
        with open(key, "wb") as g:
            g.write(b"not a key")
        px.signal(signal.SIGHUP)
        ev = px.wait_event("tls_reload_failed")
        assert ev is not None and "certificates[0]" in ev["key"]
        with TLSClient(px.addr, kit.context(), "new.test") as c:
            assert c.peer_names() == ["new.test"]
    finally:
        old.close()
    assert [r.target for r in up.requests] == ["/before", "/new", "/after"]


def test_bad_certificate_at_start_is_a_config_error(tmp_path, kit):
    import subprocess
    import sys

    from support import ROOT

    cert, _ = kit.server("a", ["a.test"])
    _, other_key = kit.server("b", ["b.test"])
    path = tmp_path / "bad.toml"
    path.write_text(tls_config(base_config({"app": ["127.0.0.1:9"]}, tmp=tmp_path), [(cert, other_key)]))
    out = subprocess.run([sys.executable, "-m", "proxy", "run", "-c", str(path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=20)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert str(path) in lines[0] and "listeners[0].certificates[0]" in lines[0] and "match" in lines[0].lower()


def test_finite_field_groups_refused_by_default(proxy_factory, upstream_factory, tmp_path, kit):
    """A client may not make the proxy compute an 8192-bit DH (about 100 ms of its loop per handshake)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command line tool to offer only ffdhe groups")
    up = upstream_factory()
    px = start(proxy_factory, up, tmp_path, [kit.server("a", ["a.test"])])
    host, port = px.addr

    def offer(group: str) -> str:
        out = subprocess.run(["openssl", "s_client", "-connect", f"{host}:{port}", "-tls1_3", "-groups", group,
                              "-servername", "a.test"], input=b"", capture_output=True, timeout=20)
        return out.stdout.decode("latin-1") + out.stderr.decode("latin-1")

    assert "Server Temp Key: X25519" in offer("X25519")
    refused = offer("ffdhe8192")
    assert "Server Temp Key" not in refused and "handshake failure" in refused.lower()
