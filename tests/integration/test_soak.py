"""Soak and leak check in the default run: ``bench/soak.py --duration 45``.

The runner starts its own proxy (plain and TLS listeners, admin on an
ephemeral port), a healthy and a faulty upstream, drives mixed traffic
(keep-alive, new connections, 64 KiB uploads, TLS, a failing cluster,
client aborts) and samples descriptors, RSS, asyncio tasks, client
connections and pool sizes every second; it exits 1 when a series keeps
growing or the proxy does not drain. About 50 s of wall clock, so this test
carries its own timeout instead of the suite's 60 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERIES = ("fds", "rss", "tasks", "connections", "pool_idle", "pool_active", "upstream_conns")
DURATION = 45

pytestmark = [
    pytest.mark.soak,
    pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="the soak reads /proc (Linux)"),
]


@pytest.mark.timeout(DURATION + 75)
def test_soak_holds_steady(tmp_path):
    report = tmp_path / "soak.json"
    cmd = [sys.executable, str(ROOT / "bench" / "soak.py"), "--duration", str(DURATION), "--json", str(report)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=DURATION + 60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the runner stops everything it started
        out, err = proc.communicate(timeout=20)
        pytest.fail(f"bench/soak.py did not finish in {DURATION + 60}s\n{out}\n{err}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, f"bench/soak.py exited {proc.returncode}\n{out}\n{err}"

    # the printed summary has a row per series, each with samples
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and cells[0] in SERIES:
            rows[cells[0]] = cells
    assert set(rows) == set(SERIES), out
    for name, cells in rows.items():
        assert int(cells[1]) >= 0.8 * DURATION, f"{name}: only {cells[1]} samples\n{out}"
        assert cells[9] == "ok", f"{name}: {cells}\n{out}"
    assert "PASS" in out

    data = json.loads(report.read_text())
    assert data["ok"] and not data["failures"]
    assert len(data["samples"]) >= 0.8 * DURATION
    assert all(data["summary"][s]["samples"] >= 0.8 * DURATION for s in SERIES)
    for cls in ("keepalive", "newconn", "upload", "tls_keepalive", "tls_newconn", "faulty", "aborts"):
        assert sum(data["traffic"][cls].values()) > 0, cls
