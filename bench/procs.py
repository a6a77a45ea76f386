"""Processes and ports for the bench scripts: start, wait for, stop (one copy for all of them).

Every process is started in its own process group (``start_new_session``) and
remembered in ``_procs``, so ``stop`` ends it with its children (a proxy's
workers) and ``stop_all`` cleans up whatever a run left behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

__all__ = ["free_port", "group_stats", "spawn", "stop", "stop_all", "wait_port"]

_procs: list[subprocess.Popen] = []


def group_stats(pgid: int):
    """``(pid, fields)`` for every process in process group ``pgid``: the fields of
    /proc/PID/stat after the command name (``fields[2]`` the group, ``[11]`` and
    ``[12]`` user and system clock ticks). A process gone meanwhile is skipped."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            yield d, fields


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 15.0) -> None:
    """Until something listens on 127.0.0.1:``port``; fails early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port}")


def spawn(cmd, cpu: str | None = None, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
          **kw) -> subprocess.Popen:
    """Start ``cmd`` in its own process group, pinned to ``cpu`` (taskset) when given."""
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpu] + list(cmd)
    p = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, start_new_session=True, **kw)
    _procs.append(p)
    return p


def stop(p: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM the process group, SIGKILL it after ``timeout``."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(5)
    if p in _procs:
        _procs.remove(p)


def stop_all() -> None:
    for p in reversed(list(_procs)):
        stop(p)
