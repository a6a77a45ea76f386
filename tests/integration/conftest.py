"""Fixtures for integration tests: every test runs under both event loops."""

from __future__ import annotations

import contextlib

import pytest

from support import ProxyProcess, Upstream, base_config


@pytest.fixture(params=["uvloop", "asyncio"])
def loop_kind(request):
    return request.param


@pytest.fixture
def upstream_factory():
    started = []

    def make(handler=None, raw=None):
        kw = {}
        if handler is not None:
            kw["handler"] = handler
        up = Upstream(raw=raw, **kw).__enter__()
        started.append(up)
        return up

    yield make
    for up in started:
        with contextlib.suppress(Exception):
            up.close()


@pytest.fixture
def proxy_factory(tmp_path, loop_kind):
    started = []

    def make(config: str | None = None, *, upstreams=None, routes=None, extra="", cluster_extra="",
             env=None, access_log=True):
        if config is None:
            config = base_config(upstreams, routes, extra=extra, access_log=access_log, tmp=tmp_path,
                                 cluster_extra=cluster_extra)
        p = ProxyProcess(tmp_path, config, loop=loop_kind, env=env)
        started.append(p)
        return p.start()

    yield make
    for p in started:
        with contextlib.suppress(Exception):
            p.stop(5)
        p.kill()
