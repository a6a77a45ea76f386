"""One event-loop timer for many deadlines that share a timeout.

Theory of operation
-------------------
When every entry of a queue has the same timeout, the order entries are
added in is the order their deadlines fall in, so an insertion-ordered dict
is a deadline queue: ``add`` appends (the deadline is ``now + timeout``),
``remove`` is a dict deletion, and one event-loop timer, armed for the
oldest deadline, serves them all. When it fires, every entry that is due
leaves the queue and is told (``on_deadline()``), and the timer re-arms for
the oldest left. A removal leaves the timer as it is: it fires, finds the
next deadline later, and re-arms for it.

A connection that would otherwise arm an event-loop timer at accept and
cancel it a moment later (every TLS handshake, every new client connection
waiting for its first request head) costs a dict insertion and deletion
here, instead of a timer handle, a heap insertion and a cancellation.

Entries are held strongly until they are removed or due: an owner removes
itself when it ends (a connection when it closes). This module is compiled
with the core.
"""

from __future__ import annotations

from . import clock


class DeadlineQueue:
    """Entries (any object with ``on_deadline()``), oldest first, under one timer."""

    def __init__(self, loop, timeout: float):
        self.loop = loop
        self.timeout = timeout
        self.pending = {}  # entry -> deadline (monotonic seconds), oldest first
        self.timer = None

    def add(self, entry, now) -> None:
        """``entry.on_deadline()`` at ``now + timeout`` (monotonic), unless removed before. An entry
        is added once (a dict keeps a key where it first stood, which would break the order)."""
        self.pending[entry] = now + self.timeout
        if self.timer is None:
            self.timer = self.loop.call_later(self.timeout, self._due)

    def remove(self, entry) -> None:
        self.pending.pop(entry, None)

    def _due(self) -> None:
        self.timer = None
        now = clock.monotonic()
        late = []
        for entry, deadline in self.pending.items():
            if deadline > now:
                break
            late.append(entry)
        for entry in late:
            self.pending.pop(entry, None)
            entry.on_deadline()
        for deadline in self.pending.values():  # the oldest left
            self.timer = self.loop.call_later(max(deadline - now, 0.001), self._due)
            break

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
