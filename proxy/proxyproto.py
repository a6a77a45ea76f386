"""PROXY protocol header parsing and building, versions 1 and 2 (sans-IO).

Theory of operation
-------------------
Behind an L4 load balancer every connection comes from the balancer; the
balancer says who the real client is by sending a PROXY protocol header
(HAProxy's spec, "The PROXY protocol", versions 1 and 2) before the first
byte of HTTP. The engine reads bytes into its buffer and, on each arrival,
calls ``parse(buf)`` until it stops returning None:

* ``(info, consumed)`` — a complete header; ``buf[consumed:]`` is the start
  of the client's HTTP bytes (the balancer may send them in the same
  segment, so ``consumed`` is exact);
* ``None`` — the bytes so far are a valid prefix of a header, wait for more;
* ``ProxyHeaderError(reason)`` — these bytes cannot be a valid header: close
  the connection (the spec forbids guessing, so there is no fallback to
  plain HTTP on a listener that expects the header).

No socket, clock or event loop here; the engine owns the read timeout.

Version 1 is one human-readable line::

    PROXY TCP4 <src> <dst> <sport> <dport>\\r\\n
    PROXY TCP6 <src> <dst> <sport> <dport>\\r\\n
    PROXY UNKNOWN[ <anything>]\\r\\n

at most ``MAX_V1`` (107) bytes including CRLF, fields separated by one space.
Addresses must be valid for the family (no IPv6 zone ids), ports decimal
0..65535 without sign or leading zero. A bare LF, a CR not followed by LF,
or any byte outside printable ASCII is an error. ``UNKNOWN`` ignores the rest
of the line, as the spec says.

Version 2 is binary: the 12-byte signature ``V2_SIGNATURE``, a version and
command byte (high nibble 2; low nibble 0 LOCAL, 1 PROXY), a family and
protocol byte, a 16-bit big-endian length, then that many bytes: the address
block for the family, then TLVs (type, 16-bit length, value), kept raw in
``ProxyInfo.tlvs`` in wire order and not interpreted (SSL sub-TLVs, CRC32C
and vendor types are the caller's business).

Decisions:

* Family names are one vocabulary for both versions: ``"TCP4"``,
  ``"TCP6"``, ``"UNIX"`` and ``"UNKNOWN"`` (v1 UNKNOWN, v2 AF_UNSPEC and
  every LOCAL header). ``"UNKNOWN"`` means "no addresses: use the socket's
  own peer"; its four address fields are None.
* LOCAL (v2; the balancer's own health checks): per the spec the receiver
  discards the family and the address block, so any family byte is
  accepted, the whole payload is skipped and ``tlvs`` is empty.
* PROXY (v2) accepts the family/protocol bytes 0x00 (UNSPEC; the payload
  after the header is read as TLVs), 0x11 (TCP over IPv4), 0x21 (TCP over
  IPv6) and 0x31 (AF_UNIX stream). DGRAM (0x12, 0x22, 0x32) is refused: this
  is a TCP proxy and a datagram header on a stream is a misconfiguration.
  Every other byte is invalid per the spec and refused.
* AF_UNIX is accepted, family ``"UNIX"``: ``src_addr``/``dst_addr`` are the
  socket paths (the 108-byte fields cut at the first NUL, decoded UTF-8 with
  ``surrogateescape``), ports None. An all-zero field is an unnamed socket,
  ``""``; a field that starts with NUL is an abstract-namespace name,
  returned as ``"\\x00name"`` (trailing NULs removed). An engine that wants
  an IP address treats ``"UNIX"`` like ``"UNKNOWN"``.
* The v2 length is capped at ``MAX_V2_PAYLOAD`` (4096) bytes although the
  field allows 65535: real balancers send a few hundred bytes of TLVs at
  most, and the cap is checked as soon as the 16-byte fixed part is there,
  so a peer cannot make the engine buffer 64 KiB before anything is
  checked. A length too short for the family's address block is refused at
  the same point.
* Addresses are returned as text in the form ``getpeername()`` gives
  (IPv6 through ``inet_ntop``), so ``"::ffff:1.2.3.4"`` stays readable and
  the same client looks the same with or without a balancer in front.

Partial input is checked as it arrives, cheaply: the bytes so far must be a
prefix of one of the two signatures (so ``b"G"`` — plain HTTP on a PROXY
listener — fails at the first byte); a v1 line so far must be printable
ASCII with no stray CR; the v2 version, command, family and length are
checked as soon as their bytes are there. The full v1 field check runs once
the CRLF is in. Each call looks at no more than ``MAX_V1`` bytes (v1) or
``16 + MAX_V2_PAYLOAD`` bytes (v2) and uses no regular expressions, so
calling it on every arrival until complete stays linear in the header size.

``build_v1(info)`` and ``build_v2(info)`` serialise a ``ProxyInfo`` (tests,
and a test client playing the balancer). ``parse(build_vN(info))`` gives
``info`` back for any info the version can carry, except that a v2 LOCAL
comes back as family UNKNOWN with no addresses and no TLVs. ``build_v2``
does not apply ``MAX_V2_PAYLOAD``, so tests can build an oversized header.
"""

from __future__ import annotations

import ipaddress
import socket
import string
from dataclasses import dataclass
from typing import Optional

__all__ = [
    "MAX_V1",
    "MAX_V2_PAYLOAD",
    "V1_SIGNATURE",
    "V2_SIGNATURE",
    "ProxyHeaderError",
    "ProxyInfo",
    "build_v1",
    "build_v2",
    "parse",
]

V1_SIGNATURE = b"PROXY "
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
# Longest v1 line the spec allows, CRLF included.
MAX_V1 = 107
V2_HEADER_LEN = 16  # signature, ver/cmd, fam/proto, 16-bit length
# Largest v2 payload (address block + TLVs) accepted; see the module docstring.
MAX_V2_PAYLOAD = 4096

_V2_VERSION = 0x2
_V2_COMMANDS = {0x0: "LOCAL", 0x1: "PROXY"}
# family/protocol byte -> (family name, address block length) for PROXY
_V2_FAMILIES = {
    0x00: ("UNKNOWN", 0),
    0x11: ("TCP4", 12),
    0x21: ("TCP6", 36),
    0x31: ("UNIX", 216),
}
_V2_DGRAM = frozenset({0x12, 0x22, 0x32})
_V2_FAMILY_BYTE = {name: fam for fam, (name, _) in _V2_FAMILIES.items()}
_UNIX_PATH_LEN = 108

_PRINTABLE = string.printable.encode("ascii").translate(None, b"\t\n\r\x0b\x0c")
_DIGITS = frozenset(b"0123456789")


class ProxyHeaderError(Exception):
    """The bytes cannot be a valid PROXY header; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ProxyInfo:
    """What a PROXY header says. Address fields are None for UNKNOWN (and
    LOCAL); ports are None for UNIX. ``tlvs`` is ((type, value), ...), v2 only."""

    version: int
    command: str
    family: str
    src_addr: Optional[str] = None
    src_port: Optional[int] = None
    dst_addr: Optional[str] = None
    dst_port: Optional[int] = None
    tlvs: tuple[tuple[int, bytes], ...] = ()


def parse(buf: bytes | bytearray | memoryview) -> tuple[ProxyInfo, int] | None:
    """Parse a PROXY header at the start of ``buf``.

    Returns ``(info, consumed)`` when complete, None when more bytes are
    needed, raises ``ProxyHeaderError`` when no valid header can start so."""
    mv = memoryview(buf)
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    n = len(mv)
    if n == 0:
        return None
    if mv[:6] == V1_SIGNATURE[: min(n, 6)]:
        return _parse_v1(bytes(mv[:MAX_V1])) if n >= 6 else None
    if mv[:12] == V2_SIGNATURE[: min(n, 12)]:
        return _parse_v2(mv) if n >= 12 else None
    raise ProxyHeaderError("no PROXY protocol signature")


# -- version 1 ---------------------------------------------------------------


def _check_line_bytes(line: bytes) -> None:
    if b"\r" in line:
        raise ProxyHeaderError("v1: CR not followed by LF")
    if b"\n" in line:  # the caller cut at the first LF; kept for safety
        raise ProxyHeaderError("v1: bare LF")
    bad = line.translate(None, _PRINTABLE)
    if bad:
        raise ProxyHeaderError(f"v1: invalid byte 0x{bad[0]:02x}")


def _parse_v1(head: bytes) -> tuple[ProxyInfo, int] | None:
    lf = head.find(b"\n")
    if lf < 0:
        partial = head[:-1] if head.endswith(b"\r") else head
        _check_line_bytes(partial)
        if len(head) >= MAX_V1:
            raise ProxyHeaderError(f"v1: no CRLF within {MAX_V1} bytes")
        return None
    if head[lf - 1] != 0x0D:
        raise ProxyHeaderError("v1: bare LF, CRLF expected")
    line = head[: lf - 1]
    _check_line_bytes(line)
    fields = line[len(V1_SIGNATURE):].decode("ascii").split(" ")
    family = fields[0]
    if family == "UNKNOWN":
        return ProxyInfo(1, "PROXY", "UNKNOWN"), lf + 1
    if family not in ("TCP4", "TCP6"):
        raise ProxyHeaderError(f"v1: bad family {family[:16]!r}")
    if len(fields) != 5:
        raise ProxyHeaderError(f"v1: {family} needs 5 fields, got {len(fields)}")
    _, src, dst, sport, dport = fields
    return ProxyInfo(
        1, "PROXY", family,
        _v1_addr(family, src, "source"), _v1_port(sport, "source"),
        _v1_addr(family, dst, "destination"), _v1_port(dport, "destination"),
    ), lf + 1


def _v1_addr(family: str, text: str, which: str) -> str:
    try:
        if family == "TCP4":
            return str(ipaddress.IPv4Address(text))
        if "%" in text:  # ipaddress takes zone ids; the spec does not
            raise ValueError(text)
        return socket.inet_ntop(socket.AF_INET6, ipaddress.IPv6Address(text).packed)
    except ValueError:
        raise ProxyHeaderError(f"v1: bad {family} {which} address {text[:45]!r}") from None


def _v1_port(text: str, which: str) -> int:
    raw = text.encode("ascii")
    if not raw or len(raw) > 5 or not _DIGITS.issuperset(raw) or (len(raw) > 1 and raw[0] == 0x30):
        raise ProxyHeaderError(f"v1: bad {which} port {text[:8]!r}")
    port = int(raw)
    if port > 65535:
        raise ProxyHeaderError(f"v1: {which} port {port} out of range")
    return port


# -- version 2 ---------------------------------------------------------------


def _parse_v2(mv: memoryview) -> tuple[ProxyInfo, int] | None:
    n = len(mv)
    if n < 13:
        return None
    ver, cmd_nibble = mv[12] >> 4, mv[12] & 0x0F
    if ver != _V2_VERSION:
        raise ProxyHeaderError(f"v2: unsupported version {ver}")
    command = _V2_COMMANDS.get(cmd_nibble)
    if command is None:
        raise ProxyHeaderError(f"v2: unknown command 0x{cmd_nibble:x}")
    if n < 14:
        return None
    fam = mv[13]
    family, block = "UNKNOWN", 0
    if command == "PROXY":
        if fam in _V2_DGRAM:
            raise ProxyHeaderError(f"v2: unsupported DGRAM family/protocol 0x{fam:02x}")
        if fam not in _V2_FAMILIES:
            raise ProxyHeaderError(f"v2: invalid family/protocol 0x{fam:02x}")
        family, block = _V2_FAMILIES[fam]
    if n < V2_HEADER_LEN:
        return None
    length = (mv[14] << 8) | mv[15]
    if length > MAX_V2_PAYLOAD:
        raise ProxyHeaderError(f"v2: length {length} over the {MAX_V2_PAYLOAD} cap")
    if length < block:
        raise ProxyHeaderError(f"v2: length {length} too short for {family} addresses ({block})")
    total = V2_HEADER_LEN + length
    if n < total:
        return None
    if command == "LOCAL":
        return ProxyInfo(2, "LOCAL", "UNKNOWN"), total
    payload = bytes(mv[V2_HEADER_LEN:total])
    addrs = _v2_addresses(family, payload[:block])
    return ProxyInfo(2, "PROXY", family, *addrs, tlvs=_v2_tlvs(payload, block)), total


def _v2_addresses(family: str, block: bytes) -> tuple:
    if family == "TCP4":
        return (str(ipaddress.IPv4Address(block[0:4])), int.from_bytes(block[8:10], "big"),
                str(ipaddress.IPv4Address(block[4:8])), int.from_bytes(block[10:12], "big"))
    if family == "TCP6":
        return (socket.inet_ntop(socket.AF_INET6, block[0:16]), int.from_bytes(block[32:34], "big"),
                socket.inet_ntop(socket.AF_INET6, block[16:32]), int.from_bytes(block[34:36], "big"))
    if family == "UNIX":
        return (_unix_path(block[:_UNIX_PATH_LEN]), None, _unix_path(block[_UNIX_PATH_LEN:]), None)
    return (None, None, None, None)


def _unix_path(raw: bytes) -> str:
    if raw[:1] == b"\x00":
        name = raw[1:].rstrip(b"\x00")
        return "\x00" + name.decode("utf-8", "surrogateescape") if name else ""
    return raw.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _v2_tlvs(payload: bytes, off: int) -> tuple[tuple[int, bytes], ...]:
    out = []
    end = len(payload)
    while off < end:
        if end - off < 3:
            raise ProxyHeaderError(f"v2: truncated TLV at offset {V2_HEADER_LEN + off}")
        tlv_type = payload[off]
        tlv_len = (payload[off + 1] << 8) | payload[off + 2]
        off += 3
        if off + tlv_len > end:
            raise ProxyHeaderError(f"v2: TLV 0x{tlv_type:02x} length {tlv_len} overruns the header")
        out.append((tlv_type, payload[off:off + tlv_len]))
        off += tlv_len
    return tuple(out)


# -- building ----------------------------------------------------------------


def build_v1(info: ProxyInfo) -> bytes:
    """Serialise ``info`` as a v1 line. Raises ValueError for what v1 cannot
    carry (LOCAL, UNIX) or for bad addresses/ports."""
    if info.command != "PROXY":
        raise ValueError("v1 has no LOCAL command")
    if info.family == "UNKNOWN":
        return b"PROXY UNKNOWN\r\n"
    if info.family not in ("TCP4", "TCP6"):
        raise ValueError(f"v1 cannot carry family {info.family!r}")
    src = _pack_ip(info.family, info.src_addr)
    dst = _pack_ip(info.family, info.dst_addr)
    fmt = (lambda b: str(ipaddress.IPv4Address(b))) if info.family == "TCP4" else (
        lambda b: socket.inet_ntop(socket.AF_INET6, b))
    line = (f"PROXY {info.family} {fmt(src)} {fmt(dst)} "
            f"{_check_port(info.src_port)} {_check_port(info.dst_port)}\r\n").encode("ascii")
    assert len(line) <= MAX_V1
    return line


def build_v2(info: ProxyInfo) -> bytes:
    """Serialise ``info`` as a v2 header. A LOCAL info may carry addresses
    (they are sent, and ignored by the receiver) or family UNKNOWN."""
    cmd = {"LOCAL": 0x0, "PROXY": 0x1}.get(info.command)
    if cmd is None:
        raise ValueError(f"unknown command {info.command!r}")
    fam = _V2_FAMILY_BYTE.get(info.family)
    if fam is None:
        raise ValueError(f"v2 cannot carry family {info.family!r}")
    if info.family in ("TCP4", "TCP6"):
        block = (_pack_ip(info.family, info.src_addr) + _pack_ip(info.family, info.dst_addr)
                 + _check_port(info.src_port).to_bytes(2, "big")
                 + _check_port(info.dst_port).to_bytes(2, "big"))
    elif info.family == "UNIX":
        block = _pack_unix(info.src_addr) + _pack_unix(info.dst_addr)
    else:
        block = b""
    parts = [block]
    for tlv_type, value in info.tlvs:
        if not 0 <= tlv_type <= 0xFF or len(value) > 0xFFFF:
            raise ValueError(f"bad TLV type {tlv_type} or length {len(value)}")
        parts.append(bytes([tlv_type]) + len(value).to_bytes(2, "big") + bytes(value))
    payload = b"".join(parts)
    if len(payload) > 0xFFFF:
        raise ValueError(f"v2 payload of {len(payload)} bytes does not fit the length field")
    return V2_SIGNATURE + bytes([0x20 | cmd, fam]) + len(payload).to_bytes(2, "big") + payload


def _pack_ip(family: str, addr: Optional[str]) -> bytes:
    if addr is None:
        raise ValueError(f"{family} needs addresses")
    if family == "TCP4":
        return ipaddress.IPv4Address(addr).packed
    if "%" in addr:
        raise ValueError(f"zone id in {addr!r}")
    return ipaddress.IPv6Address(addr).packed


def _check_port(port: Optional[int]) -> int:
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"bad port {port!r}")
    return port


def _pack_unix(path: Optional[str]) -> bytes:
    raw = (path or "").encode("utf-8", "surrogateescape")
    if len(raw) > _UNIX_PATH_LEN:
        raise ValueError(f"UNIX path of {len(raw)} bytes over {_UNIX_PATH_LEN}")
    return raw.ljust(_UNIX_PATH_LEN, b"\x00")
