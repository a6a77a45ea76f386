"""What the kernel knows about our sockets and limits (Linux; harmless elsewhere).

* ``accept_queue(sock)``: for a listening TCP socket, ``getsockopt(TCP_INFO)``
  reports the current accept-queue length in ``tcpi_unacked`` and the backlog
  limit in ``tcpi_sacked`` — the queue no common proxy exports, where a
  flood waits before anyone calls ``accept()``.
* ``listen_counters()``: TcpExt ListenOverflows and ListenDrops from
  /proc/net/netstat (host-wide, cumulative): SYNs dropped because an accept
  queue was full.
* ``somaxconn()``: the kernel's silent cap on every listen backlog.
* ``raise_nofile(needed)``: lift the soft RLIMIT_NOFILE toward the hard one.
"""

from __future__ import annotations

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


def system_warnings(cfg) -> list[str]:
    """Warnings about this machine for a config (printed by run and check)."""
    out = []
    cap = somaxconn()
    if cap is not None:
        for lst in cfg.listeners:
            if lst.backlog > cap:
                out.append(f"listeners {lst.name}: backlog {lst.backlog} exceeds net.core.somaxconn {cap}; "
                           f"the kernel silently uses {cap}")
    conns = cfg.server.max_connections
    if not conns and all(lst.max_connections for lst in cfg.listeners):
        conns = sum(lst.max_connections for lst in cfg.listeners)
    if conns:
        pools = sum(len(u.servers) * max(u.pool.max_idle_per_server, u.limits.max_connections)
                    for u in cfg.upstreams.values())
        needed = conns + pools + 64
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and needed > hard:
            out.append(f"max_connections {conns} plus upstream pools need about {needed} file descriptors; "
                       f"the hard RLIMIT_NOFILE is {hard}")
    return out
