"""Fixtures for integration tests: every test runs under both event loops."""

from __future__ import annotations

import contextlib
import importlib.util

import pytest

from support import ProxyProcess, Upstream, base_config


def _native_built() -> bool:
    try:
        return importlib.util.find_spec("proxy.codec.native") is not None
    except ImportError:
        return False


# (event loop, codec) combinations every integration test runs under: both
# loops on the default codec, and the pure codec on uvloop when the native
# one is built (so both codecs carry the whole proxy in every run)
RUNTIMES = [("uvloop", "default"), ("asyncio", "default")]
if _native_built():
    RUNTIMES.append(("uvloop", "pure"))


@pytest.fixture(params=RUNTIMES, ids=lambda r: r[0] if r[1] == "default" else f"{r[0]}-{r[1]}")
def runtime(request):
    return request.param


@pytest.fixture
def loop_kind(runtime):
    return runtime[0]


@pytest.fixture
def codec_env(runtime):
    return {"EDGEPROXY_PURE": "1"} if runtime[1] == "pure" else {}


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
def proxy_factory(tmp_path, loop_kind, codec_env):
    started = []

    def make(config: str | None = None, *, upstreams=None, routes=None, extra="", cluster_extra="",
             env=None, access_log=True):
        if config is None:
            config = base_config(upstreams, routes, extra=extra, access_log=access_log, tmp=tmp_path,
                                 cluster_extra=cluster_extra)
        p = ProxyProcess(tmp_path, config, loop=loop_kind, env={**codec_env, **(env or {})})
        started.append(p)
        return p.start()

    yield make
    for p in started:
        with contextlib.suppress(Exception):
            p.stop(5)
        p.kill()
