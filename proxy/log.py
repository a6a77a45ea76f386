"""Process events (start, listen, shutdown, warnings) as JSON lines on stderr.

These are rare, so they are written synchronously; per-request lines go
through the access log, which never blocks the loop.
"""

from __future__ import annotations

import sys
import time

import orjson

# Fields added to every event of this process (a worker adds its number).
CONTEXT: dict = {}


def event(name: str, level: str = "info", **fields) -> None:
    rec = {"time": round(time.time(), 3), "level": level, "event": name}
    if CONTEXT:
        rec.update(CONTEXT)
    rec.update(fields)
    try:
        sys.stderr.buffer.write(orjson.dumps(rec, default=str) + b"\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def warn(name: str, **fields) -> None:
    event(name, "warning", **fields)
