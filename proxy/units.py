"""Units used by the configuration: durations, byte sizes and host:port addresses.

Every parser takes the text an operator wrote and either returns a plain value
(float seconds, int bytes, :class:`Address`) or raises ``ValueError`` with a
short reason.  The ``format_*`` helpers go the other way, for summaries; their
output parses back to the same value.
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal
from typing import NamedTuple

__all__ = [
    "Address",
    "format_duration",
    "format_size",
    "parse_address",
    "parse_duration",
    "parse_host",
    "parse_size",
]

_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"
_DURATION_RE = re.compile(_NUMBER + r"(ms|s|m|h)")
_DURATION_UNITS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}

_SIZE_RE = re.compile(_NUMBER + r"(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?")
_SIZE_UNITS = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}
# Largest unit first, binary before decimal: 1024 prints as "1KiB", 10000 as "10KB".
_SIZE_FORMAT_ORDER = ("TiB", "GiB", "MiB", "KiB", "TB", "GB", "MB", "KB")

_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_IPV4ISH_RE = re.compile(r"[0-9.]+")
_PORT_RE = re.compile(r"[0-9]{1,5}")


def _plain(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros: 1.50 -> "1.5", 2E+1 -> "20"."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def parse_duration(text: str) -> float:
    """Parse "250ms", "10s", "5m", "1h", "1.5s" or "0" into float seconds."""
    if not isinstance(text, str):
        raise ValueError(f"a duration must be a string with a unit, not {type(text).__name__}")
    if text == "0":
        return 0.0
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        if not text:
            raise ValueError("empty duration")
        if text.startswith("-"):
            raise ValueError("a duration cannot be negative")
        raise ValueError(f"not a duration: {text!r} (use a number followed by ms, s, m or h)")
    return float(Decimal(match[1]) * _DURATION_UNITS[match[2]])


def format_duration(seconds: float) -> str:
    """Shortest readable form: 0.25 -> "250ms", 10 -> "10s", 300 -> "5m", 3600 -> "1h"."""
    value = Decimal(repr(float(seconds)))
    if value < 0:
        raise ValueError("a duration cannot be negative")
    if value == 0:
        return "0s"
    if value < 1:
        return _plain(value * 1000) + "ms"
    if value % 3600 == 0:
        return _plain(value / 3600) + "h"
    if value % 60 == 0:
        return _plain(value / 60) + "m"
    return _plain(value) + "s"


def parse_size(text: str | int) -> int:
    """Parse "512B", "64KiB", "1MiB", "10KB" (10 * 1000) or a plain int into bytes."""
    if isinstance(text, bool):
        raise ValueError("a size must be a number of bytes or a string like \"64KiB\", not a boolean")
    if isinstance(text, int):
        if text < 0:
            raise ValueError("a size cannot be negative")
        return text
    if not isinstance(text, str):
        raise ValueError(f"a size must be a string with a unit or an integer, not {type(text).__name__}")
    match = _SIZE_RE.fullmatch(text)
    if match is None:
        if not text:
            raise ValueError("empty size")
        if text.startswith("-"):
            raise ValueError("a size cannot be negative")
        raise ValueError(f"not a size: {text!r} (use a number followed by B, KB, MB, GB, KiB, MiB or GiB)")
    amount = Decimal(match[1]) * _SIZE_UNITS[match[2] or "B"]
    if amount != amount.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number of bytes")
    return int(amount)


def format_size(n: int) -> str:
    """Shortest exact form: 65536 -> "64KiB", 10000 -> "10KB", 1000 -> "1KB", 1500 -> "1500B"."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError("a size must be a non-negative integer")
    if n:
        for unit in _SIZE_FORMAT_ORDER:
            if n % _SIZE_UNITS[unit] == 0:
                return f"{n // _SIZE_UNITS[unit]}{unit}"
    return f"{n}B"


class Address(NamedTuple):
    """A host and port; IPv6 hosts are stored without brackets."""

    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def _hostname(text: str) -> str:
    """Validate an IPv4 literal or DNS-style name; returns it normalized (lowercase)."""
    if not text:
        raise ValueError("missing host")
    if _IPV4ISH_RE.fullmatch(text):
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            raise ValueError(f"invalid IPv4 address {text!r}") from None
    host = text.lower()
    if len(host) > 253 or not all(_LABEL_RE.fullmatch(label) for label in host.split(".")):
        raise ValueError(
            f"invalid host name {text!r} (use letters, digits, '-' and '.' in labels of 1 to 63 characters)"
        )
    return host


def _ipv6(text: str) -> str:
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        raise ValueError(f"invalid IPv6 address {text!r}") from None


def parse_host(text: str) -> str:
    """Validate a host without port: a DNS-style name, an IPv4 literal or a bracketed IPv6 literal.

    Returns the normalized host (lowercase; IPv6 compressed and without brackets).
    """
    if not isinstance(text, str):
        raise ValueError(f"a host must be a string, not {type(text).__name__}")
    if text.startswith("[") and text.endswith("]"):
        return _ipv6(text[1:-1])
    if ":" in text:
        raise ValueError("a host must not contain ':' (IPv6 addresses go in brackets; no port here)")
    return _hostname(text)


def parse_address(text: str, *, allow_port_zero: bool) -> Address:
    """Parse "host:port" ("127.0.0.1:8080", "[::1]:8080", "api.internal:80") into an Address.

    Port 0 (pick any free port) is accepted only when ``allow_port_zero`` is true.
    """
    if not isinstance(text, str):
        raise ValueError(f"an address must be a string, not {type(text).__name__}")
    if not text:
        raise ValueError("empty address")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError("missing ']' after the IPv6 address")
        host = _ipv6(text[1:end])
        rest = text[end + 1 :]
        if not rest:
            raise ValueError("missing port (use host:port)")
        if not rest.startswith(":"):
            raise ValueError(f"unexpected {rest!r} after the IPv6 address")
        port_text = rest[1:]
    else:
        host_text, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError("missing port (use host:port)")
        if "/" in text:
            raise ValueError("use host:port, without a scheme or path")
        if ":" in host_text:
            raise ValueError("IPv6 addresses must be in brackets, like [::1]:8080")
        host = _hostname(host_text)
    if not _PORT_RE.fullmatch(port_text):
        raise ValueError(f"invalid port {port_text!r}" if port_text else "missing port (use host:port)")
    port = int(port_text)
    if port == 0 and not allow_port_zero:
        raise ValueError("port 0 is not allowed here")
    if port > 65535:
        raise ValueError(f"port {port} is out of range (1 to 65535)")
    return Address(host, port)
