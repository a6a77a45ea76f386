"""sysinfo.descriptors_needed: the one descriptor figure the runtime raises its limit to and `check` warns on."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from proxy import sysinfo
from proxy.config import parse_config

BASE = {
    "listeners": [{"name": "a", "address": "127.0.0.1:0"}, {"name": "b", "address": "127.0.0.1:0"}],
    "upstreams": {"app": {"servers": ["127.0.0.1:9", "127.0.0.1:10"], "pool": {"max_idle_per_server": 50}}},
    "routes": [{"upstream": "app"}],
}


def cfg(server=None, listeners=None, upstream=None):
    raw = {**BASE, "server": server or {}}
    if listeners is not None:
        raw["listeners"] = [{**lst, **extra} for lst, extra in zip(BASE["listeners"], listeners)]
    if upstream is not None:
        raw["upstreams"] = {"app": {**BASE["upstreams"]["app"], **upstream}}
    return parse_config(raw, "<test>")


def test_uncapped_clients_give_no_figure():
    assert sysinfo.descriptors_needed(cfg()) is None
    # one listener capped, the other not: still unbounded
    assert sysinfo.descriptors_needed(cfg(listeners=[{"max_connections": 100}, {}])) is None


def test_clients_their_upstream_connections_the_idle_pools_and_slack():
    # 1000 clients + (1000 in flight + 2 servers x 50 idle) upstream + slack
    assert sysinfo.descriptors_needed(cfg({"max_connections": 1000})) == 1000 + 1100 + sysinfo.FD_SLACK
    # every listener capped: their sum
    assert sysinfo.descriptors_needed(cfg(listeners=[{"max_connections": 300}, {"max_connections": 700}])) == \
        1000 + 1100 + sysinfo.FD_SLACK


def test_per_server_upstream_caps_bound_the_upstream_side():
    c = cfg({"max_connections": 1000}, upstream={"limits": {"max_connections": 40}})
    assert sysinfo.descriptors_needed(c) == 1000 + 2 * 40 + sysinfo.FD_SLACK


def test_check_warns_when_the_hard_limit_is_below_the_figure(monkeypatch):
    c = cfg({"max_connections": 100000})
    needed = sysinfo.descriptors_needed(c)
    monkeypatch.setattr(sysinfo.resource, "getrlimit", lambda which: (1024, needed - 1))
    assert any(f"need about {needed} file descriptors" in w for w in sysinfo.system_warnings(c))
    monkeypatch.setattr(sysinfo.resource, "getrlimit", lambda which: (1024, needed))
    assert not any("file descriptors" in w for w in sysinfo.system_warnings(c))


@pytest.mark.parametrize("needed", [None, 3000])
def test_the_runtime_raises_the_soft_limit_to_the_figure(needed):
    # in a child process (the limit is per process): what ProxyServer.start asks for
    code = ("import resource; from proxy import sysinfo; "
            f"soft, hard = sysinfo.raise_nofile({needed!r} or sysinfo.FD_UNCAPPED); "
            "print(soft, hard, resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)))
    assert res.returncode == 0, res.stderr
    soft, _hard, actual = map(int, res.stdout.split())
    with open("/proc/sys/fs/nr_open") as f:  # the kernel's ceiling for any descriptor limit
        nr_open = int(f.read())
    want = min(needed or sysinfo.FD_UNCAPPED, nr_open if hard == resource.RLIM_INFINITY else hard)
    assert soft == actual == want
