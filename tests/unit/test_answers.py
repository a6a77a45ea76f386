"""proxy.answers.error_response: complete, valid JSON error responses."""

from __future__ import annotations

import json

import h11
import pytest

from proxy.answers import error_response
from proxy.codec import reason_phrase


def parse(raw, method=b"GET"):
    """(response event, body, connection state after the message) via h11."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target=b"/", headers=[(b"Host", b"h")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    resp = conn.next_event()
    assert type(resp) is h11.Response, resp
    body = b""
    while True:
        ev = conn.next_event()
        if type(ev) is h11.Data:
            body += ev.data
        elif type(ev) is h11.EndOfMessage:
            break
        else:  # pragma: no cover - a truncated response
            raise AssertionError(ev)
    assert conn.trailing_data[0] == b"", "bytes after the declared body"
    return resp, body, conn.their_state


def header(resp, name):
    return [v for n, v in resp.headers if n == name]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "bad_request"),
        (404, "no_route"),
        (408, "request_timeout"),
        (413, "body_too_large"),
        (431, "header_too_large"),
        (500, "internal_error"),
        (501, "unsupported"),
        (502, "upstream_unavailable"),
        (503, "overloaded"),
        (504, "upstream_timeout"),
        (505, "http_version_not_supported"),
        (599, "custom"),
    ],
)
@pytest.mark.parametrize("keep", [True, False], ids=["keep", "close"])
def test_shape(status, code, keep):
    rid = b"0123456789abcdef"
    raw = error_response(status, code, rid, keep)
    assert isinstance(raw, bytes)
    resp, body, state = parse(raw)
    assert resp.status_code == status
    assert resp.reason == reason_phrase(status)
    assert resp.http_version == b"1.1"
    assert json.loads(body) == {"error": code, "request_id": rid.decode()}
    assert header(resp, b"content-length") == [b"%d" % len(body)]
    assert header(resp, b"content-type") == [b"application/json"]
    assert header(resp, b"x-request-id") == [rid]
    assert header(resp, b"retry-after") == []
    if keep:
        assert header(resp, b"connection") == []
        assert state is h11.DONE
    else:
        assert header(resp, b"connection") == [b"close"]
        assert state is h11.MUST_CLOSE


def test_body_exactly_content_length():
    raw = error_response(404, "no_route", b"rid", True)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Content-Length: %d\r\n" % len(body) in head + b"\r\n"
    assert json.loads(body) == {"error": "no_route", "request_id": "rid"}


@pytest.mark.parametrize(("keep", "http10"), [(True, False), (True, True), (False, False), (False, True)])
def test_connection_header(keep, http10):
    resp, _, state = parse(error_response(400, "bad_request", b"r", keep, http10))
    conn = [v.lower() for v in header(resp, b"connection")]
    if not keep:
        assert conn == [b"close"]
        assert state is h11.MUST_CLOSE
    elif http10:
        assert conn == [b"keep-alive"]
    else:
        assert conn == []


@pytest.mark.parametrize("retry_after", [1, 5, 30, 3600])
def test_retry_after_present_when_given(retry_after):
    resp, body, _ = parse(error_response(503, "overloaded", b"r-1", False, retry_after=retry_after))
    assert header(resp, b"retry-after") == [b"%d" % retry_after]
    assert json.loads(body) == {"error": "overloaded", "request_id": "r-1"}


def test_retry_after_absent_when_zero():
    resp, _, _ = parse(error_response(503, "overloaded", b"r", True, retry_after=0))
    assert header(resp, b"retry-after") == []


@pytest.mark.parametrize(
    "rid",
    [
        b"",
        b"abc",
        b"7b3f1c2e-9a4d-4e8b-8f6a-1c2d3e4f5a6b",
        b'quote"back\\slash',
        b"with space/and;semi=colon",
        b"x" * 200,
    ],
    ids=["empty", "short", "uuid", "json-escapes", "punctuation", "long"],
)
def test_request_id_round_trips(rid):
    resp, body, _ = parse(error_response(502, "bad_gateway", rid, True))
    assert json.loads(body)["request_id"] == rid.decode()
    assert header(resp, b"x-request-id") == [rid]
    assert header(resp, b"content-length") == [b"%d" % len(body)]


def test_code_json_escaped():
    code = 'odd "code" \\ with\ttab'
    resp, body, _ = parse(error_response(400, code, b"r", True))
    assert json.loads(body) == {"error": code, "request_id": "r"}
    assert header(resp, b"content-length") == [b"%d" % len(body)]


def test_head_request_gets_no_body_but_same_head():
    """Parsed as the answer to HEAD, the head is still valid (body ignored)."""
    raw = error_response(404, "no_route", b"r", False)
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=b"HEAD", target=b"/", headers=[(b"Host", b"h")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    resp = conn.next_event()
    assert type(resp) is h11.Response
    assert resp.status_code == 404
