"""What the kernel knows about our sockets and limits (Linux; harmless elsewhere).

* ``accept_queue(sock)``: for a listening TCP socket, ``getsockopt(TCP_INFO)``
  reports the current accept-queue length in ``tcpi_unacked`` and the backlog
  limit in ``tcpi_sacked`` — the queue no common proxy exports, where a
  flood waits before anyone calls ``accept()``.
* ``listen_counters()``: TcpExt ListenOverflows and ListenDrops from
  /proc/net/netstat (host-wide, cumulative): SYNs dropped because an accept
  queue was full.
* ``somaxconn()``: the kernel's silent cap on every listen backlog.
* ``raise_nofile(needed)``: lift the soft RLIMIT_NOFILE toward the hard one;
  ``descriptors_needed(cfg)``: what the configured caps can hold open at
  once (the runtime raises the limit to it, ``check`` warns against it).
* ``cpu_quota()``: the CPUs a cgroup CPU quota allows this process (a
  container's CPU limit), which the affinity mask does not show.
"""

from __future__ import annotations

import math
import os
import resource
import socket
import struct

_TCP_INFO_HEAD = struct.Struct("8B6I")  # u8 fields, then rto ato snd_mss rcv_mss unacked sacked


def accept_queue(sock: socket.socket) -> tuple[int, int] | None:
    """(queued connections, backlog limit) of a listening socket, or None."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except (OSError, AttributeError):
        return None
    if len(raw) < _TCP_INFO_HEAD.size:
        return None
    fields = _TCP_INFO_HEAD.unpack_from(raw)
    return fields[12], fields[13]


def listen_counters(path: str = "/proc/net/netstat") -> tuple[int, int] | None:
    """(ListenOverflows, ListenDrops) since boot, or None when unavailable."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for names, values in zip(lines, lines[1:]):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:]))
            try:
                return int(table["ListenOverflows"]), int(table["ListenDrops"])
            except (KeyError, ValueError):
                return None
    return None


def somaxconn(path: str = "/proc/sys/net/core/somaxconn") -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def raise_nofile(needed: int) -> tuple[int, int]:
    """Raise the soft descriptor limit toward ``needed`` (at most the hard
    limit); returns (soft, hard) after the attempt."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (OSError, ValueError):
            pass
    return soft, hard


# descriptors besides connections: listening sockets, logs, admin, health checks, the event loop's own
FD_SLACK = 256
# what an uncapped proxy asks for (the kernel's default fs.nr_open; never above the hard limit)
FD_UNCAPPED = 1 << 20


def descriptors_needed(cfg) -> int | None:
    """File descriptors the configured caps can hold open at once, or None when client connections
    are not capped (``[server] max_connections``, or every listener's ``max_connections``).

    Every client connection, an upstream connection for each of them in flight plus the idle pools
    (all bounded by the clusters' per-server ``max_connections`` where every cluster sets one), and
    ``FD_SLACK``."""
    conns = cfg.server.max_connections
    if not conns and cfg.listeners and all(lst.max_connections for lst in cfg.listeners):
        conns = sum(lst.max_connections for lst in cfg.listeners)
    if not conns:
        return None
    ups = list(cfg.upstreams.values())
    upstream = conns + sum(min(len(u.servers) * u.pool.max_idle_per_server, u.pool.max_idle_total) for u in ups)
    caps = [len(u.servers) * u.limits.max_connections for u in ups]
    if caps and all(caps):
        upstream = min(upstream, sum(caps))
    return conns + upstream + FD_SLACK


def system_warnings(cfg) -> list[str]:
    """Warnings about this machine for a config (printed by run and check)."""
    out = []
    cap = somaxconn()
    if cap is not None:
        for lst in cfg.listeners:
            if lst.backlog > cap:
                out.append(f"listeners {lst.name}: backlog {lst.backlog} exceeds net.core.somaxconn {cap}; "
                           f"the kernel silently uses {cap}")
    needed = descriptors_needed(cfg)
    if needed is not None:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and needed > hard:
            out.append(f"the connection caps (clients, their upstream connections, idle pools) need about "
                       f"{needed} file descriptors; the hard RLIMIT_NOFILE is {hard}")
    return out


def cpu_quota(cgroup_root: str = "/sys/fs/cgroup", self_cgroup: str = "/proc/self/cgroup") -> float | None:
    """CPUs per period the process's cgroups allow (e.g. 1.5), or None when unlimited or unknown.

    cgroup v2: ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD") of the process's
    cgroup and of every ancestor up to the root (the tightest wins). cgroup
    v1: ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` in the cpu controller's
    hierarchy (-1 = none), at the process's path or, inside a container that
    sees its own cgroup as the mount's root, at the root. Anything
    unreadable counts as no limit.
    """
    try:
        with open(self_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hid == "0" and controllers == "":  # v2 unified hierarchy
            rel = path.strip("/")
            while True:
                limit = _v2_limit(os.path.join(cgroup_root, rel, "cpu.max"))
                if limit is not None:
                    limits.append(limit)
                if not rel:
                    break
                rel = os.path.dirname(rel)
        elif "cpu" in controllers.split(","):
            for base in (os.path.join(cgroup_root, controllers), os.path.join(cgroup_root, "cpu")):
                for rel in (path.strip("/"), ""):
                    limit = _v1_limit(os.path.join(base, rel))
                    if limit is not None:
                        limits.append(limit)
                        break
                else:
                    continue
                break
    return min(limits) if limits else None


def _v2_limit(path: str) -> float | None:
    try:
        with open(path) as f:
            quota, _, period = f.read().strip().partition(" ")
        if quota == "max":
            return None
        q, p = int(quota), int(period or 100000)
        return q / p if q > 0 and p > 0 else None
    except (OSError, ValueError):
        return None


def _v1_limit(directory: str) -> float | None:
    try:
        with open(os.path.join(directory, "cpu.cfs_quota_us")) as f:
            q = int(f.read().strip())
        with open(os.path.join(directory, "cpu.cfs_period_us")) as f:
            p = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return q / p if q > 0 and p > 0 else None


def cpu_workers(quota: float | None, cpus: int) -> int:
    """Worker processes for ``workers = "auto"``: one per CPU, no more than the quota allows.

    A fractional quota rounds down (at least 1): a 1.5-CPU limit gets one
    worker, since a second would only be throttled, each waiting for the
    other's share.
    """
    if quota is None:
        return max(1, cpus)
    return max(1, min(cpus, math.floor(quota)))
