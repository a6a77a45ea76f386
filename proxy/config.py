"""Configuration: a TOML file (or command-line flags) turned into frozen dataclasses.

Theory of operation
-------------------
The schema *is* the dataclasses below.  Every field that can be written in TOML
carries, in its ``dataclasses.field`` metadata, a converter (a ``_Conv``: a
function that validates and normalizes the raw TOML value, plus the
"expected ..." text shown when it refuses one) and a one-line ``doc`` saying
what the key is for.  Defaults are the dataclass defaults.

``parse_config`` walks that schema with one generic routine, ``_parse_table``:
it rejects unknown keys, reports missing required keys, converts the present
ones and lets the dataclass fill in the rest.  Sub-tables, arrays of tables and
the ``[upstreams.NAME]`` map are converters too, so nesting needs no special
code.  A table class may define ``_validate(obj, data, path)`` for checks across
its own keys (``max_open_duration`` not below ``open_duration``, ``body`` and
``body_file`` exclusive, ...); ``_parse_table`` calls it on the built object.
After the walk a few cross-field checks run (unique names and listen
addresses, routes naming existing clusters, fallback clusters that exist and
form no cycle).

A fallback ``body_file`` is read while the config loads (relative to the
working directory, like ``access_log.path``), so a missing file is a config
error rather than a surprise under load; its bytes are kept in
``FallbackConfig.content``.

Durations become float seconds, sizes int bytes, addresses ``units.Address``.
Types are strict: a bool is not an int, an int is not a duration string.

Every problem raises ``ConfigError``, which prints as one line naming the
source, the key path (``upstreams.orders.servers[1].weight``), the offending
value and what was expected.  A ``Config`` is immutable; reloading means
building a new one.  ``Config.warnings()`` lists legal but suspicious
settings; ``Config.summary()`` is what ``edgeproxy check`` prints.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .sysinfo import cpu_quota, cpu_workers
from .units import Address, format_duration, format_size, parse_address, parse_duration, parse_host, parse_size

__all__ = [
    "AccessLogConfig", "AdminConfig", "BreakerConfig", "Config", "ConfigError", "DownstreamConfig", "FallbackConfig",
    "HeadersConfig", "HealthConfig", "IdleTierConfig", "LimitsConfig", "ListenerConfig", "PoolConfig", "RouteConfig",
    "ServerConfig", "TcpKeepaliveConfig", "UpstreamConfig", "UpstreamServerConfig", "load_config", "parse_config",
    "quick_config",
]

COMMAND_LINE = "<command line>"


# --------------------------------------------------------------------------- errors


def _toml_repr(value: Any, limit: int = 60) -> str:
    """Render a raw TOML value the way it would be written in the file."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = "nan" if isinstance(value, float) and math.isnan(value) else repr(value)
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, dict):
        text = "{...}"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(_toml_repr(item, limit) for item in value) + "]"
        if len(text) > limit:
            text = "[...]"
    elif isinstance(value, (datetime.date, datetime.time)):
        text = value.isoformat()
    else:
        text = str(value)
    if len(text) > limit:
        text = text[: limit - 4] + ('..."' if text.startswith('"') else "...")
    return text


class ConfigError(Exception):
    """A configuration problem, printed as exactly one line.

    ``source`` is the file name (or ``"<command line>"``), ``key`` the dotted
    key path (None for whole-file problems), ``value`` the raw offending value
    (None when there is none, e.g. a missing key), ``expected`` what would be
    accepted, ``reason`` an optional short explanation.
    """

    def __init__(self, source: str | None, key: str | None, value: Any = None, expected: str = "",
                 reason: str = "", missing: bool = False) -> None:
        super().__init__(source, key, value, expected, reason, missing)
        self.source = source
        self.key = key
        self.value = value
        self.expected = expected
        self.reason = reason
        self.missing = missing

    def __str__(self) -> str:
        head = self.source or "<config>"
        if self.key:
            head += f": {self.key}"
        if self.missing:
            return f"{head} is missing: expected {self.expected}"
        if self.key and self.value is not None:
            head += f" = {_toml_repr(self.value)}"
        tail = "; ".join(part for part in (self.reason, self.expected and f"expected {self.expected}") if part)
        return f"{head}: {tail}".replace("\n", " ")


class _Bad(Exception):
    """Raised by converters for a simple refusal (optional reason); becomes a ConfigError at the caller's key."""


@dataclass(frozen=True, slots=True)
class _Conv:
    expected: str
    fn: Callable[[Any, str], Any]


def _convert(conv: _Conv, value: Any, path: str) -> Any:
    try:
        return conv.fn(value, path)
    except _Bad as bad:
        raise ConfigError(None, path, value, conv.expected, reason=str(bad)) from None


_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")


def _join(path: str, key: str) -> str:
    part = key if _BARE_KEY_RE.fullmatch(key) else json.dumps(key, ensure_ascii=False)
    return f"{path}.{part}" if path else part


# --------------------------------------------------------------------------- converters


def _simple(expected: str, accept: Callable[[Any], bool], cast: Callable[[Any], Any] = lambda v: v) -> _Conv:
    """A converter that takes the raw value as it is (or cast) when ``accept`` says so."""

    def fn(value: Any, path: str) -> Any:
        if not accept(value):
            raise _Bad()
        return cast(value)

    return _Conv(expected, fn)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _boolean() -> _Conv:
    return _simple("true or false", lambda v: isinstance(v, bool))


def _integer(lo: int, hi: int | None = None) -> _Conv:
    expected = f"an integer from {lo} to {hi}" if hi is not None else f"an integer of at least {lo}"
    return _simple(expected, lambda v: _is_int(v) and lo <= v and (hi is None or v <= hi))


def _number(lo: float, hi: float) -> _Conv:
    accept = lambda v: (_is_int(v) or isinstance(v, float)) and lo <= v <= hi  # noqa: E731
    return _simple(f"a number from {lo:g} to {hi:g}", accept, float)


def _choice(*options: str) -> _Conv:
    expected = "one of " + ", ".join(f'"{option}"' for option in options)
    return _simple(expected, lambda v: isinstance(v, str) and v in options)


def _string(expected: str, check: Callable[[str], Any] | None = None) -> _Conv:
    """A string, passed through ``check`` (which normalizes it or raises ValueError with a reason)."""

    def fn(value: Any, path: str) -> Any:
        if not isinstance(value, str):
            raise _Bad()
        try:
            return check(value) if check else value
        except ValueError as exc:
            raise _Bad(str(exc)) from None

    return _Conv(expected, fn)


def _unit(expected: str, parse: Callable[[Any], Any], check: Callable[[Any], str]) -> _Conv:
    """A duration or size: unparsable shows just ``expected``; ``check`` returns a reason to refuse, or ""."""

    def fn(value: Any, path: str) -> Any:
        try:
            parsed = parse(value)
        except ValueError:
            raise _Bad() from None
        if reason := check(parsed):
            raise _Bad(reason)
        return parsed

    return _Conv(expected, fn)


def _duration(*, positive: bool = True, kernel_seconds: bool = False) -> _Conv:
    """Float seconds; ``positive`` refuses 0; ``kernel_seconds`` asks for whole seconds 1..32767 (TCP_KEEPIDLE)."""

    def check(seconds: float) -> str:
        if kernel_seconds and (seconds != int(seconds) or not 1 <= seconds <= 32767):
            return "must be a whole number of seconds from 1s to 32767s"
        return "must be greater than 0s" if positive and seconds <= 0 else ""

    return _unit('a duration like "250ms", "10s" or "5m"', parse_duration, check)


def _size(lo: int = 0, hi: int = 1024**3) -> _Conv:
    def check(n: int) -> str:
        return "" if lo <= n <= hi else f"must be between {format_size(lo)} and {format_size(hi)}"

    return _unit('a size like "512B", "64KiB" or "1MiB"', parse_size, check)


def _address(*, allow_port_zero: bool) -> _Conv:
    example = '"127.0.0.1:8080", "[::1]:8080" or "localhost:8080"'
    expected = f"an address like {example}" + ("" if allow_port_zero else " (port 1 to 65535)")
    return _string(expected, lambda text: parse_address(text, allow_port_zero=allow_port_zero))


_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_NAME_EXPECTED = "a name of up to 64 letters, digits, '_', '-' or '.'"


def _check_name(text: str) -> str:
    if not _NAME_RE.fullmatch(text):
        raise ValueError("")
    return text


_TCHAR_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _methods() -> _Conv:
    def fn(value: Any, path: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise _Bad()
        methods: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not _TCHAR_RE.fullmatch(item):
                raise ConfigError(None, f"{path}[{i}]", item, "an HTTP method name like \"GET\"")
            if item.upper() not in methods:
                methods.append(item.upper())
        return tuple(methods)

    return _Conv('an array of HTTP methods like ["GET", "HEAD"]', fn)


def _strings(expected: str, check: Callable[[str], str]) -> _Conv:
    """An array of strings, each passed through ``check`` (normalize or ValueError with a reason)."""

    def fn(value: Any, path: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise _Bad()
        out: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(None, f"{path}[{i}]", item, expected)
            try:
                out.append(check(item))
            except ValueError as exc:
                raise ConfigError(None, f"{path}[{i}]", item, expected, reason=str(exc) or None) from None
        return tuple(out)

    return _Conv(f"an array of {expected}s", fn)


def _eku(text: str) -> str:
    from .clientcert import eku_oid

    eku_oid(text)  # ValueError with a reason when unknown
    return text


def _subject(text: str) -> str:
    from .clientcert import normalise_subject

    normalise_subject(text)
    return text


def _header_name(text: str) -> str:
    if text and not _TCHAR_RE.fullmatch(text):
        raise ValueError("not a header field name")
    return text


_HSTS_RE = re.compile(r"max-age=\d+(\s*;\s*(includeSubDomains|preload))*", re.IGNORECASE)


def _hsts(text: str) -> str:
    if text and not _HSTS_RE.fullmatch(text.strip()):
        raise ValueError("not a Strict-Transport-Security value")
    return text.strip()


def _file_path(text: str) -> str:
    if not text or "\x00" in text:
        raise ValueError("")
    return text


def _route_host(text: str) -> str:
    host = text.lower()
    if host == "":
        return host
    if host == "*":
        raise ValueError('use "" to match any host')
    if host.startswith("*."):
        if host[2:].startswith("["):
            raise ValueError("a wildcard needs a host name after '*.'")
        parse_host(host[2:])
        return host
    bracketed = host.startswith("[")
    if (bracketed and not host.endswith("]")) or (not bracketed and host.count(":") == 1):
        raise ValueError("a route host must not include a port")
    parse_host(host)
    return host


def _host_rewrite(text: str) -> str:
    if "]:" in text or (not text.startswith("[") and text.count(":") == 1):
        parse_address(text, allow_port_zero=False)
    elif text:
        parse_host(text)
    return text


_PATH_RE = re.compile(r"/[\x21-\x7e]*")


def _path_prefix(text: str) -> str:
    if not _PATH_RE.fullmatch(text) or "?" in text or "#" in text:
        raise ValueError("")
    return text


def _log_path(text: str) -> str:
    if not text or "\x00" in text:
        raise ValueError("")
    return text


def _fraction() -> _Conv:
    """A rate in (0, 1]: 0 would make every window "bad", so it is refused."""
    accept = lambda v: (_is_int(v) or isinstance(v, float)) and 0 < v <= 1  # noqa: E731
    return _simple("a number greater than 0 and at most 1", accept, float)


def _positive_number() -> _Conv:
    accept = lambda v: (_is_int(v) or isinstance(v, float)) and 0 < v < math.inf  # noqa: E731
    return _simple("a number greater than 0", accept, float)


def _statuses(*, allow_empty: bool, example: str) -> _Conv:
    """An array of HTTP status codes (200..599), deduplicated and sorted."""
    item_expected = "an HTTP status code from 200 to 599"

    def fn(value: Any, path: str) -> tuple[int, ...]:
        if not isinstance(value, list) or (not value and not allow_empty):
            raise _Bad()
        codes: set[int] = set()
        for i, item in enumerate(value):
            if not _is_int(item) or not 200 <= item <= 599:
                raise ConfigError(None, f"{path}[{i}]", item, item_expected)
            codes.add(item)
        return tuple(sorted(codes))

    what = "an array" if allow_empty else "a non-empty array"
    return _Conv(f"{what} of HTTP status codes like {example}", fn)


def _method(text: str) -> str:
    if not _TCHAR_RE.fullmatch(text):
        raise ValueError("")
    if text.upper() == "CONNECT":
        raise ValueError("CONNECT opens a tunnel, it cannot check health")
    return text.upper()


_CHECK_PATH_RE = re.compile(r"/[\x21-\x7e]*")


def _check_path(text: str) -> str:
    if not _CHECK_PATH_RE.fullmatch(text) or "#" in text:
        raise ValueError("")
    return text


_HEADER_VALUE_RE = re.compile(r"[\t\x20-\x7e]*")
_CONTENT_TYPE_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+(;[\t\x20-\x7e]*)?")


def _content_type(text: str) -> str:
    if not _CONTENT_TYPE_RE.fullmatch(text):
        raise ValueError("")
    return text


# Headers the proxy writes itself on a fallback response (or that have their own key).
_FALLBACK_OWN_HEADERS = {
    "content-length": "the proxy sets it",
    "transfer-encoding": "the proxy sets it",
    "connection": "the proxy sets it",
    "content-type": "use content_type",
    "retry-after": "use retry_after",
}


def _header_table() -> _Conv:
    """A TOML table of header name -> value, kept in file order as a tuple of pairs."""

    def fn(value: Any, path: str) -> tuple[tuple[str, str], ...]:
        if not isinstance(value, dict):
            raise _Bad()
        pairs: list[tuple[str, str]] = []
        seen: dict[str, str] = {}
        for name, item in value.items():
            key = _join(path, name)
            if not _TCHAR_RE.fullmatch(name):
                raise ConfigError(None, key, None, "a header name of letters, digits and !#$%&'*+-.^_`|~",
                                  reason="invalid header name")
            lower = name.lower()
            if lower in _FALLBACK_OWN_HEADERS:
                raise ConfigError(None, key, None, "a header the proxy does not set itself",
                                  reason=_FALLBACK_OWN_HEADERS[lower])
            if lower in seen:
                raise ConfigError(None, key, None, "each header once", reason=f"same header as {seen[lower]}")
            if not isinstance(item, str) or not _HEADER_VALUE_RE.fullmatch(item):
                raise ConfigError(None, key, item, "a header value of printable ASCII characters")
            seen[lower] = key
            pairs.append((name, item))
        return tuple(pairs)

    return _Conv('a table of header names to values like {"Cache-Control" = "no-store"}', fn)


def _retry_after() -> _Conv:
    duration = _duration(positive=False)

    def fn(value: Any, path: str) -> str | float:
        if value in ("auto", "off"):
            return value
        try:
            return duration.fn(value, path)
        except _Bad:
            raise _Bad() from None

    return _Conv('"auto" (until the next probe of the breaker), "off" or a duration like "30s"', fn)


def _optional_name(text: str) -> str:
    if text and not _NAME_RE.fullmatch(text):
        raise ValueError("")
    return text


def _idle_tiers() -> _Conv:
    """An array of {below, idle_timeout} tables, ``below`` strictly rising."""

    def fn(value: Any, path: str) -> tuple:
        if not isinstance(value, list):
            raise _Bad()
        tiers: list[IdleTierConfig] = []
        for i, item in enumerate(value):
            tier = _parse_table(IdleTierConfig, item, f"{path}[{i}]")
            if tiers and tier.below <= tiers[-1].below:
                raise ConfigError(None, f"{path}[{i}].below", item.get("below"),
                                  f"a rate above the previous tier's {tiers[-1].below:g}",
                                  reason="tiers must be listed by rising rate")
            tiers.append(tier)
        return tuple(tiers)

    return _Conv('an array of tables like [{below = 10, idle_timeout = "30s"}]', fn)


# A fallback body is held in memory for the life of the config.
FALLBACK_BODY_LIMIT = 1024**2


def _read_body_file(name: str) -> bytes:
    """The bytes of ``name`` (relative to the working directory); ValueError with a reason."""
    try:
        st = os.stat(name)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if st.st_size > FALLBACK_BODY_LIMIT:
            raise ValueError(f"larger than {format_size(FALLBACK_BODY_LIMIT)}")
        with open(name, "rb") as fh:
            data = fh.read(FALLBACK_BODY_LIMIT + 1)
    except OSError as exc:
        raise ValueError(f"cannot read file: {exc.strerror or exc}") from None
    if len(data) > FALLBACK_BODY_LIMIT:
        raise ValueError(f"larger than {format_size(FALLBACK_BODY_LIMIT)}")
    return data


def _optional_path(text: str) -> str:
    if "\x00" in text:
        raise ValueError("")
    return text


def _table(cls: type) -> _Conv:
    return _Conv("a table", lambda value, path: _parse_table(cls, value, path))


def _array_of_tables(cls: type, expected: str, default_name: Callable[[int], str]) -> _Conv:
    def fn(value: Any, path: str) -> tuple:
        if not isinstance(value, list) or not value:
            raise _Bad()
        return tuple(
            _parse_table(cls, item, f"{path}[{i}]", defaults={"name": default_name(i)}) for i, item in enumerate(value)
        )

    return _Conv(expected, fn)


def _servers() -> _Conv:
    item_expected = '"host:port" or a table like {address = "host:port", weight = 2}'
    address = _address(allow_port_zero=False)

    def fn(value: Any, path: str) -> tuple[UpstreamServerConfig, ...]:
        if not isinstance(value, list) or not value:
            raise _Bad()
        servers: list[UpstreamServerConfig] = []
        for i, item in enumerate(value):
            key = f"{path}[{i}]"
            if isinstance(item, str):
                server = UpstreamServerConfig(address=_convert(address, item, key))
            elif isinstance(item, dict):
                server = _parse_table(UpstreamServerConfig, item, key)
            else:
                raise ConfigError(None, key, item, item_expected)
            for j, earlier in enumerate(servers):
                if earlier.address == server.address:
                    raise ConfigError(None, key, item, "each server listed once", reason=f"same address as {path}[{j}]")
            servers.append(server)
        return tuple(servers)

    return _Conv('a non-empty array of servers like ["10.0.0.1:8080", {address = "10.0.0.2:8080", weight = 2}]', fn)


def _clusters() -> _Conv:
    def fn(value: Any, path: str) -> dict[str, UpstreamConfig]:
        if not isinstance(value, dict) or not value:
            raise _Bad()
        clusters = {}
        for name, table in value.items():
            if not _NAME_RE.fullmatch(name):
                raise ConfigError(None, _join(path, name), None, _NAME_EXPECTED, reason="invalid cluster name")
            clusters[name] = _parse_table(UpstreamConfig, table, _join(path, name), fixed={"name": name})
        return clusters

    return _Conv("at least one [upstreams.NAME] table with servers = [...]", fn)


_CLUSTER_NAME_EXPECTED = "the name of an [upstreams.NAME] cluster"


REQUIRED: Any = dataclasses.MISSING


def _spec(default: Any, conv: _Conv, doc: str, *, required: bool = False) -> Any:
    """A schema field: default (``REQUIRED`` for none), converter and doc line; ``required`` overrides a default."""
    metadata = {"conv": conv, "doc": doc, "required": required, "toml": True}
    return field(default=default, metadata=metadata)


def _sub(cls: type, doc: str) -> Any:
    """A sub-table field, defaulting to the sub-table's own defaults."""
    return field(default_factory=cls, metadata={"conv": _table(cls), "doc": doc, "required": False, "toml": True})


def _internal(doc: str) -> Any:
    """A field that is not a TOML key (filled in by the parser)."""
    return field(metadata={"doc": doc, "toml": False})


def _parse_table(cls: type, data: Any, path: str, *, defaults: dict | None = None, fixed: dict | None = None) -> Any:
    """Build ``cls`` from a TOML table following the field metadata (the generic validator)."""
    if not isinstance(data, dict):
        raise ConfigError(None, path, data, "a table")
    fields = [f for f in dataclasses.fields(cls) if f.metadata.get("toml")]
    known = {f.name for f in fields}
    for key in data:
        if key not in known:
            raise ConfigError(None, _join(path, key), None, "one of: " + ", ".join(sorted(known)), reason="unknown key")
    kwargs = dict(fixed or {})
    for f in fields:
        key = _join(path, f.name)
        if f.name in data:
            kwargs[f.name] = _convert(f.metadata["conv"], data[f.name], key)
        elif defaults and f.name in defaults:
            kwargs[f.name] = defaults[f.name]
        elif f.metadata["required"] or (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING):
            raise ConfigError(None, key, None, f.metadata["conv"].expected, missing=True)
    obj = cls(**kwargs)
    # Checks across the keys of one table: a ``_validate(obj, data, path)`` hook returning the final object.
    validate = getattr(cls, "_validate", None)
    return validate(obj, data, path) if validate else obj


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True, slots=True)
class TcpKeepaliveConfig:
    enabled: bool = _spec(True, _boolean(), "send TCP keepalive probes so dead peers are noticed on idle connections")
    idle: float = _spec(60.0, _duration(kernel_seconds=True), "idle time before the first probe (whole seconds)")
    interval: float = _spec(10.0, _duration(kernel_seconds=True), "time between unanswered probes (whole seconds)")
    count: int = _spec(6, _integer(1, 127), "unanswered probes before the connection is dropped")


def _workers() -> _Conv:
    def fn(value: Any, path: str) -> int | str:
        if value == "auto":
            return "auto"
        if _is_int(value) and 1 <= value <= 256:
            return value
        raise _Bad()

    return _Conv('"auto" (one per CPU) or a number of worker processes from 1 to 256', fn)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    loop: str = _spec("uvloop", _choice("uvloop", "asyncio"), 'event loop: "uvloop" (fast) or "asyncio" (stdlib)')
    drain_timeout: float = _spec(30.0, _duration(positive=False),
                                 "on shutdown, how long in-flight requests may finish (0 = close at once)")
    max_connections: int = _spec(0, _integer(0), "client connections open at once, all listeners (0 = unlimited)")
    max_requests: int = _spec(0, _integer(0), "requests in flight at once, all listeners; beyond it 503 (0 = unlimited)")
    pid_file: str = _spec("", _string('"" or a file path', _optional_path),
                          "file the running proxy writes its PID to, for `edgeproxy reload` and init systems")
    workers: int | str = _spec("auto", _workers(),
                               'worker processes, each with its own event loop ("auto" = one per CPU, no more '
                               'than a cgroup CPU quota allows; 1 = a single process, no supervisor)')
    worker_watchdog: float = _spec(10.0, _duration(positive=False),
                                   "with workers: one whose event loop leaves the supervisor's pings unanswered "
                                   "this long is killed and restarted (0 = off)")

    def worker_count(self) -> int:
        """``workers`` resolved: "auto" is the number of CPUs this process may run on
        (its affinity mask), capped by a cgroup CPU quota (a container's CPU limit)."""
        if self.workers != "auto":
            return int(self.workers)
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # pragma: no cover - not Linux
            cpus = os.cpu_count() or 1
        return cpu_workers(cpu_quota(), cpus)


@dataclass(frozen=True, slots=True)
class AdminConfig:
    enabled: bool = _spec(True, _boolean(), "serve the admin endpoint (metrics, health); keep it off public networks")
    address: Address = _spec(Address("127.0.0.1", 9901), _address(allow_port_zero=True),
                             "where the admin endpoint listens (port 0 = any free port)")
    token: str = _spec("", _string("a string"),
                       'bearer token required for /metrics and /debug/* ("" = none; set it when not on loopback)')
    readyz_upstreams: bool = _spec(True, _boolean(),
                                   "/readyz also needs every routed cluster up; false keeps a replica ready "
                                   "(answering with fallbacks) while its upstreams are down")


@dataclass(frozen=True, slots=True)
class CertificateConfig:
    cert: str = _spec(REQUIRED, _string("a PEM file path", _file_path),
                      "PEM file: the certificate, then its intermediates (names served come from its SAN)")
    key: str = _spec(REQUIRED, _string("a PEM file path", _file_path), "PEM file: the certificate's private key")


def _certificates() -> _Conv:
    def fn(value: Any, path: str) -> tuple[CertificateConfig, ...]:
        if not isinstance(value, list):
            raise _Bad()
        return tuple(_parse_table(CertificateConfig, item, f"{path}[{i}]") for i, item in enumerate(value))

    return _Conv('an array of tables like [{cert = "server.pem", key = "server.key"}]', fn)


_TLS_VERSIONS = ("1.2", "1.3")
DEFAULT_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    name: str = _spec(REQUIRED, _string(_NAME_EXPECTED, _check_name),
                      'name used in logs and metrics (default "main", then "listener1", ...)')
    address: Address = _spec(REQUIRED, _address(allow_port_zero=True),
                             "host:port to accept client connections on (port 0 = any free port)")
    backlog: int = _spec(511, _integer(1, 65535), "kernel accept queue length (capped by net.core.somaxconn)")
    max_connections: int = _spec(0, _integer(0), "client connections open at once on this listener (0 = unlimited)")
    max_connections_per_ip: int = _spec(0, _integer(0), "client connections open at once per client IP (0 = unlimited)")
    accept_rate: float = _spec(0.0, _number(0, 1_000_000), "new connections accepted per second (0 = unlimited)")
    accept_burst: int = _spec(0, _integer(0), "new connections accepted at once above accept_rate (0 = one second's worth)")
    on_limit: str = _spec("pause", _choice("pause", "reject", "respond"),
                          'at a limit: "pause" leaves connections in the kernel queue, "reject" resets them, '
                          '"respond" answers 503')
    proxy_protocol: bool = _spec(False, _boolean(),
                                 "every connection starts with a PROXY protocol v1/v2 header (behind an L4 balancer)")
    tls: bool = _spec(False, _boolean(), "terminate TLS on this listener (needs [[listeners.certificates]])")
    certificates: tuple[CertificateConfig, ...] = _spec((), _certificates(),
                                                        "certificates served; SNI picks one by its SAN names, "
                                                        "the first is the default")
    sni_policy: str = _spec("default", _choice("default", "reject"),
                            'SNI naming no certificate: "default" serves the default one (counted), '
                            '"reject" aborts with unrecognized_name')
    no_sni_policy: str = _spec("default", _choice("default", "reject"),
                               'ClientHello without SNI: "default" serves the default certificate, "reject" aborts')
    strict_host: bool = _spec(False, _boolean(), "answer 421 when a request's Host differs from its connection's SNI")
    handshake_timeout: float = _spec(10.0, _duration(), "max time from accept to a finished TLS handshake")
    min_tls_version: str = _spec("1.2", _choice(*_TLS_VERSIONS), 'oldest TLS version accepted: "1.2" or "1.3"')
    ciphers: str = _spec(DEFAULT_CIPHERS, _string("an OpenSSL cipher list", _file_path),
                         "TLS 1.2 cipher suites, OpenSSL syntax (TLS 1.3 suites are OpenSSL's defaults)")
    session_tickets: bool = _spec(True, _boolean(), "resume TLS sessions with tickets (saves a full handshake)")
    groups: str = _spec("X25519:P-256:P-384", _string("an OpenSSL group list like \"X25519:P-256\"", _file_path),
                        "key exchange groups accepted (the big finite-field ones cost a handshake up to 100 ms)")
    client_auth: str = _spec("none", _choice("none", "optional", "required"),
                             'client certificates: "none", "optional" (verified when sent) or "required"')
    client_ca: str = _spec("", _string('"" or a PEM file path', _optional_path),
                           "PEM file of the CAs that issue client certificates (needed with client_auth)")
    client_eku: tuple[str, ...] = _spec(("clientAuth",), _strings("extended key usage name or OID", _eku),
                                        "a client certificate must carry one of these extended key usages")
    client_allowed_sans: tuple[str, ...] = _spec((), _strings("SAN (DNS name, e-mail or URI)", _file_path),
                                                 "client certificate SANs allowed (empty = any)")
    client_allowed_subjects: tuple[str, ...] = _spec((), _strings('subject like "CN=app,O=Example"', _subject),
                                                     "client certificate subjects allowed (empty = any)")
    client_subject_header: str = _spec("X-Client-Subject", _string("a header name or \"\"", _header_name),
                                       "request header carrying the verified client subject upstream "
                                       '(always stripped from clients; "" = none)')
    client_san_header: str = _spec("X-Client-SAN", _string("a header name or \"\"", _header_name),
                                   "request header carrying the verified client SANs upstream (always stripped)")
    client_fingerprint_header: str = _spec("X-Client-Cert-SHA256", _string("a header name or \"\"", _header_name),
                                           "request header carrying the client certificate's SHA-256 upstream "
                                           "(always stripped)")
    hsts: str = _spec("", _string('"" or a value like "max-age=31536000; includeSubDomains"', _hsts),
                      "Strict-Transport-Security sent on every proxied response of this TLS listener, in place of "
                      "the upstream's (\"\" = none)")

    @staticmethod
    def _validate(obj: "ListenerConfig", data: dict, path: str) -> "ListenerConfig":
        if obj.tls and not obj.certificates:
            raise ConfigError(None, _join(path, "certificates"), None,
                              'at least one {cert = "...", key = "..."} table', missing=True,
                              reason="tls = true needs a certificate")
        if obj.hsts and not obj.tls:
            raise ConfigError(None, _join(path, "hsts"), obj.hsts, '"" on a listener without TLS',
                              reason="browsers ignore Strict-Transport-Security received over plain HTTP")
        if obj.client_auth != "none" and not obj.client_ca:
            raise ConfigError(None, _join(path, "client_ca"), None, "a PEM file of client CAs", missing=True,
                              reason=f'client_auth = "{obj.client_auth}" needs it')
        return obj


@dataclass(frozen=True, slots=True)
class DownstreamConfig:
    header_timeout: float = _spec(60.0, _duration(), "max time for a client to send a complete request head")
    body_timeout: float = _spec(60.0, _duration(), "max gap between request body reads before the client is cut off")
    body_min_rate: int = _spec(1024, _size(0, 1024**3),
                               "slowest average request body rate accepted, bytes per second (0 = off); slower gets 408")
    body_min_rate_after: float = _spec(10.0, _duration(),
                                       "how long a body may be read before body_min_rate applies (slow starts are fine)")
    send_timeout: float = _spec(60.0, _duration(), "max time a write to a slow client may stall")
    keepalive_timeout: float = _spec(75.0, _duration(), "how long an idle client connection is kept open")
    lingering_time: float = _spec(30.0, _duration(positive=False),
                                  "after an answer that closes while the client may still be sending, read and "
                                  "discard its bytes this long at most so it gets the answer, not a reset (0 = off)")
    lingering_timeout: float = _spec(5.0, _duration(),
                                     "while lingering, the longest wait for more client bytes before closing")
    keepalive_requests: int = _spec(1000, _integer(1), "requests served on one client connection before closing it")
    max_header_size: int = _spec(16 * 1024, _size(1024, 1024**2),
                                 "largest request head (request line + headers) accepted; bigger gets 431")
    max_request_line: int = _spec(8 * 1024, _size(256, 1024**2), "longest request line accepted; longer gets 414")
    max_headers: int = _spec(100, _integer(1, 10000), "most header fields in a request head; more gets 431")
    drain_body_limit: int = _spec(1024**2, _size(),
                                  "unread request body discarded to keep a connection reusable; beyond it we close")
    max_pipelined_bytes: int = _spec(64 * 1024, _size(),
                                     "pipelined request bytes buffered while a response is in flight")
    tcp_keepalive: TcpKeepaliveConfig = _sub(TcpKeepaliveConfig, "TCP keepalive on client connections")


@dataclass(frozen=True, slots=True)
class HeadersConfig:
    x_forwarded: bool = _spec(True, _boolean(), "add X-Forwarded-For/-Proto/-Host so upstreams see the real client")
    request_id: bool = _spec(True, _boolean(), "add X-Request-Id when the client sent none, and log it")
    via: bool = _spec(False, _boolean(), "add a Via header to requests and responses")
    traceparent: str = _spec("pass", _choice("pass", "generate"),
                             '"pass" forwards W3C traceparent as sent; "generate" also creates one when missing')


@dataclass(frozen=True, slots=True)
class AccessLogConfig:
    enabled: bool = _spec(True, _boolean(), "write one log line per request")
    path: str = _spec("-", _string('a file path or "-" for stdout', _log_path), 'file to append to, or "-" for stdout')
    sample_rate: float = _spec(1.0, _number(0, 1), "fraction of requests logged, from 0 to 1")
    buffer_lines: int = _spec(8192, _integer(1), "lines buffered in memory before new lines are dropped")


@dataclass(frozen=True, slots=True)
class IdleTierConfig:
    below: float = _spec(REQUIRED, _positive_number(), "requests per second (recent rate) below which this tier applies")
    idle_timeout: float = _spec(REQUIRED, _duration(), "idle timeout of pooled connections in this tier")


_DEFAULT_IDLE_TIERS = (IdleTierConfig(10.0, 30.0), IdleTierConfig(100.0, 90.0))


@dataclass(frozen=True, slots=True)
class PoolConfig:
    max_idle_per_server: int = _spec(128, _integer(0), "idle keep-alive connections kept per server (0 = no reuse); below the concurrency, connections churn")
    max_idle_total: int = _spec(1024, _integer(0), "idle connections kept for the whole cluster")
    idle_timeout: float = _spec(60.0, _duration(),
                                "with adaptive_idle = false: close pooled connections idle this long (below the server's own timeout)")
    max_requests_per_connection: int = _spec(1000, _integer(1), "close an upstream connection after this many requests")
    connect_timeout: float = _spec(5.0, _duration(), "max time to open a TCP connection to a server")
    tcp_keepalive: TcpKeepaliveConfig = _sub(TcpKeepaliveConfig, "TCP keepalive on upstream connections")
    min_idle: int = _spec(0, _integer(0), "connections per server kept open and idle, ready for traffic (0 = none)")
    adaptive_idle: bool = _spec(True, _boolean(),
                                "pick the idle timeout from idle_tiers by request rate (false = idle_timeout always)")
    idle_tiers: tuple[IdleTierConfig, ...] = _spec(_DEFAULT_IDLE_TIERS, _idle_tiers(),
                                                   "request-rate tiers of the adaptive idle timeout, by rising rate")
    idle_timeout_above: float = _spec(300.0, _duration(), "adaptive idle timeout when the rate is above every tier")
    warmup_parallel: int = _spec(4, _integer(1, 1000), "connections opened at once per server when warming up")
    surge_factor: float = _spec(3.0, _number(1, 1000),
                                "warm up when the request rate exceeds its 1-minute average this many times")


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    enabled: bool = _spec(True, _boolean(), "stop sending to a server that keeps failing, probe it again later")
    failure_statuses: tuple[int, ...] = _spec((502, 503, 504), _statuses(allow_empty=True, example="[502, 503, 504]"),
                                              "response statuses counted as failures of the server")
    window: float = _spec(30.0, _duration(), "time window over which failure and slow-call rates are measured")
    window_buckets: int = _spec(30, _integer(1, 3600), "buckets the window is split into (its time resolution)")
    failure_rate: float = _spec(0.5, _fraction(), "open when this fraction of the window's requests failed")
    min_requests: int = _spec(20, _integer(1), "requests the window needs before a rate can open the breaker")
    consecutive_failures: int = _spec(5, _integer(0), "open after this many failures in a row (0 = off)")
    slow_call_threshold: float = _spec(0.0, _duration(positive=False),
                                      "a request slower than this is a slow call (0 = no slow-call tripping)")
    slow_call_rate: float = _spec(0.5, _fraction(),
                                  "open when this fraction of the window's requests were slow (and p95 is slow)")
    open_duration: float = _spec(1.0, _duration(), "first wait before probing an opened server; doubles on each reopen")
    max_open_duration: float = _spec(60.0, _duration(), "cap of the doubling wait before a probe")
    jitter: float = _spec(0.2, _number(0, 1), "random spread of the wait, as a fraction either way")
    half_open_requests: int = _spec(1, _integer(1, 1000), "trial requests in flight at once while probing")
    half_open_successes: int = _spec(3, _integer(1, 1000), "trial successes in a row that close the breaker")

    @staticmethod
    def _validate(obj: "BreakerConfig", data: dict, path: str) -> "BreakerConfig":
        if obj.max_open_duration < obj.open_duration:
            raise ConfigError(None, _join(path, "max_open_duration"), data.get("max_open_duration"),
                              "a duration of at least open_duration",
                              reason=f"shorter than open_duration ({format_duration(obj.open_duration)})")
        return obj


@dataclass(frozen=True, slots=True)
class HealthConfig:
    enabled: bool = _spec(False, _boolean(), "probe every server with an HTTP request; failing servers get no traffic")
    method: str = _spec("GET", _string('an HTTP method name like "GET"', _method), "request method of the check")
    path: str = _spec("/healthz", _string('a path starting with "/", like "/healthz"', _check_path),
                      "request path (and query) of the check")
    expected_statuses: tuple[int, ...] = _spec((200,), _statuses(allow_empty=False, example="[200, 204]"),
                                               "response statuses that mean healthy")
    body_contains: str = _spec("", _string("a string"), 'text the response body must contain ("" = any body)')
    interval: float = _spec(5.0, _duration(), "time between checks of a healthy server")
    timeout: float = _spec(2.0, _duration(), "a check not answered within this fails")
    healthy_threshold: int = _spec(2, _integer(1, 1000), "passed checks in a row that make a down server healthy")
    unhealthy_threshold: int = _spec(3, _integer(1, 1000), "failed checks in a row that take a server down")
    unhealthy_interval: float = _spec(2.0, _duration(), "first time between checks of a down server; doubles while down")
    max_unhealthy_interval: float = _spec(30.0, _duration(), "cap of the doubling time between checks of a down server")
    jitter: float = _spec(0.1, _number(0, 1), "random spread of the check intervals, as a fraction either way")
    host: str = _spec("", _string('"" or a host like "backend.internal" or "backend.internal:8080"', _host_rewrite),
                      'Host header of the check ("" = the server\'s address)')

    @staticmethod
    def _validate(obj: "HealthConfig", data: dict, path: str) -> "HealthConfig":
        if obj.max_unhealthy_interval < obj.unhealthy_interval:
            raise ConfigError(None, _join(path, "max_unhealthy_interval"), data.get("max_unhealthy_interval"),
                              "a duration of at least unhealthy_interval",
                              reason=f"shorter than unhealthy_interval ({format_duration(obj.unhealthy_interval)})")
        if obj.body_contains and obj.method == "HEAD":
            raise ConfigError(None, _join(path, "body_contains"), obj.body_contains, '"" with method = "HEAD"',
                              reason="a HEAD response has no body")
        return obj


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_connections: int = _spec(0, _integer(0), "connections open at once per server (0 = unlimited)")
    max_pending: int = _spec(0, _integer(0), "requests of the cluster waiting for a connection (0 = unlimited)")
    pending_timeout: float = _spec(5.0, _duration(), "max wait for a connection before the request overflows")
    max_requests: int = _spec(0, _integer(0), "requests in flight at once for the cluster (0 = unlimited)")
    retry_budget: float = _spec(20.0, _number(0, 100),
                                "retries as a percentage of the attempts over the last 10 seconds")
    retry_budget_min: int = _spec(3, _integer(0), "retries per second always allowed, whatever the traffic")


@dataclass(frozen=True, slots=True)
class FallbackConfig:
    status: int = _spec(503, _integer(200, 599), "status of the fallback response")
    body: str = _spec("", _string("a string"), 'body of the fallback response ("" = the proxy\'s JSON error)')
    body_file: str = _spec("", _string('"" or a file path', _optional_path),
                           "file whose content is the body, read when the config loads (instead of body)")
    headers: tuple[tuple[str, str], ...] = _spec((), _header_table(), "extra headers of the fallback response")
    content_type: str = _spec("application/json", _string('a media type like "text/html; charset=utf-8"',
                                                          _content_type),
                              "Content-Type of a fallback body")
    retry_after: str | float = _spec("auto", _retry_after(),
                                     'Retry-After: "auto" (time to the next probe), a duration, or "off"')
    upstream: str = _spec("", _string(f'"" or {_CLUSTER_NAME_EXPECTED}', _optional_name),
                          "send the request to this other cluster instead of answering (\"\" = answer)")
    content: bytes = field(default=b"", metadata={"doc": "the fallback body: body as UTF-8, or body_file's bytes",
                                                  "toml": False})

    @staticmethod
    def _validate(obj: "FallbackConfig", data: dict, path: str) -> "FallbackConfig":
        if obj.body and obj.body_file:
            raise ConfigError(None, _join(path, "body_file"), obj.body_file, "either body or body_file",
                              reason="body is set too")
        if obj.upstream and (obj.body or obj.body_file):
            raise ConfigError(None, _join(path, "upstream"), obj.upstream,
                              "either upstream or a static body (body, body_file)",
                              reason="body_file is set too" if obj.body_file else "body is set too")
        if obj.body_file:
            try:
                content = _read_body_file(obj.body_file)
            except ValueError as exc:
                raise ConfigError(None, _join(path, "body_file"), obj.body_file, "a readable file",
                                  reason=str(exc)) from None
        else:
            content = obj.body.encode("utf-8")
        return dataclasses.replace(obj, content=content)


@dataclass(frozen=True, slots=True)
class UpstreamServerConfig:
    address: Address = _spec(REQUIRED, _address(allow_port_zero=False), "server host:port")
    weight: int = _spec(1, _integer(1, 1000), "share of traffic relative to the other servers")


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    name: str = _internal("the NAME in [upstreams.NAME]")
    servers: tuple[UpstreamServerConfig, ...] = _spec(REQUIRED, _servers(),
                                                      'servers: "host:port" or {address = "host:port", weight = N}')
    balance: str = _spec("round_robin", _choice("round_robin", "least_request"),
                         '"round_robin" (weighted) or "least_request" (fewest requests in flight)')
    tries: int = _spec(2, _integer(1, 10), "total attempts per request, the first included")
    retry_methods: tuple[str, ...] = _spec(("GET", "HEAD", "OPTIONS", "PUT", "DELETE"), _methods(),
                                           "request methods that may be retried on another server")
    retry_on_timeout: bool = _spec(True, _boolean(),
                                   "retry those methods on another server after a response timeout (like nginx)")
    response_timeout: float = _spec(60.0, _duration(), "max wait for the response head once the request is sent")
    body_timeout: float = _spec(60.0, _duration(), "max stall of upstream body I/O either way (also the WebSocket idle timeout)")
    request_timeout: float = _spec(0.0, _duration(positive=False),
                                   "deadline from request head to response head, retries included (0 = off)")
    pool: PoolConfig = _sub(PoolConfig, "connection pool for this cluster")
    breaker: BreakerConfig = _sub(BreakerConfig, "circuit breaker of each server of this cluster")
    health: HealthConfig = _sub(HealthConfig, "active health checks of this cluster's servers")
    limits: LimitsConfig = _sub(LimitsConfig, "concurrency caps and retry budget of this cluster")
    fallback: FallbackConfig = _sub(FallbackConfig, "answer (or other cluster) when no server may take a request")


@dataclass(frozen=True, slots=True)
class RouteConfig:
    name: str = _spec(REQUIRED, _string(_NAME_EXPECTED, _check_name),
                      'name used in logs and metrics (default "route0", "route1", ...)')
    host: str = _spec("", _string('"" (any host), a host like "api.example.com" or a wildcard like "*.example.com"',
                                  _route_host),
                      'Host to match: "" any, "api.example.com" exact, "*.example.com" any subdomain')
    path_prefix: str = _spec("/", _string('a path starting with "/", like "/api/"', _path_prefix),
                             "request paths starting with this match")
    upstream: str = _spec("", _string(_CLUSTER_NAME_EXPECTED), "the [upstreams.NAME] cluster serving matched requests",
                          required=True)
    strip_prefix: bool = _spec(False, _boolean(), "remove path_prefix from the path before forwarding")
    host_rewrite: str = _spec("", _string('"" or a host like "backend.internal" or "backend.internal:8080"',
                                          _host_rewrite),
                              "Host header sent upstream (\"\" keeps the client's Host)")
    websocket: bool = _spec(False, _boolean(), "allow WebSocket (Upgrade) requests on this route")
    max_body_size: int = _spec(0, _size(0, 1 << 50), "largest request body accepted on this route (0 = no limit); "
                               "bigger gets 413")


_LISTENERS = _array_of_tables(ListenerConfig, "at least one [[listeners]] table",
                              lambda i: "main" if i == 0 else f"listener{i}")
_ROUTES = _array_of_tables(RouteConfig, "at least one [[routes]] table", lambda i: f"route{i}")


@dataclass(frozen=True, slots=True)
class Config:
    source: str = _internal('file the config came from, or "<command line>"')
    server: ServerConfig = _sub(ServerConfig, "process-wide settings")
    admin: AdminConfig = _sub(AdminConfig, "admin endpoint")
    listeners: tuple[ListenerConfig, ...] = _spec((ListenerConfig("main", Address("127.0.0.1", 8080)),), _LISTENERS,
                                                  "where client connections are accepted")
    downstream: DownstreamConfig = _sub(DownstreamConfig, "client-side limits and timeouts")
    headers: HeadersConfig = _sub(HeadersConfig, "headers added to proxied requests")
    access_log: AccessLogConfig = _sub(AccessLogConfig, "per-request log")
    upstreams: dict[str, UpstreamConfig] = field(default_factory=dict, metadata={
        "conv": _clusters(), "doc": "upstream clusters by name", "required": True, "toml": True})
    routes: tuple[RouteConfig, ...] = _spec((), _ROUTES, "request routing rules", required=True)

    def warnings(self) -> list[str]:
        """Legal but suspicious settings, as sentences for the operator."""
        out: list[str] = []
        if self.admin.enabled and self.admin.address.host in ("0.0.0.0", "::"):
            out.append(f"admin listens on {self.admin.address}, reachable from other hosts; prefer a loopback address")
        if (self.admin.enabled and not self.admin.token
                and self.admin.address.host not in ("127.0.0.1", "::1", "localhost")):
            out.append(f"admin listens on {self.admin.address} without a token; set admin.token to protect "
                       "/metrics and /debug/*")
        used = {route.upstream for route in self.routes}
        for name, cluster in self.upstreams.items():
            pool, n = cluster.pool, len(cluster.servers)
            if pool.max_idle_total < n * pool.max_idle_per_server:
                out.append(
                    f"upstreams.{name}: the per-server idle cap of {pool.max_idle_per_server} is unreachable: "
                    f"only {pool.max_idle_total} idle connections fit in the cluster's total cap, "
                    f"i.e. about {pool.max_idle_total // n} per server across {n} servers"
                )
            if pool.min_idle > pool.max_idle_per_server:
                out.append(
                    f"upstreams.{name}: pool.min_idle of {pool.min_idle} cannot be kept: at most "
                    f"max_idle_per_server = {pool.max_idle_per_server} idle connections are kept per server"
                )
            if name not in used:
                out.append(f"upstreams.{name} is not used by any route")
        seen: dict[tuple[str, str], int] = {}
        for i, route in enumerate(self.routes):
            match = (route.host, route.path_prefix)
            if match in seen:
                j = seen[match]
                out.append(
                    f"routes[{i}] ({route.name}) is shadowed by routes[{j}] ({self.routes[j].name}), which has "
                    f'the same host "{route.host or "*"}" and path_prefix "{route.path_prefix}"'
                )
            else:
                seen[match] = i
        return out

    def summary(self) -> str:
        """Short human summary, printed by ``edgeproxy check``."""
        lines = [f"config: {self.source}", "listeners:"]
        lines += [f"  {ln.name}  {ln.address}  backlog {ln.backlog}" for ln in self.listeners]
        lines.append("routes:")
        for route in self.routes:
            extras = [flag for flag in ("strip_prefix", "websocket") if getattr(route, flag)]
            if route.host_rewrite:
                extras.append(f"host_rewrite {route.host_rewrite}")
            suffix = f"  ({', '.join(extras)})" if extras else ""
            lines.append(f"  {route.name}  {route.host or '*'}  {route.path_prefix} -> {route.upstream}{suffix}")
        lines.append("clusters:")
        for name, cluster in self.upstreams.items():
            pool = cluster.pool
            lines += [
                f"  {name}  {cluster.balance}  tries {cluster.tries}",
                "    servers: " + ", ".join(f"{s.address} (weight {s.weight})" for s in cluster.servers),
                f"    pool: {pool.max_idle_per_server} idle/server, {pool.max_idle_total} idle total, "
                f"idle_timeout {format_duration(pool.idle_timeout)}, "
                f"connect_timeout {format_duration(pool.connect_timeout)}",
            ]
            breaker, health, fallback = cluster.breaker, cluster.health, cluster.fallback
            parts = [
                f"breaker {'on' if breaker.enabled else 'off'}",
                f"health {health.method} {health.path} every {format_duration(health.interval)}"
                if health.enabled else "health off",
                f"retry budget {cluster.limits.retry_budget:g}% (min {cluster.limits.retry_budget_min})",
                f"fallback -> {fallback.upstream}" if fallback.upstream else f"fallback {fallback.status}",
            ]
            lines.append("    " + ", ".join(parts))
        lines.append(f"admin: {self.admin.address}" if self.admin.enabled else "admin: disabled")
        return "\n".join(lines)


# --------------------------------------------------------------------------- entry points


def _duplicates(entries: list[tuple[str, Any, Any]], what: str) -> None:
    """Raise on the first (key, comparable, raw value) whose comparable appeared before."""
    seen: dict[Any, str] = {}
    for key, comparable, raw in entries:
        if comparable in seen:
            raise ConfigError(None, key, raw, f"a unique {what}", f"same {what} as {seen[comparable]}")
        seen[comparable] = key


def _check_cross_fields(config: Config, data: dict) -> None:
    raw_listeners = data.get("listeners") or [{}]
    _duplicates(
        [(f"listeners[{i}].name", ln.name, ln.name) for i, ln in enumerate(config.listeners)], "listener name"
    )
    addresses = [
        (f"listeners[{i}].address", ln.address, raw_listeners[i].get("address"))
        for i, ln in enumerate(config.listeners)
        if ln.address.port != 0
    ]
    if config.admin.enabled and config.admin.address.port != 0:
        addresses.append(("admin.address", config.admin.address, data.get("admin", {}).get("address")))
    _duplicates(addresses, "address")
    _duplicates([(f"routes[{i}].name", r.name, r.name) for i, r in enumerate(config.routes)], "route name")
    for i, route in enumerate(config.routes):
        if route.upstream not in config.upstreams:
            known = ", ".join(config.upstreams)
            expected = f"{_CLUSTER_NAME_EXPECTED}, one of: {known}"
            raise ConfigError(None, f"routes[{i}].upstream", route.upstream, expected)
    _check_fallbacks(config)


def _check_fallbacks(config: Config) -> None:
    """Fallback clusters exist, are not the cluster itself, and never lead back to it."""
    clusters = config.upstreams
    for name, cluster in clusters.items():
        target = cluster.fallback.upstream
        if not target:
            continue
        key = f"{_join('upstreams', name)}.fallback.upstream"
        if target == name:
            raise ConfigError(None, key, target, "another cluster", reason="a cluster cannot fall back to itself")
        if target not in clusters:
            others = ", ".join(other for other in clusters if other != name)
            expected = f"{_CLUSTER_NAME_EXPECTED}, one of: {others}" if others else "another [upstreams.NAME] cluster"
            raise ConfigError(None, key, target, expected, reason="no such cluster" if others else "there is none")
    for name in clusters:
        chain = [name]
        current = clusters[name].fallback.upstream
        while current and current not in chain:
            chain.append(current)
            current = clusters[current].fallback.upstream
        if current == name:
            key = f"{_join('upstreams', name)}.fallback.upstream"
            raise ConfigError(None, key, chain[1], "a chain of fallbacks that ends",
                              reason="fallback cycle: " + " -> ".join(chain + [name]))


def parse_config(data: dict, source: str) -> Config:
    """Validate an already-parsed TOML document and build the Config."""
    try:
        config = _parse_table(Config, data, "", fixed={"source": source})
        _check_cross_fields(config, data)
    except ConfigError as exc:
        raise ConfigError(source, exc.key, exc.value, exc.expected, exc.reason, exc.missing) from None
    return config


def load_config(path: str | os.PathLike) -> Config:
    """Read and validate a TOML config file."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(source, None, reason=f"cannot read file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, None, reason=f"invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, None, reason=f"not valid UTF-8 (byte {exc.start})") from None
    return parse_config(data, source)


def _field_default(cls: type, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def quick_config(listen: list[str], upstreams: list[str], admin: str | None, loop: str | None = None,
                 certs: Sequence[tuple[str, str]] = ()) -> Config:
    """Config for ``edgeproxy run --listen ADDR --upstream HOST:PORT`` (no file); defaults elsewhere.

    ``certs`` is a list of (certificate file, key file): when given, every
    listener is a TLS listener serving them, the first pair being the default.
    """
    data: dict[str, Any] = {
        "upstreams": {"default": {"servers": list(upstreams)}},
        "routes": [{"name": "default", "path_prefix": "/", "upstream": "default"}],
    }
    if listen:
        data["listeners"] = [{"address": address} for address in listen]
    if certs:
        certificates = [{"cert": cert, "key": key} for cert, key in certs]
        default_listeners = [{"address": str(ln.address)} for ln in _field_default(Config, "listeners")]
        data["listeners"] = [{**listener, "tls": True, "certificates": certificates}
                             for listener in data.get("listeners") or default_listeners]
    if admin is not None:
        data["admin"] = {"address": admin}
    if loop is not None:
        data["server"] = {"loop": loop}
    return parse_config(data, COMMAND_LINE)
