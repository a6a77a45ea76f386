"""Process lifecycle: graceful drain, readiness, CLI and config errors, memory bound."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from helpers_failures import hang_raw, head_lines, read_head, wait_until
from support import ROOT, Client, ProxyProcess, base_config, dead_addr, get


# ----------------------------------------------------------------------
# 1. graceful drain
def test_sigterm_drains_in_flight_request_then_exits_zero(proxy_factory, upstream_factory):
    replied_at = {}

    async def handler(req, reply):
        if req.target == "/slow":
            await asyncio.sleep(0.8)
        body = b"done " + req.target.encode() + b" " + b"z" * 5000
        replied_at[req.target] = time.monotonic()
        await reply.send(200, [("Content-Type", "text/plain")], body)

    up = upstream_factory(handler=handler)
    px = proxy_factory(upstreams={"app": [up.address]}, extra='[server]\ndrain_timeout = "5s"\n')

    idle = Client(px.addr)
    slow = Client(px.addr)
    try:
        r = idle.request("GET", "/quick")
        assert r.status == 200 and not r.closed  # now an idle keep-alive connection
        slow.send_raw(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        assert up.wait_requests(2)  # the slow request reached the upstream

        t_sig = time.monotonic()
        px.signal(signal.SIGTERM)
        assert px.wait_event("draining", 3) is not None
        t_draining = time.monotonic()

        # the idle keep-alive connection is closed at once
        assert idle.is_closed(timeout=1.0)
        assert time.monotonic() - t_sig < 1.0
        # no new connections
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(px.addr, timeout=2).close()

        # the in-flight response arrives complete, marked Connection: close
        r = slow.read_response("GET")
        assert r.status == 200
        assert r.body == b"done /slow " + b"z" * 5000
        assert (r.header("connection") or "").lower() == "close"
        assert replied_at["/slow"] > t_draining  # it really was in flight during the drain
        assert slow.is_closed(timeout=2.0)
    finally:
        idle.close()
        slow.close()

    assert px.wait(5) == 0
    assert time.monotonic() - t_sig < 5.0  # well within drain_timeout
    assert px.wait_event("stopped", 1) is not None
    recs = px.access_records(2)
    assert {(x["path"], x["status"]) for x in recs} >= {("/quick", 200), ("/slow", 200)}


# ----------------------------------------------------------------------
# 2. readiness and health
def test_readyz_fast_while_upstream_requests_hang(proxy_factory, upstream_factory):
    up = upstream_factory(raw=hang_raw)
    px = proxy_factory(upstreams={"app": [up.address]})
    socks = []
    try:
        for i in range(50):
            s = socket.create_connection(px.addr, timeout=5)
            s.sendall(b"GET /hang/%d HTTP/1.1\r\nHost: test\r\n\r\n" % i)
            socks.append(s)
        assert wait_until(lambda: up.connections >= 50, timeout=10), up.connections
        for _ in range(20):
            r = get(px.admin_addr, "/readyz")
            assert r.status == 200, r.body
            assert r.json() == {"ready": True, "reasons": []}
            assert r.elapsed < 0.05, r.elapsed
        r = get(px.admin_addr, "/healthz")
        assert r.status == 200 and r.elapsed < 0.05
    finally:
        for s in socks:
            s.close()


def test_readyz_503_when_only_server_refuses(proxy_factory):
    px = proxy_factory(upstreams={"app": [dead_addr()]})
    assert get(px.admin_addr, "/readyz").status == 200  # not known to be down yet
    assert get(px.addr, "/").status == 502
    r = get(px.admin_addr, "/readyz")
    assert r.status == 503
    body = r.json()
    assert body["ready"] is False
    assert "upstream_down:app" in body["reasons"]
    assert get(px.admin_addr, "/healthz").status == 200


def test_readyz_without_upstreams_stays_ready_through_an_outage(proxy_factory, tmp_path):
    config = base_config({"app": [dead_addr()]}, tmp=tmp_path)
    px = proxy_factory(config.replace("[admin]\n", "[admin]\nreadyz_upstreams = false\n", 1))
    assert get(px.addr, "/").status == 502  # the server is now known to be down
    r = get(px.admin_addr, "/readyz")
    assert r.status == 200 and r.json() == {"ready": True, "reasons": []}


# ----------------------------------------------------------------------
# 3. CLI and configuration errors
GOOD = """\
[[listeners]]
name = "main"
address = "127.0.0.1:0"

[admin]
address = "127.0.0.1:0"

[access_log]
enabled = false

[upstreams.orders]
servers = ["127.0.0.1:9001", "127.0.0.1:9002"]
tries = 2

[upstreams.orders.pool]
idle_timeout = "30s"

[[routes]]
name = "orders"
path_prefix = "/"
upstream = "orders"
"""

# (id, old text, new text, fragments the one error line must contain)
CONFIG_ERRORS = [
    ("unknown_key", 'idle_timeout = "30s"', 'idle_timout = "30s"',
     ["upstreams.orders.pool.idle_timout", "unknown key", "expected", "idle_timeout"]),
    ("wrong_type", "tries = 2", 'tries = "2"',
     ['upstreams.orders.tries = "2"', "expected an integer"]),
    ("bad_duration", 'idle_timeout = "30s"', 'idle_timeout = "30 parsecs"',
     ['upstreams.orders.pool.idle_timeout = "30 parsecs"', "expected a duration"]),
    ("unknown_upstream", 'upstream = "orders"', 'upstream = "payments"',
     ['routes[0].upstream = "payments"', "expected", "orders"]),
    ("empty_servers", 'servers = ["127.0.0.1:9001", "127.0.0.1:9002"]', "servers = []",
     ["upstreams.orders.servers = []", "expected a non-empty array"]),
    ("bad_address", 'servers = ["127.0.0.1:9001", "127.0.0.1:9002"]', 'servers = ["127.0.0.1:9001", "127.0.0.1:99999"]',
     ['upstreams.orders.servers[1] = "127.0.0.1:99999"', "expected an address"]),
    ("toml_syntax", "tries = 2", "tries = = 2",
     ["invalid TOML", "line 13"]),
    ("missing_file", None, None,
     ["cannot read"]),
]


def run_cli(*args, timeout: float = 15.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "proxy", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("case", CONFIG_ERRORS, ids=[c[0] for c in CONFIG_ERRORS])
def test_config_error_is_one_line_exit_2(tmp_path, case, command):
    name, old, new, fragments = case
    path = tmp_path / f"{name}.toml"
    if old is not None:
        assert old in GOOD
        path.write_text(GOOD.replace(old, new, 1))
    res = run_cli(command, "-c", str(path))
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    line = lines[0]
    assert str(path) in line
    for frag in fragments:
        assert frag in line, (frag, line)


def test_check_good_config_ok_and_idle_cap_warning(tmp_path):
    path = tmp_path / "good.toml"
    path.write_text(GOOD)
    res = run_cli("check", "-c", str(path))
    assert res.returncode == 0, res.stderr
    assert "config OK" in res.stdout
    assert not [ln for ln in res.stdout.splitlines() if ln.startswith("warning:")]

    three = GOOD.replace('servers = ["127.0.0.1:9001", "127.0.0.1:9002"]',
                         'servers = ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]')
    low = tmp_path / "low.toml"
    low.write_text(three.replace('idle_timeout = "30s"',
                                 'idle_timeout = "30s"\nmax_idle_per_server = 32\nmax_idle_total = 10'))
    res = run_cli("check", "-c", str(low))
    assert res.returncode == 0, res.stderr
    warns = [ln for ln in res.stdout.splitlines() if ln.startswith("warning:")]
    assert len(warns) == 1, res.stdout
    assert "upstreams.orders" in warns[0] and "32" in warns[0] and "10" in warns[0]

    fits = tmp_path / "fits.toml"
    fits.write_text(three.replace('idle_timeout = "30s"',
                                  'idle_timeout = "30s"\nmax_idle_per_server = 32\nmax_idle_total = 96'))
    res = run_cli("check", "-c", str(fits))
    assert res.returncode == 0, res.stderr
    assert not [ln for ln in res.stdout.splitlines() if ln.startswith("warning:")]


def test_version_names_codec():
    from proxy import codec

    res = run_cli("--version")
    assert res.returncode == 0
    assert f"codec: {codec.NAME}" in res.stdout


# ----------------------------------------------------------------------
# 4. streaming memory bound
SIZE = 256 * 1024 * 1024
CHUNK = 64 * 1024
RSS_LIMIT_KIB = 32 * 1024


class RssSampler:
    """Samples the proxy's RSS in a thread (measurement only, not a wait)."""

    def __init__(self, px):
        self.px = px
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.px.rss_kib())
            except (OSError, RuntimeError):
                return
            self._stop.wait(0.02)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(2)


async def discard_upload(reader, writer):
    """Reads a Content-Length body in a loop, keeping nothing; answers with the count."""
    buf = bytearray()
    while True:
        head = await read_head(reader, buf)
        if head is None:
            return
        line, hdrs = head_lines(head)
        if line.startswith("GET "):
            writer.write(b"HTTP/1.1 200 X\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            continue
        left = int(hdrs["content-length"]) - len(buf)
        got = len(buf)
        buf.clear()
        await asyncio.sleep(0.3)  # let the proxy hit backpressure first
        while left > 0:
            data = await reader.read(min(left, 262144))
            if not data:
                return
            left -= len(data)
            got += len(data)
        body = b"%d" % got
        writer.write(b"HTTP/1.1 200 X\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
        await writer.drain()


async def stream_download(reader, writer):
    """Streams SIZE bytes as fast as the proxy takes them."""
    buf = bytearray()
    while True:
        head = await read_head(reader, buf)
        if head is None:
            return
        chunk = b"d" * CHUNK
        writer.write(b"HTTP/1.1 200 X\r\nContent-Length: %d\r\n\r\n" % SIZE)
        for _ in range(SIZE // CHUNK):
            writer.write(chunk)
            await writer.drain()


@pytest.mark.slow
def test_streaming_256mib_each_way_keeps_rss_bounded(proxy_factory, upstream_factory):
    up_in = upstream_factory(raw=discard_upload)
    up_out = upstream_factory(raw=stream_download)
    px = proxy_factory(
        upstreams={"sink": [up_in.address], "source": [up_out.address]},
        routes=[{"name": "up", "path_prefix": "/upload", "upstream": "sink"},
                {"name": "down", "path_prefix": "/download", "upstream": "source"}],
    )
    assert get(px.addr, "/upload/warm").status == 200
    base = px.rss_kib()

    with RssSampler(px) as sampler:
        # upload: Content-Length body sent in 64 KiB chunks
        chunk = b"u" * CHUNK
        with Client(px.addr, timeout=30) as c:
            c.send_raw(b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n" % SIZE)
            for _ in range(SIZE // CHUNK):
                c.sock.sendall(chunk)
            r = c.read_response("POST")
        assert r.status == 200 and r.body == b"%d" % SIZE

        # download: a slow reader (pauses, then small reads)
        s = socket.create_connection(px.addr, timeout=30)
        try:
            s.sendall(b"GET /download HTTP/1.1\r\nHost: test\r\n\r\n")
            data = bytearray()
            while b"\r\n\r\n" not in data:
                data += s.recv(4096)
            head, _, rest = bytes(data).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert b"content-length: %d" % SIZE in head.lower()
            got = len(rest)
            time.sleep(0.3)  # a client that is slower than the upstream
            buf = bytearray(CHUNK)
            reads = 0
            while got < SIZE:
                n = s.recv_into(buf)
                assert n, f"connection closed after {got} bytes"
                got += n
                reads += 1
                if reads % 512 == 0:
                    time.sleep(0.01)
            assert got == SIZE
        finally:
            s.close()

    growth = sampler.peak - base
    assert growth < RSS_LIMIT_KIB, f"proxy RSS grew by {growth} KiB (base {base} KiB)"


# ----------------------------------------------------------------------
# 5. no-config mode
class CliProxy(ProxyProcess):
    """The proxy started with command-line flags instead of a config file."""

    def __init__(self, tmp, args: list[str], loop: str):
        super().__init__(tmp, "", loop=loop)
        self.args = args

    def start(self, timeout: float = 15.0) -> "CliProxy":
        cmd = [sys.executable, "-m", "proxy", "run", *self.args, "--loop", self.loop]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        threading.Thread(target=self._read_stderr, daemon=True).start()
        if self.wait_event("ready", timeout) is None:
            self.kill()
            raise RuntimeError("proxy did not become ready:\n" + "".join(self.stderr_lines))
        return self


def test_no_config_mode_proxies(tmp_path, upstream_factory, loop_kind):
    up = upstream_factory()
    px = CliProxy(tmp_path, ["--listen", "127.0.0.1:0", "--upstream", up.address, "--admin", "127.0.0.1:0"],
                  loop_kind)
    px.start()
    try:
        assert px.addr[1] != 0 and px.admin_addr[1] != 0
        r = get(px.addr, "/no-config?x=1")
        assert r.status == 200
        assert r.json()["target"] == "/no-config?x=1"
        assert [q.target for q in up.requests] == ["/no-config?x=1"]
        assert get(px.admin_addr, "/healthz").status == 200
        ready = px.wait_event("ready")
        assert ready["loop"] == loop_kind
    finally:
        rc = px.stop(5)
    assert rc == 0
