"""The core's monotonic clock (proxy/clock.py, and clock.pxd compiled in).

Compiled, the core reads CLOCK_MONOTONIC in C; run as source it calls
time.monotonic. Either way the values must be time.monotonic's: the core
compares them with times taken by the event loop and by plain Python code.
"""

from __future__ import annotations

import asyncio
import time

from proxy import clock, compiled
from proxy.config import parse_config
from proxy.downstream import Downstream
from proxy.server import ProxyServer


class Transport:
    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 40000) if name == "peername" else default

    def write(self, data):
        pass

    def is_closing(self):
        return False

    def close(self):
        pass


def test_source_clock_is_time_monotonic():
    assert clock.monotonic is time.monotonic


def test_core_reads_the_same_clock_as_time_monotonic():
    """A client connection stamps its creation with the core's clock: the stamp
    lies between two time.monotonic() reads around it (compiled: the C clock)."""
    loop = asyncio.new_event_loop()
    try:
        cfg = parse_config({
            "listeners": [{"address": "127.0.0.1:0"}],
            "admin": {"enabled": False},
            "access_log": {"enabled": False},
            "upstreams": {"app": {"servers": ["127.0.0.1:9"]}},
            "routes": [{"upstream": "app"}],
        }, "<clock>")
        server = ProxyServer(cfg, loop)
        stamps = []
        for _ in range(200):
            down = Downstream(server, "main")
            before = time.monotonic()
            down.connection_made(Transport())
            after = time.monotonic()
            stamps.append(down.created)
            assert before <= down.created <= after
            down.connection_lost(None)
        assert stamps == sorted(stamps)
        assert compiled.STATE.get("proxy.downstream") in ("compiled", "source")
    finally:
        loop.close()
