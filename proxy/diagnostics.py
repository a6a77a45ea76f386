"""Live diagnostics served on the admin listener as JSON.

Each function builds a plain dict from state the proxy already holds, on the
event-loop thread, without I/O:

* ``connections(server, top)``: client connections by state (reading head,
  reading body, waiting for upstream, writing response, draining body,
  tunnel, idle keep-alive) with the oldest age per state, and the ``top``
  oldest connections with their state, age, route and upstream;
* ``tasks()``: every asyncio task with its coroutine stack, grouped by
  identical stacks with counts — a pile-up of 10,000 tasks in one place reads
  as one line with 10,000 beside it (the analogue of a goroutine dump);
* ``pools(server)``: per upstream server: idle, active, pending, open
  connections, breaker state, health, adaptive idle timeout, last error;
* ``config(server)``: the effective configuration, secrets redacted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter

from . import downstream as ds

_SECRET_WORDS = ("token", "password", "secret", "key", "private")  # "key": TLS private key paths


def connection_state(conn) -> str:
    name = ds.STATE_NAMES.get(conn.state, "closed")
    if name == "reading_head":
        return "reading_head" if conn.buf or not conn.requests else "idle_keepalive"
    if name == "writing_response":
        ex = conn.exchange
        return "waiting_upstream" if ex is not None and ex.resp is None else "writing_response"
    return name


def connections(server, top: int = 20) -> dict:
    now = time.monotonic()
    counts: Counter = Counter()
    oldest: dict[str, float] = {}
    rows = []
    for hs in list(server.handshaking):
        age = now - hs.accepted_at
        counts["handshaking"] += 1
        if age > oldest.get("handshaking", -1.0):
            oldest["handshaking"] = age
        rows.append({"state": "handshaking", "age": round(age, 3), "client": hs.peer, "listener": hs.listener.name,
                     "requests": 0, "route": None, "upstream": None, "server": None})
    for conn in list(server.connections):
        state = connection_state(conn)
        age = now - conn.created
        counts[state] += 1
        if age > oldest.get(state, -1.0):
            oldest[state] = age
        ex = conn.exchange
        rows.append({
            "state": state,
            "age": round(age, 3),
            "client": conn.client_addr,
            "listener": conn.listener,
            "requests": conn.requests,
            "route": ex.route.name if ex is not None else None,
            "upstream": ex.cluster.name if ex is not None else None,
            "server": ex.server.name if ex is not None and ex.server is not None else None,
        })
    rows.sort(key=lambda r: -r["age"])
    return {
        "total": len(rows),
        "states": {s: {"count": counts[s], "oldest_age": round(oldest[s], 3)} for s in sorted(counts)},
        "oldest": rows[:top],
    }


def _stack_of(task: asyncio.Task) -> tuple[str, ...]:
    frames = task.get_stack(limit=20)
    out = []
    for f in frames:
        code = f.f_code
        out.append(f"{code.co_filename.rsplit('/', 2)[-1]}:{f.f_lineno} {code.co_name}")
    if not out:
        coro = task.get_coro()
        out.append(getattr(coro, "__qualname__", repr(coro)))
    return tuple(out)


def tasks() -> dict:
    groups: Counter = Counter()
    for task in asyncio.all_tasks():
        groups[_stack_of(task)] += 1
    return {
        "total": sum(groups.values()),
        "groups": [{"count": n, "stack": list(stack)} for stack, n in groups.most_common()],
    }


def pools(server) -> dict:
    out = {}
    now = time.monotonic()
    for name, c in server.clusters.items():
        pending = Counter(srv for ex, srv in c.pending if not ex.finished and ex.queued)
        servers = {}
        for s in c.servers:
            servers[s.name] = {
                "idle": c.pool.idle_count(s),
                "active": s.active,
                "pending": pending[s],
                "open_connections": c.conn_count[s],
                "breaker": s.breaker.state.name.lower(),
                "breaker_retry_after": round(s.breaker.retry_after(now), 3),
                "healthy": s.healthy,
                "idle_timeout": c.idle_timeout_now[s],
                "last_error": s.last_error,
            }
        out[name] = {"in_flight": c.inflight.count, "pending": len(pending), "servers": servers}
    return out


def _redact(obj, path: str = ""):
    if isinstance(obj, dict):
        return {k: ("<redacted>" if any(w in k for w in _SECRET_WORDS) and v else _redact(v, f"{path}.{k}"))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_redact(v, path) for v in obj]
    if isinstance(obj, bytes):
        return f"<{len(obj)} bytes>"
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def config(server) -> dict:
    cfg = server.config
    data = dataclasses.asdict(cfg)
    return _redact(data)
