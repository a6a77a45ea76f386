"""workers = "auto" under a cgroup CPU quota (a container's CPU limit): cgroup trees built in tmp_path."""

from __future__ import annotations

import dataclasses

import pytest

from proxy import config as config_mod
from proxy.config import ServerConfig
from proxy.sysinfo import cpu_quota, cpu_workers


def write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v2(tmp_path, own: str, limits: dict[str, str]) -> tuple[str, str]:
    """A v2 tree: the process in cgroup ``own``; ``limits`` maps cgroup path -> cpu.max content."""
    root = tmp_path / "cgroup"
    root.mkdir()
    for rel, text in limits.items():
        write(root / rel.strip("/") / "cpu.max", text + "\n")
    write(tmp_path / "self", f"0::{own}\n")
    return str(root), str(tmp_path / "self")


def test_v2_quota_of_the_process_cgroup(tmp_path):
    root, me = v2(tmp_path, "/kubepods/pod1/c1", {"/kubepods/pod1/c1": "150000 100000"})
    assert cpu_quota(root, me) == 1.5


def test_v2_tightest_ancestor_wins(tmp_path):
    root, me = v2(tmp_path, "/kubepods/pod1/c1", {"/": "max 100000", "/kubepods/pod1": "200000 100000",
                                                   "/kubepods/pod1/c1": "max 100000"})
    assert cpu_quota(root, me) == 2.0


def test_v2_container_namespace_sees_its_root(tmp_path):
    root, me = v2(tmp_path, "/", {"/": "300000 100000"})
    assert cpu_quota(root, me) == 3.0


def test_v2_max_is_no_limit(tmp_path):
    root, me = v2(tmp_path, "/a", {"/a": "max 100000"})
    assert cpu_quota(root, me) is None


def test_v1_quota_at_the_process_path_or_the_root(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "50000\n")
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    write(tmp_path / "self", "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n")
    assert cpu_quota(str(root), str(tmp_path / "self")) == 0.5
    # inside the container the mount's root is its own cgroup, the path is the host's
    write(tmp_path / "self", "3:cpu,cpuacct:/docker/other\n")
    write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "400000\n")
    write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    assert cpu_quota(str(root), str(tmp_path / "self")) == 4.0


def test_v1_minus_one_is_no_limit(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cpu" / "cpu.cfs_quota_us", "-1\n")
    write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    write(tmp_path / "self", "2:cpu:/\n")
    assert cpu_quota(str(root), str(tmp_path / "self")) is None


def test_unreadable_is_no_limit(tmp_path):
    assert cpu_quota(str(tmp_path / "none"), str(tmp_path / "missing")) is None
    write(tmp_path / "self", "0::/x\n")
    write(tmp_path / "cgroup" / "x" / "cpu.max", "garbage\n")
    assert cpu_quota(str(tmp_path / "cgroup"), str(tmp_path / "self")) is None


@pytest.mark.parametrize("quota, cpus, workers", [
    (None, 8, 8), (2.0, 8, 2), (1.5, 8, 1), (0.5, 8, 1), (16.0, 4, 4), (None, 0, 1),
])
def test_auto_workers_follow_the_quota(quota, cpus, workers):
    assert cpu_workers(quota, cpus) == workers


def test_server_config_auto_uses_the_quota(monkeypatch):
    monkeypatch.setattr(config_mod, "cpu_quota", lambda: 1.0)
    assert ServerConfig().worker_count() == 1
    monkeypatch.setattr(config_mod, "cpu_quota", lambda: None)
    assert dataclasses.replace(ServerConfig(), workers=3).worker_count() == 3
