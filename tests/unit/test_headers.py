"""HeaderPolicy: request ids, traceparent, X-Forwarded-*, Via."""

import re

import pytest

from proxy import codec
from proxy.config import HeadersConfig
from proxy.headers import VIA, HeaderPolicy, new_request_id, new_traceparent, request_id_for, trace_id_of

HEX32 = re.compile(rb"[0-9a-f]{32}\Z")
TRACEPARENT = re.compile(rb"00-[0-9a-f]{32}-[0-9a-f]{16}-01\Z")
VALID_TP = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def head_of(*headers: str, host: str | None = "svc.test", target: str = "/x"):
    lines = [f"GET {target} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += list(headers)
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    head, n = codec.parse_request_head(raw, 65536)
    assert n == len(raw)
    return head


def names(pairs):
    return [k.lower() for k, _ in pairs]


def value(pairs, name):
    vals = [v for k, v in pairs if k.lower() == name.lower()]
    assert len(vals) == 1, (name, pairs)
    return vals[0]


def upstream_headers(policy: HeaderPolicy, head, client_ip=b"10.1.2.3"):
    """The request head sent upstream, parsed back into (name, value) pairs."""
    rid, _trace, add_tp = policy.ids(head)
    extra = policy.request_extra(head, client_ip, rid, add_tp)
    raw = codec.build_request_head(head, head.target, head.host, policy.request_drop, extra)
    lines = raw.split(b"\r\n")
    assert lines[0] == b"GET " + head.target + b" HTTP/1.1"
    return [tuple(line.split(b": ", 1)) for line in lines[1:] if line], rid


# ---------------------------------------------------------------- request ids
@pytest.mark.parametrize(
    "rid",
    [b"abc", b"a", b"x" * 128, b"req-123_ABC.def:ghi/jkl", b"!~", b"0af7651916cd43dd8448eb211c80319c",
     b'{"json":"ish"}'],
)
def test_request_id_for_keeps_valid_ids(rid):
    assert request_id_for(rid) == rid


@pytest.mark.parametrize(
    "rid",
    [b"", b"x" * 129, b"x" * 5000, b"has space", b" lead", b"trail ", b"tab\there", b"caf\xc3\xa9",
     b"\x80\x81", b"nul\x00byte", b"del\x7f", b"line\nbreak"],
)
def test_request_id_for_replaces_invalid_or_oversized(rid):
    out = request_id_for(rid)
    assert out != rid
    assert HEX32.match(out)


def test_new_request_ids_are_hex_and_unique():
    ids = {new_request_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(HEX32.match(i) for i in ids)


def test_new_request_ids_count_up_across_the_cached_digits():
    """The id is a fixed per-process prefix and a counter; the counter's head is
    cached and rebuilt every 256 ids, so crossing that boundary (many times)
    must still count up by one."""
    first = new_request_id()
    ids = [new_request_id() for _ in range(1000)]
    prefixes = {i[:16] for i in ids}
    assert prefixes == {first[:16]}
    counters = [int(i[16:], 16) for i in [first] + ids]
    assert counters == [(counters[0] + k) % (1 << 64) for k in range(1001)]


def test_ids_keeps_client_request_id():
    policy = HeaderPolicy(HeadersConfig())
    rid, _, _ = policy.ids(head_of("X-Request-ID: client-id-42"))
    assert rid == b"client-id-42"


def test_ids_generates_when_absent_or_invalid():
    policy = HeaderPolicy(HeadersConfig())
    rid, _, _ = policy.ids(head_of())
    assert HEX32.match(rid)
    rid2, _, _ = policy.ids(head_of())
    assert rid2 != rid
    long_id = "y" * 129
    rid3, _, _ = policy.ids(head_of(f"X-Request-ID: {long_id}"))
    assert HEX32.match(rid3)


def test_request_id_replaced_upstream_and_downstream():
    policy = HeaderPolicy(HeadersConfig())
    pairs, rid = upstream_headers(policy, head_of("X-Request-ID: " + "z" * 200))
    assert HEX32.match(rid)
    assert value(pairs, b"x-request-id") == rid  # the client's oversized one is dropped, not duplicated
    assert policy.response_extra(rid)[0] == (b"X-Request-ID", rid)
    assert b"x-request-id" in policy.response_drop

    pairs, rid = upstream_headers(policy, head_of("X-Request-ID: keep-me"))
    assert rid == b"keep-me"
    assert value(pairs, b"x-request-id") == b"keep-me"


# ---------------------------------------------------------------- traceparent
def test_trace_id_of():
    assert trace_id_of(VALID_TP) == b"4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id_of(b"") == b""
    assert trace_id_of(b"garbage") == b""
    assert trace_id_of(b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") == b""  # invalid version
    assert trace_id_of(b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01") == b""  # all-zero trace id
    assert trace_id_of(b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01") == b""  # upper case
    assert trace_id_of(VALID_TP + b"-extra") == b""


def test_new_traceparent_shape():
    tp = new_traceparent()
    assert TRACEPARENT.match(tp)
    assert trace_id_of(tp) == tp[3:35]
    assert new_traceparent() != tp


def test_traceparent_pass_forwards_untouched_and_never_generates():
    policy = HeaderPolicy(HeadersConfig(traceparent="pass"))
    head = head_of("traceparent: " + VALID_TP.decode())
    rid, trace, add_tp = policy.ids(head)
    assert trace == b"4bf92f3577b34da6a3ce929d0e0e4736"
    assert add_tp == b""
    pairs, _ = upstream_headers(policy, head)
    assert value(pairs, b"traceparent") == VALID_TP

    rid, trace, add_tp = policy.ids(head_of())
    assert (trace, add_tp) == (b"", b"")
    pairs, _ = upstream_headers(policy, head_of())
    assert b"traceparent" not in names(pairs)


def test_traceparent_generate_creates_one_when_missing():
    policy = HeaderPolicy(HeadersConfig(traceparent="generate"))
    rid, trace, add_tp = policy.ids(head_of())
    assert TRACEPARENT.match(add_tp)
    assert trace == add_tp[3:35]
    extra = policy.request_extra(head_of(), b"10.0.0.1", rid, add_tp)
    assert (b"traceparent", add_tp) in extra


def test_traceparent_generate_keeps_an_existing_one():
    policy = HeaderPolicy(HeadersConfig(traceparent="generate"))
    head = head_of("traceparent: " + VALID_TP.decode())
    _, trace, add_tp = policy.ids(head)
    assert add_tp == b""
    assert trace == b"4bf92f3577b34da6a3ce929d0e0e4736"
    pairs, _ = upstream_headers(policy, head)
    assert [v for k, v in pairs if k.lower() == b"traceparent"] == [VALID_TP]


# ---------------------------------------------------------------- X-Forwarded-*
def test_xff_set_from_peer_when_absent():
    policy = HeaderPolicy(HeadersConfig())
    pairs, _ = upstream_headers(policy, head_of(), client_ip=b"10.1.2.3")
    assert value(pairs, b"x-forwarded-for") == b"10.1.2.3"
    assert value(pairs, b"x-forwarded-proto") == b"http"
    assert value(pairs, b"x-forwarded-host") == b"svc.test"


def test_xff_appended_to_client_list():
    policy = HeaderPolicy(HeadersConfig())
    pairs, _ = upstream_headers(policy, head_of("X-Forwarded-For: 1.2.3.4"), client_ip=b"10.1.2.3")
    assert value(pairs, b"x-forwarded-for") == b"1.2.3.4, 10.1.2.3"


def test_xff_multiple_client_headers_joined_then_appended():
    policy = HeaderPolicy(HeadersConfig())
    head = head_of("X-Forwarded-For: 1.1.1.1, 2.2.2.2", "X-Forwarded-For: 3.3.3.3")
    pairs, _ = upstream_headers(policy, head, client_ip=b"10.1.2.3")
    assert value(pairs, b"x-forwarded-for") == b"1.1.1.1, 2.2.2.2, 3.3.3.3, 10.1.2.3"


def test_x_forwarded_proto_and_host_replaced():
    policy = HeaderPolicy(HeadersConfig(), proto=b"https")
    head = head_of("X-Forwarded-Proto: gopher", "X-Forwarded-Host: spoofed.test", host="real.test:8443")
    pairs, _ = upstream_headers(policy, head)
    assert value(pairs, b"x-forwarded-proto") == b"https"
    assert value(pairs, b"x-forwarded-host") == b"real.test:8443"


def test_x_forwarded_host_absent_without_host():
    policy = HeaderPolicy(HeadersConfig())
    raw = b"GET / HTTP/1.0\r\n\r\n"
    head, _ = codec.parse_request_head(raw, 65536)
    extra = policy.request_extra(head, b"10.0.0.9", b"rid", b"")
    assert b"X-Forwarded-Host" not in [k for k, _ in extra]
    assert (b"X-Forwarded-For", b"10.0.0.9") in extra


def test_x_forwarded_false_leaves_headers_alone():
    policy = HeaderPolicy(HeadersConfig(x_forwarded=False))
    assert policy.request_drop == frozenset({b"x-request-id"})
    head = head_of("X-Forwarded-For: 1.2.3.4", "X-Forwarded-Proto: https", "X-Forwarded-Host: orig.test")
    extra = policy.request_extra(head, b"10.1.2.3", b"rid", b"")
    assert not [k for k, _ in extra if k.lower().startswith(b"x-forwarded-")]
    pairs, _ = upstream_headers(policy, head, client_ip=b"10.1.2.3")
    assert value(pairs, b"x-forwarded-for") == b"1.2.3.4"
    assert value(pairs, b"x-forwarded-proto") == b"https"
    assert value(pairs, b"x-forwarded-host") == b"orig.test"

    pairs, _ = upstream_headers(policy, head_of(), client_ip=b"10.1.2.3")
    assert not [k for k in names(pairs) if k.startswith(b"x-forwarded-")]


# ---------------------------------------------------------------- Via
def test_via_off_by_default():
    policy = HeaderPolicy(HeadersConfig())
    assert b"via" not in names(policy.request_extra(head_of(), b"10.0.0.1", b"rid", b""))
    assert b"via" not in names(policy.response_extra(b"rid"))


def test_via_added_both_ways():
    policy = HeaderPolicy(HeadersConfig(via=True))
    assert VIA == b"1.1 edgeproxy"
    assert (b"Via", VIA) in policy.request_extra(head_of(), b"10.0.0.1", b"rid", b"")
    assert (b"Via", VIA) in policy.response_extra(b"rid")
    pairs, _ = upstream_headers(policy, head_of())
    assert value(pairs, b"via") == VIA


def test_response_extra_order_and_content():
    assert HeaderPolicy(HeadersConfig()).response_extra(b"r1") == [(b"X-Request-ID", b"r1")]
    assert HeaderPolicy(HeadersConfig(via=True)).response_extra(b"r1") == [(b"X-Request-ID", b"r1"), (b"Via", VIA)]


def test_other_headers_pass_through_in_order():
    policy = HeaderPolicy(HeadersConfig())
    head = head_of("Accept: */*", "X-B: 2", "X-A: 1", "Cookie: c=1")
    pairs, _ = upstream_headers(policy, head)
    kept = [(k, v) for k, v in pairs if k.lower() in (b"accept", b"x-b", b"x-a", b"cookie")]
    assert kept == [(b"Accept", b"*/*"), (b"X-B", b"2"), (b"X-A", b"1"), (b"Cookie", b"c=1")]
    assert pairs[0] == (b"Host", b"svc.test")
