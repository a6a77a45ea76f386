"""Merging the Prometheus text of several worker processes into one exposition.

Theory of operation
-------------------
Under the supervisor each worker keeps its own counters (no shared memory,
no lock on the request path); the supervisor's ``/metrics`` fetches every
worker's text at scrape time and merges it with its own:

* counters and histograms (every ``_bucket``, ``_sum``, ``_count``) are
  summed per label set: requests, failures and latencies over all workers;
* gauges are summed too where they count things (open connections, pool
  sizes, accept queue lengths: each worker has its own listening socket);
* ``PER_WORKER`` gauges describe one worker's private state (a circuit
  breaker's state, an adaptive idle timeout): they keep a ``worker`` label
  instead of being added up;
* ``HOST_WIDE`` series are the same reading in every process (kernel
  counters, the build): the largest is kept, never a sum.

Families keep their HELP and TYPE lines; a family no process has samples
for is still listed, so the exposition is the same set of names with one
worker or many.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["HOST_WIDE", "PER_WORKER", "merge"]

PER_WORKER = frozenset({"circuit_breaker_state", "http_client_conn_pool_idle_timeout_seconds"})
HOST_WIDE = frozenset({"edgeproxy_build_info", "http_server_listen_overflows_total", "http_server_listen_drops_total",
                       "http_server_accept_queue_max"})
_TYPES_NAMED_WITH_TOTAL = {"counter"}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value)}.0"
    return repr(float(value))


def merge(texts: list[tuple[str | None, str]]) -> bytes:
    """``texts``: [(worker label or None for the supervisor, exposition text)] -> merged exposition."""
    order: list[str] = []
    meta: dict[str, tuple[str, str]] = {}
    values: dict[str, dict[tuple, float]] = {}
    for worker, text in texts:
        for fam in text_string_to_metric_families(text):
            name = fam.name + ("_total" if fam.type in _TYPES_NAMED_WITH_TOTAL and not fam.name.endswith("_total")
                               else "")
            if name not in meta:
                meta[name] = (fam.documentation, fam.type)
                order.append(name)
                values[name] = {}
            bucket = values[name]
            for s in fam.samples:
                if s.name.endswith("_created"):
                    continue
                labels = dict(s.labels)
                if name in PER_WORKER and worker is not None:
                    labels["worker"] = worker
                key = (s.name, tuple(sorted(labels.items())))
                if name in HOST_WIDE:
                    bucket[key] = max(bucket.get(key, s.value), s.value)
                else:
                    bucket[key] = bucket.get(key, 0.0) + s.value
    out: list[str] = []
    for name in order:
        doc, kind = meta[name]
        out.append(f"# HELP {name} {_escape_help(doc)}")
        out.append(f"# TYPE {name} {kind}")
        for (sample, labels), v in values[name].items():
            if labels:
                lab = ",".join(f'{k}="{_escape(str(val))}"' for k, val in labels)
                out.append(f"{sample}{{{lab}}} {_fmt(v)}")
            else:
                out.append(f"{sample} {_fmt(v)}")
    return ("\n".join(out) + "\n").encode()
