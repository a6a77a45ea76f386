"""bench/run.py's pure parts: reading wrk's report and combining repeated runs."""

from __future__ import annotations

import pytest

from bench.run import parse_wrk, summarize

WRK = """Running 8s test @ http://127.0.0.1:8080/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.52ms  412.00us  12.31ms   88.10%
    Req/Sec    33.19k     1.20k   35.01k    74.00%
  Latency Distribution
     50%    1.44ms
     75%    1.70ms
     90%    2.01ms
     99%    2.95ms
  264210 requests in 8.00s, 38.55MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  33025.42
Transfer/sec:      4.82MB
"""


def test_parse_wrk_reads_the_figures():
    r = parse_wrk(WRK)
    assert r["requests"] == 264210
    assert r["rps"] == pytest.approx(33025.42)
    assert r["p50_ms"] == pytest.approx(1.44)
    assert r["p99_ms"] == pytest.approx(2.95)
    assert r["non2xx"] == 3


def run(rps, p99, cpu, requests=1000):
    return {"proxy": "edgeproxy", "scenario": "get", "requests": requests, "rps": rps, "p50_ms": 1.0,
            "p99_ms": p99, "cpu_us_per_req": cpu, "non2xx": 0}


def test_summarize_takes_the_median_of_each_figure_and_keeps_the_runs():
    runs = [run(30000, 3.0, 31.0), run(20000, 9.0, 50.0), run(33000, 2.9, 30.0)]
    s = summarize(runs)
    assert (s["rps"], s["p99_ms"], s["cpu_us_per_req"]) == (30000, 3.0, 31.0)
    assert s["requests"] == 3000
    assert s["runs"] == runs
    assert (s["proxy"], s["scenario"]) == ("edgeproxy", "get")


def test_summarize_one_run_is_that_run_and_a_missing_figure_stays_missing():
    assert summarize([run(1, 2.0, 3.0)]) == run(1, 2.0, 3.0)
    s = summarize([run(1, None, 3.0), run(2, 4.0, 5.0)])
    assert s["p99_ms"] is None and s["cpu_us_per_req"] == 4.0


@pytest.mark.parametrize("args,named", [(["--scenarios", "get,pipeline"], "--scenarios: unknown pipeline"),
                                        (["--proxies", "nginx,envoy"], "--proxies: unknown envoy")])
def test_an_unknown_scenario_or_proxy_is_refused_before_anything_starts(args, named):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, str(root / "bench" / "run.py"), *args], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2
    assert named in res.stderr and "expected some of" in res.stderr
    assert "Traceback" not in res.stderr
