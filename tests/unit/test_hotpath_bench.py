"""bench/hotpath.py runs and reports: the plain and the TLS keep-alive request paths.

Not a speed test (the figure is not judged): the script drives the real
connection objects, and it asserts itself that the pooled upstream
connection was reused for every request, so a change that breaks the path
it measures fails here instead of in someone's benchmark session.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def reported(script: str, args: list, pattern: str, tls: bool) -> None:
    """Run ``bench/<script>`` (with ``--tls`` when ``tls``); its report matches ``pattern``
    (a positive figure, then a description that names TLS exactly when ``tls``)."""
    cmd = [sys.executable, os.path.join(ROOT, "bench", script), *args] + (["--tls"] if tls else [])
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    m = re.search(pattern, res.stdout)
    assert m is not None, res.stdout
    assert ("TLS" in m.group(2)) == tls
    assert float(m.group(1)) > 0


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_hotpath_reports_a_cost_per_request(tls):
    reported("hotpath.py", ["--requests", "3000"],
             r"([\d.]+) µs of (Python and OpenSSL per proxied TLS request|Python per proxied request)", tls)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_connpath_reports_a_cost_per_connection(tls):
    """bench/connpath.py: new connections through the real server (each answer is checked by the script)."""
    reported("connpath.py", ["--connections", "20"],
             r"([\d.]+) µs per new (TLS connection \(handshake included\)|connection), one request each", tls)
