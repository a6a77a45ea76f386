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


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_hotpath_reports_a_cost_per_request(tls):
    cmd = [sys.executable, os.path.join(ROOT, "bench", "hotpath.py"), "--requests", "3000"] + (["--tls"] if tls else [])
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    m = re.search(r"([\d.]+) µs of (Python and OpenSSL per proxied TLS request|Python per proxied request)",
                  res.stdout)
    assert m is not None, res.stdout
    assert ("TLS" in m.group(2)) == tls
    assert float(m.group(1)) > 0


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_connpath_reports_a_cost_per_connection(tls):
    """bench/connpath.py: new connections through the real server (each answer is checked by the script)."""
    cmd = [sys.executable, os.path.join(ROOT, "bench", "connpath.py"), "--connections", "20"] + (["--tls"] if tls else [])
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    m = re.search(r"([\d.]+) µs per new (TLS connection \(handshake included\)|connection), one request each",
                  res.stdout)
    assert m is not None, res.stdout
    assert ("TLS" in m.group(2)) == tls
    assert float(m.group(1)) > 0
