"""acceptor.accept_ready: one readiness event accepts the connections the kernel has queued.

Real sockets on 127.0.0.1: clients connect (the kernel completes their
handshakes into the listening socket's accept queue) before the listener's
accept loop runs once. With the queue length from TCP_INFO it accepts
exactly those, without a last accept() that could only fail with EAGAIN;
without TCP_INFO it accepts until EAGAIN, as before.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from proxy import acceptor, sysinfo
from proxy.config import parse_config
from proxy.server import Listener, ProxyServer, new_event_loop


class CountingSocket:
    """The listening socket, counting the accept() calls made on it."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self.accepts = 0
        self.eagain = 0

    def _accept(self):
        self.accepts += 1
        try:
            return self._sock._accept()
        except BlockingIOError:
            self.eagain += 1
            raise

    def __getattr__(self, name):
        return getattr(self._sock, name)


@pytest.fixture(params=["asyncio", "uvloop"])
def listener(request):
    loop = new_event_loop(request.param)
    cfg = parse_config({"listeners": [{"address": "127.0.0.1:0"}], "admin": {"enabled": False},
                        "access_log": {"enabled": False}, "upstreams": {"app": {"servers": ["127.0.0.1:9"]}},
                        "routes": [{"upstream": "app"}]}, "<test>")
    srv = ProxyServer(cfg, loop)
    lst = Listener(cfg.listeners[0], srv)
    clients = []
    yield lst, clients
    # the accepted connections became transports: let their connection_made run, then close them
    loop.run_until_complete(asyncio.sleep(0))
    assert len(srv.connections) == lst.admission.count
    for conn in list(srv.connections):
        conn.abort()
    loop.run_until_complete(asyncio.sleep(0))
    for c in clients:
        c.close()
    lst.sock.close()
    loop.close()


def accepted(lst: Listener) -> int:
    """Connections the listener admitted (each holds a slot until it closes)."""
    return lst.admission.count


def connect(lst: Listener, n: int, clients: list) -> None:
    for _ in range(n):
        c = socket.create_connection(lst.sock.getsockname(), timeout=5)
        clients.append(c)  # connect() returns once the handshake is done: queued for accept()
    if sysinfo.accept_queue(lst.sock) is not None:
        assert sysinfo.accept_queue(lst.sock)[0] == n


def test_accepts_the_queued_connections_and_no_more(listener):
    lst, clients = listener
    if sysinfo.accept_queue(lst.sock) is None:
        pytest.skip("no TCP_INFO accept queue on this platform (Linux only)")
    connect(lst, 3, clients)
    counting = lst.sock = CountingSocket(lst.sock)
    lst._on_acceptable()
    assert accepted(lst) == 3
    assert (counting.accepts, counting.eagain) == (3, 0)


def test_one_attempt_when_the_queue_reads_empty(listener):
    """A readiness event with nothing queued (another worker took it) tries once, harmlessly."""
    lst, clients = listener
    if sysinfo.accept_queue(lst.sock) is None:
        pytest.skip("no TCP_INFO accept queue on this platform (Linux only)")
    counting = lst.sock = CountingSocket(lst.sock)
    lst._on_acceptable()
    assert accepted(lst) == 0 and (counting.accepts, counting.eagain) == (1, 1)


def test_without_tcp_info_it_accepts_until_eagain(listener, monkeypatch):
    lst, clients = listener
    monkeypatch.setattr(sysinfo, "accept_queue", lambda sock: None)
    connect(lst, 3, clients)
    counting = lst.sock = CountingSocket(lst.sock)
    lst._on_acceptable()
    assert accepted(lst) == 3
    assert (counting.accepts, counting.eagain) == (4, 1)


def test_a_batch_never_exceeds_accept_batch(listener, monkeypatch):
    lst, clients = listener
    monkeypatch.setattr(acceptor, "ACCEPT_BATCH", 2)
    connect(lst, 3, clients)
    counting = lst.sock = CountingSocket(lst.sock)
    lst._on_acceptable()
    assert accepted(lst) == 2 and counting.eagain == 0  # the third waits for the next readiness event
    lst._on_acceptable()
    assert accepted(lst) == 3
