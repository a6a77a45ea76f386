#!/usr/bin/env python3
"""The 503 storm, replayed: two upstreams fail and recover under load.

    python3 bench/storm.py [--phase-seconds 8] [--proxies edgeproxy,nginx,haproxy]
                           [--connections 20] [--json FILE]

For each proxy: two fresh faulty upstreams A and B (``bench/faulty_upstream.py``,
fault mode switched through their control port), the proxy pinned alone to
core 0, wrk (``-t1 -c20 --latency --timeout 2s``) and the upstreams on core 1.
After a short warm-up (not reported), four phases of ``--phase-seconds``
each, one wrk run per phase, the modes switched just before its start:

    steady      A ok       B ok
    one_hangs   A ok       B hang     (B accepts and reads, never answers)
    both_fail   A refuse   B hang     (A resets its connections and refuses
                                       new ones; B still hangs)
    recovered   A ok       B ok

``both_fail`` mixes the two ways a server dies: one that fails fast (refused)
and one that fails slowly (hangs until the proxy's timeout), so a proxy has
to stop waiting on the slow one to answer fast at all.

Per phase: client-visible success rate, latency, requests/s, and the
failures by kind: each non-2xx status (counted by
``bench/lua/status_counts.lua``), socket errors, and wrk timeouts (a response
later than 2 s; wrk counts it among the requests but leaves it out of its
latency histogram). Success rate = (2xx responses - timeouts) / (responses +
connect/read/write errors). A request still in flight when a phase's wrk
stops is not counted anywhere (at most one per connection).

Two p99s. wrk corrects its histogram for coordinated omission before it
prints it: a response that took L with the connection's average request
interval e also stands for the requests L-e, L-2e, ... that an open-loop
client would have sent meanwhile. One connection stuck for 1 s thus weighs
as hundreds of slow requests; "p99 (wrk)" is that figure, a measure of how
much of the connection time was stalled. "p50"/"p99" are the latencies of
the requests actually made: the Lua script dumps wrk's histogram and
``uncorrect`` undoes the correction exactly. ">= 0.9 s" counts the requests
actually made that took 0.9 s or more (those stuck on the hung server).

In a phase where both upstreams are ok again after a failure: "time to full
traffic" is the time from the switch to the start of the first 100 ms
interval (the runner polls both upstreams' ``/stats`` every 100 ms) in
which B serves >= 40% of the requests A and B serve, and still does over
the second that follows; B is the server that failed first and longest.
"first 2xx" is the start of the first interval in which either served a
request. The JSON also has the time for A, and a timeline of what each
upstream served and how many connections it had open.

Equivalent settings for the three proxies (GET load, so retries of
idempotent requests are allowed; none of them retries a non-idempotent one):

edgeproxy  round_robin, tries = 2, pool.connect_timeout = 1s,
           response_timeout = 1s; circuit breakers on with their defaults
           (open after 5 failures in a row or 50% of >= 20 in 30 s; open 1 s
           doubling to 60 s; 3 trial successes close); health checks on
           GET /healthz every 1 s, timeout 1 s, down after 2 failures, up
           after 2 passes, down servers checked every 1 s too
           (unhealthy_interval = max_unhealthy_interval = 1s, as HAProxy's
           inter 1s fall 2 rise 2 without downinter).
nginx      1 worker; server ... max_fails=1 fail_timeout=5s; keepalive 64;
           proxy_connect_timeout 1s; proxy_read_timeout 1s;
           proxy_send_timeout 1s; proxy_next_upstream error timeout http_503;
           proxy_next_upstream_tries 2 (open source nginx has no active
           health checks).
haproxy    nbthread 1; balance roundrobin; option httpchk GET /healthz;
           check inter 1s fall 2 rise 2 observe layer7 error-limit 5
           on-error mark-down; timeout connect 1s; timeout server 1s;
           timeout check 1s; retries 1; option redispatch;
           retry-on conn-failure empty-response (what edgeproxy retries);
           http-reuse always.

Writes a Markdown table to stdout and JSON to ``bench/results/storm.json``
(with, for edgeproxy, its breaker and health transitions and a few counters
per phase); progress goes to stderr. Every process it starts is stopped on
exit or Ctrl-C; a full run of the three proxies at 8 s phases takes about
two minutes. ``--phases`` runs other sequences, e.g.
``steady=ok/ok,b503=ok/error503,recovered=ok/ok``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.faulty_upstream import MODES  # noqa: E402
from bench.run import (  # noqa: E402
    LOAD_CPU, LUA, NCPU, PROXY_CPU, ROOT, _procs, free_port, nginx_conf, parse_wrk, spawn, stop, wait_port,
)

PHASES = [
    # name, mode of A, mode of B
    ("steady", "ok", "ok"),
    ("one_hangs", "ok", "hang"),
    ("both_fail", "refuse", "hang"),
    ("recovered", "ok", "ok"),
]
PROXIES = ("edgeproxy", "nginx", "haproxy")
TIMEOUT = 1  # seconds: connect and response timeouts of every proxy
WRK_TIMEOUT = 2  # seconds: above the proxies' own, so their answers are what wrk sees
POLL = 0.1  # seconds between two polls of the upstreams' /stats
FULL_SHARE = 0.4  # "full traffic": B serves at least this share...
FULL_HOLD = 1.0  # ...in an interval and over this long after it
# edgeproxy counters kept per phase (deltas)
METRICS = ("circuit_breaker_transitions_total", "fallback_responses_total", "health_check_total",
           "http_client_requests_total", "http_client_retries_total", "http_timeouts_total",
           "http_client_connect_errors_total", "upstream_overflow_total")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def call(port: int, method: str, path: str, timeout: float = 2.0) -> bytes:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path)
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"{method} {path} on {port}: {r.status}")
        return body
    finally:
        c.close()


# ----------------------------------------------------------------------
# the two faulty upstreams
class Faulty:
    def __init__(self, name: str):
        self.name = name
        self.port = free_port()
        self.control = free_port()
        self.proc = spawn([sys.executable, str(ROOT / "bench" / "faulty_upstream.py"), "--port", str(self.port),
                           "--control", str(self.control)], LOAD_CPU)
        wait_port(self.port)
        wait_port(self.control)

    def set_mode(self, mode: str) -> None:
        call(self.control, "PUT", f"/mode/{mode}")

    def stats(self) -> dict:
        return json.loads(call(self.control, "GET", "/stats"))


class Poller(threading.Thread):
    """Polls both upstreams' /stats every POLL seconds: (monotonic time, A's stats, B's stats)."""

    def __init__(self, a: Faulty, b: Faulty):
        super().__init__(daemon=True)
        self.a, self.b = a, b
        self.samples: list[tuple[float, dict, dict]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        nxt = time.monotonic()
        while not self.halt.is_set():
            try:
                sa, sb = self.a.stats(), self.b.stats()
                self.samples.append((time.monotonic(), sa, sb))
            except (OSError, RuntimeError, ValueError):
                pass
            nxt += POLL
            self.halt.wait(max(0.0, nxt - time.monotonic()))


def served_between(samples, t0: float, t1: float) -> dict:
    """Requests each upstream served and received between the samples nearest t0 and t1."""
    inside = [s for s in samples if t0 - POLL / 2 <= s[0] <= t1 + POLL / 2]
    if len(inside) < 2:
        return {}
    first, last = inside[0], inside[-1]
    out = {}
    for i, key in ((1, "a"), (2, "b")):
        out[f"served_{key}"] = last[i]["served"] - first[i]["served"]
        out[f"received_{key}"] = last[i]["received"] - first[i]["received"]
    tot = out["served_a"] + out["served_b"]
    out["share_b"] = round(out["served_b"] / tot, 3) if tot else None
    return out


def time_to_share(samples, t_switch: float, t_end: float, idx: int) -> float | None:
    """Seconds from ``t_switch`` to the start of the first poll interval in which
    upstream ``idx`` (1 = A, 2 = B) serves >= FULL_SHARE of what both serve,
    and still does over the FULL_HOLD seconds from there."""
    pts = [s for s in samples if s[0] >= t_switch - POLL and s[0] <= t_end + POLL]
    # baseline: the last sample at or before the switch
    before = [s for s in samples if s[0] <= t_switch]
    if before:
        pts = [before[-1]] + [s for s in pts if s[0] > t_switch]

    def share(i: int, j: int) -> float | None:
        a = pts[j][1]["served"] - pts[i][1]["served"]
        b = pts[j][2]["served"] - pts[i][2]["served"]
        mine = a if idx == 1 else b
        return mine / (a + b) if a + b >= 5 else None

    for i in range(len(pts) - 1):
        s = share(i, i + 1)
        if s is None or s < FULL_SHARE:
            continue
        j = next((k for k in range(i + 1, len(pts)) if pts[k][0] >= pts[i][0] + FULL_HOLD), None)
        if j is None:
            return None  # the phase ended before it could hold that long
        held = share(i, j)
        if held is not None and held >= FULL_SHARE:
            return round(max(0.0, pts[i][0] - t_switch), 2)
    return None


def time_to_first(samples, t_switch: float, idx: int) -> float | None:
    """Seconds from ``t_switch`` to the start of the first poll interval in which
    upstream ``idx`` (1 = A, 2 = B) served a request."""
    before = [s for s in samples if s[0] <= t_switch]
    if not before:
        return None
    prev = before[-1]
    for s in samples:
        if s[0] > t_switch:
            if s[idx]["served"] > prev[idx]["served"]:
                return round(max(0.0, prev[0] - t_switch), 2)
            prev = s
    return None


# ----------------------------------------------------------------------
# the proxies
def start_edgeproxy(tmp: Path, a: Faulty, b: Faulty, log_file) -> tuple[int, subprocess.Popen, int]:
    port, admin = free_port(), free_port()
    cfg = tmp / f"edgeproxy-{port}.toml"
    cfg.write_text(f"""
[server]
drain_timeout = "1s"
[[listeners]]
address = "127.0.0.1:{port}"
backlog = 4096
[admin]
address = "127.0.0.1:{admin}"
[access_log]
enabled = false
[downstream]
keepalive_requests = 100000
[upstreams.storm]
servers = ["127.0.0.1:{a.port}", "127.0.0.1:{b.port}"]
balance = "round_robin"
tries = 2
response_timeout = "{TIMEOUT}s"
[upstreams.storm.pool]
connect_timeout = "{TIMEOUT}s"
max_requests_per_connection = 100000
max_idle_per_server = 256
[upstreams.storm.breaker]
enabled = true
[upstreams.storm.health]
enabled = true
path = "/healthz"
interval = "1s"
timeout = "{TIMEOUT}s"
unhealthy_threshold = 2
healthy_threshold = 2
unhealthy_interval = "1s"
max_unhealthy_interval = "1s"
[[routes]]
upstream = "storm"
""")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = spawn([sys.executable, "-m", "proxy", "run", "-c", str(cfg)], PROXY_CPU, cwd=ROOT, env=env, stderr=log_file)
    wait_port(port)
    wait_port(admin)
    return port, p, admin


def start_nginx(tmp: Path, a: Faulty, b: Faulty, log_file) -> tuple[int, subprocess.Popen, None]:
    port = free_port()
    conf = nginx_conf(tmp, port, f"""
    upstream storm {{
        server 127.0.0.1:{a.port} max_fails=1 fail_timeout=5s;
        server 127.0.0.1:{b.port} max_fails=1 fail_timeout=5s;
        keepalive 64;
        keepalive_requests 100000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://storm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout {TIMEOUT}s;
            proxy_read_timeout {TIMEOUT}s;
            proxy_send_timeout {TIMEOUT}s;
            proxy_next_upstream error timeout http_503;
            proxy_next_upstream_tries 2;
        }}
    }}""")
    p = spawn(["nginx", "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"], PROXY_CPU, stderr=log_file)
    wait_port(port)
    return port, p, None


def start_haproxy(tmp: Path, a: Faulty, b: Faulty, log_file) -> tuple[int, subprocess.Popen, None]:
    port = free_port()
    conf = tmp / f"haproxy-{port}.cfg"
    conf.write_text(f"""
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect {TIMEOUT}s
    timeout client 30s
    timeout server {TIMEOUT}s
    timeout check {TIMEOUT}s
    retries 1
    option redispatch
    http-reuse always
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    balance roundrobin
    option httpchk GET /healthz
    retry-on conn-failure empty-response
    default-server check inter 1s fall 2 rise 2 observe layer7 error-limit 5 on-error mark-down
    server a 127.0.0.1:{a.port}
    server b 127.0.0.1:{b.port}
""")
    p = spawn(["haproxy", "-f", str(conf)], PROXY_CPU, stderr=log_file)
    wait_port(port)
    return port, p, None


STARTERS = {"edgeproxy": start_edgeproxy, "nginx": start_nginx, "haproxy": start_haproxy}


def scrape(admin: int | None) -> dict:
    """Selected edgeproxy counters: {series: value}."""
    if admin is None:
        return {}
    try:
        text = call(admin, "GET", "/metrics").decode()
    except (OSError, RuntimeError):
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith(METRICS):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


def delta(before: dict, after: dict) -> dict:
    return {k: round(v - before.get(k, 0.0)) for k, v in sorted(after.items()) if v - before.get(k, 0.0)}


# ----------------------------------------------------------------------
# load
def uncorrect(hist: dict[int, int], duration_us: int, requests: int, conns: int) -> dict[int, int]:
    """Undo wrk's coordinated-omission correction of its latency histogram.

    After the run wrk sets ``e = duration_us // (requests // conns)`` and, for
    every recorded latency ``n >= 2e``, adds ``n - e, n - 2e, ...`` (while above
    ``e``) as if the connection had kept sending every ``e`` µs. So a corrected
    bucket ``m > e`` holds its own count plus the counts recorded at
    ``m + e, m + 2e, ...``; walking down from the top subtracts them exactly.
    """
    per = requests // conns
    if per <= 0:
        return dict(hist)
    e = duration_us // per
    raw: dict[int, int] = {}
    above: dict[int, int] = {}  # by residue mod e: raw counts recorded higher up, at >= 2e
    for v in sorted(hist, reverse=True):
        c = hist[v]
        if v > e:
            c -= above.get(v % e, 0)
        if c > 0:
            raw[v] = c
            if v >= 2 * e:
                above[v % e] = above.get(v % e, 0) + c
    return raw


def percentile(hist: dict[int, int], p: float) -> int | None:
    """wrk's percentile rule over a {µs: count} histogram."""
    total = sum(hist.values())
    if not total:
        return None
    rank = int(p / 100.0 * total + 1.0)  # round(p/100 * count + 0.5)
    acc = 0
    for v in sorted(hist):
        acc += hist[v]
        if acc >= rank:
            return v
    return max(hist)


def run_wrk(port: int, seconds: float, conns: int, tmp: Path) -> dict:
    hist_path = tmp / "wrk-histogram.txt"
    hist_path.unlink(missing_ok=True)
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds:g}s", "--timeout", f"{WRK_TIMEOUT}s", "--latency",
           "-s", str(LUA / "status_counts.lua"), f"http://127.0.0.1:{port}/"]
    p = spawn(cmd, LOAD_CPU, stdout=subprocess.PIPE, env=dict(os.environ, WRK_HISTOGRAM=str(hist_path)))
    try:
        out, _ = p.communicate(timeout=seconds + 30)
    finally:
        stop(p)
    text = out.decode()
    res = parse_wrk(text)  # p50_ms, p99_ms as wrk prints them: corrected for coordinated omission
    res["wrk_p50_ms"] = res.pop("p50_ms")
    res["wrk_p99_ms"] = res.pop("p99_ms")
    res["statuses"] = {m.group(1): int(m.group(2)) for m in re.finditer(r"^status (\d+) (\d+)$", text, re.M)}
    errs = {k: 0 for k in ("connect", "read", "write", "timeout")}
    for k, v in re.findall(r"(connect|read|write|timeout) (\d+)", res.pop("socket_errors")):
        errs[k] = int(v)
    res["socket_errors"] = errs
    ok = sum(n for code, n in res["statuses"].items() if 200 <= int(code) < 400)
    ok = max(0, ok - errs["timeout"])  # a response later than wrk's timeout failed the client
    attempts = res["requests"] + errs["connect"] + errs["read"] + errs["write"]
    res["success"] = ok / attempts if attempts else 0.0
    res["failed"] = attempts - ok
    # latencies of the requests actually made (wrk's correction undone)
    m = re.search(r"^summary (\d+) (\d+)$", text, re.M)
    raw = None
    if m and hist_path.exists():
        hist = {}
        for line in hist_path.read_text().splitlines():
            v, c = line.split()
            hist[int(v)] = int(c)
        raw = uncorrect(hist, int(m.group(1)), int(m.group(2)), conns)
    for key, pct in (("p50_ms", 50), ("p99_ms", 99), ("p999_ms", 99.9)):
        v = percentile(raw, pct) if raw else None
        res[key] = None if v is None else v / 1000
    res["slow_1s"] = sum(c for v, c in raw.items() if v >= 900_000) if raw is not None else None
    res["max_ms"] = max(raw) / 1000 if raw else None
    return res


def failures_text(r: dict) -> str:
    parts = [f"{n} × {code}" for code, n in sorted(r["statuses"].items()) if not 200 <= int(code) < 400]
    parts += [f"{n} {k} err" for k, n in r["socket_errors"].items() if n and k != "timeout"]
    if r["socket_errors"]["timeout"]:
        parts.append(f"{r['socket_errors']['timeout']} > {WRK_TIMEOUT}s")
    return ", ".join(parts) or "-"


def storm(name: str, tmp: Path, args) -> dict:
    log_path = tmp / f"{name}.log"
    with open(log_path, "wb") as log_file:
        a, b = Faulty("A"), Faulty("B")
        port, proc, admin = STARTERS[name](tmp, a, b, log_file)
    log(f"{name}: proxy on :{port} (core {PROXY_CPU}), upstreams A :{a.port} B :{b.port} and wrk on core {LOAD_CPU}")
    poller = Poller(a, b)
    run = {"proxy": name, "phases": []}
    wall0, mono0 = time.time(), time.monotonic()
    try:
        time.sleep(1.5)  # health checks see both servers up
        run_wrk(port, args.warmup, args.connections, tmp)
        poller.start()
        time.sleep(3 * POLL)
        for i, (phase, ma, mb) in enumerate(args.phases):
            before = scrape(admin)
            a.set_mode(ma)
            b.set_mode(mb)
            t_switch, w_switch = time.monotonic(), time.time()
            r = run_wrk(port, args.phase_seconds, args.connections, tmp)
            t_end = time.monotonic()
            time.sleep(2 * POLL)
            r.update(phase=phase, modes={"A": ma, "B": mb}, t_start=round(w_switch - wall0, 2),
                     upstreams=served_between(poller.samples, t_switch, t_end))
            if (ma, mb) == ("ok", "ok") and i > 0:  # back from a failure
                r["time_to_full_traffic_b"] = time_to_share(poller.samples, t_switch, t_end, 2)
                r["time_to_full_traffic_a"] = time_to_share(poller.samples, t_switch, t_end, 1)
                r["time_to_first_b"] = time_to_first(poller.samples, t_switch, 2)
                firsts = [t for t in (time_to_first(poller.samples, t_switch, 1), r["time_to_first_b"]) if t is not None]
                r["time_to_first_success"] = min(firsts) if firsts else None
            if admin:
                r["edgeproxy_counters"] = delta(before, scrape(admin))
            run["phases"].append(r)
            full = r.get("time_to_full_traffic_b", "")
            log(f"  {phase:10s} A {ma:7s} B {mb:7s} {r['requests']:7d} req  ok {100 * r['success']:7.3f}%  "
                f"p50 {fmt_ms(r['p50_ms'])}  p99 {fmt_ms(r['p99_ms'])} (wrk {fmt_ms(r['wrk_p99_ms'])})  "
                f"{r['rps']:6.0f}/s  >=0.9s {r['slow_1s']}  B got {r['upstreams'].get('received_b', '?')}"
                + (f"  full traffic after {full}s" if "time_to_full_traffic_b" in r else "")
                + f"  [{failures_text(r)}]")
    finally:
        poller.halt.set()
        stop(proc)
        stop(a.proc)
        stop(b.proc)
        poller.join(2)
    run["events"] = events(log_path, wall0) if name == "edgeproxy" else []
    # what each upstream served, every poll: [t, served A, served B, open connections A, B]
    run["timeline"] = [[round(t - mono0, 2), sa["served"], sb["served"], sa["connections_open"], sb["connections_open"]]
                       for t, sa, sb in poller.samples]
    return run


def events(path: Path, wall0: float) -> list:
    """edgeproxy's breaker and health transitions; ``t`` in seconds, on the same
    clock as the phases' ``t_start``."""
    out = []
    for line in path.read_bytes().splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("event") in ("breaker_transition", "health_transition"):
            ev["t"] = round(ev.pop("time") - wall0, 2)
            ev.pop("level", None)
            ev.pop("upstream", None)
            out.append(ev)
    return out


def fmt_ms(v) -> str:
    return "-" if v is None else (f"{v:.2f}" if v < 100 else f"{v:.0f}")


def table(runs: list[dict], phases: list, seconds: float) -> str:
    rows = ["| phase | proxy | success % | p50 ms | p99 ms | p99 ms (wrk) | >= 0.9 s | req/s | failures "
            "| time to full traffic |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for i, (phase, ma, mb) in enumerate(phases):
        for run in runs:
            if i >= len(run["phases"]):
                continue
            r = run["phases"][i]
            full = "-"
            if "time_to_full_traffic_b" in r:
                t = r["time_to_full_traffic_b"]
                full = f"{t:.1f} s" if t is not None else f"> {seconds:g} s"
                t = r["time_to_first_success"]
                full += f" (first 2xx {t:.1f} s)" if t is not None else ""
            rows.append(f"| {phase} (A {ma}, B {mb}) | {run['proxy']} | {100 * r['success']:.3f} | "
                        f"{fmt_ms(r['p50_ms'])} | {fmt_ms(r['p99_ms'])} | {fmt_ms(r['wrk_p99_ms'])} | "
                        f"{fmt_n(r['slow_1s'])} | {r['rps']:.0f} | {failures_text(r)} | {full} |")
    return "\n".join(rows)


def fmt_n(v) -> str:
    return "-" if v is None else str(v)


def parse_phases(text: str) -> list[tuple[str, str, str]]:
    out = []
    for item in text.split(","):
        name, _, modes = item.partition("=")
        ma, _, mb = modes.partition("/")
        if not name or ma not in MODES or mb not in MODES:
            raise argparse.ArgumentTypeError(f"{item!r}: expected NAME=A/B with modes among {', '.join(MODES)}")
        out.append((name, ma, mb))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase-seconds", type=float, default=8.0)
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of unreported load before the phases")
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--proxies", default=",".join(PROXIES))
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "storm.json"))
    ap.add_argument("--phases", type=parse_phases, default=PHASES, metavar="NAME=A/B,...",
                    help="other phases, e.g. steady=ok/ok,b503=ok/error503,recovered=ok/ok (modes: "
                         "ok, hang, refuse, error503); a phase where both are ok after the first also "
                         "reports the time to full traffic")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        log("storm: wrk is not installed (apt-get install wrk)")
        return 2
    wanted = []
    for p in (p for p in args.proxies.split(",") if p):
        if p not in STARTERS:
            log(f"storm: unknown proxy {p!r} (known: {', '.join(PROXIES)})")
            return 2
        if p != "edgeproxy" and not shutil.which(p):
            log(f"storm: {p} is not installed, skipped")
            continue
        wanted.append(p)
    runs = []
    tmp = Path(tempfile.mkdtemp(prefix="edgeproxy-storm-"))
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    try:
        for name in wanted:
            runs.append(storm(name, tmp, args))
    except KeyboardInterrupt:
        log("\ninterrupted")
        return 130
    finally:
        for p in list(_procs):
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)
    print(table(runs, args.phases, args.phase_seconds))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({
        "machine": {"cpus": NCPU, "python": sys.version.split()[0]},
        "phase_seconds": args.phase_seconds, "connections": args.connections,
        "phases": [{"name": n, "A": ma, "B": mb} for n, ma, mb in args.phases],
        "runs": runs}, indent=2))
    log(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
