"""Idle upstream connection bookkeeping for one cluster (sans-IO).

Theory of operation
-------------------
The pool only decides; the caller closes what the pool hands back. It holds
idle connections (opaque hashable objects) per server, most recently used
last, plus one cluster-wide list in idle order.

How the two caps interact (the classic trap, spelled out):

* ``max_idle_per_server`` bounds the idle connections kept for one server;
* ``max_idle_total`` bounds the idle connections kept for the whole cluster.

A connection coming back is kept only if its server is below the per-server
cap. If the cluster is then at its total cap, the connection idle the longest
anywhere in the cluster is closed to make room (so a busy server keeps warm
connections and a quiet one gives them up), unless the returning connection
would itself be that oldest, which cannot happen, or the total cap is 0, in
which case nothing is kept. So when ``max_idle_total`` is lower than
servers x ``max_idle_per_server``, the per-server cap is never reached by all
servers at once: each server averages ``max_idle_total / servers`` idle
connections. ``edgeproxy check`` warns about exactly that.

``take`` hands out the most recently used idle connection (warm in the
server's and the kernel's caches, and it lets the oldest ones age out).
``expire(now)`` returns connections idle longer than ``idle_timeout``; the
caller runs it from a periodic timer (once a second), so an idle connection
lives at most about ``idle_timeout`` + 1s. A connection that the server
closes while idle is removed at once with ``remove``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Hashable


class Pool:
    def __init__(self, max_idle_per_server: int, max_idle_total: int, idle_timeout: float,
                 max_requests_per_connection: int):
        self.max_idle_per_server = max_idle_per_server
        self.max_idle_total = max_idle_total
        self.idle_timeout = idle_timeout
        self.max_requests = max_requests_per_connection
        self._by_server: dict[Hashable, OrderedDict] = {}
        self._all: OrderedDict = OrderedDict()  # conn -> (server, since), oldest first

    @classmethod
    def from_config(cls, cfg) -> "Pool":
        return cls(cfg.max_idle_per_server, cfg.max_idle_total, cfg.idle_timeout, cfg.max_requests_per_connection)

    def idle_count(self, server=None) -> int:
        if server is None:
            return len(self._all)
        d = self._by_server.get(server)
        return len(d) if d else 0

    def take(self, server):
        """Most recently used idle connection of ``server``, or None."""
        d = self._by_server.get(server)
        if not d:
            return None
        conn, _ = d.popitem(last=True)
        del self._all[conn]
        return conn

    def give(self, server, conn, requests_served: int, now: float) -> list:
        """Offer ``conn`` back; returns the connections the caller must close."""
        if requests_served >= self.max_requests or self.max_idle_total <= 0:
            return [conn]
        d = self._by_server.get(server)
        if d is None:
            d = self._by_server[server] = OrderedDict()
        if len(d) >= self.max_idle_per_server:
            return [conn]
        closed = []
        if len(self._all) >= self.max_idle_total:
            old, (old_server, _) = self._all.popitem(last=False)
            del self._by_server[old_server][old]
            closed.append(old)
        d[conn] = now
        self._all[conn] = (server, now)
        return closed

    def remove(self, server, conn) -> bool:
        """Forget an idle connection that closed; False if it was not idle."""
        if self._all.pop(conn, None) is None:
            return False
        del self._by_server[server][conn]
        return True

    def expire(self, now: float) -> list:
        """Idle connections older than ``idle_timeout``, removed from the pool."""
        out = []
        limit = now - self.idle_timeout
        all_ = self._all
        while all_:
            conn, (server, since) = next(iter(all_.items()))
            if since > limit:
                break
            all_.popitem(last=False)
            del self._by_server[server][conn]
            out.append(conn)
        return out

    def drain(self) -> list:
        """Every idle connection, removed (shutdown)."""
        out = list(self._all)
        self._all.clear()
        self._by_server.clear()
        return out
