import errno
import io
import itertools
import sys
import threading
import time

import orjson
import pytest

from proxy.accesslog import AccessLog, NullAccessLog, format_time

WAIT = 5.0  # upper bound for any wait on the writer thread

FIELDS = (
    "time", "client", "method", "path", "status", "bytes_in", "bytes_out", "route",
    "upstream", "server", "connect_time", "ttfb", "duration", "request_id", "trace_id",
    "outcome",
)


def make_record(i=0):
    return {
        "time": format_time(1714566896.789 + i),
        "client": "192.0.2.1:51000",
        "method": "GET",
        "path": f"/items/{i}",
        "status": 200,
        "bytes_in": 0,
        "bytes_out": 512,
        "route": "api",
        "upstream": "backend",
        "server": "10.0.0.1:8080",
        "connect_time": None,
        "ttfb": 0.0123,
        "duration": 0.0456,
        "request_id": f"req-{i}",
        "trace_id": None,
        "outcome": "ok",
    }


class Drops:
    """on_drop callback recording amounts and the calling thread."""

    def __init__(self):
        self.calls = []
        self.threads = set()

    def __call__(self, n):
        self.calls.append(n)
        self.threads.add(threading.get_ident())

    @property
    def total(self):
        return sum(self.calls)


class GatedSink:
    """Binary sink whose write() blocks until ``release`` is set."""

    def __init__(self, fail_first=0):
        self.release = threading.Event()
        self.cond = threading.Condition()
        self.writes = []       # successful writes, as bytes
        self.write_calls = 0
        self.fail_first = fail_first
        self.closed = False

    def write(self, data):
        with self.cond:
            self.write_calls += 1
            call = self.write_calls
            self.cond.notify_all()
        assert self.release.wait(WAIT), "test never released the sink"
        if call <= self.fail_first:
            raise OSError(errno.EPIPE, "Broken pipe")
        with self.cond:
            self.writes.append(bytes(data))
            self.cond.notify_all()
        return len(data)

    def flush(self):
        pass

    def close(self):
        self.closed = True

    def wait_for(self, predicate):
        with self.cond:
            assert self.cond.wait_for(predicate, timeout=WAIT), "writer did not get there in time"

    def lines(self):
        with self.cond:
            return b"".join(self.writes).splitlines()


def test_format_time():
    assert format_time(1714566896.789) == "2024-05-01T12:34:56.789Z"
    assert format_time(0) == "1970-01-01T00:00:00.000Z"


def test_lines_are_json_with_fields(tmp_path):
    path = tmp_path / "access.log"
    path.write_bytes(b'{"existing":true}\n')
    drops = Drops()
    log = AccessLog(str(path), buffer_lines=100, sample_rate=1.0, on_drop=drops)
    log.start()
    for i in range(10):
        log.log(make_record(i))
    log.close()

    lines = path.read_bytes().splitlines()
    assert orjson.loads(lines[0]) == {"existing": True}  # opened for append
    records = [orjson.loads(line) for line in lines[1:]]
    assert len(records) == 10
    for i, rec in enumerate(records):
        assert set(FIELDS) <= set(rec)
        assert rec == make_record(i)
    assert records[0]["time"] == "2024-05-01T12:34:56.789Z"
    assert log.dropped == 0 and drops.calls == []


def test_non_json_values_are_stringified():
    sink = GatedSink()
    sink.release.set()
    log = AccessLog("unused", buffer_lines=10, sample_rate=1.0, on_drop=Drops(), sink=sink)
    log.start()
    log.log({"path": "/", "extra": frozenset({"a"})})
    log.close()
    (line,) = sink.lines()
    assert orjson.loads(line)["extra"] == "frozenset({'a'})"


def test_unencodable_record_counts_as_drop_without_raising():
    sink = GatedSink()
    sink.release.set()
    drops = Drops()
    log = AccessLog("unused", buffer_lines=10, sample_rate=1.0, on_drop=drops, sink=sink)
    log.start()
    log.log({1: "non-string key"})
    log.log(make_record())
    log.close()
    assert len(sink.lines()) == 1
    assert log.dropped == 1 and drops.total == 1


@pytest.mark.parametrize("rate,expected", [(0.0, 0), (1.0, 20)])
def test_sampling_extremes(rate, expected):
    sink = GatedSink()
    sink.release.set()
    # rng yields both boundary values; 0.0 must still never log, 1.0 always.
    rng = itertools.cycle([0.0, 0.5, 0.9999999]).__next__
    log = AccessLog("unused", buffer_lines=100, sample_rate=rate, on_drop=Drops(), rng=rng, sink=sink)
    log.start()
    for i in range(20):
        log.log(make_record(i))
    log.close()
    assert len(sink.lines()) == expected


def test_sampling_uses_rng():
    sink = GatedSink()
    sink.release.set()
    rng = iter([0.1, 0.9, 0.29, 0.3, 0.0]).__next__
    log = AccessLog("unused", buffer_lines=100, sample_rate=0.3, on_drop=Drops(), rng=rng, sink=sink)
    log.start()
    for i in range(5):
        log.log(make_record(i))
    log.close()
    assert [orjson.loads(l)["request_id"] for l in sink.lines()] == ["req-0", "req-2", "req-4"]


def test_blocked_sink_never_blocks_log_and_drops_overflow():
    sink = GatedSink()
    drops = Drops()
    log = AccessLog("unused", buffer_lines=4, sample_rate=1.0, on_drop=drops, sink=sink)
    log.start()

    log.log(make_record(0))
    sink.wait_for(lambda: sink.write_calls == 1)  # writer holds line 0, stuck in write()

    t0 = time.monotonic()
    for i in range(1, 11):
        log.log(make_record(i))
    elapsed = time.monotonic() - t0
    assert elapsed < WAIT / 2  # did not wait for the sink (which blocks up to WAIT)

    # Lines 1-4 fill the queue; 5-10 are dropped on the calling thread.
    assert drops.calls == [1] * 6
    assert drops.threads == {threading.get_ident()}
    assert log.dropped == 6

    sink.release.set()
    log.close(timeout=WAIT)
    ids = [orjson.loads(l)["request_id"] for l in sink.lines()]
    assert ids == [f"req-{i}" for i in range(5)]
    assert log.dropped == 6 and drops.total == 6


def test_write_errors_drop_lines_and_report_on_loop_thread():
    sink = GatedSink(fail_first=1)
    sink.release.set()
    drops = Drops()
    log = AccessLog("unused", buffer_lines=100, sample_rate=1.0, on_drop=drops, sink=sink)
    log.start()

    log.log(make_record(0))
    sink.wait_for(lambda: sink.write_calls >= 1)  # this write fails with EPIPE
    log.log(make_record(1))
    sink.wait_for(lambda: len(sink.writes) == 1)  # writer survived and wrote line 1
    # The writer counted the failed line before writing line 1; the next log()
    # reports it via on_drop on this thread.
    assert log.dropped == 1
    log.log(make_record(2))
    assert drops.total == 1
    assert drops.threads == {threading.get_ident()}

    log.close(timeout=WAIT)
    ids = [orjson.loads(l)["request_id"] for l in sink.lines()]
    assert ids == ["req-1", "req-2"]
    assert log.dropped == 1 and drops.total == 1


def test_persistent_write_errors_counted_and_reported_at_close():
    sink = GatedSink(fail_first=10**9)
    sink.release.set()
    drops = Drops()
    log = AccessLog("unused", buffer_lines=1000, sample_rate=1.0, on_drop=drops, sink=sink)
    log.start()
    for i in range(50):
        log.log(make_record(i))
    log.close(timeout=WAIT)
    assert sink.lines() == []
    assert log.dropped == 50
    assert drops.total == 50
    assert drops.threads == {threading.get_ident()}


def test_writer_wakes_for_every_burst():
    # Without close() to nudge it, the writer must still pick up each burst:
    # a lost wake-up would leave lines queued and the wait below would fail.
    sink = GatedSink()
    sink.release.set()
    log = AccessLog("unused", buffer_lines=1000, sample_rate=1.0, on_drop=Drops(), sink=sink, batch_lines=3)
    log.start()
    expected = 0
    for burst in range(300):
        for _ in range(burst % 7 + 1):
            log.log(make_record(expected))
            expected += 1
        sink.wait_for(lambda: sum(w.count(b"\n") for w in sink.writes) == expected)
    log.close(timeout=WAIT)
    assert [orjson.loads(l)["request_id"] for l in sink.lines()] == [f"req-{i}" for i in range(expected)]
    assert log.dropped == 0


def test_close_flushes_everything_queued(tmp_path):
    path = tmp_path / "access.log"
    log = AccessLog(str(path), buffer_lines=10_000, sample_rate=1.0, on_drop=Drops(), batch_lines=64)
    log.start()
    for i in range(2000):
        log.log(make_record(i))
    log.close(timeout=WAIT)
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(l)["request_id"] for l in lines] == [f"req-{i}" for i in range(2000)]
    assert log._sink.closed  # file we opened is closed


def test_close_is_bounded_when_sink_is_stuck():
    sink = GatedSink()
    drops = Drops()
    log = AccessLog("unused", buffer_lines=10, sample_rate=1.0, on_drop=drops, sink=sink)
    log.start()
    log.log(make_record(0))
    sink.wait_for(lambda: sink.write_calls == 1)
    for i in range(1, 4):
        log.log(make_record(i))

    t0 = time.monotonic()
    log.close(timeout=0.05)
    assert time.monotonic() - t0 < WAIT / 2
    # Lines 1-3 were still queued: counted as dropped; line 0 is with the writer.
    assert drops.total == 3 and log.dropped == 3
    log.log(make_record(4))  # after close: dropped, never raises
    assert drops.total == 4
    assert not sink.closed  # a sink we were given is never closed

    sink.release.set()
    log._thread.join(WAIT)
    assert not log._thread.is_alive()
    assert [orjson.loads(l)["request_id"] for l in sink.lines()] == ["req-0"]


def test_stdout_resolved_at_start(monkeypatch):
    log = AccessLog("-", buffer_lines=10, sample_rate=1.0, on_drop=Drops())
    raw = io.BytesIO()
    fake = io.TextIOWrapper(raw, encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", fake)  # replaced after construction
    log.start()
    log.log(make_record(7))
    log.close(timeout=WAIT)
    assert not raw.closed  # stdout is not ours to close
    assert orjson.loads(raw.getvalue())["request_id"] == "req-7"


def test_log_before_start_is_written_after_start():
    sink = GatedSink()
    sink.release.set()
    log = AccessLog("unused", buffer_lines=10, sample_rate=1.0, on_drop=Drops(), sink=sink)
    log.log(make_record(0))
    log.start()
    log.close(timeout=WAIT)
    assert len(sink.lines()) == 1


def test_invalid_arguments():
    with pytest.raises(ValueError):
        AccessLog("-", buffer_lines=0, sample_rate=1.0, on_drop=Drops())
    with pytest.raises(ValueError):
        AccessLog("-", buffer_lines=1, sample_rate=1.5, on_drop=Drops())


def test_null_access_log_matches_interface():
    null = NullAccessLog("-", buffer_lines=1, sample_rate=1.0, on_drop=Drops())
    real = AccessLog("-", buffer_lines=1, sample_rate=1.0, on_drop=Drops())
    public = lambda o: {n for n in dir(o) if not n.startswith("_")}
    assert public(real) <= public(null)
    null.start()
    null.log(make_record())
    null.close()
    assert null.dropped == 0
