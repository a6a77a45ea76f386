"""Heads that arrive in pieces, or several to a segment, through the real core.

The client connection parses a request head where it arrives when nothing
is buffered, and the exchange parses a response head likewise; only what
follows a whole head is copied into a buffer. These drive the compiled (or
source) Downstream/Exchange/UpstreamConn with in-memory transports
(bench/hotpath.py's harness), so every split point is exact: the bytes
forwarded each way must not depend on where the segments end.
"""

from __future__ import annotations

import asyncio

import pytest

from bench.hotpath import REQUEST, RESPONSE, build
from proxy.server import new_event_loop


@pytest.fixture
def proxy():
    loop = new_event_loop("uvloop")
    try:
        server, client, up = build(loop)
        yield client, up
    finally:
        loop.close()


def sent_upstream(up) -> bytes:
    out = b"".join(up.transport.out)
    up.transport.out.clear()
    return out


def answered(client) -> bytes:
    out = b"".join(client.down.transport.out)
    client.down.transport.out.clear()
    return out


def feed(send, data: bytes, cuts) -> None:
    last = 0
    for cut in list(cuts) + [len(data)]:
        if cut > last:
            send(data[last:cut])
            last = cut


def one_exchange(client, up, request_cuts=(), response_cuts=()) -> tuple[bytes, bytes]:
    feed(client.send, REQUEST, request_cuts)
    forwarded = sent_upstream(up)
    feed(up.data_received, RESPONSE, response_cuts)
    return forwarded, answered(client)


def test_whole_heads_reference(proxy):
    client, up = proxy
    forwarded, answer = one_exchange(client, up)
    assert forwarded.startswith(b"GET /hello HTTP/1.1\r\nHost: bench.local\r\n") and forwarded.endswith(b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nok\n")


def test_every_split_of_the_request_and_of_the_response(proxy):
    client, up = proxy
    ref_fwd, ref_answer = one_exchange(client, up)

    def strip_id(b: bytes) -> bytes:  # the request id differs per request
        return b"\r\n".join(x for x in b.split(b"\r\n") if not x.lower().startswith(b"x-request-id"))

    for i in range(1, len(REQUEST)):
        fwd, answer = one_exchange(client, up, request_cuts=[i])
        assert strip_id(fwd) == strip_id(ref_fwd), i
        assert strip_id(answer) == strip_id(ref_answer), i
    for j in range(1, len(RESPONSE)):
        fwd, answer = one_exchange(client, up, response_cuts=[j])
        assert strip_id(answer) == strip_id(ref_answer), j
    # byte by byte, both ways
    fwd, answer = one_exchange(client, up, range(1, len(REQUEST)), range(1, len(RESPONSE)))
    assert strip_id(fwd) == strip_id(ref_fwd) and strip_id(answer) == strip_id(ref_answer)


def test_pipelined_requests_in_one_segment_are_forwarded_one_after_another(proxy):
    client, up = proxy
    client.send(REQUEST * 3)
    for k in range(3):
        fwd = sent_upstream(up)
        assert fwd.count(b"GET /hello HTTP/1.1\r\n") == 1, k  # the next waits for this answer
        up.data_received(RESPONSE)
        assert answered(client).endswith(b"\r\n\r\nok\n"), k
    assert sent_upstream(up) == b""


def test_body_in_the_head_segment_is_forwarded(proxy):
    client, up = proxy
    body = b"x" * 10
    client.send(b"POST /p HTTP/1.1\r\nHost: bench.local\r\nContent-Length: 10\r\n\r\n" + body)
    fwd = sent_upstream(up)
    assert fwd.startswith(b"POST /p HTTP/1.1\r\n") and fwd.endswith(b"\r\n\r\n" + body)
    up.data_received(RESPONSE)
    assert answered(client).endswith(b"ok\n")


@pytest.mark.parametrize("cut", [None, 5, 40, 57, 60])
def test_interim_response_then_final_in_one_or_two_segments(proxy, cut):
    client, up = proxy
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
    client.send(REQUEST)
    sent_upstream(up)
    data = interim + RESPONSE
    feed(up.data_received, data, [] if cut is None else [cut])
    answer = answered(client)
    assert answer.startswith(b"HTTP/1.1 103 Early Hints\r\n")
    assert b"\r\n\r\nHTTP/1.1 200 OK\r\n" in answer and answer.endswith(b"\r\n\r\nok\n")


def test_partial_response_head_then_the_rest_with_the_body(proxy):
    client, up = proxy
    client.send(REQUEST)
    sent_upstream(up)
    up.data_received(RESPONSE[:20])
    assert answered(client) == b""
    up.data_received(RESPONSE[20:])
    assert answered(client).endswith(b"\r\n\r\nok\n")
