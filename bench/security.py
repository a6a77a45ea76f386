#!/usr/bin/env python3
"""Run external security tools against an edgeproxy started on loopback, and summarise.

    python3 bench/security.py [--tools slowhttptest,sslyze,groups,testssl] [--seconds 20]
                              [--connections 300] [--defaults] [--json FILE]

It starts edgeproxy (a plain and a TLS listener, a development certificate
from ``proxy.gencert`` trusted by the tools through its CA file, the admin
listener, no access log) in front of the built-in demo upstream, all on
127.0.0.1, and stops everything on exit, Ctrl-C or SIGTERM. The downstream
timeouts are shortened so that a bounded run sees them fire
(``header_timeout``, ``body_timeout`` and ``send_timeout`` 10 s,
``body_min_rate_after`` 5 s); ``--defaults`` keeps the shipped ones (60 s,
so the slow attacks then need ``--seconds`` above 60 to see the proxy close
anything).

Tools, each run only when installed and bounded in time:

* slowhttptest (``apt-get install slowhttptest``): slowloris on the plain and
  the TLS listener, slow body (R-U-Dead-Yet) and slow read, ``--seconds``
  each with ``--connections`` connections. Availability is judged twice:
  slowhttptest's own probe and this runner's probe (a new connection and a
  GET every 0.5 s, 3 s timeout). The proxy's metrics say what it did: how
  many connections it held at most, and which timeouts closed them.
* sslyze (PyPI ``sslyze``; it pins an older ``cryptography`` than edgeproxy
  may use, so install it in its own virtualenv and point ``SSLYZE`` at that
  virtualenv's ``bin/sslyze``; an ``sslyze`` on PATH or importable is used
  too): protocol versions and cipher
  suites accepted, the certificate chain checked against the development CA,
  known vulnerabilities (Heartbleed, CCS injection, ROBOT, renegotiation,
  compression, downgrade), and compliance with Mozilla's "intermediate"
  configuration.
* groups (``openssl s_client``): every TLS 1.3 key exchange group, one at
  a time: accepted or not, and for the accepted ones the proxy's CPU time
  per handshake (its processes' user+sys over 10 handshakes). The handshake
  runs on the proxy's event loop, so a group a client may pick that costs
  more than 20 ms per handshake (finite-field DH at 4096 bits and above:
  D(HE)at, CVE-2002-20001) stalls every other connection that long, at the
  client's choice: flagged.
* testssl.sh (``apt-get install testssl.sh``; ``TESTSSL`` may point at it):
  its full default run; findings counted by severity, and every one LOW or
  above listed, those a development certificate explains set apart.

Exit 0 when nothing was flagged, 1 when something was (the service became
unavailable, a protocol older than TLS 1.2 or a vulnerability was found, a
key exchange group costing over 20 ms per handshake was accepted, a testssl
finding of severity HIGH or CRITICAL that the development
certificate does not explain), 2 when the proxy did not start. Tools that
are not installed are skipped with the command that installs them.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.soak import (  # noqa: E402
    Admin, Proxy, free_port, metric_sums, read_procs, spawn, stop, stop_all, wait_port,
)

TOOLS = ("slowhttptest", "sslyze", "testssl", "groups")
INSTALL = {
    "slowhttptest": "apt-get install slowhttptest",
    "sslyze": "python3 -m venv VENV && VENV/bin/pip install sslyze, then SSLYZE=VENV/bin/sslyze (its own "
              "virtualenv: it pins an older cryptography)",
    "testssl": "apt-get install testssl.sh (or set TESTSSL to a testssl.sh checkout's script)",
    "groups": "apt-get install openssl",
}
# key exchange groups tried one at a time with TLS 1.3 (openssl s_client -groups)
GROUPS = ("X25519", "P-256", "P-384", "P-521", "X448", "ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192")
GROUP_HANDSHAKES = 10
GROUP_CPU_LIMIT_MS = 20.0  # the handshake runs on the event loop: this long, every other connection waits
# testssl findings a development certificate explains (no revocation info, no CAA, no CT, private CA)
DEV_CERT_FINDINGS = {"cert_revocation", "cert_ocspURL", "cert_crlDistributionPoints", "OCSP_stapling",
                     "DNS_CAArecord", "certificate_transparency", "cert_mustStapleExtension", "cert_trust",
                     "cert_chain_of_trust", "cert_caIssuers"}
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "WARN")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def find_tool(name: str) -> list[str] | None:
    if name == "slowhttptest":
        path = shutil.which("slowhttptest")
        return [path] if path else None
    if name == "sslyze":
        env = os.environ.get("SSLYZE")
        if env and shutil.which(env):
            return [shutil.which(env)]
        path = shutil.which("sslyze")
        if path:
            return [path]
        if importlib.util.find_spec("sslyze") is not None:
            return [sys.executable, "-m", "sslyze"]
        return None
    if name == "groups":
        path = shutil.which("openssl")
        return [path] if path else None
    if name == "testssl":
        env = os.environ.get("TESTSSL")
        for cand in ([env] if env else []) + ["testssl.sh", "testssl"]:
            path = shutil.which(cand)
            if path:
                return [path]
        return None
    raise ValueError(name)


def run_tool(cmd: list[str], timeout: float, cwd: Path) -> tuple[int | None, str]:
    """Run ``cmd`` in its own process group; on timeout stop the whole group. (exit code or None, output)."""
    p = spawn(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        out, _ = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        stop(p)
        out, _ = p.communicate()
        rc = None
    finally:
        stop(p)
    return rc, ANSI.sub("", out.decode("utf-8", "replace"))


# ----------------------------------------------------------------------
# the proxy under test
def config(tmp: Path, cert: Path, key: Path, upstream: int, defaults: bool) -> Path:
    timeouts = "" if defaults else """
header_timeout = "10s"
body_timeout = "10s"
send_timeout = "10s"
body_min_rate_after = "5s"
"""
    cfg = tmp / "edgeproxy-security.toml"
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
{timeouts}
[upstreams.app]
servers = ["127.0.0.1:{upstream}"]
[[routes]]
upstream = "app"
""")
    return cfg


class Watch(threading.Thread):
    """While a tool runs: a GET on a new connection every 0.5 s (availability as a client sees it) and,
    every 0.5 s, the proxy's open client connections."""

    def __init__(self, port: int, admin_port: int):
        super().__init__(daemon=True)
        self.port = port
        self.admin = Admin(admin_port)
        self.halt = threading.Event()
        self.ok = self.failed = 0
        self.latencies: list[float] = []
        self.max_connections = 0
        self.failures: list[str] = []

    def probe(self) -> None:
        t0 = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=3) as s:
                s.settimeout(3)
                s.sendall(b"GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
                data = b""
                while b"\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            if data.startswith(b"HTTP/1.1 200"):
                self.ok += 1
                self.latencies.append(time.monotonic() - t0)
            else:
                self.failed += 1
                self.failures.append(data[:40].decode("latin-1", "replace") or "closed")
        except OSError as exc:
            self.failed += 1
            self.failures.append(type(exc).__name__)

    def run(self) -> None:
        while not self.halt.wait(0.5):
            self.probe()
            try:
                m = metric_sums(self.admin.get("/metrics").decode(), ("http_server_connections_active",))
                self.max_connections = max(self.max_connections, int(m["http_server_connections_active"]))
            except Exception:
                pass

    def finish(self) -> dict:
        self.halt.set()
        self.join(5)
        self.admin.close()
        lat = sorted(self.latencies)
        return {"probes_ok": self.ok, "probes_failed": self.failed,
                "probe_max_ms": round(1000 * lat[-1], 1) if lat else None,
                "probe_p50_ms": round(1000 * lat[len(lat) // 2], 1) if lat else None,
                "probe_failures": sorted(set(self.failures))[:5], "max_connections": self.max_connections}


TIMEOUT_NAMES = ("http_timeouts_total", "http_server_connections_active")


def timeouts(admin: Admin) -> dict[str, float]:
    """{phase: count} of downstream timeouts, plus open client connections."""
    text = admin.get("/metrics").decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("http_timeouts_total{") and 'side="downstream"' in line:
            phase = re.search(r'phase="([^"]+)"', line).group(1)
            out[phase] = out.get(phase, 0.0) + float(line.rsplit(" ", 1)[1])
    out["connections"] = metric_sums(text, ("http_server_connections_active",))["http_server_connections_active"]
    return out


def wait_drained(admin: Admin, seconds: float) -> float:
    deadline = time.monotonic() + seconds
    while True:
        n = timeouts(admin)["connections"]
        if n == 0 or time.monotonic() > deadline:
            return n
        time.sleep(0.25)


# ----------------------------------------------------------------------
# slowhttptest
SLOW_MODES = {
    # name: (listener, slowhttptest mode flags, path, the proxy's timeout that should end it)
    "slowloris": ("plain", ["-H", "-i", "5"], "/", "header"),
    "slowloris_tls": ("tls", ["-H", "-i", "5"], "/", "header"),
    "slow_body": ("plain", ["-B", "-i", "2", "-s", "65536"], "/", "body_rate"),
    "slow_read": ("plain", ["-X", "-w", "512", "-y", "1024", "-n", "5", "-z", "32", "-k", "3"], "/bytes/1048576",
                  "send"),
}


def slowhttptest(cmd0: list[str], ports: dict, admin: Admin, args, tmp: Path) -> list[dict]:
    results = []
    for mode, (listener, flags, path, phase) in SLOW_MODES.items():
        scheme = "https" if listener == "tls" else "http"
        # "localhost" would resolve to ::1 first on some hosts; the proxy listens on 127.0.0.1 only
        url = f"{scheme}://127.0.0.1:{ports[listener]}{path}"
        prefix = tmp / f"slowhttptest-{mode}"
        cmd = cmd0 + flags + ["-c", str(args.connections), "-r", "100", "-l", str(int(args.seconds)), "-p", "3",
                              "-g", "-o", str(prefix), "-u", url]
        before = timeouts(admin)
        watch = Watch(ports["plain"], admin.port)
        watch.start()
        rc, out = run_tool(cmd, args.seconds + 30, tmp)
        seen = watch.finish()
        left = wait_drained(admin, 12.0)
        after = timeouts(admin)
        closed = {k: int(after.get(k, 0) - before.get(k, 0)) for k in after
                  if k != "connections" and after.get(k, 0) - before.get(k, 0)}
        rows = []
        csv_path = prefix.with_suffix(".csv")
        if csv_path.exists():
            with open(csv_path, newline="") as f:
                rows = [r for r in csv.DictReader(f)]
        # slowhttptest's CSV plots availability on the connection scale: 0 means its probe failed
        unavailable = [int(r["Seconds"]) for r in rows if r.get("Service Available", "1").strip() == "0"]
        m = re.search(r"Exit status: (.*)", out)
        res = {
            "mode": mode, "listener": listener, "url": url, "exit": rc, "seconds": args.seconds,
            "connections": args.connections,
            "max_connected": max((int(r["Connected"]) for r in rows), default=None),
            "closed_by_server": max((int(r["Closed"]) for r in rows), default=None),
            "tool_unavailable_seconds": unavailable, "tool_exit_status": m.group(1).strip() if m else None,
            "proxy_timeouts": closed, "proxy_timeout_expected": phase, "proxy_connections_left": int(left),
            **seen,
        }
        res["available"] = not unavailable and seen["probes_failed"] == 0 and seen["probes_ok"] > 0
        res["flagged"] = not res["available"]
        res["summary"] = (
            f"slowhttptest {mode} ({listener}, {args.connections} connections, {args.seconds:g}s): "
            + ("service stayed available" if res["available"] else "SERVICE BECAME UNAVAILABLE")
            + f" (tool probe down {len(unavailable)}s; our probes {seen['probes_ok']}/"
            f"{seen['probes_ok'] + seen['probes_failed']} ok, max {seen['probe_max_ms']} ms); proxy held up to "
            f"{seen['max_connections']} client connections, closed them by timeout: "
            + (", ".join(f"{k} x{v}" for k, v in sorted(closed.items())) or "none")
            + f"; {int(left)} still open after the run; tool: {res['tool_exit_status'] or f'exit {rc}'}")
        results.append(res)
        log("  " + res["summary"])
    return results


# ----------------------------------------------------------------------
# sslyze
def sslyze(cmd0: list[str], port: int, ca: Path, args, tmp: Path) -> dict:
    out_json = tmp / "sslyze.json"
    cmd = cmd0 + ["--json_out", str(out_json), "--certinfo", "--certinfo_ca_file", str(ca),
                  "--sslv2", "--sslv3", "--tlsv1", "--tlsv1_1", "--tlsv1_2", "--tlsv1_3",
                  "--reneg", "--resum", "--compression", "--heartbleed", "--openssl_ccs", "--fallback", "--robot",
                  "--elliptic_curves", "--ems", "--early_data", "--http_headers",
                  "--mozilla_config", "intermediate", f"localhost:{port}{{127.0.0.1}}"]
    rc, out = run_tool(cmd, args.tool_timeout, tmp)
    res: dict = {"exit": rc, "flagged": False, "lines": []}
    if not out_json.exists():
        res["flagged"] = True
        res["lines"] = [f"sslyze: no result (exit {rc}): " + " ".join(out.strip().splitlines()[-3:])]
        return res
    doc = json.loads(out_json.read_text())
    server = doc["server_scan_results"][0]
    if server.get("connectivity_status") != "COMPLETED":
        res["flagged"] = True
        res["lines"] = [f"sslyze: could not connect: {server.get('connectivity_error_trace')}"]
        return res
    sr = server["scan_result"]

    def result(name):
        r = sr.get(name) or {}
        return r.get("result") if r.get("status") == "COMPLETED" else None

    versions, suites = [], {}
    for key, label in (("ssl_2_0", "SSLv2"), ("ssl_3_0", "SSLv3"), ("tls_1_0", "TLS1.0"), ("tls_1_1", "TLS1.1"),
                       ("tls_1_2", "TLS1.2"), ("tls_1_3", "TLS1.3")):
        r = result(f"{key}_cipher_suites")
        if r and r["accepted_cipher_suites"]:
            versions.append(label)
            suites[label] = [c["cipher_suite"]["name"] for c in r["accepted_cipher_suites"]]
    old = [v for v in versions if v in ("SSLv2", "SSLv3", "TLS1.0", "TLS1.1")]
    res["versions"], res["suites"] = versions, suites
    lines = [f"sslyze: protocols accepted: {', '.join(versions) or 'none'}"
             + (f" (OLD: {', '.join(old)})" if old else "")]
    for v in versions:
        lines.append(f"sslyze: {v} suites: {', '.join(suites[v])}")
    curves = result("elliptic_curves")
    if curves:
        res["curves"] = [c["name"] for c in curves.get("supported_curves") or []]
        lines.append(f"sslyze: key exchange groups: {', '.join(res['curves'])}")
    ci = result("certificate_info")
    if ci:
        dep = ci["certificate_deployments"][0]
        trusted = [p["trust_store"]["name"] for p in dep["path_validation_results"] if p["was_validation_successful"]]
        leaf = dep["received_certificate_chain"][0]
        dev_ca_ok = any("Supplied" in t or "CA file" in t for t in trusted)
        res["certificate"] = {"trusted_by": trusted, "chain_order_ok": dep["received_chain_has_valid_order"],
                              "sha1_in_chain": dep["verified_chain_has_sha1_signature"],
                              "anchor_sent": dep["received_chain_contains_anchor_certificate"],
                              "not_after": leaf.get("not_valid_after"),
                              "san": leaf.get("subject_alternative_name")}
        lines.append(f"sslyze: certificate: chain valid against the development CA: {'yes' if dev_ca_ok else 'NO'}; "
                     f"order {'ok' if dep['received_chain_has_valid_order'] else 'WRONG'}; "
                     f"SHA-1 in chain: {'YES' if dep['verified_chain_has_sha1_signature'] else 'no'}; "
                     f"anchor sent: {'yes' if dep['received_chain_contains_anchor_certificate'] else 'no'}; "
                     f"OCSP stapling: {'yes' if dep.get('ocsp_response') else 'no'}; valid until "
                     f"{leaf.get('not_valid_after')}; public trust stores: not trusted (development CA, expected)")
        if not dev_ca_ok or dep["verified_chain_has_sha1_signature"] or not dep["received_chain_has_valid_order"]:
            res["flagged"] = True
    vulns = []
    checks = [
        ("heartbleed", lambda r: r["is_vulnerable_to_heartbleed"], "Heartbleed"),
        ("openssl_ccs_injection", lambda r: r["is_vulnerable_to_ccs_injection"], "CCS injection"),
        ("robot", lambda r: not r["robot_result"].startswith("NOT_VULNERABLE"), "ROBOT"),
        ("tls_compression", lambda r: r["supports_compression"], "TLS compression (CRIME)"),
        ("session_renegotiation", lambda r: r["is_vulnerable_to_client_renegotiation_dos"],
         "client-initiated renegotiation DoS"),
        ("session_renegotiation", lambda r: not r["supports_secure_renegotiation"], "no secure renegotiation"),
        ("tls_fallback_scsv", lambda r: not r["supports_fallback_scsv"], "no TLS_FALLBACK_SCSV"),
    ]
    for name, bad, label in checks:
        r = result(name)
        if r is None:
            continue
        if bad(r):
            vulns.append(label)
    res["vulnerabilities"] = vulns
    lines.append("sslyze: vulnerabilities: " + (", ".join(vulns) if vulns else
                                                "none (Heartbleed, CCS injection, ROBOT, compression, "
                                                "renegotiation, downgrade checked)"))
    extra = []
    r = result("session_resumption")
    if r:
        ids = r.get("session_id_resumption_result") or r.get("session_id_resumption_successful_attempts_count")
        tickets = r.get("tls_ticket_resumption_result")
        extra.append(f"resumption: session IDs {str(ids).lower()}, tickets {str(tickets).lower()}")
    r = result("tls_1_3_early_data")
    if r:
        extra.append(f"0-RTT early data {'ACCEPTED' if r['supports_early_data'] else 'refused'}")
    r = result("http_headers")
    if r:
        extra.append(f"HSTS {'set' if r.get('strict_transport_security_header') else 'not set'}")
    r = result("tls_extended_master_secret")
    if r:
        extra.append(f"extended master secret {'yes' if r['supports_ems_extension'] else 'NO'}")
    if extra:
        lines.append("sslyze: " + "; ".join(extra))
    m = re.search(r"COMPLIANCE AGAINST [^\n]*\n\s*-+\s*\n(.*)", out, re.S)
    if m:
        comp = [ln.strip() for ln in m.group(1).strip().splitlines() if ln.strip() and "ssl-config.mozilla" not in ln]
        res["mozilla_intermediate"] = comp
        lines.append("sslyze: Mozilla intermediate: " + " ".join(comp[:4]))
    if old or vulns:
        res["flagged"] = True
    res["lines"] = lines
    return res


# ----------------------------------------------------------------------
# key exchange groups and what they cost the proxy
def groups(cmd0: list[str], port: int, proxy: Proxy, args, tmp: Path) -> dict:
    def handshake(group: str) -> bool:
        try:
            p = subprocess.run(cmd0 + ["s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                                       "-tls1_3", "-groups", group], input=b"", capture_output=True, timeout=30)
        except subprocess.TimeoutExpired:
            return False
        return b"Cipher is (NONE)" not in p.stdout and b"New, TLSv1.3" in p.stdout

    rows, costly = [], []
    for g in GROUPS:
        if not handshake(g):
            rows.append({"group": g, "accepted": False})
            continue
        c0 = read_procs(proxy.pid)["cpu"]
        for _ in range(GROUP_HANDSHAKES):
            handshake(g)
        ms = 1000 * (read_procs(proxy.pid)["cpu"] - c0) / GROUP_HANDSHAKES
        rows.append({"group": g, "accepted": True, "cpu_ms_per_handshake": round(ms, 1)})
        if ms > GROUP_CPU_LIMIT_MS:
            costly.append(f"{g} ({ms:.0f} ms)")
    accepted = [r for r in rows if r["accepted"]]
    lines = ["groups: TLS 1.3 key exchange accepted, proxy CPU per handshake: "
             + ", ".join(f"{r['group']} {r['cpu_ms_per_handshake']:.1f} ms" for r in accepted),
             "groups: refused: " + (", ".join(r["group"] for r in rows if not r["accepted"]) or "none")]
    if costly:
        lines.append(f"groups: FLAGGED: a client may pick {', '.join(costly)} of the proxy's event loop per "
                     f"handshake (over {GROUP_CPU_LIMIT_MS:g} ms; D(HE)at, CVE-2002-20001): every other "
                     f"connection of that process waits meanwhile")
    return {"groups": rows, "costly": costly, "flagged": bool(costly), "lines": lines}


# ----------------------------------------------------------------------
# testssl.sh
def testssl(cmd0: list[str], port: int, ca: Path, args, tmp: Path) -> dict:
    out_json = tmp / "testssl.json"
    cmd = cmd0 + ["--quiet", "--color", "0", "--warnings", "batch", "--add-ca", str(ca), "--jsonfile",
                  str(out_json), "--ip", "127.0.0.1", f"https://localhost:{port}/"]
    rc, out = run_tool(cmd, args.tool_timeout, tmp)
    res: dict = {"exit": rc, "flagged": False, "lines": []}
    if not out_json.exists() or not out_json.read_text().strip():
        res["flagged"] = True
        res["lines"] = [f"testssl: no result ({'timed out' if rc is None else f'exit {rc}'}): "
                        + " ".join(out.strip().splitlines()[-3:])]
        return res
    try:
        items = json.loads(out_json.read_text())
    except ValueError:  # cut short by the timeout: the JSON array is not closed
        text = out_json.read_text().rstrip().rstrip(",")
        items = json.loads(text + "]")
    counts: dict[str, int] = {}
    for it in items:
        counts[it["severity"]] = counts.get(it["severity"], 0) + 1
    by_id = {it["id"]: it for it in items}
    offered = [p for p, key in (("SSLv2", "SSLv2"), ("SSLv3", "SSLv3"), ("TLS1.0", "TLS1"), ("TLS1.1", "TLS1_1"),
                                ("TLS1.2", "TLS1_2"), ("TLS1.3", "TLS1_3"))
               if key in by_id and by_id[key]["finding"].startswith("offered")]
    notable = [it for it in items if it["severity"] in SEVERITIES]
    dev = [it for it in notable if it["id"] in DEV_CERT_FINDINGS]
    other = [it for it in notable if it["id"] not in DEV_CERT_FINDINGS]
    res.update(counts=counts, offered=offered, findings=notable, timed_out=rc is None)
    lines = [f"testssl: {len(items)} checks{' (cut short by the time limit)' if rc is None else ''}; by severity: "
             + ", ".join(f"{k} {counts[k]}" for k in ("CRITICAL", "HIGH", "MEDIUM", "LOW", "WARN", "OK", "INFO")
                         if k in counts)]
    lines.append(f"testssl: protocols offered: {', '.join(offered) or 'none'}")
    for key in ("PFS_ECDHE_curves", "DH_groups", "cipher_negotiated", "sessionresumption_ticket"):
        if key in by_id:
            lines.append(f"testssl: {key}: {by_id[key]['finding']}")
    for it in other:
        lines.append(f"testssl: {it['severity']} {it['id']}: {it['finding']}")
    if dev:
        lines.append("testssl: explained by the development certificate: "
                     + "; ".join(f"{it['severity']} {it['id']} ({it['finding']})" for it in dev))
    if any(it["severity"] in ("CRITICAL", "HIGH") for it in other) or \
            any(p in offered for p in ("SSLv2", "SSLv3", "TLS1.0", "TLS1.1")):
        res["flagged"] = True
    res["lines"] = lines
    return res


# ----------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated, among {', '.join(TOOLS)}")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each slowhttptest run (default 20)")
    ap.add_argument("--connections", type=int, default=300, help="slowhttptest connections (default 300)")
    ap.add_argument("--tool-timeout", type=float, default=300.0, help="limit for sslyze and testssl (default 300 s)")
    ap.add_argument("--defaults", action="store_true", help="keep the proxy's shipped downstream timeouts (60 s)")
    ap.add_argument("--json", metavar="FILE", help="write every result as JSON")
    args = ap.parse_args(argv)
    wanted = [t for t in args.tools.split(",") if t]
    for t in wanted:
        if t not in TOOLS:
            ap.error(f"unknown tool {t!r} (known: {', '.join(TOOLS)})")

    found = {t: find_tool(t) for t in wanted}
    for t, cmd in found.items():
        if cmd is None:
            log(f"{t}: not installed, skipped (install: {INSTALL[t]})")
    todo = [t for t in wanted if found[t]]
    if not todo:
        log("security: none of the tools is installed; nothing to run")
        return 0

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)  # even when started with SIGINT ignored (a background job)
    tmp = Path(tempfile.mkdtemp(prefix="edgeproxy-security-"))
    report: dict = {"tools": {t: ("skipped" if found[t] is None else found[t]) for t in wanted}, "results": {}}
    lines: list[str] = []
    flagged = False
    try:
        from proxy.gencert import generate_dev_set

        files = generate_dev_set(tmp / "certs", ["localhost", "127.0.0.1"])
        up = free_port()
        upstream = spawn([sys.executable, "-m", "bench.upstream", str(up)], cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
        wait_port(up, upstream)
        try:
            proxy = Proxy(config(tmp, files["server.pem"], files["server.key"], up, args.defaults), "uvloop", False,
                          None)
            proxy.wait_ready()
        except RuntimeError as exc:
            log(f"security: {exc}")
            return 2
        ports = dict(proxy.listeners)
        admin = Admin(proxy.admin)
        log(f"security: edgeproxy pid {proxy.pid} plain :{ports['plain']} tls :{ports['tls']} admin :{proxy.admin}"
            f"; running {', '.join(todo)}")
        if "slowhttptest" in todo:
            res = slowhttptest(found["slowhttptest"], ports, admin, args, tmp)
            report["results"]["slowhttptest"] = res
            lines += [r["summary"] for r in res]
            flagged |= any(r["flagged"] for r in res)
        if "sslyze" in todo:
            res = sslyze(found["sslyze"], ports["tls"], files["ca.pem"], args, tmp)
            report["results"]["sslyze"] = res
            lines += res["lines"]
            flagged |= res["flagged"]
            for ln in res["lines"]:
                log("  " + ln)
        if "groups" in todo:
            res = groups(found["groups"], ports["tls"], proxy, args, tmp)
            report["results"]["groups"] = res
            lines += res["lines"]
            flagged |= res["flagged"]
            for ln in res["lines"]:
                log("  " + ln)
        if "testssl" in todo:
            res = testssl(found["testssl"], ports["tls"], files["ca.pem"], args, tmp)
            report["results"]["testssl"] = res
            lines += res["lines"]
            flagged |= res["flagged"]
            for ln in res["lines"]:
                log("  " + ln)
        if proxy.proc.poll() is not None:
            lines.append(f"edgeproxy EXITED with {proxy.proc.returncode} during the run")
            flagged = True
        admin.close()
    except KeyboardInterrupt:
        log("\nsecurity: interrupted")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print("summary" + (" (downstream timeouts shortened to 10 s; --defaults keeps 60 s)" if not args.defaults else ""))
    for t in wanted:
        if found[t] is None:
            print(f"  {t}: not installed, skipped (install: {INSTALL[t]})")
    for ln in lines:
        print(f"  {ln}")
    print("\nFLAGGED: see the lines above" if flagged else "\nnothing flagged")
    report["flagged"] = flagged
    report["summary"] = lines
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
        log(f"results written to {args.json}")
    return 1 if flagged else 0


if __name__ == "__main__":
    sys.exit(main())
