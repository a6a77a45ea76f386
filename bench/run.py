#!/usr/bin/env python3
"""Benchmark edgeproxy side by side with nginx (and HAProxy when installed).

    python3 bench/run.py [--duration 10] [--connections 50] [--scenarios get,post1k,...]
                         [--proxies edgeproxy,edgeproxy-pure,nginx,haproxy] [--repeat N] [--json FILE]

One machine: an upstream (nginx `return 200` when nginx is
installed, else edgeproxy's built-in demo upstream) and wrk share one core;
the proxies under test are pinned to the other core with taskset and take
turns (each scenario on every proxy in turn; the one not measured is idle). For
every proxy and scenario it reports requests/s, latency p50/p99 from
`wrk --latency`, and the proxy's own CPU time per request (user+sys from
/proc/PID/stat before and after the run, divided by the requests wrk
completed): the figure that does not depend on which side saturates first.
Ratios are to nginx. Every process it starts is stopped on exit or Ctrl-C.

``--repeat N`` measures everything N times, the proxies taking turns (round
r runs every scenario on every proxy before round r+1 starts), and reports
the median of each figure: on a noisy machine (a VM whose identical runs
differ by tens of percent) that steadies the ratios. The JSON keeps every
run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procs import _procs, free_port, group_stats, spawn, stop, wait_port  # noqa: E402

LUA = ROOT / "bench" / "lua"
TICKS = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
PROXY_CPU = "0"
WORKERS = 1  # --workers: processes (edgeproxy, nginx) or threads (HAProxy) of each proxy under test
LOAD_CPU = "1" if NCPU > 1 else "0"

SCENARIOS = {
    # name: (path, lua script or None, extra wrk args, description)
    "get": ("/", None, "small GET, keep-alive"),
    "post1k": ("/", "post_1k.lua", "POST 1 KiB, keep-alive"),
    "get64k": ("/64k", None, "GET 64 KiB response"),
    "upload1m": ("/", "upload_1m.lua", "POST 1 MiB upload"),
    "pipeline8": ("/", "pipeline_8.lua", "8 pipelined GETs"),
    "close": ("/", "close.lua", "new connection per request"),
    # over TLS: the same ECDSA P-256 certificate and cipher list for every proxy
    "tls": ("/", None, "TLS small GET, keep-alive"),
    "tls_close": ("/", "close.lua", "TLS new connection per request"),
}
TLS_SCENARIOS = {"tls", "tls_close"}
TLS_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"

def cpu_seconds(pgid: int) -> float:
    """user+sys seconds of every process in the process group."""
    return sum(int(f[11]) + int(f[12]) for _, f in group_stats(pgid)) / TICKS


# ----------------------------------------------------------------------
def make_certs(tmp: Path) -> tuple[Path, Path]:
    """One development certificate for 127.0.0.1, served by every proxy under test."""
    sys.path.insert(0, str(ROOT))
    from proxy.gencert import generate_dev_set

    files = generate_dev_set(tmp / "certs", ["localhost", "127.0.0.1"])
    (tmp / "certs" / "server-haproxy.pem").write_bytes(files["server.pem"].read_bytes() + files["server.key"].read_bytes())
    return files["server.pem"], files["server.key"]


def nginx_conf(tmp: Path, listen: int, body: str, workers: int = 1) -> Path:
    conf = tmp / f"nginx-{listen}.conf"
    conf.write_text(
        f"""
worker_processes {workers};
pid {tmp}/nginx-{listen}.pid;
error_log {tmp}/nginx-{listen}.err warn;
user root;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/cb-{listen};
    proxy_temp_path {tmp}/pt-{listen};
    fastcgi_temp_path {tmp}/ft-{listen};
    uwsgi_temp_path {tmp}/ut-{listen};
    scgi_temp_path {tmp}/st-{listen};
    keepalive_requests 100000;
    {body}
}}
"""
    )
    return conf


def start_upstream(tmp: Path) -> tuple[int, subprocess.Popen, str]:
    port = free_port()
    if shutil.which("nginx"):
        (tmp / "www").mkdir(exist_ok=True)
        (tmp / "www" / "64k").write_bytes(b"x" * 65536)
        conf = nginx_conf(tmp, port, f"""
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        client_max_body_size 0;
        location = /64k {{ root {tmp}/www; }}
        location / {{ return 200 "ok\\n"; }}
    }}""")
        p = spawn(["nginx", "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"], LOAD_CPU)
        kind = "nginx return 200"
    else:
        p = spawn([sys.executable, "-m", "bench.upstream", str(port)], LOAD_CPU, cwd=ROOT)
        kind = "edgeproxy demo upstream"
    wait_port(port)
    return port, p, kind


def start_edgeproxy(tmp: Path, up: int, pure: bool) -> tuple[dict, subprocess.Popen]:
    port, tls_port = free_port(), free_port()
    cert, key = tmp / "certs" / "server.pem", tmp / "certs" / "server.key"
    cfg = tmp / f"edgeproxy-{port}.toml"
    cfg.write_text(f"""
[[listeners]]
address = "127.0.0.1:{port}"
backlog = 4096
[[listeners]]
name = "tls"
address = "127.0.0.1:{tls_port}"
backlog = 4096
tls = true
ciphers = "{TLS_CIPHERS}"
certificates = [{{cert = "{cert}", key = "{key}"}}]
[admin]
enabled = false
[access_log]
enabled = false
[downstream]
keepalive_requests = 100000
[upstreams.bench]
servers = ["127.0.0.1:{up}"]
[upstreams.bench.pool]
max_requests_per_connection = 100000
max_idle_per_server = 256
[[routes]]
upstream = "bench"
""")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if pure:
        env["EDGEPROXY_PURE"] = "1"
    p = spawn([sys.executable, "-m", "proxy", "run", "-c", str(cfg), "--workers", str(WORKERS)], PROXY_CPU,
              cwd=ROOT, env=env)
    wait_port(port)
    wait_port(tls_port)
    return {"plain": port, "tls": tls_port}, p


def start_nginx_proxy(tmp: Path, up: int) -> tuple[dict, subprocess.Popen]:
    port, tls_port = free_port(), free_port()
    conf = nginx_conf(tmp, port, f"""
    upstream up {{ server 127.0.0.1:{up}; keepalive 64; keepalive_requests 100000; }}
    ssl_certificate {tmp}/certs/server.pem;
    ssl_certificate_key {tmp}/certs/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers {TLS_CIPHERS};
    ssl_session_tickets on;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        listen 127.0.0.1:{tls_port} ssl backlog=4096;
        client_max_body_size 0;
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Request-ID $request_id;
            proxy_request_buffering off;
        }}
    }}""", WORKERS)
    p = spawn(["nginx", "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"], PROXY_CPU)
    wait_port(port)
    wait_port(tls_port)
    return {"plain": port, "tls": tls_port}, p


def start_haproxy(tmp: Path, up: int) -> tuple[dict, subprocess.Popen]:
    port, tls_port = free_port(), free_port()
    conf = tmp / f"haproxy-{port}.cfg"
    conf.write_text(f"""
global
    nbthread {WORKERS}
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option forwardfor
    http-reuse always
frontend fe
    bind 127.0.0.1:{port}
    bind 127.0.0.1:{tls_port} ssl crt {tmp}/certs/server-haproxy.pem ciphers {TLS_CIPHERS} alpn http/1.1
    default_backend be
backend be
    server s1 127.0.0.1:{up}
""")
    p = spawn(["haproxy", "-f", str(conf)], PROXY_CPU)
    wait_port(port)
    wait_port(tls_port)
    return {"plain": port, "tls": tls_port}, p


# ----------------------------------------------------------------------
def start_proxy(name: str, tmp: Path, up_port: int) -> tuple[dict, subprocess.Popen]:
    if name == "edgeproxy":
        return start_edgeproxy(tmp, up_port, pure=False)
    if name == "edgeproxy-pure":
        return start_edgeproxy(tmp, up_port, pure=True)
    if name == "nginx":
        return start_nginx_proxy(tmp, up_port)
    return start_haproxy(tmp, up_port)


def parse_wrk(out: str) -> dict:
    def dur(text: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s|m)", text)
        v, u = float(m.group(1)), m.group(2)
        return v * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[u]

    res = {}
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        # wrk reports 0 latency for requests sent by a script's pipelined
        # writes; show that as "not measured" rather than as zero
        res[f"p{pct}_ms"] = (dur(m.group(1)) or None) if m else None
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    res["socket_errors"] = m.group(1).strip() if m else ""
    return res


def run_wrk(ports: dict, scenario: str, duration: float, conns: int) -> str:
    path, lua, _ = SCENARIOS[scenario]
    tls = scenario in TLS_SCENARIOS
    port = ports["tls" if tls else "plain"]
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{duration:g}s", "--latency"]
    if lua:
        cmd += ["-s", str(LUA / lua)]
    cmd.append(f"{'https' if tls else 'http'}://127.0.0.1:{port}{path}")
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", LOAD_CPU] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout


def measure(name: str, port: dict, proc: subprocess.Popen, scenario: str, args) -> dict:
    run_wrk(port, scenario, min(2.0, args.duration), args.connections)  # warm-up
    before = cpu_seconds(proc.pid)
    out = run_wrk(port, scenario, args.duration, args.connections)
    after = cpu_seconds(proc.pid)
    res = parse_wrk(out)
    n = res["requests"]  # wrk counts responses, pipelined ones included
    res["cpu_us_per_req"] = (after - before) * 1e6 / n if n else None
    res["proxy"] = name
    res["scenario"] = scenario
    return res


def summarize(runs: list[dict]) -> dict:
    """One row from the runs of one proxy and scenario: the median of each figure (a figure missing
    from any run, like wrk's latency for pipelined requests, stays missing); every run kept."""
    out = dict(runs[0])
    for key in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req"):
        vals = [r.get(key) for r in runs]
        out[key] = statistics.median(vals) if all(v is not None for v in vals) else None
    out["requests"] = sum(r["requests"] for r in runs)
    out["non2xx"] = sum(r.get("non2xx", 0) for r in runs)
    if len(runs) > 1:
        out["runs"] = runs
    return out


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--proxies", default="edgeproxy,edgeproxy-pure,nginx,haproxy")
    ap.add_argument("--workers", type=int, default=1,
                    help="worker processes per proxy (nginx worker_processes, HAProxy nbthread); with 2 or more "
                         "the proxies get cores 0..N-1 and share them with wrk and the upstream")
    ap.add_argument("--repeat", type=int, default=1,
                    help="measure everything N times, proxies taking turns, and report medians")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "latest.json"))
    ap.add_argument("--plot", nargs="?", const=str(ROOT / "bench" / "results" / "latest.png"), default=None,
                    metavar="PNG", help="also draw a bar chart (needs matplotlib)")
    args = ap.parse_args()
    scenarios = [s for s in args.scenarios.split(",") if s]
    wanted = [p for p in args.proxies.split(",") if p]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        ap.error(f"--scenarios: unknown {', '.join(unknown)}; expected some of {', '.join(SCENARIOS)}")
    known_proxies = ("edgeproxy", "edgeproxy-pure", "nginx", "haproxy")
    unknown = [p for p in wanted if p not in known_proxies]
    if unknown:
        ap.error(f"--proxies: unknown {', '.join(unknown)}; expected some of {', '.join(known_proxies)}")
    global PROXY_CPU, WORKERS
    WORKERS = args.workers
    if WORKERS > 1:
        PROXY_CPU = f"0-{min(WORKERS, NCPU) - 1}"
    if not shutil.which("wrk"):
        print("bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    if "nginx" in wanted and not shutil.which("nginx"):
        wanted.remove("nginx")
    if "haproxy" in wanted and not shutil.which("haproxy"):
        wanted.remove("haproxy")
    results = []
    tmp = Path(tempfile.mkdtemp(prefix="edgeproxy-bench-"))
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    try:
        make_certs(tmp)  # every proxy listens with TLS too, on a second port
        up_port, up_proc, up_kind = start_upstream(tmp)
        print(f"upstream: {up_kind} on core {LOAD_CPU}; proxies on core {PROXY_CPU}; wrk -t1 -c{args.connections} "
              f"-d{args.duration:g}s on core {LOAD_CPU}", file=sys.stderr)
        rounds = max(1, args.repeat)
        runs: dict[tuple[str, str], list[dict]] = {}
        # every proxy runs from the start (an idle one costs nothing); they take turns per scenario
        started = {name: start_proxy(name, tmp, up_port) for name in wanted}
        for rnd in range(1, rounds + 1):
            if rounds > 1:
                print(f"round {rnd}/{rounds}", file=sys.stderr)
            for sc in scenarios:
                for name in wanted:
                    port, proc = started[name]
                    print(f"  {name:15s} {sc:10s} ...", end="", flush=True, file=sys.stderr)
                    r = measure(name, port, proc, sc, args)
                    runs.setdefault((name, sc), []).append(r)
                    print(f" {r['rps']:10.0f} req/s  cpu {fmt(r['cpu_us_per_req'], '.1f')} us/req",
                          file=sys.stderr)
        for _, proc in started.values():
            stop(proc)
        results = [summarize(runs[(name, sc)]) for name in wanted for sc in scenarios if (name, sc) in runs]
        stop(up_proc)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        for p in list(_procs):
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)

    base = {(r["scenario"]): r for r in results if r["proxy"] == "nginx"}
    print()
    print("| scenario | proxy | req/s | p50 ms | p99 ms | CPU µs/req | req/s vs nginx | CPU vs nginx |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        b = base.get(r["scenario"])
        rr = f"{r['rps'] / b['rps']:.2f}" if b and b["rps"] else "-"
        cr = (f"{r['cpu_us_per_req'] / b['cpu_us_per_req']:.2f}"
              if b and b.get("cpu_us_per_req") and r.get("cpu_us_per_req") else "-")
        print(f"| {SCENARIOS[r['scenario']][2]} | {r['proxy']} | {r['rps']:.0f} | {fmt(r['p50_ms'], '.2f')} | "
              f"{fmt(r['p99_ms'], '.2f')} | {fmt(r['cpu_us_per_req'], '.1f')} | {rr} | {cr} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"machine": {"cpus": NCPU, "python": sys.version.split()[0]},
                                           "duration": args.duration, "connections": args.connections,
                                           "workers": args.workers, "repeat": max(1, args.repeat),
                                           "results": results}, indent=2))
    print(f"\nresults written to {args.json}", file=sys.stderr)
    if args.plot:
        plot(results, args.plot)
    return 0


def plot(results: list[dict], path: str) -> None:
    """Two panels: requests/s and CPU µs per request, grouped by scenario."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: --plot needs matplotlib (pip install matplotlib)", file=sys.stderr)
        return
    scenarios = list(dict.fromkeys(r["scenario"] for r in results))
    proxies = list(dict.fromkeys(r["proxy"] for r in results))
    by = {(r["scenario"], r["proxy"]): r for r in results}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.8 / max(1, len(proxies))
    for ax, key, title in ((axes[0], "rps", "requests/s (higher is better)"),
                           (axes[1], "cpu_us_per_req", "proxy CPU µs per request (lower is better)")):
        for i, px in enumerate(proxies):
            vals = [(by.get((sc, px)) or {}).get(key) or 0 for sc in scenarios]
            ax.bar([j + i * width for j in range(len(scenarios))], vals, width, label=px)
        ax.set_xticks([j + width * (len(proxies) - 1) / 2 for j in range(len(scenarios))])
        ax.set_xticklabels([SCENARIOS[sc][2] for sc in scenarios], rotation=25, ha="right", fontsize=8)
        ax.set_title(title)
    axes[0].legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"chart written to {path}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
