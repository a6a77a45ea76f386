"""Multi-process mode: a supervisor, two workers, shared health checks, restarts, reload, stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time

import h11
import pytest

from support import Client, ProxyProcess, base_config, get, metric_value, wait_for


@pytest.fixture
def runtime():
    return ("uvloop", "default")


@pytest.fixture
def workers_factory(tmp_path):
    started = []

    def make(config: str, workers: int = 2):
        p = ProxyProcess(tmp_path, config, workers=workers)
        started.append(p)
        return p.start()

    yield make
    for p in started:
        try:
            p.stop(10)
        except Exception:
            pass
        p.kill()


def admin_get(px, path: str):
    with Client(px.admin_addr) as c:
        r = c.request("GET", path)
    return r


def debug(px, which: str = "connections") -> dict:
    return admin_get(px, f"/debug/{which}").json()


def test_two_workers_share_the_port_and_metrics_add_up(workers_factory, upstream_factory, tmp_path):
    up = upstream_factory()
    px = workers_factory(base_config({"app": [up.address]}, tmp=tmp_path))
    clients = [Client(px.addr) for _ in range(24)]
    try:
        for i, c in enumerate(clients):
            assert c.request("GET", f"/k{i}").status == 200
        d = debug(px)
        per_worker = {w: v["total"] for w, v in d["workers"].items()}
        assert set(per_worker) == {"0", "1"} and len(set(d["pids"].values())) == 2
        assert sum(per_worker.values()) == 24 and min(per_worker.values()) > 0  # the kernel spread them
    finally:
        for c in clients:
            c.close()
    for i in range(16):
        assert get(px.addr, f"/n{i}").status == 200
    m = admin_get(px, "/metrics").body.decode()
    assert metric_value(m, "http_server_requests_total", route="default", code="200") == 40
    assert metric_value(m, "edgeproxy_workers") == 2
    assert admin_get(px, "/readyz").json() == {"ready": True, "reasons": []}


def test_health_checks_run_once_for_all_workers(workers_factory, upstream_factory, tmp_path):
    state = {"ok": True}

    async def handler(req, reply):
        if req.target == "/healthz":
            await reply.send(200 if state["ok"] else 503, body=b"ok")
        else:
            await reply.send(200, body=b"served")

    up = upstream_factory(handler)
    cfg = base_config({"app": [up.address]}, tmp=tmp_path, cluster_extra=(
        '[upstreams.app.health]\nenabled = true\ninterval = "200ms"\ntimeout = "1s"\nunhealthy_threshold = 1\n'
        'healthy_threshold = 1\njitter = 0.0\n'))
    px = workers_factory(cfg)
    t0 = time.monotonic()
    assert wait_for(lambda: sum(r.target == "/healthz" for r in up.requests) >= 6, 10)
    checks = sum(r.target == "/healthz" for r in up.requests)
    elapsed = time.monotonic() - t0 + 0.5
    assert checks <= elapsed / 0.2 + 3  # one prober, not one per worker
    state["ok"] = False  # both workers learn it from the supervisor's prober
    assert wait_for(lambda: admin_get(px, "/readyz").status == 503, 5)
    answers = {get(px.addr, f"/down{i}").status for i in range(8)}
    assert answers == {503}
    state["ok"] = True
    assert wait_for(lambda: get(px.addr, "/up").status == 200, 5)


def test_readyz_upstreams_false_keeps_the_supervisor_ready(workers_factory, upstream_factory, tmp_path):
    async def handler(req, reply):
        await reply.send(503 if req.target == "/healthz" else 200, body=b"x")

    up = upstream_factory(handler)
    cfg = base_config({"app": [up.address]}, tmp=tmp_path, cluster_extra=(
        '[upstreams.app.health]\nenabled = true\ninterval = "200ms"\ntimeout = "1s"\nunhealthy_threshold = 1\n'
        'healthy_threshold = 1\njitter = 0.0\n'))
    px = workers_factory(cfg.replace("[admin]\n", "[admin]\nreadyz_upstreams = false\n", 1))
    assert wait_for(lambda: get(px.addr, "/x").status == 503, 5)  # the prober marked the server down
    assert admin_get(px, "/readyz").json() == {"ready": True, "reasons": []}


def test_a_dead_worker_is_restarted_and_counted(workers_factory, upstream_factory, tmp_path):
    up = upstream_factory()
    px = workers_factory(base_config({"app": [up.address]}, tmp=tmp_path))
    pid = debug(px)["pids"]["0"]
    os.kill(pid, signal.SIGKILL)
    ev = px.wait_event("worker_restarted", 15)
    assert ev is not None and ev["worker"] == 0
    assert debug(px)["pids"]["0"] != pid
    for i in range(20):
        assert get(px.addr, f"/after{i}").status == 200
    m = admin_get(px, "/metrics").body.decode()
    assert metric_value(m, "edgeproxy_worker_restarts_total") == 1


def test_a_hung_worker_is_killed_by_the_watchdog_and_replaced(workers_factory, upstream_factory, tmp_path):
    up = upstream_factory()
    px = workers_factory(base_config({"app": [up.address]}, tmp=tmp_path,
                                     extra='[server]\nworker_watchdog = "1s"\n'))
    pids = debug(px)["pids"]
    os.kill(pids["0"], signal.SIGSTOP)  # alive, its socket still accepting into the queue, its loop silent
    hung = px.wait_event("worker_hung", 10)
    assert hung is not None and hung["worker"] == 0 and hung["pid"] == pids["0"] and hung["silent"] > 1.0
    ev = px.wait_event("worker_restarted", 15)
    assert ev is not None and ev["worker"] == 0
    now = debug(px)["pids"]
    assert now["0"] != pids["0"] and now["1"] == pids["1"]  # the answering worker was left alone
    for i in range(20):
        assert get(px.addr, f"/after{i}").status == 200
    m = admin_get(px, "/metrics").body.decode()
    assert metric_value(m, "edgeproxy_worker_hangs_total") == 1
    assert metric_value(m, "edgeproxy_worker_restarts_total") == 1


class Load:
    """Client threads sending requests until stopped: new connections and keep-alive ones."""

    def __init__(self, addr, threads: int = 4):
        self.addr = addr
        self.stop = threading.Event()
        self.results: list[tuple[int, str]] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i % 2 == 0,), daemon=True) for i in range(threads)]

    def run(self, keep_alive: bool) -> None:
        c = None
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                if c is None:
                    c = Client(self.addr, timeout=10)
                    fresh = True
                else:
                    fresh = False
                try:
                    r = c.request("GET", f"/load{i}")
                except (ConnectionError, OSError, h11.RemoteProtocolError):
                    if fresh:
                        raise
                    # the server closed an idle keep-alive connection as we reused it: an
                    # idempotent request is retried on a new connection (RFC 9112 section 9.3.1)
                    c.close()
                    c = Client(self.addr, timeout=10)
                    r = c.request("GET", f"/load{i}")
                if r.status == 0 and not fresh:
                    c.close()
                    c = Client(self.addr, timeout=10)
                    r = c.request("GET", f"/load{i}")
                with self.lock:
                    self.results.append((r.status, r.body.decode("latin-1")[:40]))
                if r.closed or not keep_alive:
                    c.close()
                    c = None
            except Exception as exc:  # noqa: BLE001 - a failed request is the finding
                with self.lock:
                    self.results.append((0, repr(exc)[:80]))
                if c is not None:
                    c.close()
                c = None
        if c is not None:
            c.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(15)


def test_reload_under_load_loses_no_request(workers_factory, upstream_factory, tmp_path):
    async def a_handler(req, reply):
        await reply.send(200, body=b"from-a")

    async def b_handler(req, reply):
        await reply.send(200, body=b"from-b")

    a, b = upstream_factory(a_handler), upstream_factory(b_handler)
    cfg = base_config({"app": [a.address]}, tmp=tmp_path)
    px = workers_factory(cfg)
    with Load(px.addr) as load:
        assert wait_for(lambda: len(load.results) >= 100, 10)
        px.config_path.write_text(cfg.replace(json.dumps([a.address]), json.dumps([b.address])))
        px.signal(signal.SIGHUP)
        assert px.wait_event("reloaded", 20) is not None
        n = len(load.results)
        assert wait_for(lambda: len(load.results) >= n + 100, 10)
    statuses = [s for s, _ in load.results]
    failed = [r for r in load.results if r[0] != 200]
    assert not failed, failed[:5]
    assert len(statuses) >= 200
    bodies = [body for _, body in load.results]
    assert bodies[-1] == "from-b" and bodies[0] == "from-a"
    m = admin_get(px, "/metrics").body.decode()
    assert metric_value(m, "edgeproxy_reloads_total", result="ok") == 1
    assert admin_get(px, "/readyz").status == 200


def test_a_bad_reload_is_refused_and_the_old_config_keeps_serving(workers_factory, upstream_factory, tmp_path):
    up = upstream_factory()
    px = workers_factory(base_config({"app": [up.address]}, tmp=tmp_path))
    px.config_path.write_text('[[listeners]]\naddress = "nowhere"\n')
    px.signal(signal.SIGHUP)
    ev = px.wait_event("reload_failed", 10)
    assert ev is not None and "listeners[0].address" in ev["reason"]
    assert get(px.addr, "/still").status == 200
    m = admin_get(px, "/metrics").body.decode()
    assert metric_value(m, "edgeproxy_reloads_total", result="failed") == 1
    assert debug(px)["generation"] == 1


def test_sigterm_drains_every_worker_sigquit_stops_at_once(workers_factory, upstream_factory, tmp_path):
    import asyncio

    release = threading.Event()

    async def slow(req, reply):
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 10)
        await reply.send(200, body=b"late")

    up = upstream_factory(slow)
    px = workers_factory(base_config({"app": [up.address]}, tmp=tmp_path, extra='[server]\ndrain_timeout = "10s"\n'))
    c = Client(px.addr)
    c.send_raw(b"GET /inflight HTTP/1.1\r\nHost: t\r\n\r\n")
    assert up.wait_requests(1, 5)
    px.signal(signal.SIGTERM)
    assert px.wait_event("draining", 5) is not None

    def refused() -> bool:
        try:
            socket.create_connection(px.addr, timeout=2).close()
        except ConnectionRefusedError:
            return True
        except ConnectionResetError:
            return False  # it reached the accept queue just as the listening socket closed: try again
        return False

    # new connections are refused at once while the in-flight request drains (not queued to be reset)
    assert wait_for(refused, 5)
    release.set()
    r = c.read_response()
    assert r.status == 200 and r.body == b"late"
    assert px.wait(15) == 0
    c.close()

    # SIGQUIT: no drain
    release.clear()
    px2 = workers_factory(base_config({"app": [up.address]}, tmp=tmp_path, extra='[server]\ndrain_timeout = "30s"\n'))
    c = Client(px2.addr)
    c.send_raw(b"GET /cut HTTP/1.1\r\nHost: t\r\n\r\n")
    assert up.wait_requests(2, 5)
    t0 = time.monotonic()
    px2.signal(signal.SIGQUIT)
    assert px2.wait(10) == 0
    assert time.monotonic() - t0 < 5
    c.sock.settimeout(5)
    try:
        assert c.sock.recv(100) == b""
    except (ConnectionResetError, socket.timeout):
        pass
    c.close()
    release.set()
