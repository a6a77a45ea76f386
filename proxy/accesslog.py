"""Access log: one JSON line per request, written off the event loop.

Theory of operation
-------------------
``AccessLog.log()`` runs on the event-loop thread for every finished request
and never performs I/O.  It applies sampling, serialises the record with
orjson and appends the line to a ``collections.deque``.  A single daemon
writer thread drains that deque in batches (up to ``batch_lines`` lines joined
into one ``write``), flushes, and goes back to waiting.

Bounded memory.  The deque holds at most ``buffer_lines`` lines.  When the
writer falls behind (slow disk, blocked pipe) further lines are dropped at
``log()`` time and ``on_drop(1)`` is called: the proxy keeps serving and the
loss shows up in ``accesslog_dropped_total``.

Cheap wake-up.  The writer sleeps on a ``threading.Event``.  ``log()`` sets it
only when the deque was empty before the append; the writer clears the event
*before* it drains, so a line appended after the writer's last emptiness
check always finds an empty deque and sets the event again.  While the writer
is busy, appends cost no synchronisation beyond the deque's own.

Write failures.  A failing write (EPIPE on stdout, disk full, ...) drops the
lines of that batch and the writer carries on with the next one; nothing is
raised into the loop.  ``on_drop`` must only ever run on the loop thread, so
the writer never calls it: it increments its own counter (written only by
the writer thread), and ``log()`` compares it with the amount already
reported and passes the difference to ``on_drop``.  ``close()`` does the same
one last time.  Each counter has a single writing thread, so no lock is
needed.  ``dropped`` is the total of both kinds of drops.

Serialisation.  Values orjson cannot encode natively are converted with
``str()``.  A record that still cannot be encoded (e.g. a non-string key) is
counted as a dropped line rather than raising into request handling.

Lifecycle.  ``start()`` resolves the sink (``"-"`` means ``sys.stdout.buffer``,
looked up at that moment so test harnesses that replace ``sys.stdout`` are
honoured; any other path is opened for appending, unbuffered, since lines
are already batched) and starts the writer.  ``close(timeout)`` stops
accepting lines, lets the writer flush what is queued, and waits at most
``timeout`` seconds; lines still queued when the time is up are counted as
dropped.  A file the log opened itself is closed by the writer thread on its
way out, so it is never closed under a write in progress.  ``log()`` and
``close()`` are meant to be called from the same (event-loop) thread.

Record fields
-------------
The caller builds the record dict; the proxy uses these keys:

``time``
    request start, RFC 3339 UTC with milliseconds (``2024-05-01T12:34:56.789Z``;
    see ``format_time``)
``client``
    downstream peer address (``ip:port``)
``method``, ``path``
    request method and request target as received
``status``
    status code sent downstream (int)
``bytes_in``, ``bytes_out``
    request and response body bytes (int)
``route``
    name of the route that matched (null if none)
``upstream``, ``server``
    upstream name and the server (``host:port``) that served the request
    (null when the request never reached an upstream)
``connect_time``, ``ttfb``, ``duration``
    seconds as floats: upstream connection set-up (null when a pooled
    connection was reused or no upstream was involved), time to the first
    response byte from upstream, and total time; null when not applicable
``request_id``, ``trace_id``
    the request's id and the propagated trace id (null when absent)
``outcome``
    how the request ended (e.g. ``ok``, ``client_abort``, ``upstream_timeout``)
``tls_sni``, ``tls_version``, ``tls_cipher``, ``tls_resumed``, ``tls_handshake``, ``client_subject``
    only on TLS listeners: the SNI the client sent (null if none), protocol
    version, cipher suite, whether the session was resumed, the handshake's
    total seconds (accept to ready), and the verified client certificate's
    subject (null without one)

``NullAccessLog`` has the same interface and does nothing.
"""

from __future__ import annotations

import collections
import random
import sys
import threading
import time
from typing import IO, Callable

import orjson

__all__ = ["AccessLog", "NullAccessLog", "add_tls_fields", "format_time", "request_record"]

_DUMPS_OPTS = orjson.OPT_APPEND_NEWLINE


def request_record(down, head, status: int, outcome: str, rid: bytes, trace: bytes, duration: float, *,
                   route=None, upstream=None, server=None, bytes_in: int = 0, bytes_out: int = 0,
                   connect_time=None, ttfb=None) -> dict:
    """The access-log record of one request on client connection ``down``
    (``head`` None when the request head itself was refused); ``time`` is
    when the request started."""
    record = {
        "time": format_time(time.time() - duration),
        "client": down.client_addr,
        "method": head.method.decode("latin-1") if head is not None else None,
        "path": head.target.decode("latin-1") if head is not None else None,
        "status": status,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "route": route,
        "upstream": upstream,
        "server": server,
        "connect_time": connect_time,
        "ttfb": ttfb,
        "duration": duration,
        "request_id": rid.decode("latin-1"),
        "trace_id": trace.decode("latin-1") or None,
        "outcome": outcome,
    }
    if down.tls is not None:
        add_tls_fields(record, down.tls)
    return record


def add_tls_fields(record: dict, tls) -> None:
    """The TLS connection's fields (a ``tls.TLSInfo``) added to a record."""
    record["tls_sni"] = tls.sni or None
    record["tls_version"] = tls.version
    record["tls_cipher"] = tls.cipher
    record["tls_resumed"] = tls.resumed
    record["tls_handshake"] = tls.handshake_time
    record["client_subject"] = tls.subject or None


def format_time(t: float) -> str:
    """Format a Unix timestamp as RFC 3339 UTC with milliseconds."""
    ms = int(t * 1000)
    sec, ms = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{ms:03d}Z"


class AccessLog:
    """Bounded, non-blocking JSON-lines access log with a writer thread."""

    def __init__(
        self,
        path: str,
        *,
        buffer_lines: int,
        sample_rate: float,
        on_drop: Callable[[int], None],
        rng: Callable[[], float] = random.random,
        sink: IO[bytes] | None = None,
        batch_lines: int = 256,
    ) -> None:
        """``sink``: an already-open binary file object to write to instead of
        ``path`` (used by tests); it is flushed but never closed by the log."""
        if buffer_lines < 1:
            raise ValueError("buffer_lines must be >= 1")
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError("sample_rate must be within [0.0, 1.0]")
        if batch_lines < 1:
            raise ValueError("batch_lines must be >= 1")
        self.path = path
        self._cap = buffer_lines
        self._sample_rate = float(sample_rate)
        self._always = self._sample_rate >= 1.0
        self._on_drop = on_drop
        self._rng = rng
        self._sink = sink
        self._owns_sink = False
        self._batch = batch_lines
        self._q: collections.deque[bytes] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None
        # Drop counters; each is written by exactly one thread.
        self._loop_drops = 0        # loop thread: queue full, unencodable, close
        self._writer_drops = 0      # writer thread: failed writes
        self._writer_reported = 0   # loop thread: writer drops passed to on_drop

    @property
    def dropped(self) -> int:
        """Total lines dropped so far (queue full, unencodable, write errors)."""
        return self._loop_drops + self._writer_drops

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        """Open the sink and start the writer thread (idempotent)."""
        if self._thread is not None or self._closed:
            return
        if self._sink is None:
            if self.path == "-":
                self._sink = sys.stdout.buffer
            else:
                self._sink = open(self.path, "ab", buffering=0)
                self._owns_sink = True
        self._thread = threading.Thread(target=self._run, name="edgeproxy-accesslog", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        """Flush queued lines (waiting at most ``timeout`` s), stop the writer."""
        if self._closed:
            return
        self._closed = True
        self._cap = 0  # every later log() call drops
        thread = self._thread
        if thread is not None:
            self._stopping = True
            self._wake.set()
            thread.join(timeout)
        elif self._owns_sink and self._sink is not None:
            self._sink.close()
        # Whatever is still queued will not be written by us.
        left = 0
        q = self._q
        while True:
            try:
                q.popleft()
            except IndexError:
                break
            left += 1
        if left:
            self._loop_drops += left
            self._on_drop(left)
        self._report_writer_drops()

    # -- hot path (event-loop thread) -------------------------------------

    def log(self, record: dict) -> None:
        if not self._always and not self._rng() < self._sample_rate:
            return
        if self._writer_drops != self._writer_reported:
            self._report_writer_drops()
        q = self._q
        n = len(q)
        if n >= self._cap:
            self._loop_drops += 1
            self._on_drop(1)
            return
        try:
            line = orjson.dumps(record, default=str, option=_DUMPS_OPTS)
        except TypeError:
            self._loop_drops += 1
            self._on_drop(1)
            return
        q.append(line)
        if n == 0:
            self._wake.set()

    def _report_writer_drops(self) -> None:
        seen = self._writer_drops
        delta = seen - self._writer_reported
        if delta:
            self._writer_reported = seen
            self._on_drop(delta)

    # -- writer thread ----------------------------------------------------

    def _run(self) -> None:
        wake = self._wake
        try:
            while True:
                wake.wait()
                wake.clear()
                self._drain()
                if self._stopping:
                    # close() sets _stopping after its last append, so this
                    # final pass sees every line that will ever be queued.
                    self._drain()
                    return
        finally:
            sink = self._sink
            try:
                if self._owns_sink:
                    sink.close()
                else:
                    sink.flush()
            except Exception:
                pass

    def _drain(self) -> None:
        q = self._q
        popleft = q.popleft
        limit = self._batch
        while q:
            batch = []
            try:
                for _ in range(limit):
                    batch.append(popleft())
            except IndexError:
                pass
            if batch:
                self._write(batch)

    def _write(self, batch: list[bytes]) -> None:
        data = b"".join(batch)
        sink = self._sink
        try:
            n = sink.write(data)
            if n is not None and n < len(data):
                # Short write (raw file): finish the batch.
                view = memoryview(data)[n:]
                while view:
                    n = sink.write(view)
                    if n is None:
                        break
                    if n <= 0:
                        raise OSError("access log sink accepted no bytes")
                    view = view[n:]
            flush = getattr(sink, "flush", None)
            if flush is not None:
                flush()
        except Exception:
            self._writer_drops += len(batch)


class NullAccessLog:
    """Same interface as ``AccessLog``; logs nothing."""

    dropped = 0

    def __init__(self, path: str = "", **kwargs) -> None:
        self.path = path

    def start(self) -> None:
        pass

    def log(self, record: dict) -> None:
        pass

    def close(self, timeout: float = 2.0) -> None:
        pass
