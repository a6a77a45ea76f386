"""Helpers shared by the failure and lifecycle integration tests.

Raw upstream behaviours (hang, answer early, reset mid-response, ...) are
built from a few small coroutines here, plus a condition wait with a
deadline for state that lives in the test process (the scripted upstream).
"""

from __future__ import annotations

import asyncio
import socket
import time

HEAD_END = b"\r\n\r\n"


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` (test-process state only) until true or the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


async def read_head(reader: asyncio.StreamReader, buf: bytearray) -> bytes | None:
    """Read one request head from ``reader`` (``buf`` keeps leftover bytes).

    Returns the head (without the blank line) or None on EOF.
    """
    while True:
        i = buf.find(HEAD_END)
        if i >= 0:
            head = bytes(buf[:i])
            del buf[: i + 4]
            return head
        data = await reader.read(65536)
        if not data:
            return None
        buf += data


def head_lines(head: bytes) -> tuple[str, dict[str, str]]:
    """Request line and lower-cased header dict of a raw head."""
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return lines[0], hdrs


async def discard_until_eof(reader: asyncio.StreamReader) -> int:
    """Read and drop everything until the peer closes; returns the byte count."""
    n = 0
    while True:
        try:
            data = await reader.read(262144)
        except ConnectionError:
            return n
        if not data:
            return n
        n += len(data)


async def hang_raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, read whatever comes, never answer."""
    await discard_until_eof(reader)


def read_until_close(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Read until EOF/reset; returns (data, closed) where closed is False on timeout."""
    sock.settimeout(timeout)
    out = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"".join(out), False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return b"".join(out), False
        except ConnectionResetError:
            return b"".join(out), True
        if not chunk:
            return b"".join(out), True
        out.append(chunk)


def parse_raw_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, lower-cased headers and the bytes after the head of a raw response."""
    head, sep, body = data.partition(HEAD_END)
    assert sep, f"no complete response head in {data[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body


# ----------------------------------------------------------------------
# leak checks: the proxy's own view of what it still holds after a fault
def metric_sum(text: str, name: str) -> float:
    """Sum of every sample of ``name`` in Prometheus text (all label sets)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def proxy_holdings(px) -> dict:
    """Client connections, asyncio tasks and upstream connections the proxy
    holds right now (metrics and /debug on its admin listener).

    ``upstream_busy`` counts upstream connections that are not idle in the
    pool: active (carrying a request), pending, or open but neither.
    """
    from support import get

    m = px.metrics()
    pools = get(px.admin_addr, "/debug/pools").json()
    busy = 0
    for cluster in pools.values():
        for srv in cluster["servers"].values():
            busy += srv["active"] + srv["pending"] + max(0, srv["open_connections"] - srv["idle"])
    return {
        "connections": metric_sum(m, "http_server_connections_active"),
        "tasks": get(px.admin_addr, "/debug/tasks").json()["total"],
        "pool_active": metric_sum(m, "http_client_conn_pool_active"),
        "upstream_busy": busy,
    }


def wait_released(px, tasks: int, connections: int = 0, timeout: float = 5.0) -> dict:
    """Poll until the proxy holds no more than ``connections`` client
    connections (those the test still has open), ``tasks`` asyncio tasks (a
    baseline taken before the fault) and no upstream connection other than
    idle pooled ones; returns the last holdings seen (compare with the
    expected ones to assert, so a failure shows what leaked)."""
    want = {"connections": float(connections), "tasks": tasks, "pool_active": 0.0, "upstream_busy": 0}
    deadline = time.monotonic() + timeout
    while True:
        seen = proxy_holdings(px)
        if seen == want or time.monotonic() >= deadline:
            return seen
        time.sleep(0.02)
