"""Codec fixtures: every test runs against every implementation that imports.

``pure`` (h11 + plain Python) always exists. ``native`` (Cython) is added
when it can be imported; when it cannot, it is simply not a parameter (no
per-case skips are generated).
"""

from __future__ import annotations

import importlib

import pytest


def _available():
    mods = [importlib.import_module("proxy.codec.pure")]
    try:
        mods.append(importlib.import_module("proxy.codec.native"))
    except ImportError:
        pass
    return mods


IMPLS = _available()


@pytest.fixture(scope="session", params=IMPLS, ids=[m.NAME for m in IMPLS])
def impl(request):
    """One codec implementation module (``pure`` or ``native``)."""
    return request.param


@pytest.fixture(scope="session")
def impls():
    """All importable implementations (for cross-checks; ``pure`` first)."""
    return list(IMPLS)
