"""`edgeproxy demo`: the built-in upstream behind the proxy, seen in metrics and the access log."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
import time

from support import ROOT, Client, ProxyProcess, free_port, get, metric_value, split_addr


class TLSClient(Client):
    """support.Client over a verified TLS connection."""

    def __init__(self, addr, ctx: ssl.SSLContext, server_hostname: str, timeout: float = 5.0):
        self.sock = ctx.wrap_socket(socket.create_connection(addr, timeout=timeout), server_hostname=server_hostname)
        self.buf = b""


class DemoInDirectory(ProxyProcess):
    """``edgeproxy demo -c edgeproxy.toml`` run with ``tmp`` as its working directory (relative paths land there)."""

    def start(self, timeout: float = 15.0) -> "DemoInDirectory":
        cmd = [sys.executable, "-m", "proxy", "demo", "-c", self.config_path.name, "--loop", self.loop]
        self.proc = subprocess.Popen(cmd, cwd=self.tmp, env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        threading.Thread(target=self._read_stderr, daemon=True).start()
        if self.wait_event("ready", timeout) is None:
            self.kill()
            raise RuntimeError("demo did not become ready:\n" + "".join(self.stderr_lines))
        return self

    def wait_line(self, fragment: str, timeout: float = 5.0) -> str:
        """All of stderr so far, once a line containing ``fragment`` has been printed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(fragment in line for line in self.stderr_lines):
                left = deadline - time.monotonic()
                assert left > 0, f"no {fragment!r} line:\n" + "".join(self.stderr_lines)
                self._cond.wait(left)
            return "".join(self.stderr_lines)


def test_demo_proxies_a_request_into_metrics_and_access_log(tmp_path, loop_kind):
    up = free_port()
    cfg = f"""
[[listeners]]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[access_log]
path = "{tmp_path / 'access.log'}"
[upstreams.demo]
servers = ["127.0.0.1:{up}"]
[[routes]]
name = "demo"
upstream = "demo"
"""
    px = DemoInDirectory(tmp_path, cfg, loop=loop_kind).start()
    try:
        r = get(px.addr, "/hello")
        assert r.status == 200
        body = r.json()
        assert body["upstream"] == f"127.0.0.1:{up}" and body["path"] == "/hello"
        assert body["x-request-id"] == r.header("x-request-id")
        assert get(px.addr, "/bytes/100000").body == b"x" * 100000
        assert metric_value(px.metrics(), "http_server_requests_total", route="demo", code="200") == 2
        recs = px.access_records(2)
        assert [x["path"] for x in recs] == ["/hello", "/bytes/100000"]
        assert "curl -i http://" in px.wait_line("Access log lines appear below")  # it prints the URLs to try
    finally:
        assert px.stop() == 0


def test_demo_on_the_example_config_generates_certificates_and_serves_tls(tmp_path, loop_kind):
    """The example config as shipped (ports made ephemeral), in a fresh directory: the TLS listener's
    certificate files are missing, so the demo generates a development set in ./demo-certs and serves it."""
    example = (ROOT / "config.example.toml").read_text()
    for fixed in ("127.0.0.1:8080", "127.0.0.1:8443", "127.0.0.1:9901"):
        assert f'"{fixed}"' in example
        example = example.replace(f'"{fixed}"', '"127.0.0.1:0"')
    example = example.replace('"127.0.0.1:8081"', f'"127.0.0.1:{free_port()}"')
    in_repo = (ROOT / "demo-certs").exists()
    px = DemoInDirectory(tmp_path, example, loop=loop_kind).start()
    try:
        text = px.wait_line("Access log lines appear below")  # the last of the lines printed after "ready"
        assert "generated development certificates in demo-certs/ (clients trust them with demo-certs/ca.pem)" in text
        host, port = split_addr(px.listeners["tls"])
        assert f"curl --cacert demo-certs/ca.pem https://localhost:{port}/" in text
        assert f"curl -i http://{px.listeners['main']}/" in text
        ctx = ssl.create_default_context(cafile=str(tmp_path / "demo-certs" / "ca.pem"))
        with TLSClient((host, port), ctx, "localhost") as c:
            r = c.request("GET", "/over-tls", host="localhost")
        assert r.status == 200 and r.json()["path"] == "/over-tls"
        assert get(split_addr(px.listeners["main"]), "/plain").status == 200
    finally:
        assert px.stop() == 0
    assert (ROOT / "demo-certs").exists() == in_repo  # nothing written into the repository
