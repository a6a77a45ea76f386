import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.units import (
    Address,
    format_duration,
    format_size,
    parse_address,
    parse_duration,
    parse_host,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("1ms", 0.001),
        ("1.5ms", 0.0015),
        ("10s", 10.0),
        ("1.5s", 1.5),
        ("0s", 0.0),
        ("0", 0.0),
        ("0ms", 0.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("007s", 7.0),
    ],
)
def test_parse_duration_valid(text, seconds):
    assert parse_duration(text) == seconds
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        ("-1s", "negative"),
        ("-0.5ms", "negative"),
        ("10", "not a duration"),
        ("10x", "not a duration"),
        ("10 s", "not a duration"),
        (" 10s", "not a duration"),
        ("10S", "not a duration"),
        ("1d", "not a duration"),
        ("1.s", "not a duration"),
        (".5s", "not a duration"),
        ("1e3ms", "not a duration"),
        ("inf s", "not a duration"),
        ("nan", "not a duration"),
        ("1h30m", "not a duration"),
        ("\u0661s", "not a duration"),  # ARABIC-INDIC DIGIT ONE
        (0, "not int"),
        (10, "not int"),
        (1.5, "not float"),
        (True, "not bool"),
        (False, "not bool"),
        (None, "not NoneType"),
    ],
)
def test_parse_duration_invalid(value, reason):
    with pytest.raises(ValueError, match=reason):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("512B", 512),
        ("0B", 0),
        ("64KiB", 64 * 1024),
        ("1MiB", 1024**2),
        ("1GiB", 1024**3),
        ("1TiB", 1024**4),
        ("10KB", 10_000),
        ("10MB", 10_000_000),
        ("2GB", 2_000_000_000),
        ("1.5KiB", 1536),
        ("0.5MiB", 512 * 1024),
        ("1024", 1024),
        (0, 0),
        (4096, 4096),
    ],
)
def test_parse_size_valid(value, size):
    assert parse_size(value) == size
    assert type(parse_size(value)) is int


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        ("-1KiB", "negative"),
        (-1, "negative"),
        ("1.5B", "whole number of bytes"),
        ("0.1KiB", "whole number of bytes"),
        ("1.5", "whole number of bytes"),
        ("10kb", "not a size"),
        ("10 KiB", "not a size"),
        ("10KIB", "not a size"),
        ("10K", "not a size"),
        ("KiB", "not a size"),
        ("1e3", "not a size"),
        (True, "boolean"),
        (1.0, "float"),
        (None, "NoneType"),
        ([1], "list"),
    ],
)
def test_parse_size_invalid(value, reason):
    with pytest.raises(ValueError, match=reason):
        parse_size(value)


@pytest.mark.parametrize(
    ("text", "zero_ok", "host", "port"),
    [
        ("127.0.0.1:8080", False, "127.0.0.1", 8080),
        ("0.0.0.0:80", False, "0.0.0.0", 80),
        ("[::1]:8080", False, "::1", 8080),
        ("[2001:DB8:0::1]:443", False, "2001:db8::1", 443),
        ("localhost:8081", False, "localhost", 8081),
        ("api.internal:80", False, "api.internal", 80),
        ("API.Internal:80", False, "api.internal", 80),
        ("my-svc-1.ns.svc.cluster.local:65535", False, "my-svc-1.ns.svc.cluster.local", 65535),
        ("127.0.0.1:0", True, "127.0.0.1", 0),
        ("[::]:0", True, "::", 0),
        ("host:1", False, "host", 1),
    ],
)
def test_parse_address_valid(text, zero_ok, host, port):
    address = parse_address(text, allow_port_zero=zero_ok)
    assert address == Address(host, port)
    assert (address.host, address.port) == (host, port)


@pytest.mark.parametrize(
    ("text", "zero_ok", "reason"),
    [
        ("", True, "empty address"),
        ("127.0.0.1", True, "missing port"),
        ("127.0.0.1:", True, "missing port"),
        (":8080", True, "missing host"),
        ("127.0.0.1:0", False, "port 0 is not allowed"),
        ("127.0.0.1:65536", True, "out of range"),
        ("127.0.0.1:99999", True, "out of range"),
        ("127.0.0.1:123456", True, "invalid port"),
        ("127.0.0.1:-1", True, "invalid port"),
        ("127.0.0.1:80a", True, "invalid port"),
        ("127.0.0.1: 80", True, "invalid port"),
        ("::1:8080", True, "must be in brackets"),
        ("[::1]", True, "missing port"),
        ("[::1]8080", True, "unexpected"),
        ("[::1:8080", True, "missing ']'"),
        ("[nope]:80", True, "invalid IPv6"),
        ("[127.0.0.1]:80", True, "invalid IPv6"),
        ("256.1.1.1:80", True, "invalid IPv4"),
        ("1.2.3:80", True, "invalid IPv4"),
        ("under_score:80", True, "invalid host name"),
        ("-bad.example:80", True, "invalid host name"),
        ("bad-.example:80", True, "invalid host name"),
        ("a..b:80", True, "invalid host name"),
        ("trailing.dot.:80", True, "invalid host name"),
        ("sp ace:80", True, "invalid host name"),
        ("http://x:80", True, "without a scheme"),
        ("x/y:80", True, "without a scheme or path"),
        ("x" * 64 + ":80", True, "invalid host name"),
        (8080, True, "must be a string"),
        (None, True, "must be a string"),
    ],
)
def test_parse_address_invalid(text, zero_ok, reason):
    with pytest.raises(ValueError, match=reason):
        parse_address(text, allow_port_zero=zero_ok)


@pytest.mark.parametrize(
    ("address", "text"),
    [
        (Address("127.0.0.1", 8080), "127.0.0.1:8080"),
        (Address("::1", 8080), "[::1]:8080"),
        (Address("api.internal", 80), "api.internal:80"),
    ],
)
def test_address_str_round_trips(address, text):
    assert str(address) == text
    assert parse_address(text, allow_port_zero=False) == address


@pytest.mark.parametrize(
    ("text", "host"),
    [("Example.COM", "example.com"), ("10.0.0.1", "10.0.0.1"), ("[::1]", "::1"), ("localhost", "localhost")],
)
def test_parse_host_valid(text, host):
    assert parse_host(text) == host


@pytest.mark.parametrize("text", ["", "example.com:80", "::1", "*.example.com", "a_b", 5])
def test_parse_host_invalid(text):
    with pytest.raises(ValueError):
        parse_host(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.25, "250ms"),
        (0.0015, "1.5ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (10, "10s"),
        (90, "90s"),
        (300, "5m"),
        (5400, "90m"),
        (3600, "1h"),
        (7200.0, "2h"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0B"),
        (512, "512B"),
        (1500, "1500B"),
        (1024, "1KiB"),
        (65536, "64KiB"),
        (1024**2, "1MiB"),
        (3 * 1024**3, "3GiB"),
        (10_000, "10KB"),
        (2_000_000, "2MB"),
    ],
)
def test_format_size(n, text):
    assert format_size(n) == text
    assert parse_size(text) == n


@pytest.mark.parametrize("bad", [-1, True, 1.5, "1KiB"])
def test_format_size_rejects(bad):
    with pytest.raises(ValueError):
        format_size(bad)


def test_format_duration_rejects_negative():
    with pytest.raises(ValueError):
        format_duration(-1)


@given(st.integers(min_value=0, max_value=10**9))
def test_duration_milliseconds_round_trip(ms):
    seconds = parse_duration(f"{ms}ms")
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=2**50))
def test_size_round_trip(n):
    assert parse_size(format_size(n)) == n
    assert parse_size(n) == n


@given(st.text(max_size=12))
def test_parsers_only_raise_value_error(text):
    for parse in (parse_duration, parse_size, parse_host, lambda t: parse_address(t, allow_port_zero=True)):
        try:
            parse(text)
        except ValueError:
            pass
