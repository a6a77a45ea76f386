"""TCP options of accepted client connections, read back from the kernel.

The listener sets TCP keep-alive once on its listening socket and every
accepted socket inherits it (no per-connection system calls); these tests
look at the proxy's side of a real client connection in /proc/net/tcp and
check the keep-alive timer is armed with the configured idle time, or not
armed at all when keep-alive is disabled.
"""

from __future__ import annotations

import socket

from support import split_addr, wait_for

USER_HZ = 100  # /proc/net/tcp reports timers in clock ticks


def _server_side_timer(proxy_port: int, client_port: int):
    """(timer kind, ticks left) of the proxy's socket for this client, from /proc/net/tcp."""
    for line in open("/proc/net/tcp"):
        f = line.split()
        if len(f) < 6 or f[0] == "sl":
            continue
        local, remote, state = f[1], f[2], f[3]
        if (state == "01" and int(local.split(":")[1], 16) == proxy_port
                and int(remote.split(":")[1], 16) == client_port):
            kind, when = f[5].split(":")
            return int(kind, 16), int(when, 16)
    return None


def _connect_and_read_timer(proxy):
    host, port = split_addr(proxy.listeners["main"])
    with socket.create_connection((host, port), timeout=5) as c:
        client_port = c.getsockname()[1]
        timer = wait_for(lambda: _server_side_timer(port, client_port), timeout=5)
        # the connection is served (accepted by the proxy, not just queued in the backlog)
        c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.recv(4096).startswith(b"HTTP/1.1 200")
        return timer


def test_accepted_connections_get_the_configured_keepalive(proxy_factory, upstream_factory):
    up = upstream_factory()
    proxy = proxy_factory(upstreams={"app": [up.address]},
                          extra='[downstream.tcp_keepalive]\nidle = "77s"\ninterval = "7s"\ncount = 5\n')
    kind, ticks = _connect_and_read_timer(proxy)
    assert kind == 2, "no keep-alive timer on the proxy's side of the connection"
    assert 70 * USER_HZ < ticks <= 77 * USER_HZ


def test_keepalive_disabled_leaves_no_timer(proxy_factory, upstream_factory):
    up = upstream_factory()
    proxy = proxy_factory(upstreams={"app": [up.address]}, extra="[downstream.tcp_keepalive]\nenabled = false\n")
    kind, _ = _connect_and_read_timer(proxy)
    assert kind != 2
