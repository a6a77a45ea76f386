"""The TLS commands against real processes: quick mode with --cert/--key serving TLS, ``edgeproxy reload``
signalling a running proxy through its pid_file, ``check`` and ``run`` refusing unusable certificates."""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

from proxy.gencert import SERVER_AUTH, generate_dev_set, issue, make_ca
from support import Client, ProxyProcess

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


class CommandProcess(ProxyProcess):
    """A ProxyProcess running any edgeproxy command line, in the working directory ``cwd``."""

    def __init__(self, tmp: Path, argv: list[str], cwd: Path, **kw):
        super().__init__(tmp, "", **kw)
        self.argv = argv
        self.cwd = cwd

    def start(self, timeout: float = 15.0) -> "CommandProcess":
        self.proc = subprocess.Popen([sys.executable, "-m", "proxy", *self.argv], cwd=self.cwd, env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        threading.Thread(target=self._read_stderr, daemon=True).start()
        if self.wait_event("ready", timeout) is None:
            self.kill()
            raise RuntimeError("proxy did not become ready:\n" + "".join(self.stderr_lines))
        return self


class TLSClient(Client):
    """support.Client over TLS; the handshake happens in the constructor."""

    def __init__(self, addr, ctx: ssl.SSLContext, server_hostname: str | None, timeout: float = 5.0):
        raw = socket.create_connection(addr, timeout=timeout)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname)
        except BaseException:
            raw.close()
            raise
        self.sock.settimeout(timeout)
        self.buf = b""

    def peer_names(self) -> list[str]:
        return [v for k, v in self.sock.getpeercert().get("subjectAltName", ()) if k == "DNS"]


def cli(tmp: Path, *argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run an edgeproxy command to completion in ``tmp``."""
    return subprocess.run([sys.executable, "-m", "proxy", *argv], cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=10)


def write_server(folder: Path, stem: str, names, ca, **kw) -> tuple[str, str]:
    issued = issue(common_name=names[0], dns_names=list(names), issuer=ca, extended_key_usage=[SERVER_AUTH], **kw)
    cert, key = folder / f"{stem}.pem", folder / f"{stem}.key"
    cert.write_bytes(issued.chain_pem())
    key.write_bytes(issued.key_pem())
    return str(cert), str(key)


def trust(ca_file) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def tls_config(cert: str, key: str, upstream: str, pid_file: Path | str = "") -> str:
    return f"""
[server]
pid_file = {json.dumps(str(pid_file))}
[admin]
enabled = false
[access_log]
enabled = false
[[listeners]]
name = "secure"
address = "127.0.0.1:0"
tls = true
[[listeners.certificates]]
cert = {json.dumps(cert)}
key = {json.dumps(key)}
[upstreams.app]
servers = ["{upstream}"]
[[routes]]
upstream = "app"
"""


# --------------------------------------------------------------------------- quick mode


def test_quick_mode_with_cert_and_key_serves_tls(tmp_path, loop_kind, codec_env, upstream_factory):
    up = upstream_factory()
    dev = generate_dev_set(tmp_path / "dev")
    other_ca = make_ca("other CA")
    (tmp_path / "other-ca.pem").write_bytes(other_ca.cert_pem())
    other = write_server(tmp_path, "other", ["other.test"], other_ca)
    argv = ["run", "--listen", "127.0.0.1:0", "--upstream", up.address, "--admin", "127.0.0.1:0",
            "--cert", "dev/server.pem", "--key", "dev/server.key", "--cert", other[0], "--key", other[1],
            "--loop", loop_kind]
    px = CommandProcess(tmp_path, argv, cwd=tmp_path, loop=loop_kind, env=codec_env).start()
    try:
        with TLSClient(px.addr, trust(dev["ca.pem"]), "localhost") as c:
            assert c.peer_names() == ["localhost"]  # the first pair is the default certificate
            r = c.request("GET", "/quick", host="localhost")
            assert r.status == 200 and r.json()["target"] == "/quick"
        assert dict(up.requests[-1].headers)["x-forwarded-proto"] == "https"
        with TLSClient(px.addr, trust(tmp_path / "other-ca.pem"), "other.test") as c:  # SNI picks the second
            assert c.peer_names() == ["other.test"]
            assert c.request("GET", "/other", host="other.test").status == 200
    finally:
        assert px.stop() == 0


# --------------------------------------------------------------------------- reload


def test_reload_makes_the_running_proxy_reread_its_certificates(tmp_path, loop_kind, codec_env, upstream_factory):
    up = upstream_factory()
    ca = make_ca("reload CA")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem())
    cert, key = write_server(tmp_path, "server", ["before.test"], ca)
    pid_file = tmp_path / "edge.pid"
    px = ProxyProcess(tmp_path, tls_config(cert, key, up.address, pid_file), loop=loop_kind, env=codec_env).start()
    try:
        assert pid_file.read_text() == f"{px.proc.pid}\n"
        with TLSClient(px.addr, trust(tmp_path / "ca.pem"), "before.test") as c:
            assert c.peer_names() == ["before.test"]
        write_server(tmp_path, "server", ["after.test"], ca)  # new files at the same paths

        done = cli(tmp_path, "reload", "-c", str(px.config_path), env=px.env)
        assert done.returncode == 0, done.stderr
        assert f"sent SIGHUP to process {px.proc.pid}" in done.stdout
        event = px.wait_event("tls_reloaded", 5)
        assert event is not None and event["listener"] == "secure" and event["certificates"] == ["after.test"]
        with TLSClient(px.addr, trust(tmp_path / "ca.pem"), "after.test") as c:
            assert c.peer_names() == ["after.test"]
            assert c.request("GET", "/", host="after.test").status == 200
    finally:
        assert px.stop() == 0
    assert not pid_file.exists()  # removed on exit


def test_reload_with_a_broken_config_signals_nothing(tmp_path, loop_kind, codec_env, upstream_factory):
    up = upstream_factory()
    ca = make_ca("reload CA")
    cert, key = write_server(tmp_path, "server", ["app.test"], ca)
    pid_file = tmp_path / "edge.pid"
    px = ProxyProcess(tmp_path, tls_config(cert, key, up.address, pid_file), loop=loop_kind, env=codec_env).start()
    try:
        _, other_key = write_server(tmp_path, "other", ["app.test"], ca)
        broken = tmp_path / "broken.toml"
        broken.write_text(tls_config(cert, other_key, up.address, pid_file))  # key of another certificate
        done = cli(tmp_path, "reload", "-c", str(broken), env=px.env)
        assert done.returncode == 2 and done.stdout == ""
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        assert "listeners[0].certificates[0]" in done.stderr and "nothing signalled" in done.stderr

        bad_toml = tmp_path / "bad.toml"
        bad_toml.write_text(f'[server]\npid_file = "{pid_file}"\n[[listeners]\n')
        done = cli(tmp_path, "reload", "-c", str(bad_toml), env=px.env)
        assert done.returncode == 2 and "invalid TOML" in done.stderr

        # a good reload now: the proxy reloads once, so the refused ones sent nothing
        assert cli(tmp_path, "reload", "-c", str(px.config_path), env=px.env).returncode == 0
        assert px.wait_event("tls_reloaded", 5) is not None
        assert [e["event"] for e in px.events].count("tls_reloaded") == 1
        assert px.proc.poll() is None
    finally:
        assert px.stop() == 0


def test_reload_when_no_proxy_runs(tmp_path):
    ca = make_ca("reload CA")
    cert, key = write_server(tmp_path, "server", ["app.test"], ca)
    config = tmp_path / "edge.toml"
    config.write_text(tls_config(cert, key, "127.0.0.1:9", tmp_path / "edge.pid"))
    done = cli(tmp_path, "reload", "-c", str(config))
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"edgeproxy: {tmp_path / 'edge.pid'}: no such pid file (server.pid_file of {config}); is edgeproxy running, "
        "started with this config from this directory?"]


# --------------------------------------------------------------------------- check and run refuse bad certificates


def test_check_and_run_refuse_unusable_certificates(tmp_path):
    ca = make_ca("check CA")
    expired = write_server(tmp_path, "expired", ["app.test"], ca, not_before=NOW - 300 * DAY, not_after=NOW - DAY)
    config = tmp_path / "edge.toml"
    config.write_text(tls_config(*expired, "127.0.0.1:9"))
    done = cli(tmp_path, "check", "-c", str(config))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"error: listeners[0].certificates[0]: {expired[0]}: certificate expired on" in done.stdout
    assert "config OK" not in done.stdout

    # run: a missing key file is one line, exit 2, and the pid file written meanwhile is gone
    pid_file = tmp_path / "edge.pid"
    config.write_text(tls_config(expired[0], str(tmp_path / "missing.key"), "127.0.0.1:9", pid_file))
    done = cli(tmp_path, "run", "-c", str(config))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("{")]  # JSON lines are events
    assert len(lines) == 1 and lines[0].startswith(f"edgeproxy: {config}: listeners[0].certificates[0] = ")
    assert lines[0].endswith(f"{tmp_path / 'missing.key'}: key file not found; "
                             "expected a usable certificate, key and client CA")
    assert not pid_file.exists()
