"""PROXY protocol v1/v2 parsing and building: valid headers, partial input at
every split point, exact consumed counts, malformed headers, round trips."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.proxyproto import (
    MAX_V1,
    MAX_V2_PAYLOAD,
    V2_SIGNATURE,
    ProxyHeaderError,
    ProxyInfo,
    build_v1,
    build_v2,
    parse,
)

HTTP = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"


def v2(ver_cmd: int, fam: int, payload: bytes, length: int | None = None) -> bytes:
    n = len(payload) if length is None else length
    return V2_SIGNATURE + bytes([ver_cmd, fam]) + n.to_bytes(2, "big") + payload


def tlv(t: int, value: bytes) -> bytes:
    return bytes([t]) + len(value).to_bytes(2, "big") + value


V4_BLOCK = bytes([192, 0, 2, 1, 198, 51, 100, 7]) + (56324).to_bytes(2, "big") + (443).to_bytes(2, "big")
V6_BLOCK = (ipaddress.IPv6Address("2001:db8::1").packed + ipaddress.IPv6Address("2001:db8::2").packed
            + (1).to_bytes(2, "big") + (65535).to_bytes(2, "big"))
UNIX_BLOCK = b"/run/lb.sock".ljust(108, b"\0") + b"".ljust(108, b"\0")


def info(version, command, family, src=None, sport=None, dst=None, dport=None, tlvs=()):
    return ProxyInfo(version, command, family, src, sport, dst, dport, tlvs)


VALID = [
    ("v1-tcp4", b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n",
     info(1, "PROXY", "TCP4", "192.0.2.1", 56324, "198.51.100.7", 443)),
    ("v1-tcp4-port-0", b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
     info(1, "PROXY", "TCP4", "0.0.0.0", 0, "255.255.255.255", 65535)),
    ("v1-tcp6", b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n",
     info(1, "PROXY", "TCP6", "2001:db8::1", 1, "2001:db8::2", 65535)),
    ("v1-tcp6-normalised", b"PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::FFFF:192.0.2.1 80 8080\r\n",
     info(1, "PROXY", "TCP6", "2001:db8::1", 80, "::ffff:192.0.2.1", 8080)),
    ("v1-tcp6-longest",
     b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
     info(1, "PROXY", "TCP6", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
          "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535)),
    ("v1-unknown", b"PROXY UNKNOWN\r\n", info(1, "PROXY", "UNKNOWN")),
    ("v1-unknown-trailing", b"PROXY UNKNOWN ffff:: 1.2.3.4 whatever 99999\r\n", info(1, "PROXY", "UNKNOWN")),
    ("v1-unknown-107", b"PROXY UNKNOWN " + b"x" * (MAX_V1 - 16) + b"\r\n", info(1, "PROXY", "UNKNOWN")),
    ("v2-proxy-tcp4", v2(0x21, 0x11, V4_BLOCK),
     info(2, "PROXY", "TCP4", "192.0.2.1", 56324, "198.51.100.7", 443)),
    ("v2-proxy-tcp6", v2(0x21, 0x21, V6_BLOCK),
     info(2, "PROXY", "TCP6", "2001:db8::1", 1, "2001:db8::2", 65535)),
    ("v2-proxy-unspec", v2(0x21, 0x00, b""), info(2, "PROXY", "UNKNOWN")),
    ("v2-proxy-unspec-tlv", v2(0x21, 0x00, tlv(0x04, b"")), info(2, "PROXY", "UNKNOWN", tlvs=((0x04, b""),))),
    ("v2-proxy-tcp4-tlvs", v2(0x21, 0x11, V4_BLOCK + tlv(0x01, b"h2") + tlv(0xEA, b"\x01vpce-0abc") + tlv(0x04, b"")),
     info(2, "PROXY", "TCP4", "192.0.2.1", 56324, "198.51.100.7", 443,
          ((0x01, b"h2"), (0xEA, b"\x01vpce-0abc"), (0x04, b"")))),
    ("v2-proxy-tcp6-tlvs", v2(0x21, 0x21, V6_BLOCK + tlv(0x05, b"\x00" * 16)),
     info(2, "PROXY", "TCP6", "2001:db8::1", 1, "2001:db8::2", 65535, ((0x05, b"\x00" * 16),))),
    ("v2-proxy-unix", v2(0x21, 0x31, UNIX_BLOCK), info(2, "PROXY", "UNIX", "/run/lb.sock", None, "", None)),
    ("v2-proxy-unix-abstract", v2(0x21, 0x31, b"\0lb".ljust(108, b"\0") + b"/full/108".ljust(108, b"x")),
     info(2, "PROXY", "UNIX", "\0lb", None, "/full/108".ljust(108, "x"), None)),
    ("v2-local-unspec", v2(0x20, 0x00, b""), info(2, "LOCAL", "UNKNOWN")),
    ("v2-local-tcp4-ignored", v2(0x20, 0x11, V4_BLOCK + tlv(1, b"h2")), info(2, "LOCAL", "UNKNOWN")),
    ("v2-local-tcp6-ignored", v2(0x20, 0x21, V6_BLOCK), info(2, "LOCAL", "UNKNOWN")),
    ("v2-local-any-family", v2(0x20, 0x77, b"junk"), info(2, "LOCAL", "UNKNOWN")),
    ("v2-at-cap", v2(0x21, 0x11, V4_BLOCK + tlv(0x04, b"\0" * (MAX_V2_PAYLOAD - 12 - 3))),
     info(2, "PROXY", "TCP4", "192.0.2.1", 56324, "198.51.100.7", 443,
          ((0x04, b"\0" * (MAX_V2_PAYLOAD - 15)),))),
]


@pytest.mark.parametrize("wire,expected", [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_header_exact_consumed_with_trailing_http(wire, expected):
    assert parse(wire) == (expected, len(wire))
    for kind in (bytes, bytearray, memoryview):
        assert parse(kind(wire + HTTP)) == (expected, len(wire))


@pytest.mark.parametrize("wire", [c[1] for c in VALID], ids=[c[0] for c in VALID])
def test_every_split_point_needs_more(wire):
    for i in range(len(wire)):
        assert parse(wire[:i]) is None, i
        assert parse(memoryview(wire)[:i]) is None, i


def test_v1_line_of_exactly_107_bytes_is_the_limit():
    line = b"PROXY UNKNOWN " + b"x" * (MAX_V1 - 16) + b"\r\n"
    assert len(line) == MAX_V1
    assert parse(line[:-1]) is None  # 106 bytes, CR last: still waiting
    with pytest.raises(ProxyHeaderError, match="no CRLF within 107"):
        parse(line[:-2] + b"x\r\n")  # 108 bytes, LF past the limit


MALFORMED = [
    # signature
    ("http", b"GET / HTTP/1.1\r\n", "signature"),
    ("first-byte", b"G", "signature"),
    ("v1-lowercase", b"proxy TCP4", "signature"),
    ("v1-no-space", b"PROXYTCP4", "signature"),
    ("v2-bad-sig", b"\r\n\r\n\x00\r\nQUIX", "signature"),
    ("v2-bad-sig-early", b"\r\n\r\nX", "signature"),
    # v1 framing
    ("v1-bare-lf", b"PROXY TCP4 192.0.2.1 198.51.100.7 1 2\n", "bare LF"),
    ("v1-bare-lf-unknown", b"PROXY UNKNOWN\n", "bare LF"),
    ("v1-cr-without-lf", b"PROXY TCP4 192.0.2.1\rX", "CR not followed by LF"),
    ("v1-double-cr", b"PROXY UNKNOWN\r\r\n", "CR not followed by LF"),
    ("v1-too-long", b"PROXY UNKNOWN " + b"x" * 200, "no CRLF within 107"),
    ("v1-nul", b"PROXY \x00", "invalid byte 0x00"),
    ("v1-tab", b"PROXY TCP4\t", "invalid byte 0x09"),
    ("v1-non-ascii", b"PROXY TCP4 \xc3\xa9", "invalid byte 0xc3"),
    # v1 fields
    ("v1-empty", b"PROXY \r\n", "bad family"),
    ("v1-bad-family", b"PROXY UDP4 192.0.2.1 198.51.100.7 1 2\r\n", "bad family"),
    ("v1-family-lowercase", b"PROXY tcp4 192.0.2.1 198.51.100.7 1 2\r\n", "bad family"),
    ("v1-unknown-glued", b"PROXY UNKNOWNX\r\n", "bad family"),
    ("v1-double-space", b"PROXY  TCP4 192.0.2.1 198.51.100.7 1 2\r\n", "bad family"),
    ("v1-too-few", b"PROXY TCP4 192.0.2.1 198.51.100.7 1\r\n", "needs 5 fields, got 4"),
    ("v1-too-many", b"PROXY TCP4 192.0.2.1 198.51.100.7 1 2 3\r\n", "needs 5 fields, got 6"),
    ("v1-trailing-space", b"PROXY TCP4 192.0.2.1 198.51.100.7 1 2 \r\n", "needs 5 fields, got 6"),
    ("v1-family-only", b"PROXY TCP4\r\n", "needs 5 fields, got 1"),
    ("v1-tcp4-v6-addr", b"PROXY TCP4 ::1 198.51.100.7 1 2\r\n", "bad TCP4 source address"),
    ("v1-tcp6-v4-addr", b"PROXY TCP6 2001:db8::1 192.0.2.1 1 2\r\n", "bad TCP6 destination address"),
    ("v1-v4-leading-zero", b"PROXY TCP4 192.0.2.01 198.51.100.7 1 2\r\n", "bad TCP4 source address"),
    ("v1-v4-short", b"PROXY TCP4 192.0.2 198.51.100.7 1 2\r\n", "bad TCP4 source address"),
    ("v1-v4-octet", b"PROXY TCP4 192.0.2.256 198.51.100.7 1 2\r\n", "bad TCP4 source address"),
    ("v1-v6-zone", b"PROXY TCP6 fe80::1%eth0 2001:db8::2 1 2\r\n", "bad TCP6 source address"),
    ("v1-v6-bad", b"PROXY TCP6 2001:db8:::1 2001:db8::2 1 2\r\n", "bad TCP6 source address"),
    ("v1-port-range", b"PROXY TCP4 192.0.2.1 198.51.100.7 65536 2\r\n", "source port 65536 out of range"),
    ("v1-port-leading-zero", b"PROXY TCP4 192.0.2.1 198.51.100.7 01 2\r\n", "bad source port"),
    ("v1-port-zero-zero", b"PROXY TCP4 192.0.2.1 198.51.100.7 1 00\r\n", "bad destination port"),
    ("v1-port-plus", b"PROXY TCP4 192.0.2.1 198.51.100.7 +1 2\r\n", "bad source port"),
    ("v1-port-minus", b"PROXY TCP4 192.0.2.1 198.51.100.7 1 -2\r\n", "bad destination port"),
    ("v1-port-underscore", b"PROXY TCP4 192.0.2.1 198.51.100.7 1_0 2\r\n", "bad source port"),
    ("v1-port-hex", b"PROXY TCP4 192.0.2.1 198.51.100.7 0x1 2\r\n", "bad source port"),
    ("v1-port-long", b"PROXY TCP4 192.0.2.1 198.51.100.7 100000 2\r\n", "bad source port"),
    # v2 fixed part (rejected before the payload arrives)
    ("v2-version-1", V2_SIGNATURE + b"\x11", "unsupported version 1"),
    ("v2-version-3", V2_SIGNATURE + b"\x31", "unsupported version 3"),
    ("v2-command", V2_SIGNATURE + b"\x22", "unknown command 0x2"),
    ("v2-command-f", V2_SIGNATURE + b"\x2f", "unknown command 0xf"),
    ("v2-udp4", V2_SIGNATURE + b"\x21\x12", "unsupported DGRAM"),
    ("v2-udp6", V2_SIGNATURE + b"\x21\x22", "unsupported DGRAM"),
    ("v2-unix-dgram", V2_SIGNATURE + b"\x21\x32", "unsupported DGRAM"),
    ("v2-family-4", V2_SIGNATURE + b"\x21\x41", "invalid family/protocol 0x41"),
    ("v2-inet-unspec-proto", V2_SIGNATURE + b"\x21\x10", "invalid family/protocol 0x10"),
    ("v2-unspec-stream", V2_SIGNATURE + b"\x21\x01", "invalid family/protocol 0x01"),
    ("v2-over-cap", v2(0x21, 0x11, b"", length=MAX_V2_PAYLOAD + 1), "over the 4096 cap"),
    ("v2-max-length", v2(0x21, 0x00, b"", length=0xFFFF), "over the 4096 cap"),
    ("v2-local-over-cap", v2(0x20, 0x00, b"", length=MAX_V2_PAYLOAD + 1), "over the 4096 cap"),
    ("v2-tcp4-short", v2(0x21, 0x11, b"", length=11), "too short for TCP4 addresses"),
    ("v2-tcp6-short", v2(0x21, 0x21, b"", length=12), "too short for TCP6 addresses"),
    ("v2-unix-short", v2(0x21, 0x31, b"", length=215), "too short for UNIX addresses"),
    # v2 TLVs
    ("v2-tlv-truncated", v2(0x21, 0x11, V4_BLOCK + b"\x01\x00"), "truncated TLV at offset 28"),
    ("v2-tlv-overrun", v2(0x21, 0x11, V4_BLOCK + b"\x01\x00\x05abc"), "TLV 0x01 length 5 overruns"),
    ("v2-unspec-junk", v2(0x21, 0x00, b"junk"), "overruns"),
]


@pytest.mark.parametrize("wire,reason", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_raises_with_reason(wire, reason):
    with pytest.raises(ProxyHeaderError, match=reason) as exc:
        parse(wire)
    assert exc.value.reason == str(exc.value)
    with pytest.raises(ProxyHeaderError):  # trailing bytes do not rescue it
        parse(wire + HTTP)


@pytest.mark.parametrize("wire", [b"", b"P", b"PROXY", b"PROXY TCP4 1.2.", b"\r", b"\r\n\r\n\x00\r\nQUI",
                                  V2_SIGNATURE, V2_SIGNATURE + b"\x21", V2_SIGNATURE + b"\x21\x11\x00"])
def test_valid_prefixes_need_more(wire):
    assert parse(wire) is None


def test_v1_waits_for_full_line_before_field_checks():
    # The family is wrong but the line is not complete: bytes so far are a
    # plausible prefix (printable, no stray CR), so the verdict waits for CRLF.
    assert parse(b"PROXY UDP4 1.2.3.4") is None
    with pytest.raises(ProxyHeaderError, match="bad family"):
        parse(b"PROXY UDP4 1.2.3.4\r\n")


# -- building -----------------------------------------------------------------


def test_build_v1_examples():
    assert build_v1(info(1, "PROXY", "UNKNOWN")) == b"PROXY UNKNOWN\r\n"
    assert build_v1(info(1, "PROXY", "TCP4", "192.0.2.1", 56324, "198.51.100.7", 443)) == \
        b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n"


def test_build_v2_matches_hand_made():
    assert build_v2(info(2, "PROXY", "TCP4", "192.0.2.1", 56324, "198.51.100.7", 443, ((1, b"h2"),))) == \
        v2(0x21, 0x11, V4_BLOCK + tlv(1, b"h2"))
    assert build_v2(info(2, "LOCAL", "UNKNOWN")) == v2(0x20, 0x00, b"")


@pytest.mark.parametrize("builder,bad", [
    (build_v1, info(1, "LOCAL", "UNKNOWN")),
    (build_v1, info(1, "PROXY", "UNIX", "/a", None, "/b", None)),
    (build_v1, info(1, "PROXY", "TCP4", "::1", 1, "192.0.2.1", 2)),
    (build_v1, info(1, "PROXY", "TCP4", "192.0.2.1", 65536, "192.0.2.1", 2)),
    (build_v1, info(1, "PROXY", "TCP6", None, 1, "::1", 2)),
    (build_v2, info(2, "PROXY", "UDP4", "192.0.2.1", 1, "192.0.2.1", 2)),
    (build_v2, info(2, "NOPE", "UNKNOWN")),
    (build_v2, info(2, "PROXY", "TCP6", "fe80::1%eth0", 1, "::1", 2)),
    (build_v2, info(2, "PROXY", "UNIX", "x" * 109, None, "", None)),
    (build_v2, info(2, "PROXY", "UNKNOWN", tlvs=((256, b""),))),
])
def test_build_refuses_what_cannot_be_sent(builder, bad):
    with pytest.raises(ValueError):
        builder(bad)


def test_build_v2_does_not_cap_so_tests_can_send_oversized():
    wire = build_v2(info(2, "PROXY", "UNKNOWN", tlvs=((4, b"\0" * MAX_V2_PAYLOAD),)))
    with pytest.raises(ProxyHeaderError, match="cap"):
        parse(wire)


# -- round trips --------------------------------------------------------------

ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6 = st.one_of(
    st.integers(0, 2**128 - 1),
    st.integers(0, 2**32 - 1).map(lambda n: (0xFFFF << 32) | n),  # IPv4-mapped
    st.integers(0, 2**16 - 1),
).map(lambda n: socket.inet_ntop(socket.AF_INET6, n.to_bytes(16, "big")))
ports = st.integers(0, 65535)
tlvs = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=5).map(tuple)
path_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=60)
unix_paths = st.one_of(
    path_text.filter(lambda s: len(s.encode()) <= 108),
    path_text.filter(lambda s: s and len(s.encode()) <= 107).map(lambda s: "\0" + s),
)


def tcp(version, family, addrs, extra=None):
    return st.builds(lambda s, sp, d, dp, t: info(version, "PROXY", family, s, sp, d, dp, t),
                     addrs, ports, addrs, ports, st.just(()) if extra is None else extra)


v1_infos = st.one_of(tcp(1, "TCP4", ipv4), tcp(1, "TCP6", ipv6), st.just(info(1, "PROXY", "UNKNOWN")))
v2_infos = st.one_of(
    tcp(2, "TCP4", ipv4, tlvs),
    tcp(2, "TCP6", ipv6, tlvs),
    st.builds(lambda s, d, t: info(2, "PROXY", "UNIX", s, None, d, None, t), unix_paths, unix_paths, tlvs),
    tlvs.map(lambda t: info(2, "PROXY", "UNKNOWN", tlvs=t)),
    st.just(info(2, "LOCAL", "UNKNOWN")),
)


def feed(wire: bytes, cuts: list[int]):
    """Parse as the engine does: grow the buffer cut by cut, parse each time."""
    buf = bytearray()
    pos = 0
    for cut in sorted(cuts) + [len(wire)]:
        buf += wire[pos:cut]
        pos = max(pos, cut)
        result = parse(buf)
        if result is not None:
            return result
    return None


@settings(max_examples=300, deadline=None)
@given(v1_infos, st.binary(max_size=30), st.lists(st.integers(0, 200), max_size=6))
def test_v1_round_trip(i, trailing, cuts):
    wire = build_v1(i)
    assert len(wire) <= MAX_V1
    assert parse(wire + trailing) == (i, len(wire))
    assert feed(wire + trailing, [c for c in cuts if c < len(wire)]) == (i, len(wire))


@settings(max_examples=300, deadline=None)
@given(v2_infos, st.binary(max_size=30), st.lists(st.integers(0, 600), max_size=6))
def test_v2_round_trip(i, trailing, cuts):
    wire = build_v2(i)
    assert parse(wire + trailing) == (i, len(wire))
    assert feed(wire + trailing, [c for c in cuts if c < len(wire)]) == (i, len(wire))


@settings(max_examples=100, deadline=None)
@given(v2_infos.filter(lambda i: i.family in ("TCP4", "TCP6")))
def test_v2_local_discards_addresses_and_tlvs(i):
    local = ProxyInfo(2, "LOCAL", i.family, i.src_addr, i.src_port, i.dst_addr, i.dst_port, i.tlvs)
    wire = build_v2(local)
    assert parse(wire) == (info(2, "LOCAL", "UNKNOWN"), len(wire))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_never_crash(data):
    for prefix in (b"", b"PROXY ", V2_SIGNATURE, V2_SIGNATURE + b"\x21"):
        try:
            result = parse(prefix + data)
        except ProxyHeaderError:
            continue
        if result is not None:
            parsed, consumed = result
            assert 0 < consumed <= len(prefix + data)
            assert parsed.version in (1, 2)
