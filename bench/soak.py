#!/usr/bin/env python3
"""Soak and leak check: mixed traffic against one edgeproxy, resources sampled every second.

    python3 bench/soak.py [--duration 60] [--rate 1.0] [--fault-period 1.5] [--json FILE]
                          [--loop uvloop|asyncio] [--pure] [--workers N] [--wrk] [--quiet]
                          [--inject-leak]

What it starts, all on 127.0.0.1 (ephemeral ports) and all stopped on exit,
on Ctrl-C and on SIGTERM:

* edgeproxy (``python -m proxy run``) with a plain listener, a TLS listener
  (a development certificate from ``proxy.gencert.generate_dev_set`` in a
  temporary directory), the admin listener and no access log;
* a healthy upstream (``bench/upstream.py``, the built-in demo upstream),
  cluster ``healthy``, health-checked every second;
* a faulty upstream (``bench/faulty_upstream.py``), cluster ``faulty``
  behind ``/faulty/``, with a 300 ms response timeout, a circuit breaker
  that opens after 3 failures, health checks every 500 ms and concurrency
  caps. Its mode cycles every ``--fault-period`` seconds through
  ok, error503, ok, hang, ok, refuse: it answers, answers 503, reads and
  never answers, or refuses connections and resets the open ones.

The load is pure Python (client threads with blocking sockets, rate-limited,
about 250 requests/s at ``--rate 1``), so it runs where neither wrk nor nginx
is installed (CI). Per class, requests per second at ``--rate 1``:

    keepalive      80  GET / and GET /bytes/65536 on one keep-alive connection
    newconn        40  GET / on a new connection each (Connection: close)
    upload         20  POST of 64 KiB, keep-alive (the upstream echoes the byte count)
    tls_keepalive  40  GET / over TLS (SNI localhost), keep-alive
    tls_newconn    10  GET / over TLS, a new connection (and handshake) each,
                       every other one resuming the previous session
    faulty         40  GET /faulty/ (answers 200, 502, 503 or 504 as the fault changes)
    aborts         20  clients that give up: close mid-response (plain and TLS,
                       FIN or RST), close mid-upload, close while waiting for
                       the hung upstream, close after half a request head

``--wrk`` adds, when wrk is installed, one ``wrk -t1 -c4`` keep-alive GET
stream for the whole run (unthrottled: it makes the run heavier and its
figures no longer comparable with a run without it).

Every second it samples the proxy: descriptors (``/proc/PID/fd``), RSS
(``VmRSS``), both summed over the proxy's process group (the proxy alone,
or a supervisor and its workers), asyncio tasks (``/debug/tasks``, summed
over the workers), open client connections
(``http_server_connections_active``), upstream pool idle and active
connections (sums of ``http_client_conn_pool_idle`` / ``_active`` in
``/metrics``) and upstream connections open (sum of ``open_connections`` in
``/debug/pools``), and prints one line.

Verdict (exit 1 on any failure, 0 otherwise). The first half of the run is
warm-up (pools fill, allocators grow); over the second half a least-squares
slope is fitted to each series, and its "growth" is the median of its last
3 samples minus the median of its first 3 (the whole run). A series fails
when both its slope and its growth exceed the limits (the slope says it is
still growing after the warm-up, the growth that it grew by a meaningful
amount):

    fds            > 0.5 /s    and  > 20
    rss            > 64 KiB/s  and  > 8 MiB
    tasks          > 0.5 /s    and  > 10
    connections, pool_idle, pool_active, upstream_conns
                   > 0.5 /s    and  > 10, or above their cap at any sample
                   (caps: what the load and the pool settings allow)

``--inject-leak`` checks the checker: the runner itself opens one client
connection a second and keeps it, idle, until the end (the proxy keeps idle
connections for 75 s), so descriptors and open connections grow by one a
second and the run must fail.

After the load stops it checks that the proxy drains: within 5 s, no client
connection left open and no upstream connection still active, and the task
count back within 5 of what it was before the load. It also fails when the
proxy exits or loses a worker, when a healthy request class fails more than
0.5 % of its requests or served none, or when fewer than 80 % of the
expected samples were taken. Exit 2: the set-up failed (the proxy did not
start); 130: interrupted.

``--workers`` is passed to ``edgeproxy run --workers`` (only when given, so
the runner also works with a proxy that has no such option); with several
workers the series are sums over the processes and the pool caps scale with
the worker count.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import random
import shutil
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procs import free_port, group_stats, spawn, stop, stop_all, wait_port  # noqa: E402

# ----------------------------------------------------------------------
# limits of the verdict
KIB = 1024
MIB = 1024 * 1024
SLOPE = {"fds": 0.5, "rss": 64 * KIB, "tasks": 0.5, "connections": 0.5, "pool_idle": 0.5, "pool_active": 0.5,
         "upstream_conns": 0.5}
GROWTH = {"fds": 20, "rss": 8 * MIB, "tasks": 10, "connections": 10, "pool_idle": 10, "pool_active": 10,
          "upstream_conns": 10}
SERIES = ("fds", "rss", "tasks", "connections", "pool_idle", "pool_active", "upstream_conns")
HEALTHY_CLASSES = ("keepalive", "newconn", "upload", "tls_keepalive", "tls_newconn")
MAX_HEALTHY_ERROR_RATE = 0.005
DRAIN_SECONDS = 5.0
DRAIN_TASK_SLACK = 5
MIN_SAMPLE_SHARE = 0.8

# request rates per class at --rate 1 (requests per second)
RATES = {"keepalive": 80, "newconn": 40, "upload": 20, "tls_keepalive": 40, "tls_newconn": 10, "faulty": 40,
         "aborts": 20}
FAULT_CYCLE = ("ok", "error503", "ok", "hang", "ok", "refuse")
UPLOAD = b"u" * (64 * KIB)
HEALTHY_IDLE_CAP = 32
FAULTY_IDLE_CAP = 8
FAULTY_MAX_CONNECTIONS = 8
CLIENT_TIMEOUT = 10.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------
# processes
class Proxy:
    """edgeproxy as a subprocess; its JSON events on stderr give the bound addresses."""

    def __init__(self, config: Path, loop: str, pure: bool, workers: str | None):
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        if pure:
            env["EDGEPROXY_PURE"] = "1"
        cmd = [sys.executable, "-m", "proxy", "run", "-c", str(config), "--loop", loop]
        if workers is not None:
            cmd += ["--workers", workers]
        self.proc = spawn(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self.events: list[dict] = []
        self.tail: collections.deque = collections.deque(maxlen=50)
        self.listeners: dict[str, int] = {}
        self.admin = 0
        self.workers = 1  # worker processes (a supervisor says how many in its "ready" event)
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.tail.append(line)
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if not isinstance(ev, dict):
                continue
            self.events.append(ev)
            name = ev.get("event")
            if name == "listening":
                self.listeners[ev["listener"]] = int(ev["address"].rpartition(":")[2])
            elif name == "admin":
                self.admin = int(ev["address"].rpartition(":")[2])
            elif name == "ready":
                self.workers = int(ev.get("workers") or 1)
                self.ready.set()
        self.ready.set()

    def wait_ready(self, timeout: float = 20.0) -> None:
        self.ready.wait(timeout)
        if self.proc.poll() is not None or not self.admin or len(self.listeners) < 2:
            raise RuntimeError("edgeproxy did not become ready:\n" + "\n".join(self.tail))


def proxy_config(tmp: Path, cert: Path, key: Path, healthy: int, faulty: int) -> Path:
    cfg = tmp / "edgeproxy-soak.toml"
    cfg.write_text(f"""
[server]
drain_timeout = "1s"
[[listeners]]
name = "plain"
address = "127.0.0.1:0"
backlog = 1024
[[listeners]]
name = "tls"
address = "127.0.0.1:0"
backlog = 1024
tls = true
certificates = [{{cert = "{cert.as_posix()}", key = "{key.as_posix()}"}}]
[admin]
address = "127.0.0.1:0"
[access_log]
enabled = false
[downstream]
header_timeout = "10s"
body_timeout = "10s"
send_timeout = "10s"

[upstreams.healthy]
servers = ["127.0.0.1:{healthy}"]
response_timeout = "10s"
[upstreams.healthy.pool]
max_idle_per_server = {HEALTHY_IDLE_CAP}
[upstreams.healthy.health]
enabled = true
path = "/healthz"
interval = "1s"
timeout = "1s"

[upstreams.faulty]
servers = ["127.0.0.1:{faulty}"]
tries = 1
response_timeout = "300ms"
body_timeout = "1s"
[upstreams.faulty.pool]
connect_timeout = "300ms"
max_idle_per_server = {FAULTY_IDLE_CAP}
[upstreams.faulty.breaker]
enabled = true
consecutive_failures = 3
open_duration = "500ms"
max_open_duration = "2s"
[upstreams.faulty.health]
enabled = true
path = "/healthz"
interval = "500ms"
timeout = "300ms"
unhealthy_threshold = 2
healthy_threshold = 1
unhealthy_interval = "500ms"
max_unhealthy_interval = "1s"
[upstreams.faulty.limits]
max_connections = {FAULTY_MAX_CONNECTIONS}
max_pending = 16
pending_timeout = "200ms"

[[routes]]
name = "faulty"
path_prefix = "/faulty/"
upstream = "faulty"
[[routes]]
name = "healthy"
path_prefix = "/"
upstream = "healthy"
""")
    return cfg


class Faulty:
    """bench/faulty_upstream.py: a data port the proxy talks to, a control port to switch its mode."""

    def __init__(self):
        self.port, self.control = free_port(), free_port()
        self.proc = spawn([sys.executable, str(ROOT / "bench" / "faulty_upstream.py"), "--port", str(self.port),
                           "--control", str(self.control)], cwd=ROOT)
        wait_port(self.port, self.proc)
        wait_port(self.control, self.proc)

    def set_mode(self, mode: str) -> None:
        c = http.client.HTTPConnection("127.0.0.1", self.control, timeout=2)
        try:
            c.request("PUT", f"/mode/{mode}")
            c.getresponse().read()
        finally:
            c.close()

    def stats(self) -> dict:
        c = http.client.HTTPConnection("127.0.0.1", self.control, timeout=2)
        try:
            c.request("GET", "/stats")
            return json.loads(c.getresponse().read())
        finally:
            c.close()


# ----------------------------------------------------------------------
# load
class Tally:
    """Outcomes per request class: {class: Counter(outcome)}; thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_class: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.latency: dict[str, list[float]] = collections.defaultdict(list)
        self.total = 0

    def add(self, cls: str, outcome: str, seconds: float) -> None:
        with self.lock:
            self.by_class[cls][outcome] += 1
            self.latency[cls].append(seconds)
            self.total += 1

    def snapshot(self) -> dict:
        with self.lock:
            return {k: dict(v) for k, v in sorted(self.by_class.items())}

    def latencies(self) -> dict:
        """{class: {p50_ms, p99_ms, max_ms}} of the whole exchange as the client saw it."""
        out = {}
        with self.lock:
            for cls, vals in self.latency.items():
                v = sorted(vals)
                if v:
                    out[cls] = {"p50_ms": round(1000 * v[len(v) // 2], 2),
                                "p99_ms": round(1000 * v[min(len(v) - 1, int(0.99 * len(v)))], 2),
                                "max_ms": round(1000 * v[-1], 2)}
        return out


def outcome_of(exc: BaseException) -> str:
    return "error:" + type(exc).__name__


class SNIHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 with SNI "localhost" (the certificate names both), optionally resuming a session."""

    def __init__(self, port: int, ctx: ssl.SSLContext, session=None, timeout: float = CLIENT_TIMEOUT):
        super().__init__("127.0.0.1", port, context=ctx, timeout=timeout)
        self._ctx = ctx
        self._session = session

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname="localhost", session=self._session)


class Worker(threading.Thread):
    """One request class at a fixed rate until ``halt`` is set."""

    def __init__(self, cls: str, rate: float, fn, halt: threading.Event, tally: Tally):
        super().__init__(daemon=True, name=f"soak-{cls}")
        self.cls, self.rate, self.fn, self.halt, self.tally = cls, rate, fn, halt, tally
        self.state: dict = {}

    def run(self) -> None:
        interval = 1.0 / self.rate
        nxt = time.monotonic() + random.random() * interval
        i = 0
        while not self.halt.is_set():
            delay = nxt - time.monotonic()
            if delay > 0:
                if self.halt.wait(delay):
                    break
            elif delay < -1.0:
                nxt = time.monotonic()  # fell behind: no burst to catch up
            nxt += interval
            t0 = time.monotonic()
            try:
                out = self.fn(self, i)
            except Exception as exc:  # a failed request is an outcome, not a crash of the load
                out = outcome_of(exc)
                self.reset()
            self.tally.add(self.cls, out, time.monotonic() - t0)
            i += 1
        self.reset()

    def reset(self) -> None:
        conn = self.state.pop("conn", None)
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass


def _status(resp: http.client.HTTPResponse, body: bytes, check=None) -> str:
    if check is not None and resp.status == 200 and not check(body):
        return "bad_body"
    return str(resp.status)


def make_load(plain: int, tls: int, ctx: ssl.SSLContext):
    """{class: fn(worker, i) -> outcome}."""

    def plain_conn(w: Worker) -> http.client.HTTPConnection:
        conn = w.state.get("conn")
        if conn is None:
            conn = w.state["conn"] = http.client.HTTPConnection("127.0.0.1", plain, timeout=CLIENT_TIMEOUT)
        return conn

    def keepalive(w: Worker, i: int) -> str:
        conn = plain_conn(w)
        if i % 4 == 3:
            conn.request("GET", "/bytes/65536")
            resp = conn.getresponse()
            return _status(resp, resp.read(), lambda b: len(b) == 65536)
        conn.request("GET", "/")
        resp = conn.getresponse()
        return _status(resp, resp.read(), lambda b: b.startswith(b"{"))

    def newconn(w: Worker, i: int) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", plain, timeout=CLIENT_TIMEOUT)
        try:
            conn.request("GET", "/", headers={"Connection": "close"})
            resp = conn.getresponse()
            return _status(resp, resp.read(), lambda b: b.startswith(b"{"))
        finally:
            conn.close()

    def upload(w: Worker, i: int) -> str:
        conn = plain_conn(w)
        conn.request("POST", "/upload", body=UPLOAD, headers={"Content-Type": "application/octet-stream"})
        resp = conn.getresponse()
        return _status(resp, resp.read(), lambda b: json.loads(b).get("body_bytes") == len(UPLOAD))

    def tls_keepalive(w: Worker, i: int) -> str:
        conn = w.state.get("conn")
        if conn is None:
            conn = w.state["conn"] = SNIHTTPSConnection(tls, ctx)
        conn.request("GET", "/")
        resp = conn.getresponse()
        return _status(resp, resp.read(), lambda b: b.startswith(b"{"))

    def tls_newconn(w: Worker, i: int) -> str:
        session = w.state.get("session") if i % 2 else None
        conn = SNIHTTPSConnection(tls, ctx, session=session)
        try:
            # no "Connection: close": http.client would drop the socket, and with it the session
            conn.request("GET", "/")
            resp = conn.getresponse()
            out = _status(resp, resp.read(), lambda b: b.startswith(b"{"))
            if conn.sock is not None:
                w.state["session"] = conn.sock.session
                if conn.sock.session_reused:
                    w.state["resumed"] = w.state.get("resumed", 0) + 1
            return out
        finally:
            conn.close()

    def faulty(w: Worker, i: int) -> str:
        conn = plain_conn(w)
        conn.request("GET", "/faulty/x")
        resp = conn.getresponse()
        resp.read()
        return str(resp.status)

    def aborts(w: Worker, i: int) -> str:
        kind = ABORT_KINDS[i % len(ABORT_KINDS)]
        ABORTS[kind](plain, tls, ctx)
        return kind

    return {"keepalive": keepalive, "newconn": newconn, "upload": upload, "tls_keepalive": tls_keepalive,
            "tls_newconn": tls_newconn, "faulty": faulty, "aborts": aborts}


def _close(sock: socket.socket, rst: bool) -> None:
    if rst:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    sock.close()


def _read_some(sock, n: int) -> None:
    got = 0
    while got < n:
        data = sock.recv(16384)
        if not data:
            return
        got += len(data)


def abort_mid_response(plain, tls, ctx, rst=False):
    s = socket.create_connection(("127.0.0.1", plain), timeout=CLIENT_TIMEOUT)
    try:
        s.sendall(b"GET /bytes/4194304 HTTP/1.1\r\nHost: soak\r\n\r\n")
        _read_some(s, 32 * KIB)
    finally:
        _close(s, rst)


def abort_mid_response_rst(plain, tls, ctx):
    abort_mid_response(plain, tls, ctx, rst=True)


def abort_tls_mid_response(plain, tls, ctx):
    raw = socket.create_connection(("127.0.0.1", tls), timeout=CLIENT_TIMEOUT)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    try:
        s.sendall(b"GET /bytes/4194304 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        _read_some(s, 32 * KIB)
    finally:
        _close(raw, False)  # no close_notify: the socket just goes away


def abort_mid_upload(plain, tls, ctx):
    s = socket.create_connection(("127.0.0.1", plain), timeout=CLIENT_TIMEOUT)
    try:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: 65536\r\n\r\n" + UPLOAD[:20000])
        time.sleep(0.01)
    finally:
        _close(s, False)


def abort_mid_upload_rst(plain, tls, ctx):
    s = socket.create_connection(("127.0.0.1", plain), timeout=CLIENT_TIMEOUT)
    try:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: 65536\r\n\r\n" + UPLOAD[:40000])
        time.sleep(0.01)
    finally:
        _close(s, True)


def abort_waiting_faulty(plain, tls, ctx):
    s = socket.create_connection(("127.0.0.1", plain), timeout=CLIENT_TIMEOUT)
    try:
        s.sendall(b"GET /faulty/abort HTTP/1.1\r\nHost: soak\r\n\r\n")
        time.sleep(0.05)  # gone before a hung upstream's response timeout
    finally:
        _close(s, False)


def abort_partial_head(plain, tls, ctx):
    s = socket.create_connection(("127.0.0.1", plain), timeout=CLIENT_TIMEOUT)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: so")
    finally:
        _close(s, False)


def abort_tls_handshake(plain, tls, ctx):
    """Connect to the TLS listener, send a few bytes of a ClientHello, leave."""
    s = socket.create_connection(("127.0.0.1", tls), timeout=CLIENT_TIMEOUT)
    try:
        s.sendall(b"\x16\x03\x01\x00\xa0\x01\x00\x00\x9c\x03\x03")
    finally:
        _close(s, False)


ABORTS = {
    "mid_response": abort_mid_response,
    "mid_response_rst": abort_mid_response_rst,
    "tls_mid_response": abort_tls_mid_response,
    "mid_upload": abort_mid_upload,
    "mid_upload_rst": abort_mid_upload_rst,
    "waiting_faulty": abort_waiting_faulty,
    "partial_head": abort_partial_head,
    "tls_partial_handshake": abort_tls_handshake,
}
ABORT_KINDS = tuple(ABORTS)


class Leaker(threading.Thread):
    """--inject-leak: one more idle client connection held open every second."""

    def __init__(self, port: int, halt: threading.Event):
        super().__init__(daemon=True, name="soak-leak")
        self.port, self.halt = port, halt
        self.held: list[socket.socket] = []

    def run(self) -> None:
        while not self.halt.wait(1.0):
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=CLIENT_TIMEOUT)
                s.sendall(b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n")
                s.recv(65536)
                self.held.append(s)
            except OSError:
                pass

    def release(self) -> None:
        for s in self.held:
            s.close()
        self.held.clear()


class FaultCycler(threading.Thread):
    def __init__(self, faulty: Faulty, period: float, halt: threading.Event):
        super().__init__(daemon=True, name="soak-faults")
        self.faulty, self.period, self.halt = faulty, period, halt
        self.switches = 0
        self.errors = 0

    def run(self) -> None:
        i = 0
        while not self.halt.wait(self.period):
            i += 1
            try:
                self.faulty.set_mode(FAULT_CYCLE[i % len(FAULT_CYCLE)])
                self.switches += 1
            except (OSError, http.client.HTTPException):
                self.errors += 1


# ----------------------------------------------------------------------
# sampling
class Admin:
    """One keep-alive connection to the admin listener, reopened on error."""

    def __init__(self, port: int):
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def get(self, path: str) -> bytes:
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                self.conn.request("GET", path)
                resp = self.conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"admin {path}: {resp.status}")
                return body
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def metric_sums(text: str, names: tuple[str, ...]) -> dict[str, float]:
    """Sum of every sample of each named family (any labels)."""
    out = {n: 0.0 for n in names}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in out:
            out[name] += float(line.rsplit(" ", 1)[1])
    return out


def read_procs(pgid: int) -> dict:
    """Descriptors, RSS and CPU seconds summed over the proxy's process group: the proxy alone, or a
    supervisor and its workers when it runs several."""
    fds = rss = ticks = n = 0
    for d, fields in group_stats(pgid):
        try:
            fd = len(os.listdir(f"/proc/{d}/fd"))
            with open(f"/proc/{d}/status") as f:
                kib = next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        n += 1
        fds += fd
        rss += kib * KIB
        ticks += int(fields[11]) + int(fields[12])
    return {"fds": fds, "rss": rss, "cpu": ticks / os.sysconf("SC_CLK_TCK"), "processes": n}


def per_worker(doc: dict) -> list[dict]:
    """/debug/* of one process, or of every worker under a supervisor ({"workers": {slot: doc}})."""
    if isinstance(doc.get("workers"), dict) and "pids" in doc:
        return [w for w in doc["workers"].values() if isinstance(w, dict)]
    return [doc]


def sample(proxy: Proxy, admin: Admin) -> dict:
    s = read_procs(proxy.pid)
    tasks = json.loads(admin.get("/debug/tasks"))
    s["tasks"] = sum(w["total"] for w in per_worker(tasks))
    s["restarts"] = tasks.get("restarts", 0)
    m = metric_sums(admin.get("/metrics").decode(),
                    ("http_server_connections_active", "http_client_conn_pool_idle", "http_client_conn_pool_active"))
    s["connections"] = int(m["http_server_connections_active"])
    s["pool_idle"] = int(m["http_client_conn_pool_idle"])
    s["pool_active"] = int(m["http_client_conn_pool_active"])
    s["upstream_conns"] = sum(srv["open_connections"] for doc in per_worker(json.loads(admin.get("/debug/pools")))
                              for c in doc.values() for srv in c["servers"].values())
    return s


def fmt_value(series: str, v) -> str:
    if v is None:
        return "-"
    if series == "rss":
        return f"{v / MIB:.1f}M"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def fmt_slope(series: str, v) -> str:
    if v is None:
        return "-"
    if series == "rss":
        return f"{v / KIB:+.1f}K/s"
    return f"{v:+.3f}/s"


def slope(ts: list[float], vs: list[float]) -> float:
    """Least-squares slope of vs over ts."""
    n = len(ts)
    if n < 2:
        return 0.0
    mt, mv = sum(ts) / n, sum(vs) / n
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return 0.0
    return sum((t - mt) * (v - mv) for t, v in zip(ts, vs)) / var


def analyse(samples: list[dict], caps: dict[str, int]) -> tuple[dict, list[str]]:
    """Per series: start, end, max, slope and growth over the second half; and the failures."""
    summary, failures = {}, []
    if not samples:
        return summary, ["no samples"]
    t_end = samples[-1]["t"]
    half = [s for s in samples if s["t"] >= t_end / 2]
    for name in SERIES:
        vals = [s[name] for s in samples if s.get(name) is not None]
        pts = [(s["t"], s[name]) for s in half if s.get(name) is not None]
        row = {"samples": len(vals), "start": vals[0] if vals else None, "end": vals[-1] if vals else None,
               "max": max(vals) if vals else None, "slope": None, "growth": None, "cap": caps.get(name),
               "slope_limit": SLOPE[name], "growth_limit": GROWTH[name], "ok": True}
        if len(pts) >= 4:
            row["slope"] = slope([p[0] for p in pts], [p[1] for p in pts])
            row["growth"] = statistics.median(vals[-3:]) - statistics.median(vals[:3])
            if row["slope"] > SLOPE[name] and row["growth"] > GROWTH[name]:
                row["ok"] = False
                failures.append(f"{name} grows: {fmt_slope(name, row['slope'])} over the second half, "
                                f"{fmt_value(name, row['growth'])} over the run (limits "
                                f"{fmt_slope(name, SLOPE[name])} and {fmt_value(name, GROWTH[name])})")
        else:
            row["ok"] = False
            failures.append(f"{name}: too few samples in the second half ({len(pts)})")
        cap = caps.get(name)
        if cap is not None and vals and max(vals) > cap:
            row["ok"] = False
            failures.append(f"{name} reached {max(vals)}, above its cap {cap}")
        summary[name] = row
    return summary, failures


def table(summary: dict) -> str:
    rows = ["| series | samples | start | end | max | slope (2nd half) | growth (run) | limit | cap | verdict |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |"]
    for name, r in summary.items():
        limit = f"{fmt_slope(name, r['slope_limit'])} & {fmt_value(name, r['growth_limit'])}"
        rows.append(f"| {name} | {r['samples']} | {fmt_value(name, r['start'])} | {fmt_value(name, r['end'])} | "
                    f"{fmt_value(name, r['max'])} | {fmt_slope(name, r['slope'])} | "
                    f"{fmt_value(name, r['growth'])} | {limit} | {fmt_value(name, r['cap'])} | "
                    f"{'ok' if r['ok'] else 'FAIL'} |")
    return "\n".join(rows)


# ----------------------------------------------------------------------
def run(args, tmp: Path) -> int:
    sys.path.insert(0, str(ROOT))
    from proxy.gencert import generate_dev_set

    files = generate_dev_set(tmp / "certs", ["localhost", "127.0.0.1"])
    ctx = ssl.create_default_context(cafile=str(files["ca.pem"]))

    up_port = free_port()
    upstream = spawn([sys.executable, "-m", "bench.upstream", str(up_port)], cwd=ROOT,
                     env=dict(os.environ, PYTHONPATH=str(ROOT)))
    wait_port(up_port, upstream)
    faulty = Faulty()
    cfg = proxy_config(tmp, files["server.pem"], files["server.key"], up_port, faulty.port)
    try:
        proxy = Proxy(cfg, args.loop, args.pure, args.workers)
        proxy.wait_ready()
        time.sleep(1.0)  # first health checks done
        admin = Admin(proxy.admin)
        baseline = sample(proxy, admin)
    except (RuntimeError, OSError, ValueError, KeyError, http.client.HTTPException) as exc:
        log(f"soak: {exc!r}")
        return 2
    plain, tls = proxy.listeners["plain"], proxy.listeners["tls"]
    log(f"soak: edgeproxy pid {proxy.pid} ({proxy.workers} worker{'s' if proxy.workers > 1 else ''}, "
        f"{baseline['processes']} process{'es' if baseline['processes'] > 1 else ''}) plain :{plain} tls :{tls} admin :{proxy.admin}; healthy upstream "
        f":{up_port}, faulty :{faulty.port} (mode cycle {'/'.join(FAULT_CYCLE)} every {args.fault_period:g}s); "
        f"{args.duration:g}s at --rate {args.rate:g}")
    tally = Tally()
    halt = threading.Event()
    fns = make_load(plain, tls, ctx)
    workers = [Worker(cls, max(0.1, RATES[cls] * args.rate), fns[cls], halt, tally) for cls in RATES]
    # every load thread holds at most one client connection, an abort one more briefly, and the proxy may
    # still be closing the previous one of a new-connection thread; each of them has at most one request in
    # flight; every worker process has its own pools
    concurrency = 2 * len(workers) + 8 + (4 if args.wrk else 0) + (int(args.duration) + 2 if args.inject_leak else 0)
    idle_cap = proxy.workers * (HEALTHY_IDLE_CAP + FAULTY_IDLE_CAP)
    caps = {"connections": concurrency, "pool_idle": idle_cap, "pool_active": concurrency,
            "upstream_conns": idle_cap + concurrency}
    cycler = FaultCycler(faulty, args.fault_period, halt)
    leaker = Leaker(plain, halt) if args.inject_leak else None
    wrk = None
    if args.wrk:
        if shutil.which("wrk"):
            wrk = spawn(["wrk", "-t1", "-c4", f"-d{args.duration + 5:g}s", f"http://127.0.0.1:{plain}/"])
        else:
            log("soak: --wrk: wrk is not installed, pure Python load only")

    samples: list[dict] = []
    died = None
    t0 = time.monotonic()
    cpu0 = baseline["cpu"]
    for w in workers:
        w.start()
    cycler.start()
    if leaker is not None:
        leaker.start()
    last_total, last_t = 0, t0
    nxt = t0 + 1.0
    try:
        while True:
            wait = nxt - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            nxt += 1.0
            now = time.monotonic()
            if now - t0 > args.duration + 0.5:
                break
            if proxy.proc.poll() is not None:
                died = f"edgeproxy exited with {proxy.proc.returncode} at t={now - t0:.1f}s"
                break
            try:
                s = sample(proxy, admin)
            except (OSError, RuntimeError, ValueError, KeyError, http.client.HTTPException) as exc:
                log(f"  t={now - t0:5.1f}s sample failed: {exc!r}")
                continue
            s["t"] = round(now - t0, 3)
            total = tally.total
            s["req_s"] = round((total - last_total) / (now - last_t), 1)
            s["cpu_pct"] = round(100 * (s["cpu"] - cpu0) / (now - last_t), 1)
            last_total, last_t, cpu0 = total, now, s["cpu"]
            samples.append(s)
            if not args.quiet:
                print(f"t={s['t']:5.1f}s fds={s['fds']:4d} rss={s['rss'] / MIB:6.1f}MiB tasks={s['tasks']:4d} "
                      f"conns={s['connections']:3d} pool idle={s['pool_idle']:3d} active={s['pool_active']:3d} "
                      f"upstream_conns={s['upstream_conns']:3d} req/s={s['req_s']:6.1f} "
                      f"proxy_cpu={s['cpu_pct']:5.1f}%"
                      + (f" processes={s['processes']}" if s["processes"] != 1 else ""), flush=True)
    finally:
        halt.set()
        for w in workers:
            w.join(CLIENT_TIMEOUT + 2)
        cycler.join(5)
        if leaker is not None:
            leaker.join(CLIENT_TIMEOUT + 2)
            leaker.release()
        if wrk is not None:
            stop(wrk)
    duration = time.monotonic() - t0

    # drain: load stopped, the faulty upstream answers again
    drain = {"seconds": None, "connections": None, "pool_active": None, "tasks": None, "fds": None,
             "pool_idle": None, "baseline_tasks": baseline["tasks"], "baseline_fds": baseline["fds"]}
    failures: list[str] = []
    if died is None:
        try:
            faulty.set_mode("ok")
        except (OSError, http.client.HTTPException):
            pass
        td = time.monotonic()
        while True:
            try:
                d = sample(proxy, admin)
            except (OSError, RuntimeError, ValueError, KeyError, http.client.HTTPException):
                d = None
            done = d is not None and d["connections"] == 0 and d["pool_active"] == 0 and \
                d["tasks"] <= baseline["tasks"] + DRAIN_TASK_SLACK
            if done or time.monotonic() - td > DRAIN_SECONDS:
                break
            time.sleep(0.2)
        if d is not None:
            drain.update(seconds=round(time.monotonic() - td, 2), connections=d["connections"],
                         pool_active=d["pool_active"], tasks=d["tasks"], fds=d["fds"], pool_idle=d["pool_idle"],
                         upstream_conns=d["upstream_conns"])
            if d["connections"]:
                failures.append(f"drain: {d['connections']} client connections still open {DRAIN_SECONDS:g}s "
                                f"after the load stopped")
            if d["pool_active"]:
                failures.append(f"drain: {d['pool_active']} upstream connections still active "
                                f"{DRAIN_SECONDS:g}s after the load stopped")
            if d["tasks"] > baseline["tasks"] + DRAIN_TASK_SLACK:
                failures.append(f"drain: {d['tasks']} asyncio tasks after the load, {baseline['tasks']} before")
        else:
            failures.append("drain: the admin endpoint did not answer after the load")
        if proxy.proc.poll() is not None:
            died = f"edgeproxy exited with {proxy.proc.returncode} after the load"
    try:
        tasks_dump = json.loads(admin.get("/debug/tasks")) if died is None else None
        fstats = faulty.stats()
    except (OSError, RuntimeError, ValueError, http.client.HTTPException):
        tasks_dump, fstats = None, None
    admin.close()

    # verdict
    summary, series_failures = analyse(samples, caps)
    failures = series_failures + failures
    if died:
        failures.insert(0, died)
    if samples and (samples[-1]["restarts"] > baseline["restarts"]
                    or min(x["processes"] for x in samples) < baseline["processes"]):
        failures.append(f"proxy processes: {baseline['processes']} at the start, "
                        f"{min(x['processes'] for x in samples)} at the fewest, "
                        f"{samples[-1]['restarts'] - baseline['restarts']} worker restarts")
    expected = int(args.duration)
    if len(samples) < MIN_SAMPLE_SHARE * expected:
        failures.append(f"only {len(samples)} samples of {expected} expected")
    traffic = tally.snapshot()
    latency = tally.latencies()
    for cls in HEALTHY_CLASSES:
        outcomes = traffic.get(cls, {})
        n = sum(outcomes.values())
        bad = n - outcomes.get("200", 0)
        if outcomes.get("200", 0) == 0:
            failures.append(f"traffic: no successful {cls} request")
        elif bad > MAX_HEALTHY_ERROR_RATE * n:
            failures.append(f"traffic: {bad} of {n} {cls} requests failed: "
                            + ", ".join(f"{k} x{v}" for k, v in sorted(outcomes.items()) if k != "200"))
    resumed = next((w.state.get("resumed", 0) for w in workers if w.cls == "tls_newconn"), 0)

    print()
    print(table(summary))
    print()
    print(f"traffic over {duration:.1f}s ({tally.total} requests, {tally.total / duration:.0f}/s; "
          f"{cycler.switches} fault switches; {resumed} TLS sessions resumed):")
    for cls in RATES:
        outcomes = traffic.get(cls, {})
        lat = latency.get(cls)
        print(f"  {cls:14s} {sum(outcomes.values()):6d}  "
              + (f"p50 {lat['p50_ms']:.1f} ms p99 {lat['p99_ms']:.1f} ms max {lat['max_ms']:.0f} ms  " if lat else "")
              + ", ".join(f"{k} x{v}" for k, v in sorted(outcomes.items(), key=lambda kv: -kv[1])))
    print(f"after the load: {drain['connections']} client connections, {drain['pool_active']} upstream active, "
          f"{drain.get('pool_idle')} idle pooled, {drain['tasks']} tasks (before the load: {baseline['tasks']}), "
          f"{drain['fds']} fds (before: {baseline['fds']}) after {drain['seconds']}s")
    if failures:
        print("\nFAIL")
        for f in failures:
            print(f"  - {f}")
        if tasks_dump is not None:
            groups = sorted((g for doc in per_worker(tasks_dump) for g in doc.get("groups", [])),
                            key=lambda g: -g["count"])
            print("  largest task groups: " + "; ".join(
                f"{g['count']}x {g['stack'][-1] if g['stack'] else '?'}" for g in groups[:5]))
    else:
        print("\nPASS: no series grows beyond its limits")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "ok": not failures, "failures": failures, "duration": round(duration, 2), "rate": args.rate,
            "loop": args.loop, "pure": args.pure, "fault_period": args.fault_period,
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "limits": {"slope": SLOPE, "growth": GROWTH, "caps": caps},
            "baseline": baseline, "summary": summary, "drain": drain, "traffic": traffic, "latency": latency,
            "tls_sessions_resumed": resumed, "faulty_upstream": fstats, "tasks_at_end": tasks_dump,
            "samples": samples}, indent=2))
        log(f"results written to {args.json}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    ap.add_argument("--rate", type=float, default=1.0, help="load scale: 1 is about 250 requests/s")
    ap.add_argument("--fault-period", type=float, default=1.5, help="seconds between faulty-upstream mode switches")
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", help="the proxy's event loop")
    ap.add_argument("--pure", action="store_true", help="run the proxy on the pure (h11) codec")
    ap.add_argument("--workers", metavar="N|auto",
                    help="passed to `edgeproxy run --workers` (default: the proxy's own default)")
    ap.add_argument("--wrk", action="store_true", help="add an unthrottled wrk -t1 -c4 stream (when installed)")
    ap.add_argument("--json", metavar="FILE", help="write samples, summary and verdict as JSON")
    ap.add_argument("--quiet", action="store_true", help="no per-second lines")
    ap.add_argument("--inject-leak", action="store_true",
                    help="check the checker: hold one more idle client connection every second (must fail)")
    args = ap.parse_args(argv)
    if args.duration < 8:
        ap.error("--duration must be at least 8 seconds (the second half is what is judged)")
    if not Path("/proc/self/fd").is_dir():
        log("soak: needs /proc (Linux)")
        return 2

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)  # even when started with SIGINT ignored (a background job)
    signal.signal(signal.SIGHUP, on_signal)
    tmp = Path(tempfile.mkdtemp(prefix="edgeproxy-soak-"))
    try:
        return run(args, tmp)
    except KeyboardInterrupt:
        log("\nsoak: interrupted")
        return 130
    except RuntimeError as exc:
        log(f"soak: {exc}")
        return 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        stop_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
