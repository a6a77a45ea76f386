"""Fault-injection kit: hostile clients and broken upstreams.

``upstreams`` holds raw asyncio handlers ``async def handler(reader, writer)``
(usable as ``tests/support.Upstream(raw=...)`` or behind any
``asyncio.start_server``); ``clients`` holds blocking hostile-client
functions that return what the client saw. Neither imports from
``tests/support.py`` (only the standard library and h11), so the kit is
importable from the test suite and from ``bench/`` alike::

    from tests.faults import upstreams, clients   # repo root on sys.path
    from faults import upstreams, clients         # tests/ on sys.path

See README.md here for what each fault does and what the proxy answers.
"""
