"""acceptor: an accepted descriptor that no transport took is closed and its slot freed.

On uvloop the accept loop hands the event loop a bare descriptor
(``Accepted``), not a socket object that would close it when collected, so
the failure path must close it itself. Real sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import socket
import types

import pytest

from proxy.acceptor import Accepted
from proxy.config import parse_config
from proxy.server import Listener, ProxyServer, new_event_loop


def test_release_closes_a_descriptor_the_loop_never_took():
    a, b = socket.socketpair()
    try:
        held = Accepted(a.detach(), socket.AF_UNIX, socket.SOCK_STREAM)
        held.release()
        with pytest.raises(OSError):
            os.fstat(held.fd)
        assert b.recv(1) == b""  # the peer sees the close
        held.release()  # once only
    finally:
        b.close()


def test_release_leaves_a_taken_descriptor_to_the_loop():
    a, b = socket.socketpair()
    try:
        held = Accepted(a.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)
        assert held.fileno() == a.fileno()
        held.release()
        os.fstat(a.fileno())  # still open: whoever asked for it closes it
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("loop_kind", ["uvloop", "asyncio"])
def test_a_connection_whose_protocol_cannot_be_made_is_closed_and_released(loop_kind):
    loop = new_event_loop(loop_kind)
    cfg = parse_config({"listeners": [{"address": "127.0.0.1:0"}], "admin": {"enabled": False},
                        "access_log": {"enabled": False}, "upstreams": {"app": {"servers": ["127.0.0.1:9"]}},
                        "routes": [{"upstream": "app"}]}, "<test>")
    srv = ProxyServer(cfg, loop)
    lst = Listener(cfg.listeners[0], srv)
    lst.cfg = types.SimpleNamespace(name=lst.name)  # no proxy_protocol: making the protocol raises
    client = socket.create_connection(lst.sock.getsockname(), timeout=5)
    try:
        lst._on_acceptable()
        loop.run_until_complete(asyncio.sleep(0))
        assert lst.admission.count == 0 and not srv.connections  # admitted, then released
        assert client.recv(1) == b""  # closed, not left open
    finally:
        client.close()
        lst.close()
        loop.close()
