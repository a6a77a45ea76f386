"""Test kit: the real proxy as a subprocess, scripted upstreams, raw clients.

* ``ProxyProcess``: writes a TOML config, runs ``python -m proxy run -c``
  on ephemeral ports, waits for its ``ready`` event on stderr (no sleeps),
  and exposes the bound addresses, the access log and the exit code.
* ``Upstream``: an asyncio server in a background thread. Requests are
  parsed with h11 (so anything the proxy forwards must be a valid HTTP/1.1
  message), recorded, and answered by a scripted async handler that can
  also misbehave (hang, reset, drip bytes, close early).
* ``Client``: a blocking raw-socket client that parses responses with h11.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import h11

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A port with nothing listening on it (for connect-refused cases)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


_HELD: list[socket.socket] = []


def dead_addr() -> str:
    """An address that refuses connections for the whole test run.

    The port is bound but never listened on, so a connect gets RST at once
    and no other server (nor a self-connect) can take the port meanwhile,
    unlike a port that was merely free a moment ago.
    """
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    _HELD.append(s)
    return f"127.0.0.1:{s.getsockname()[1]}"


def wait_for(fn, timeout: float = 5.0, step: float = 0.05):
    """Re-evaluate ``fn`` (real requests or observable state) until it is
    truthy or ``timeout`` passes; returns its last value. For state that only
    real time changes (breaker open durations, once-a-second pool ticks)."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


# ----------------------------------------------------------------------
# the proxy under test
class ProxyProcess:
    def __init__(self, tmp: Path, config: str, loop: str = "uvloop", env: dict | None = None, command: str = "run",
                 workers: int | str = 1):
        """``workers``: 1 (a single process, what most tests pin) unless a test is about workers."""
        self.tmp = tmp
        self.config_path = tmp / "edgeproxy.toml"
        self.access_log = tmp / "access.log"
        self.config_path.write_text(config)
        self.loop = loop
        self.command = command
        self.workers = workers
        self.env = dict(os.environ, **(env or {}))
        self.env["PYTHONPATH"] = str(ROOT) + os.pathsep + self.env.get("PYTHONPATH", "")
        self.proc: subprocess.Popen | None = None
        self.events: list[dict] = []
        self.stderr_lines: list[str] = []
        self._cond = threading.Condition()
        self.listeners: dict[str, str] = {}
        self.admin = ""

    def start(self, timeout: float = 15.0) -> "ProxyProcess":
        cmd = [sys.executable, "-m", "proxy", self.command, "-c", str(self.config_path), "--loop", self.loop]
        if self.command == "run":
            cmd += ["--workers", str(self.workers)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        threading.Thread(target=self._read_stderr, daemon=True).start()
        ev = self.wait_event("ready", timeout)
        if ev is None:
            self.kill()
            raise RuntimeError("proxy did not become ready:\n" + "".join(self.stderr_lines))
        return self

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace")
            with self._cond:
                self.stderr_lines.append(line)
                try:
                    ev = json.loads(line)
                except ValueError:
                    ev = None
                if isinstance(ev, dict) and "event" in ev:
                    self.events.append(ev)
                    if ev["event"] == "listening":
                        self.listeners[ev["listener"]] = ev["address"]
                    elif ev["event"] == "admin":
                        self.admin = ev["address"]
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_event(self, name: str, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self.events:
                    if ev.get("event") == name:
                        return ev
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc is not None and self.proc.poll() is not None and not self._more()):
                    return None
                self._cond.wait(min(left, 0.5))

    def _more(self) -> bool:
        return False

    @property
    def addr(self) -> tuple[str, int]:
        return split_addr(next(iter(self.listeners.values())))

    @property
    def admin_addr(self) -> tuple[str, int]:
        return split_addr(self.admin)

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def signal(self, sig=signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def access_records(self, n: int | None = None, timeout: float = 5.0) -> list[dict]:
        """Access log records; with ``n``, wait until at least n are written."""
        deadline = time.monotonic() + timeout
        while True:
            recs = []
            if self.access_log.exists():
                recs = [json.loads(x) for x in self.access_log.read_text().splitlines() if x.strip()]
            if n is None or len(recs) >= n or time.monotonic() > deadline:
                return recs
            # the writer thread flushes asynchronously; poll the file briefly
            time.sleep(0.02)

    def metrics(self) -> str:
        return get(self.admin_addr, "/metrics").body.decode()


def metric_value(text: str, name: str, **labels) -> float:
    """The value of one sample in Prometheus text, 0.0 when absent."""
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        rest = line[len(name):]
        if rest.startswith("{"):
            lab, _, val = rest[1:].partition("} ")
            pairs = dict(p.split("=", 1) for p in lab.split(",") if p)
            pairs = {k: v.strip('"') for k, v in pairs.items()}
            if all(pairs.get(k) == str(v) for k, v in labels.items()):
                return float(val)
        elif rest.startswith(" ") and not labels:
            return float(rest.strip())
    return 0.0


def base_config(upstreams: dict[str, list[str]], routes: list[dict] | None = None, extra: str = "",
                access_log: bool = True, tmp: Path | None = None, cluster_extra: str = "") -> str:
    """A TOML config on ephemeral ports with the given clusters and routes."""
    out = ['[[listeners]]\nname = "main"\naddress = "127.0.0.1:0"\n',
           '[admin]\naddress = "127.0.0.1:0"\n']
    if access_log and tmp is not None:
        out.append(f'[access_log]\npath = "{tmp / "access.log"}"\n')
    else:
        out.append("[access_log]\nenabled = false\n")
    for name, servers in upstreams.items():
        out.append(f"[upstreams.{name}]\nservers = {json.dumps(servers)}\n{cluster_extra}\n")
    if routes is None:
        routes = [{"name": "default", "path_prefix": "/", "upstream": next(iter(upstreams))}]
    for r in routes:
        body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in r.items())
        out.append(f"[[routes]]\n{body}\n")
    out.append(extra)
    return "\n".join(out)


# ----------------------------------------------------------------------
# scripted upstream servers
@dataclass
class Received:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    conn_id: int = 0

    def header(self, name: str) -> str | None:
        vals = [v for k, v in self.headers if k == name.lower()]
        return ", ".join(vals) if vals else None


class Reply:
    """What a handler uses to answer on its connection."""

    def __init__(self, writer: asyncio.StreamWriter):
        self.writer = writer
        self.closed = False

    async def send(self, status: int = 200, headers=(), body: bytes = b"", chunked: bool = False) -> None:
        lines = [f"HTTP/1.1 {status} X\r\n".encode()]
        names = {k.lower() for k, _ in headers}
        for k, v in headers:
            lines.append(f"{k}: {v}\r\n".encode())
        if chunked:
            lines.append(b"Transfer-Encoding: chunked\r\n\r\n")
            if body:
                lines.append(b"%x\r\n%b\r\n" % (len(body), body))
            lines.append(b"0\r\n\r\n")
        else:
            if "content-length" not in names:
                lines.append(f"Content-Length: {len(body)}\r\n".encode())
            lines.append(b"\r\n" + body)
        self.writer.write(b"".join(lines))
        await self.writer.drain()

    async def raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close(self) -> None:
        self.closed = True
        self.writer.close()

    def abort(self) -> None:
        self.closed = True
        self.writer.transport.abort()


async def echo_handler(req: Received, reply: Reply) -> None:
    body = json.dumps({"method": req.method, "target": req.target, "headers": req.headers,
                       "body_len": len(req.body), "conn": req.conn_id}).encode()
    await reply.send(200, [("Content-Type", "application/json")], body)


class Upstream:
    """An HTTP/1.1 server in a background thread running ``handler``.

    ``handler(req, reply)`` is awaited for each request after its whole body
    was read (unless ``stream_body`` is set, in which case ``req.body`` is
    empty and the handler may read ``reply.reader`` itself). ``raw`` handlers
    get (reader, writer) before any parsing.
    """

    def __init__(self, handler=echo_handler, raw=None):
        self.handler = handler
        self.raw_handler = raw
        self.requests: list[Received] = []
        self.connections = 0
        self.open_connections = 0
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._server = None
        self.port = 0
        self.event = threading.Event()  # set on each request received
        self._writers: set = set()

    def __enter__(self) -> "Upstream":
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self.loop)
        fut.result(5)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    async def _start(self):
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        async def stop():
            self._server.close()
            for w in list(self._writers):
                w.transport.abort()

        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_connections += 1
        conn_id = self.connections
        self._writers.add(writer)
        try:
            if self.raw_handler is not None:
                await self.raw_handler(reader, writer)
                return
            await self._serve(reader, writer, conn_id)
        except (ConnectionError, asyncio.IncompleteReadError, h11.RemoteProtocolError):
            pass
        finally:
            self.open_connections -= 1
            self._writers.discard(writer)
            try:
                writer.close()
            except Exception:
                pass

    async def _serve(self, reader, writer, conn_id):
        conn = h11.Connection(h11.SERVER)
        reply = Reply(writer)
        while True:
            req = None
            body = []
            while True:
                ev = conn.next_event()
                if ev is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)
                    if not data:
                        if req is None:
                            return
                    continue
                if isinstance(ev, h11.Request):
                    req = Received(ev.method.decode(), ev.target.decode(),
                                   [(k.decode(), v.decode("latin-1")) for k, v in ev.headers], conn_id=conn_id)
                elif isinstance(ev, h11.Data):
                    body.append(ev.data)
                elif isinstance(ev, h11.EndOfMessage):
                    break
                elif isinstance(ev, h11.ConnectionClosed):
                    return
            req.body = b"".join(body)
            self.requests.append(req)
            self.event.set()
            await self.handler(req, reply)
            if reply.closed:
                return
            # answers bypass h11, so start a fresh parser carrying over any
            # pipelined bytes it already holds
            leftover = conn.trailing_data[0]
            conn = h11.Connection(h11.SERVER)
            if leftover:
                conn.receive_data(leftover)

    def wait_requests(self, n: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.requests) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.event.wait(left)
            self.event.clear()
        return True


# ----------------------------------------------------------------------
# clients
@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    closed: bool = False
    elapsed: float = 0.0
    interim: list = field(default_factory=list)

    def header(self, name: str) -> str | None:
        vals = [v for k, v in self.headers if k == name.lower()]
        return ", ".join(vals) if vals else None

    def json(self):
        return json.loads(self.body)


class Client:
    """A keep-alive HTTP/1.1 client on one raw socket, parsing with h11."""

    def __init__(self, addr: tuple[str, int], timeout: float = 10.0):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.settimeout(timeout)
        self.conn = h11.Connection(h11.CLIENT)
        self.buf = b""

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str = "GET", target: str = "/", headers=(), body: bytes = b"",
                host: str = "test") -> Response:
        hdrs = [("Host", host)] if host is not None else []
        hdrs += list(headers)
        if body and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in hdrs):
            hdrs.append(("Content-Length", str(len(body))))
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs) + "\r\n"
        t0 = time.monotonic()
        self.sock.sendall(head.encode("latin-1") + body)
        r = self.read_response(method)
        r.elapsed = time.monotonic() - t0
        return r

    def read_response(self, method: str = "GET") -> Response:
        """Read one response (raw parse with a fresh h11 client per response)."""
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        if self.buf:
            conn.receive_data(self.buf)
        self.buf = b""
        status, headers, body, interim = 0, [], [], []
        closed = False
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                try:
                    data = self.sock.recv(262144)
                except ConnectionResetError:
                    data = b""
                if not data:
                    closed = True
                conn.receive_data(data)
                continue
            if isinstance(ev, h11.InformationalResponse):
                interim.append(ev.status_code)
            elif isinstance(ev, h11.Response):
                status = ev.status_code
                headers = [(k.decode(), v.decode("latin-1")) for k, v in ev.headers]
            elif isinstance(ev, h11.Data):
                body.append(ev.data)
            elif isinstance(ev, h11.EndOfMessage):
                break
            elif isinstance(ev, h11.ConnectionClosed):
                closed = True
                break
        self.buf = conn.trailing_data[0]
        return Response(status, headers, b"".join(body), closed, interim=interim)

    def is_closed(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection within ``timeout``."""
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        if data:
            self.buf += data
            return False
        return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def get(addr, target: str = "/", **kw) -> Response:
    with Client(addr) as c:
        return c.request("GET", target, **kw)


def raw_exchange(addr, data: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes, read until the server closes (or timeout); return all read."""
    s = socket.create_connection(addr, timeout=timeout)
    try:
        s.sendall(data)
        out = []
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out.append(chunk)
        return b"".join(out)
    finally:
        s.close()
