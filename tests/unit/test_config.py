import dataclasses
import operator
import pickle
import typing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.config import (
    AccessLogConfig,
    AdminConfig,
    BreakerConfig,
    CertificateConfig,
    Config,
    ConfigError,
    DownstreamConfig,
    FallbackConfig,
    HeadersConfig,
    HealthConfig,
    IdleTierConfig,
    LimitsConfig,
    ListenerConfig,
    PoolConfig,
    RouteConfig,
    ServerConfig,
    TcpKeepaliveConfig,
    UpstreamConfig,
    UpstreamServerConfig,
    load_config,
    parse_config,
    quick_config,
)
from proxy.units import Address

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"

UPSTREAM = '[upstreams.orders]\nservers = ["10.0.0.1:8080", "10.0.0.2:8080"]\n'
ROUTE = '[[routes]]\nupstream = "orders"\n'
MINIMAL = UPSTREAM + ROUTE


@pytest.fixture
def load(tmp_path, monkeypatch):
    """Write TOML text to ./config.toml and load it, so errors start with "config.toml: "."""
    monkeypatch.chdir(tmp_path)

    def _load(text: str) -> Config:
        Path("config.toml").write_text(text, encoding="utf-8")
        return load_config("config.toml")

    return _load


def error_of(load, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(text)
    return info.value


# --------------------------------------------------------------------------- error messages

ERRORS = [
    # (id, TOML, key path, value as shown, expected text)
    ("unknown top-level key", "bogus = 1\n" + MINIMAL, "bogus", None, "unknown key; expected one of: access_log, admin"),
    ("unknown key in table", MINIMAL + "[server]\nloops = 2\n", "server.loops", None, "expected one of: drain_timeout, loop"),
    (
        "unknown nested key",
        MINIMAL + '[upstreams.orders.pool]\nidel_timeout = "10s"\n',
        "upstreams.orders.pool.idel_timeout",
        None,
        "unknown key; expected one of: adaptive_idle, connect_timeout, idle_tiers, idle_timeout, idle_timeout_above",
    ),
    (
        "unknown key in sub-sub-table",
        MINIMAL + "[downstream.tcp_keepalive]\ncnt = 3\n",
        "downstream.tcp_keepalive.cnt",
        None,
        "expected one of: count, enabled, idle, interval",
    ),
    (
        "unknown key in array entry",
        MINIMAL + '[[listeners]]\naddress = "127.0.0.1:8080"\nport = 80\n',
        "listeners[0].port",
        None,
        "unknown key; expected one of: accept_burst, accept_rate, address, backlog, certificates, ciphers, "
        "client_allowed_sans, client_allowed_subjects, client_auth, client_ca, client_eku, client_fingerprint_header, "
        "client_san_header, client_subject_header, groups, handshake_timeout, hsts, max_connections, max_connections_per_ip, "
        "min_tls_version, name, no_sni_policy, on_limit, proxy_protocol, session_tickets, sni_policy, strict_host, tls",
    ),
    (
        "hsts without tls",
        MINIMAL + '[[listeners]]\naddress = "127.0.0.1:8080"\nhsts = "max-age=600"\n',
        "listeners[0].hsts",
        '"max-age=600"',
        'browsers ignore Strict-Transport-Security received over plain HTTP; expected "" on a listener without TLS',
    ),
    (
        "hsts not a Strict-Transport-Security value",
        MINIMAL + '[[listeners]]\naddress = "127.0.0.1:8080"\nhsts = "1 year"\n',
        "listeners[0].hsts",
        '"1 year"',
        'expected "" or a value like "max-age=31536000; includeSubDomains"',
    ),
    (
        "unknown key in server table",
        '[upstreams.orders]\nservers = [{address = "10.0.0.1:80", wieght = 2}]\n' + ROUTE,
        "upstreams.orders.servers[0].wieght",
        None,
        "expected one of: address, weight",
    ),
    ("int for string", MINIMAL + "[server]\nloop = 1\n", "server.loop", "1", 'expected one of "uvloop", "asyncio"'),
    ("bool for int", MINIMAL + '[[listeners]]\naddress = "127.0.0.1:1"\nbacklog = true\n', "listeners[0].backlog", "true",
     "expected an integer from 1 to 65535"),
    ("string for bool", MINIMAL + '[headers]\nvia = "yes"\n', "headers.via", '"yes"', "expected true or false"),
    ("int for bool", MINIMAL + "[admin]\nenabled = 1\n", "admin.enabled", "1", "expected true or false"),
    ("string for table", 'server = "fast"\n' + MINIMAL, "server", '"fast"', "expected a table"),
    ("array for table", "headers = [1, 2]\n" + MINIMAL, "headers", "[1, 2]", "expected a table"),
    ("string for cluster table", 'upstreams = {orders = "10.0.0.1:80"}\n' + ROUTE, "upstreams.orders", '"10.0.0.1:80"',
     "expected a table"),
    ("table for listeners array", MINIMAL + '[listeners]\naddress = "127.0.0.1:1"\n', "listeners", "{...}",
     "expected at least one [[listeners]] table"),
    ("empty routes", "routes = []\n" + UPSTREAM, "routes", "[]", "expected at least one [[routes]] table"),
    ("string for array", MINIMAL.replace('["10.0.0.1:8080", "10.0.0.2:8080"]', '"10.0.0.9:80"'), "upstreams.orders.servers",
     '"10.0.0.9:80"', "expected a non-empty array of servers"),
    ("int for duration", MINIMAL + "[downstream]\nheader_timeout = 10\n", "downstream.header_timeout", "10",
     'expected a duration like "250ms", "10s" or "5m"'),
    ("bad duration unit", MINIMAL + '[upstreams.orders.pool]\nidle_timeout = "10x"\n', "upstreams.orders.pool.idle_timeout",
     '"10x"', 'expected a duration like "250ms", "10s" or "5m"'),
    ("negative duration", MINIMAL + '[server]\ndrain_timeout = "-1s"\n', "server.drain_timeout", '"-1s"',
     "expected a duration like"),
    ("zero connect timeout", MINIMAL + '[upstreams.orders.pool]\nconnect_timeout = "0s"\n',
     "upstreams.orders.pool.connect_timeout", '"0s"', "must be greater than 0s; expected a duration"),
    ("zero client timeout", MINIMAL + '[downstream]\nsend_timeout = "0"\n', "downstream.send_timeout", '"0"',
     "must be greater than 0s"),
    ("fractional keepalive", MINIMAL + '[downstream.tcp_keepalive]\nidle = "1.5s"\n', "downstream.tcp_keepalive.idle",
     '"1.5s"', "must be a whole number of seconds from 1s to 32767s"),
    ("huge keepalive interval", MINIMAL + '[upstreams.orders.pool.tcp_keepalive]\ninterval = "10h"\n',
     "upstreams.orders.pool.tcp_keepalive.interval", '"10h"', "from 1s to 32767s"),
    ("bad size", MINIMAL + '[downstream]\nmax_header_size = "16kb"\n', "downstream.max_header_size", '"16kb"',
     'expected a size like "512B", "64KiB" or "1MiB"'),
    ("fractional size", MINIMAL + '[downstream]\ndrain_body_limit = "1.5B"\n', "downstream.drain_body_limit", '"1.5B"',
     "expected a size like"),
    ("size too big", MINIMAL + '[downstream]\nmax_header_size = "2MiB"\n', "downstream.max_header_size", '"2MiB"',
     "must be between 1KiB and 1MiB; expected a size"),
    ("size too small", MINIMAL + "[downstream]\nmax_header_size = 100\n", "downstream.max_header_size", "100",
     "must be between 1KiB and 1MiB"),
    ("negative size", MINIMAL + "[downstream]\nmax_pipelined_bytes = -1\n", "downstream.max_pipelined_bytes", "-1",
     "expected a size like"),
    ("address without port", MINIMAL + '[[listeners]]\naddress = "localhost"\n', "listeners[0].address", '"localhost"',
     'missing port (use host:port); expected an address like "127.0.0.1:8080"'),
    ("unbracketed IPv6", MINIMAL + '[admin]\naddress = "::1:9901"\n', "admin.address", '"::1:9901"',
     "IPv6 addresses must be in brackets"),
    ("bad host name", MINIMAL + '[[listeners]]\naddress = "my_host:80"\n', "listeners[0].address", '"my_host:80"',
     "invalid host name"),
    ("port out of range", MINIMAL + '[[listeners]]\naddress = "127.0.0.1:70000"\n', "listeners[0].address",
     '"127.0.0.1:70000"', "out of range"),
    ("port 0 for upstream server", '[upstreams.orders]\nservers = ["10.0.0.1:80", "10.0.0.2:0"]\n' + ROUTE,
     "upstreams.orders.servers[1]", '"10.0.0.2:0"', "port 0 is not allowed here; expected an address like"),
    ("port 0 in server table", '[upstreams.orders]\nservers = [{address = "10.0.0.2:0"}]\n' + ROUTE,
     "upstreams.orders.servers[0].address", '"10.0.0.2:0"', "port 0 is not allowed here"),
    ("empty servers", '[upstreams.orders]\nservers = []\n' + ROUTE, "upstreams.orders.servers", "[]",
     "expected a non-empty array of servers"),
    ("server of wrong type", '[upstreams.orders]\nservers = [8080]\n' + ROUTE, "upstreams.orders.servers[0]", "8080",
     'expected "host:port" or a table like {address = "host:port", weight = 2}'),
    ("duplicate server", '[upstreams.orders]\nservers = ["a.internal:80", {address = "A.internal:80"}]\n' + ROUTE,
     "upstreams.orders.servers[1]", "{...}", "same address as upstreams.orders.servers[0]"),
    ("weight out of range", '[upstreams.orders]\nservers = [{address = "a:80", weight = 0}]\n' + ROUTE,
     "upstreams.orders.servers[0].weight", "0", "expected an integer from 1 to 1000"),
    ("unknown upstream in route", UPSTREAM + '[upstreams.users]\nservers = ["u:80"]\n[[routes]]\nupstream = "nope"\n',
     "routes[0].upstream", '"nope"', "expected the name of an [upstreams.NAME] cluster, one of: orders, users"),
    ("bad cluster name", '[upstreams."my orders"]\nservers = ["a:80"]\n' + ROUTE, 'upstreams."my orders"', None,
     "invalid cluster name; expected a name of"),
    ("bad enum", MINIMAL.replace("servers", 'balance = "random"\nservers'), "upstreams.orders.balance", '"random"',
     'expected one of "round_robin", "least_request"'),
    ("bad traceparent", MINIMAL + '[headers]\ntraceparent = "drop"\n', "headers.traceparent", '"drop"',
     'expected one of "pass", "generate"'),
    ("tries too high", MINIMAL.replace("servers", "tries = 11\nservers"), "upstreams.orders.tries", "11",
     "expected an integer from 1 to 10"),
    ("backlog zero", MINIMAL + '[[listeners]]\naddress = "127.0.0.1:1"\nbacklog = 0\n', "listeners[0].backlog", "0",
     "expected an integer from 1 to 65535"),
    ("keepalive count", MINIMAL + "[downstream.tcp_keepalive]\ncount = 128\n", "downstream.tcp_keepalive.count", "128",
     "expected an integer from 1 to 127"),
    ("negative idle cap", MINIMAL + "[upstreams.orders.pool]\nmax_idle_total = -1\n", "upstreams.orders.pool.max_idle_total",
     "-1", "expected an integer of at least 0"),
    ("keepalive_requests zero", MINIMAL + "[downstream]\nkeepalive_requests = 0\n", "downstream.keepalive_requests", "0",
     "expected an integer of at least 1"),
    ("sample rate", MINIMAL + "[access_log]\nsample_rate = 1.5\n", "access_log.sample_rate", "1.5",
     "expected a number from 0 to 1"),
    ("sample rate nan", MINIMAL + "[access_log]\nsample_rate = nan\n", "access_log.sample_rate", "nan",
     "expected a number from 0 to 1"),
    ("empty log path", MINIMAL + '[access_log]\npath = ""\n', "access_log.path", '""', 'expected a file path or "-"'),
    ("bad retry method", MINIMAL.replace("servers", 'retry_methods = ["GET", "GE T"]\nservers'),
     "upstreams.orders.retry_methods[1]", '"GE T"', 'expected an HTTP method name like "GET"'),
    ("retry methods not array", MINIMAL.replace("servers", 'retry_methods = "GET"\nservers'),
     "upstreams.orders.retry_methods", '"GET"', "expected an array of HTTP methods"),
    ("route host with port", UPSTREAM + '[[routes]]\nupstream = "orders"\nhost = "api.example.com:8080"\n',
     "routes[0].host", '"api.example.com:8080"', "must not include a port"),
    ("route host bad wildcard", UPSTREAM + '[[routes]]\nupstream = "orders"\nhost = "api.*.com"\n',
     "routes[0].host", '"api.*.com"', 'expected "" (any host), a host like'),
    ("route host star", UPSTREAM + '[[routes]]\nupstream = "orders"\nhost = "*"\n', "routes[0].host", '"*"',
     'use "" to match any host; expected "" (any host)'),
    ("path prefix without slash", UPSTREAM + '[[routes]]\nupstream = "orders"\npath_prefix = "api"\n',
     "routes[0].path_prefix", '"api"', 'expected a path starting with "/"'),
    ("path prefix with query", UPSTREAM + '[[routes]]\nupstream = "orders"\npath_prefix = "/a?b"\n',
     "routes[0].path_prefix", '"/a?b"', 'expected a path starting with "/"'),
    ("bad host rewrite", UPSTREAM + '[[routes]]\nupstream = "orders"\nhost_rewrite = "a b"\n', "routes[0].host_rewrite",
     '"a b"', "invalid host name"),
    ("bad listener name", MINIMAL + '[[listeners]]\nname = "my listener"\naddress = "127.0.0.1:1"\n',
     "listeners[0].name", '"my listener"', "expected a name of up to 64 letters"),
    ("missing listener address", MINIMAL + '[[listeners]]\nname = "x"\n', "listeners[0].address", "is missing",
     "expected an address like"),
    ("missing servers", '[upstreams.orders]\ntries = 1\n' + ROUTE, "upstreams.orders.servers", "is missing",
     "expected a non-empty array of servers"),
    ("missing upstreams", ROUTE, "upstreams", "is missing", "expected at least one [upstreams.NAME] table"),
    ("empty upstreams", "upstreams = {}\n" + ROUTE, "upstreams", "{...}", "expected at least one [upstreams.NAME] table"),
    ("missing routes", UPSTREAM, "routes", "is missing", "expected at least one [[routes]] table"),
    ("missing route upstream", UPSTREAM + '[[routes]]\nname = "api"\n', "routes[0].upstream", "is missing",
     "expected the name of an [upstreams.NAME] cluster"),
    ("duplicate listener names",
     MINIMAL + '[[listeners]]\nname = "a"\naddress = "127.0.0.1:1"\n[[listeners]]\nname = "a"\naddress = "127.0.0.1:2"\n',
     "listeners[1].name", '"a"', "same listener name as listeners[0].name"),
    ("duplicate default listener name",
     MINIMAL + '[[listeners]]\naddress = "127.0.0.1:1"\n[[listeners]]\nname = "main"\naddress = "127.0.0.1:2"\n',
     "listeners[1].name", '"main"', "same listener name as listeners[0].name"),
    ("duplicate listener addresses",
     MINIMAL + '[[listeners]]\naddress = "127.0.0.1:1"\n[[listeners]]\naddress = "127.0.0.1:1"\n',
     "listeners[1].address", '"127.0.0.1:1"', "same address as listeners[0].address; expected a unique address"),
    ("admin on a listener address", MINIMAL + '[admin]\naddress = "127.0.0.1:8080"\n', "admin.address",
     '"127.0.0.1:8080"', "same address as listeners[0].address"),
    ("duplicate route names", UPSTREAM + ROUTE.replace("upstream", 'name = "r"\nupstream') * 2, "routes[1].name", '"r"',
     "same route name as routes[0].name"),
    ("duplicate default route name", UPSTREAM + ROUTE + '[[routes]]\nname = "route0"\nupstream = "orders"\n',
     "routes[1].name", '"route0"', "same route name as routes[0].name"),
]

USERS = '[upstreams.users]\nservers = ["u:80"]\n'
BREAKER = MINIMAL + "[upstreams.orders.breaker]\n"
HEALTH = MINIMAL + "[upstreams.orders.health]\n"
LIMITS = MINIMAL + "[upstreams.orders.limits]\n"
FALLBACK = MINIMAL + "[upstreams.orders.fallback]\n"
POOL = MINIMAL + "[upstreams.orders.pool]\n"
_B, _H, _L, _F, _P = (f"upstreams.orders.{t}" for t in ("breaker", "health", "limits", "fallback", "pool"))

RESILIENCE_ERRORS = [
    # breaker
    ("bad failure status", BREAKER + "failure_statuses = [502, 99]\n", f"{_B}.failure_statuses[1]", "99",
     "expected an HTTP status code from 200 to 599"),
    ("failure status too high", BREAKER + "failure_statuses = [600]\n", f"{_B}.failure_statuses[0]", "600",
     "expected an HTTP status code from 200 to 599"),
    ("failure status as string", BREAKER + 'failure_statuses = ["502"]\n', f"{_B}.failure_statuses[0]", '"502"',
     "expected an HTTP status code"),
    ("failure statuses not an array", BREAKER + "failure_statuses = 502\n", f"{_B}.failure_statuses", "502",
     "expected an array of HTTP status codes like [502, 503, 504]"),
    ("failure rate above 1", BREAKER + "failure_rate = 1.5\n", f"{_B}.failure_rate", "1.5",
     "expected a number greater than 0 and at most 1"),
    ("failure rate 0", BREAKER + "failure_rate = 0\n", f"{_B}.failure_rate", "0",
     "expected a number greater than 0 and at most 1"),
    ("failure rate negative", BREAKER + "failure_rate = -0.5\n", f"{_B}.failure_rate", "-0.5",
     "expected a number greater than 0 and at most 1"),
    ("slow call rate above 1", BREAKER + "slow_call_rate = 2\n", f"{_B}.slow_call_rate", "2",
     "expected a number greater than 0 and at most 1"),
    ("breaker jitter above 1", BREAKER + "jitter = 1.5\n", f"{_B}.jitter", "1.5", "expected a number from 0 to 1"),
    ("min_requests 0", BREAKER + "min_requests = 0\n", f"{_B}.min_requests", "0", "expected an integer of at least 1"),
    ("negative consecutive failures", BREAKER + "consecutive_failures = -1\n", f"{_B}.consecutive_failures", "-1",
     "expected an integer of at least 0"),
    ("window buckets 0", BREAKER + "window_buckets = 0\n", f"{_B}.window_buckets", "0",
     "expected an integer from 1 to 3600"),
    ("zero window", BREAKER + 'window = "0s"\n', f"{_B}.window", '"0s"', "must be greater than 0s"),
    ("half-open requests 0", BREAKER + "half_open_requests = 0\n", f"{_B}.half_open_requests", "0",
     "expected an integer from 1 to 1000"),
    ("max open below open", BREAKER + 'open_duration = "10s"\nmax_open_duration = "5s"\n', f"{_B}.max_open_duration",
     '"5s"', "shorter than open_duration (10s); expected a duration of at least open_duration"),
    ("slow call threshold not a duration", BREAKER + "slow_call_threshold = 1\n", f"{_B}.slow_call_threshold", "1",
     "expected a duration like"),
    ("breaker enabled not a bool", BREAKER + 'enabled = "yes"\n', f"{_B}.enabled", '"yes"', "expected true or false"),
    # health
    ("empty expected statuses", HEALTH + "expected_statuses = []\n", f"{_H}.expected_statuses", "[]",
     "expected a non-empty array of HTTP status codes"),
    ("bad expected status", HEALTH + "expected_statuses = [200, 1000]\n", f"{_H}.expected_statuses[1]", "1000",
     "expected an HTTP status code from 200 to 599"),
    ("bad health method", HEALTH + 'method = "G T"\n', f"{_H}.method", '"G T"', 'expected an HTTP method name'),
    ("CONNECT health method", HEALTH + 'method = "connect"\n', f"{_H}.method", '"connect"',
     "CONNECT opens a tunnel"),
    ("relative health path", HEALTH + 'path = "healthz"\n', f"{_H}.path", '"healthz"', 'expected a path starting with "/"'),
    ("health path with a space", HEALTH + 'path = "/a b"\n', f"{_H}.path", '"/a b"', 'expected a path starting with "/"'),
    ("body_contains with HEAD", HEALTH + 'method = "HEAD"\nbody_contains = "ok"\n', f"{_H}.body_contains", '"ok"',
     "a HEAD response has no body"),
    ("bad health host", HEALTH + 'host = "my_host"\n', f"{_H}.host", '"my_host"', "invalid host name"),
    ("health jitter negative", HEALTH + "jitter = -0.1\n", f"{_H}.jitter", "-0.1", "expected a number from 0 to 1"),
    ("zero health timeout", HEALTH + 'timeout = "0s"\n', f"{_H}.timeout", '"0s"', "must be greater than 0s"),
    ("zero healthy threshold", HEALTH + "healthy_threshold = 0\n", f"{_H}.healthy_threshold", "0",
     "expected an integer from 1 to 1000"),
    ("max unhealthy interval below unhealthy interval", HEALTH + 'unhealthy_interval = "10s"\nmax_unhealthy_interval = "5s"\n',
     f"{_H}.max_unhealthy_interval", '"5s"', "shorter than unhealthy_interval (10s)"),
    # limits
    ("retry budget above 100", LIMITS + "retry_budget = 150\n", f"{_L}.retry_budget", "150",
     "expected a number from 0 to 100"),
    ("negative retry budget", LIMITS + "retry_budget = -1\n", f"{_L}.retry_budget", "-1",
     "expected a number from 0 to 100"),
    ("negative retry budget min", LIMITS + "retry_budget_min = -1\n", f"{_L}.retry_budget_min", "-1",
     "expected an integer of at least 0"),
    ("negative max connections", LIMITS + "max_connections = -1\n", f"{_L}.max_connections", "-1",
     "expected an integer of at least 0"),
    ("zero pending timeout", LIMITS + 'pending_timeout = "0"\n', f"{_L}.pending_timeout", '"0"', "must be greater than 0s"),
    # fallback
    ("fallback status too low", FALLBACK + "status = 99\n", f"{_F}.status", "99", "expected an integer from 200 to 599"),
    ("fallback status too high", FALLBACK + "status = 600\n", f"{_F}.status", "600",
     "expected an integer from 200 to 599"),
    ("unknown fallback upstream", MINIMAL + USERS + '[upstreams.orders.fallback]\nupstream = "nope"\n',
     f"{_F}.upstream", '"nope"', "no such cluster; expected the name of an [upstreams.NAME] cluster, one of: users"),
    ("fallback upstream with a single cluster", FALLBACK + 'upstream = "other"\n', f"{_F}.upstream", '"other"',
     "there is none; expected another [upstreams.NAME] cluster"),
    ("bad fallback upstream name", FALLBACK + 'upstream = "a b"\n', f"{_F}.upstream", '"a b"',
     "expected \"\" or the name of an [upstreams.NAME] cluster"),
    ("fallback to itself", FALLBACK + 'upstream = "orders"\n', f"{_F}.upstream", '"orders"',
     "a cluster cannot fall back to itself"),
    ("fallback cycle of two", MINIMAL + USERS + '[upstreams.orders.fallback]\nupstream = "users"\n'
     '[upstreams.users.fallback]\nupstream = "orders"\n', f"{_F}.upstream", '"users"',
     "fallback cycle: orders -> users -> orders; expected a chain of fallbacks that ends"),
    ("fallback cycle of three", MINIMAL + USERS + '[upstreams.c]\nservers = ["c:80"]\n'
     '[upstreams.orders.fallback]\nupstream = "users"\n[upstreams.users.fallback]\nupstream = "c"\n'
     '[upstreams.c.fallback]\nupstream = "orders"\n', f"{_F}.upstream", '"users"',
     "fallback cycle: orders -> users -> c -> orders"),
    ("fallback cycle not through the first", MINIMAL + USERS + '[upstreams.c]\nservers = ["c:80"]\n'
     '[upstreams.orders.fallback]\nupstream = "users"\n[upstreams.users.fallback]\nupstream = "c"\n'
     '[upstreams.c.fallback]\nupstream = "users"\n', "upstreams.users.fallback.upstream", '"c"',
     "fallback cycle: users -> c -> users"),
    ("body and body_file both set", FALLBACK + 'body = "x"\nbody_file = "x.html"\n', f"{_F}.body_file", '"x.html"',
     "body is set too; expected either body or body_file"),
    ("unreadable body_file", FALLBACK + 'body_file = "missing.html"\n', f"{_F}.body_file", '"missing.html"',
     "cannot read file: No such file or directory; expected a readable file"),
    ("body_file a directory", FALLBACK + 'body_file = "."\n', f"{_F}.body_file", '"."',
     "not a regular file; expected a readable file"),
    ("upstream and body both set", MINIMAL + USERS + '[upstreams.orders.fallback]\nupstream = "users"\nbody = "x"\n',
     f"{_F}.upstream", '"users"', "body is set too; expected either upstream or a static body (body, body_file)"),
    ("fallback header with a bad name", FALLBACK + 'headers = {"X Y" = "1"}\n', f'{_F}.headers."X Y"', None,
     "invalid header name"),
    ("fallback header set by the proxy", FALLBACK + 'headers = {"Content-Length" = "1"}\n',
     f"{_F}.headers.Content-Length", None, "the proxy sets it"),
    ("fallback content-type header", FALLBACK + 'headers = {"content-type" = "text/plain"}\n',
     f"{_F}.headers.content-type", None, "use content_type"),
    ("fallback header twice", FALLBACK + 'headers = {"X-A" = "1", "x-a" = "2"}\n', f"{_F}.headers.x-a", None,
     "same header as upstreams.orders.fallback.headers.X-A"),
    ("fallback header value not a string", FALLBACK + 'headers = {"X-A" = 1}\n', f"{_F}.headers.X-A", "1",
     "expected a header value of printable ASCII"),
    ("fallback header value with a newline", FALLBACK + 'headers = {"X-A" = "a\\nb"}\n', f"{_F}.headers.X-A",
     '"a\\nb"', "expected a header value of printable ASCII characters"),
    ("fallback header value not ASCII", FALLBACK + 'headers = {"X-A" = "caf\u00e9"}\n', f"{_F}.headers.X-A",
     '"caf\u00e9"', "expected a header value of printable ASCII characters"),
    ("fallback headers not a table", FALLBACK + 'headers = ["X-A"]\n', f"{_F}.headers", '["X-A"]',
     "expected a table of header names to values"),
    ("bad retry_after", FALLBACK + 'retry_after = "soon"\n', f"{_F}.retry_after", '"soon"',
     'expected "auto" (until the next probe of the breaker), "off" or a duration like "30s"'),
    ("retry_after a number", FALLBACK + "retry_after = 5\n", f"{_F}.retry_after", "5", 'expected "auto"'),
    ("bad content_type", FALLBACK + 'content_type = "json"\n', f"{_F}.content_type", '"json"',
     'expected a media type like "text/html; charset=utf-8"'),
    # pool
    ("idle tiers out of order", POOL + 'idle_tiers = [{below = 100, idle_timeout = "90s"}, '
     '{below = 10, idle_timeout = "30s"}]\n', f"{_P}.idle_tiers[1].below", "10",
     "tiers must be listed by rising rate; expected a rate above the previous tier's 100"),
    ("idle tier without below", POOL + 'idle_tiers = [{idle_timeout = "90s"}]\n', f"{_P}.idle_tiers[0].below",
     "is missing", "expected a number greater than 0"),
    ("idle tier below 0", POOL + 'idle_tiers = [{below = 0, idle_timeout = "90s"}]\n', f"{_P}.idle_tiers[0].below",
     "0", "expected a number greater than 0"),
    ("idle tier zero timeout", POOL + 'idle_tiers = [{below = 1, idle_timeout = "0s"}]\n',
     f"{_P}.idle_tiers[0].idle_timeout", '"0s"', "must be greater than 0s"),
    ("idle tier unknown key", POOL + 'idle_tiers = [{above = 1, idle_timeout = "1s"}]\n',
     f"{_P}.idle_tiers[0].above", None, "unknown key; expected one of: below, idle_timeout"),
    ("idle tiers not an array", POOL + "idle_tiers = 10\n", f"{_P}.idle_tiers", "10", "expected an array of tables"),
    ("surge factor below 1", POOL + "surge_factor = 0.5\n", f"{_P}.surge_factor", "0.5",
     "expected a number from 1 to 1000"),
    ("warmup parallel 0", POOL + "warmup_parallel = 0\n", f"{_P}.warmup_parallel", "0",
     "expected an integer from 1 to 1000"),
    ("negative min_idle", POOL + "min_idle = -1\n", f"{_P}.min_idle", "-1", "expected an integer of at least 0"),
    ("zero idle_timeout_above", POOL + 'idle_timeout_above = "0s"\n', f"{_P}.idle_timeout_above", '"0s"',
     "must be greater than 0s"),
    ("adaptive_idle not a bool", POOL + "adaptive_idle = 1\n", f"{_P}.adaptive_idle", "1", "expected true or false"),
]
ERRORS += RESILIENCE_ERRORS


@pytest.mark.parametrize(("text", "key", "value", "expected"), [case[1:] for case in ERRORS],
                         ids=[case[0] for case in ERRORS])
def test_error_messages(load, text, key, value, expected):
    message = str(error_of(load, text))
    assert "\n" not in message
    assert message.startswith(f"config.toml: {key}")
    if value == "is missing":
        assert message.startswith(f"config.toml: {key} is missing: ")
    elif value is None:
        assert message.startswith(f"config.toml: {key}: ")
    else:
        assert message.startswith(f"config.toml: {key} = {value}: ")
    assert expected in message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            MINIMAL + '[upstreams.orders.pool]\nidle_timeout = "10x"\n',
            'config.toml: upstreams.orders.pool.idle_timeout = "10x": expected a duration like "250ms", "10s" or "5m"',
        ),
        (
            UPSTREAM + "[[routes]]\n",
            "config.toml: routes[0].upstream is missing: expected the name of an [upstreams.NAME] cluster",
        ),
        (
            MINIMAL + "[upstreams.orders.pool]\nidel_timeout = 1\n",
            "config.toml: upstreams.orders.pool.idel_timeout: unknown key; expected one of: adaptive_idle, "
            "connect_timeout, idle_tiers, idle_timeout, idle_timeout_above, max_idle_per_server, max_idle_total, "
            "max_requests_per_connection, min_idle, surge_factor, tcp_keepalive, warmup_parallel",
        ),
        (
            MINIMAL + '[[listeners]]\naddress = "127.0.0.1:1"\nbacklog = 1.5\n',
            "config.toml: listeners[0].backlog = 1.5: expected an integer from 1 to 65535",
        ),
    ],
)
def test_exact_messages(load, text, message):
    assert str(error_of(load, text)) == message


def test_error_attributes(load):
    err = error_of(load, MINIMAL + '[upstreams.orders.pool]\nidle_timeout = "10x"\n')
    assert (err.source, err.key, err.value) == ("config.toml", "upstreams.orders.pool.idle_timeout", "10x")
    assert err.expected == 'a duration like "250ms", "10s" or "5m"'
    assert str(pickle.loads(pickle.dumps(err))) == str(err)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a = \n", "invalid TOML: Invalid value (at line 1, column 5)"),
        ('[server]\nloop = "uvloop"\n[server]\n', "Cannot declare ('server',) twice (at line 3, column 8)"),
        ("a = 1\na = 2\n", "(at line 2, column 6)"),
        ("[server\n", "(at line 1, column 8)"),
        ("x = 'unterminated", "invalid TOML: "),
    ],
)
def test_toml_syntax_error(load, text, fragment):
    err = error_of(load, text)
    assert str(err).startswith("config.toml: invalid TOML: ")
    assert fragment in str(err)
    assert err.source == "config.toml" and err.key is None


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: cannot read file: No such file or directory"
    assert info.value.source == str(path)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path)


def test_invalid_utf8(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_bytes(b'a = "\xff"\n')
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load_config(path)


def test_parse_config_names_its_source():
    with pytest.raises(ConfigError) as info:
        parse_config({"routes": []}, "inline")
    assert str(info.value).startswith("inline: upstreams is missing")


# --------------------------------------------------------------------------- values


DEFAULTS = [
    ("server.loop", "uvloop"),
    ("server.drain_timeout", 30.0),
    ("admin.enabled", True),
    ("admin.address", Address("127.0.0.1", 9901)),
    ("downstream.header_timeout", 60.0),
    ("downstream.body_timeout", 60.0),
    ("downstream.send_timeout", 60.0),
    ("downstream.keepalive_timeout", 75.0),
    ("downstream.keepalive_requests", 1000),
    ("downstream.max_header_size", 16 * 1024),
    ("downstream.drain_body_limit", 1024 * 1024),
    ("downstream.max_pipelined_bytes", 64 * 1024),
    ("downstream.tcp_keepalive", TcpKeepaliveConfig(enabled=True, idle=60.0, interval=10.0, count=6)),
    ("headers", HeadersConfig(x_forwarded=True, request_id=True, via=False, traceparent="pass")),
    ("access_log", AccessLogConfig(enabled=True, path="-", sample_rate=1.0, buffer_lines=8192)),
    ("listeners", (ListenerConfig(name="main", address=Address("127.0.0.1", 8080), backlog=511),)),
]
CLUSTER_DEFAULTS = [
    ("balance", "round_robin"),
    ("tries", 2),
    ("retry_methods", ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")),
    ("response_timeout", 60.0),
    ("body_timeout", 60.0),
    ("request_timeout", 0.0),
    ("pool.max_idle_per_server", 128),
    ("pool.max_idle_total", 1024),
    ("pool.idle_timeout", 60.0),
    ("pool.max_requests_per_connection", 1000),
    ("pool.connect_timeout", 5.0),
    ("pool.tcp_keepalive", TcpKeepaliveConfig()),
    ("pool.min_idle", 0),
    ("pool.adaptive_idle", True),
    ("pool.idle_tiers", (IdleTierConfig(below=10.0, idle_timeout=30.0), IdleTierConfig(below=100.0, idle_timeout=90.0))),
    ("pool.idle_timeout_above", 300.0),
    ("pool.warmup_parallel", 4),
    ("pool.surge_factor", 3.0),
    ("breaker", BreakerConfig(
        enabled=True, failure_statuses=(502, 503, 504), window=30.0, window_buckets=30, failure_rate=0.5,
        min_requests=20, consecutive_failures=5, slow_call_threshold=0.0, slow_call_rate=0.5, open_duration=1.0,
        max_open_duration=60.0, jitter=0.2, half_open_requests=1, half_open_successes=3)),
    ("health", HealthConfig(
        enabled=False, method="GET", path="/healthz", expected_statuses=(200,), body_contains="", interval=5.0,
        timeout=2.0, healthy_threshold=2, unhealthy_threshold=3, unhealthy_interval=2.0, max_unhealthy_interval=30.0,
        jitter=0.1, host="")),
    ("limits", LimitsConfig(max_connections=0, max_pending=0, pending_timeout=5.0, max_requests=0, retry_budget=20.0,
                            retry_budget_min=3)),
    ("fallback", FallbackConfig(status=503, body="", body_file="", headers=(), content_type="application/json",
                                retry_after="auto", upstream="", content=b"")),
]


@pytest.mark.parametrize(("path", "value"), DEFAULTS)
def test_defaults(load, path, value):
    assert operator.attrgetter(path)(load(MINIMAL)) == value


@pytest.mark.parametrize(("path", "value"), CLUSTER_DEFAULTS)
def test_cluster_defaults(load, path, value):
    assert operator.attrgetter(path)(load(MINIMAL).upstreams["orders"]) == value


def test_minimal_shape(load):
    config = load(MINIMAL)
    assert config.source == "config.toml"
    assert list(config.upstreams) == ["orders"]
    assert config.upstreams["orders"].servers == (
        UpstreamServerConfig(Address("10.0.0.1", 8080), 1),
        UpstreamServerConfig(Address("10.0.0.2", 8080), 1),
    )
    assert config.routes == (RouteConfig(name="route0", upstream="orders"),)
    assert config.routes[0] == RouteConfig("route0", "", "/", "orders", False, "", False)
    assert config.server == ServerConfig() and config.admin == AdminConfig() and config.downstream == DownstreamConfig()
    assert config.upstreams["orders"].pool == PoolConfig()


FULL = """
[server]
loop = "asyncio"
drain_timeout = "0"
[admin]
enabled = false
address = "[::1]:0"
[[listeners]]
address = "0.0.0.0:80"
backlog = 1024
[[listeners]]
address = "[::]:0"
[[listeners]]
name = "internal"
address = "[::]:0"
[downstream]
header_timeout = "250ms"
max_header_size = 65536
drain_body_limit = "0B"
[downstream.tcp_keepalive]
enabled = false
idle = "2m"
[upstreams.users]
servers = ["Users.Internal:8080", {address = "[fd00::1]:8080", weight = 3}]
balance = "least_request"
tries = 1
retry_methods = ["get", "PURGE", "GET"]
request_timeout = "1.5s"
[upstreams.users.pool]
max_idle_per_server = 0
max_idle_total = 0
[upstreams.orders]
servers = ["10.0.0.1:80"]
[[routes]]
name = "api"
host = "API.Example.com"
path_prefix = "/api/"
upstream = "orders"
strip_prefix = true
host_rewrite = "orders.internal:8080"
[[routes]]
host = "*.Example.com"
upstream = "users"
websocket = true
[[routes]]
host = "[::1]"
upstream = "users"
host_rewrite = "[::1]"
"""

FULL_VALUES = [
    ("server", ServerConfig(loop="asyncio", drain_timeout=0.0)),
    ("admin", AdminConfig(enabled=False, address=Address("::1", 0))),
    ("listeners", (
        ListenerConfig("main", Address("0.0.0.0", 80), 1024),
        ListenerConfig("listener1", Address("::", 0), 511),
        ListenerConfig("internal", Address("::", 0), 511),
    )),
    ("downstream.header_timeout", 0.25),
    ("downstream.max_header_size", 65536),
    ("downstream.drain_body_limit", 0),
    ("downstream.tcp_keepalive", TcpKeepaliveConfig(enabled=False, idle=120.0)),
    ("upstreams", {
        "users": UpstreamConfig(
            name="users",
            servers=(UpstreamServerConfig(Address("users.internal", 8080)), UpstreamServerConfig(Address("fd00::1", 8080), 3)),
            balance="least_request",
            tries=1,
            retry_methods=("GET", "PURGE"),
            request_timeout=1.5,
            pool=PoolConfig(max_idle_per_server=0, max_idle_total=0),
        ),
        "orders": UpstreamConfig(name="orders", servers=(UpstreamServerConfig(Address("10.0.0.1", 80)),)),
    }),
    ("routes", (
        RouteConfig("api", "api.example.com", "/api/", "orders", True, "orders.internal:8080", False),
        RouteConfig("route1", "*.example.com", "/", "users", websocket=True),
        RouteConfig("route2", "[::1]", "/", "users", host_rewrite="[::1]"),
    )),
]


@pytest.mark.parametrize(("path", "value"), FULL_VALUES)
def test_full_config_values(load, path, value):
    assert operator.attrgetter(path)(load(FULL)) == value


def test_upstream_order_is_kept(load):
    assert list(load(FULL).upstreams) == ["users", "orders"]


def test_config_is_frozen(load):
    config = load(MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.loop = "asyncio"  # type: ignore[misc]
    assert config == load(MINIMAL)


# --------------------------------------------------------------------------- resilience sections


def test_resilience_values(load):
    config = load(MINIMAL + USERS + """
[upstreams.orders.pool]
min_idle = 2
adaptive_idle = false
idle_timeout_above = "10m"
warmup_parallel = 8
surge_factor = 2.5
idle_tiers = [{below = 1, idle_timeout = "5s"}, {below = 50.5, idle_timeout = "1m"}]
[upstreams.orders.breaker]
enabled = false
failure_statuses = [504, 500, 504, 429]
window = "10s"
window_buckets = 20
failure_rate = 1
consecutive_failures = 0
slow_call_threshold = "250ms"
open_duration = "500ms"
max_open_duration = "500ms"
jitter = 0
[upstreams.orders.health]
enabled = true
method = "head"
path = "/status?verbose=1"
expected_statuses = [204, 200]
host = "orders.internal:8080"
[upstreams.orders.limits]
max_connections = 100
max_pending = 50
pending_timeout = "250ms"
max_requests = 1000
retry_budget = 12.5
retry_budget_min = 0
[upstreams.orders.fallback]
upstream = "users"
status = 200
headers = {"Cache-Control" = "no-store", "X-Fallback" = "users"}
retry_after = "off"
[upstreams.users.fallback]
body = '{"error": "busy"}'
retry_after = "30s"
""")
    orders, users = config.upstreams["orders"], config.upstreams["users"]
    assert orders.pool.min_idle == 2 and orders.pool.adaptive_idle is False
    assert orders.pool.idle_tiers == (IdleTierConfig(1.0, 5.0), IdleTierConfig(50.5, 60.0))
    assert (orders.pool.idle_timeout_above, orders.pool.warmup_parallel, orders.pool.surge_factor) == (600.0, 8, 2.5)
    assert orders.breaker == BreakerConfig(enabled=False, failure_statuses=(429, 500, 504), window=10.0,
                                           window_buckets=20, failure_rate=1.0, consecutive_failures=0,
                                           slow_call_threshold=0.25, open_duration=0.5, max_open_duration=0.5,
                                           jitter=0.0)
    assert orders.health == HealthConfig(enabled=True, method="HEAD", path="/status?verbose=1",
                                         expected_statuses=(200, 204), host="orders.internal:8080")
    assert orders.limits == LimitsConfig(100, 50, 0.25, 1000, 12.5, 0)
    assert orders.fallback == FallbackConfig(status=200, upstream="users", retry_after="off",
                                             headers=(("Cache-Control", "no-store"), ("X-Fallback", "users")))
    assert users.fallback.retry_after == 30.0 and users.fallback.content == b'{"error": "busy"}'
    assert users.breaker == BreakerConfig() and users.pool.idle_tiers == PoolConfig().idle_tiers
    assert "fallback -> users" in config.summary() and "health HEAD /status?verbose=1 every 5s" in config.summary()


def test_fallback_body_file_is_read_at_load(load):
    Path("sorry.html").write_bytes(b"<h1>Back soon</h1>\n\xff")
    config = load(FALLBACK + 'body_file = "sorry.html"\ncontent_type = "text/html; charset=utf-8"\n')
    fallback = config.upstreams["orders"].fallback
    assert fallback.body_file == "sorry.html" and fallback.body == ""
    assert fallback.content == b"<h1>Back soon</h1>\n\xff"
    assert fallback.content_type == "text/html; charset=utf-8"


def test_fallback_body_file_too_big(load):
    Path("big.html").write_bytes(b"x" * (1024**2 + 1))
    err = error_of(load, FALLBACK + 'body_file = "big.html"\n')
    assert str(err) == ('config.toml: upstreams.orders.fallback.body_file = "big.html": larger than 1MiB; '
                        "expected a readable file")


def test_fallback_chain_without_cycle(load):
    text = (MINIMAL + USERS + '[upstreams.c]\nservers = ["c:80"]\n[upstreams.orders.fallback]\nupstream = "users"\n'
            '[upstreams.users.fallback]\nupstream = "c"\n[upstreams.c.fallback]\nstatus = 502\n')
    config = load(text)
    assert [config.upstreams[n].fallback.upstream for n in ("orders", "users", "c")] == ["users", "c", ""]


def test_warning_min_idle_above_the_idle_cap(load):
    config = load(POOL + "max_idle_per_server = 2\nmin_idle = 3\n")
    assert config.warnings() == [
        "upstreams.orders: pool.min_idle of 3 cannot be kept: at most max_idle_per_server = 2 idle connections "
        "are kept per server"
    ]


# --------------------------------------------------------------------------- quick_config


def test_quick_config():
    config = quick_config(["127.0.0.1:8080", "0.0.0.0:0"], ["127.0.0.1:8081", "[::1]:8082"], None)
    assert config.source == "<command line>"
    assert [(ln.name, str(ln.address)) for ln in config.listeners] == [("main", "127.0.0.1:8080"), ("listener1", "0.0.0.0:0")]
    assert list(config.upstreams) == ["default"]
    assert [str(s.address) for s in config.upstreams["default"].servers] == ["127.0.0.1:8081", "[::1]:8082"]
    assert config.routes == (RouteConfig(name="default", path_prefix="/", upstream="default"),)
    assert config.admin == AdminConfig()
    assert config.server.loop == "uvloop"
    assert config.downstream == DownstreamConfig()
    assert config.warnings() == []


@pytest.mark.parametrize(
    ("kwargs", "path", "value"),
    [
        ({"admin": "127.0.0.1:0"}, "admin.address", Address("127.0.0.1", 0)),
        ({"loop": "asyncio"}, "server.loop", "asyncio"),
        ({"listen": []}, "listeners", (ListenerConfig("main", Address("127.0.0.1", 8080)),)),
    ],
)
def test_quick_config_options(path, kwargs, value):
    args = {"listen": ["127.0.0.1:9000"], "upstreams": ["127.0.0.1:8081"], "admin": None, **kwargs}
    assert operator.attrgetter(path)(quick_config(**args)) == value


def test_quick_config_with_certificates_makes_every_listener_tls():
    pairs = [("a.pem", "a.key"), ("b.pem", "b.key")]
    config = quick_config(["127.0.0.1:8443", "[::1]:8443"], ["127.0.0.1:8081"], None, certs=pairs)
    certificates = (CertificateConfig("a.pem", "a.key"), CertificateConfig("b.pem", "b.key"))
    assert config.listeners == (
        ListenerConfig("main", Address("127.0.0.1", 8443), tls=True, certificates=certificates),
        ListenerConfig("listener1", Address("::1", 8443), tls=True, certificates=certificates),
    )
    default = quick_config([], ["127.0.0.1:8081"], None, certs=pairs[:1])
    assert default.listeners == (ListenerConfig("main", Address("127.0.0.1", 8080), tls=True,
                                                certificates=certificates[:1]),)
    assert all(not ln.tls for ln in quick_config(["127.0.0.1:1"], ["127.0.0.1:8081"], None).listeners)


def test_pid_file(load):
    assert load(MINIMAL).server.pid_file == ""
    assert load(MINIMAL + '[server]\npid_file = "run/edgeproxy.pid"\n').server.pid_file == "run/edgeproxy.pid"
    err = error_of(load, MINIMAL + "[server]\npid_file = 1\n")
    assert str(err) == 'config.toml: server.pid_file = 1: expected "" or a file path'


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"listen": ["nope"]}, '<command line>: listeners[0].address = "nope": missing port'),
        ({"listen": ["127.0.0.1:1", "127.0.0.1:1"]}, "<command line>: listeners[1].address = \"127.0.0.1:1\": same address"),
        ({"upstreams": ["127.0.0.1:0"]}, '<command line>: upstreams.default.servers[0] = "127.0.0.1:0": port 0'),
        ({"upstreams": []}, "<command line>: upstreams.default.servers = []: expected a non-empty array"),
        ({"admin": "localhost"}, '<command line>: admin.address = "localhost": missing port'),
        ({"loop": "trio"}, '<command line>: server.loop = "trio": expected one of "uvloop", "asyncio"'),
        ({"certs": [("", "a.key")]}, '<command line>: listeners[0].certificates[0].cert = "": expected a PEM file path'),
    ],
)
def test_quick_config_errors(kwargs, message):
    args = {"listen": ["127.0.0.1:9000"], "upstreams": ["127.0.0.1:8081"], "admin": None, **kwargs}
    with pytest.raises(ConfigError) as info:
        quick_config(**args)
    assert str(info.value).startswith(message)


# --------------------------------------------------------------------------- warnings and summary


def test_warning_total_idle_cap_trap(load):
    servers = ", ".join(f'"10.0.0.{i}:80"' for i in range(1, 11))
    config = load(f"[upstreams.big]\nservers = [{servers}]\n" + '[[routes]]\nupstream = "big"\n')
    assert config.warnings() == [
        "upstreams.big: the per-server idle cap of 128 is unreachable: only 1024 idle connections fit in the "
        "cluster's total cap, i.e. about 102 per server across 10 servers"
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (MINIMAL + '[upstreams.spare]\nservers = ["s:80"]\n', "upstreams.spare is not used by any route"),
        (MINIMAL + ROUTE.replace("upstream", 'name = "again"\nupstream'),
         'routes[1] (again) is shadowed by routes[0] (route0), which has the same host "*" and path_prefix "/"'),
        (MINIMAL + '[admin]\naddress = "0.0.0.0:9901"\n', "admin listens on 0.0.0.0:9901"),
        (MINIMAL + "[upstreams.orders.pool]\nmax_idle_per_server = 600\n", "per-server idle cap of 600 is unreachable"),
    ],
)
def test_warnings(load, text, fragment):
    assert any(fragment in warning for warning in load(text).warnings())


@pytest.mark.parametrize(
    "text",
    [
        MINIMAL,
        MINIMAL + "[upstreams.orders.pool]\nmax_idle_per_server = 128\n",  # 2 * 128 == 256 fits exactly
        MINIMAL + '[admin]\nenabled = false\naddress = "0.0.0.0:9901"\n',
        MINIMAL + ROUTE.replace("upstream", 'name = "b"\npath_prefix = "/b"\nupstream'),
    ],
)
def test_no_warnings(load, text):
    assert load(text).warnings() == []


def test_summary(load):
    summary = load(FULL).summary()
    for fragment in [
        "config.toml",
        "main  0.0.0.0:80  backlog 1024",
        "internal  [::]:0",
        "api  api.example.com  /api/ -> orders",
        "route1  *.example.com  / -> users",
        "users  least_request",
        "users.internal:8080 (weight 1), [fd00::1]:8080 (weight 3)",
        "0 idle/server, 0 idle total",
        "admin: disabled",
    ]:
        assert fragment in summary
    assert "admin: 127.0.0.1:9901" in load(MINIMAL).summary()
    assert "route0  *  / -> orders" in load(MINIMAL).summary()


# --------------------------------------------------------------------------- the example file


def _schema_class(hint: typing.Any) -> type | None:
    """The dataclass behind a field type: X, tuple[X, ...] or dict[str, X]."""
    for candidate in (hint, *typing.get_args(hint)):
        if dataclasses.is_dataclass(candidate):
            return candidate
    return None


def _walk(cls: type, tables: list[dict], header: str):
    """Yield (header, field) for every TOML key of ``cls``, asserting each is present in one of ``tables``.

    ``tables`` are the entries of an array of tables (or just the one table): a key may be shown in any entry,
    so the example can show listener keys on a plain listener and the TLS keys on a TLS one.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.metadata.get("toml"):
            continue
        key = f"{header}.{f.name}" if header else f.name
        having = [raw for raw in tables if f.name in raw]
        assert having, f"{key} is not in {EXAMPLE.name}"
        yield header, f
        sub, value = _schema_class(hints[f.name]), having[0][f.name]
        if sub is None:
            continue
        if isinstance(value, list):
            assert value and all(isinstance(entry, dict) for entry in value), (
                f"write {key} as tables so every key shows")
            yield from _walk(sub, value, key)
        elif typing.get_origin(hints[f.name]) is dict:
            name, entry = next(iter(value.items()))
            yield from _walk(sub, [entry], f"{key}.{name}")
        else:
            yield from _walk(sub, [value], key)


def test_example_loads_and_equals_the_defaults():
    config = load_config(EXAMPLE)
    certificates = [{"cert": "demo-certs/server.pem", "key": "demo-certs/server.key"}]
    expected = parse_config(
        {
            "listeners": [
                {"address": "127.0.0.1:8080"},
                {"name": "tls", "address": "127.0.0.1:8443", "tls": True, "certificates": certificates},
            ],
            "upstreams": {"demo": {"servers": ["127.0.0.1:8081"]}},
            "routes": [{"name": "demo", "upstream": "demo"}],
        },
        str(EXAMPLE),
    )
    assert config == expected
    # every section but the ones a config must name is at its defaults
    defaults = Config(source=str(EXAMPLE))
    for f in dataclasses.fields(Config):
        if f.name not in ("source", "listeners", "upstreams", "routes"):
            assert getattr(config, f.name) == getattr(defaults, f.name), f.name
    # the plain main listener, and a TLS listener with every TLS setting at its default
    assert config.listeners == (
        ListenerConfig("main", Address("127.0.0.1", 8080)),
        ListenerConfig("tls", Address("127.0.0.1", 8443), tls=True,
                       certificates=(CertificateConfig("demo-certs/server.pem", "demo-certs/server.key"),)),
    )
    assert config.admin.address == Address("127.0.0.1", 9901)
    assert config.server.pid_file == ""
    assert config.warnings() == []


def test_example_has_every_key_with_its_doc_line():
    import tomllib

    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    docs = {(header, f.name): f.metadata["doc"] for header, f in _walk(Config, [raw], "")}
    assert len(docs) > 60

    header, seen, previous = "", set(), ""
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            header = line.strip("[]")
        elif "=" in line and not line.startswith("#"):
            key = line.split("=", 1)[0].strip()
            assert (header, key) in docs, f"[{header}] {key} is not a schema key"
            assert previous.startswith("# " + docs[header, key]), f"[{header}] {key}: comment should be the doc line"
            seen.add((header, key))
        previous = line
    # keys that are tables get a [header] instead of a line; inline-table keys live inside their line
    headers = {line.strip("[]") for line in EXAMPLE.read_text(encoding="utf-8").splitlines() if line.startswith("[")}
    tables = {(h, k) for h, k in docs if any(t == f"{h}.{k}".lstrip(".") or t.startswith(f"{h}.{k}.".lstrip(".")) for t in headers)}
    assert set(docs) - seen - tables == {("upstreams.demo.servers", "address"), ("upstreams.demo.servers", "weight")}


def test_every_schema_field_has_a_doc_line():
    classes = [Config, ServerConfig, AdminConfig, ListenerConfig, CertificateConfig, DownstreamConfig, TcpKeepaliveConfig, HeadersConfig,
               AccessLogConfig, PoolConfig, UpstreamServerConfig, UpstreamConfig, RouteConfig, IdleTierConfig,
               BreakerConfig, HealthConfig, LimitsConfig, FallbackConfig]
    for cls in classes:
        for f in dataclasses.fields(cls):
            assert f.metadata.get("doc"), f"{cls.__name__}.{f.name} has no doc line"


# --------------------------------------------------------------------------- robustness

TOML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
    | st.sampled_from(["10s", "0", "64KiB", "127.0.0.1:0", "a:1", "/", "*.x.y", "GET", "pass", "uvloop"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
SECTIONS = ["server", "admin", "downstream", "headers", "access_log", "downstream.tcp_keepalive"]
KEYS = st.sampled_from(sorted({f.name for cls in (ServerConfig, AdminConfig, DownstreamConfig, HeadersConfig,
                                                  AccessLogConfig, TcpKeepaliveConfig, PoolConfig, UpstreamConfig,
                                                  RouteConfig, ListenerConfig, BreakerConfig, HealthConfig,
                                                  LimitsConfig, FallbackConfig, IdleTierConfig)
                           for f in dataclasses.fields(cls)}))


@settings(max_examples=300, deadline=None)
@given(section=st.sampled_from(SECTIONS + ["upstreams.c", "upstreams.c.pool", "routes", "listeners",
                                           "upstreams.c.breaker", "upstreams.c.health", "upstreams.c.limits",
                                           "upstreams.c.fallback"]), key=KEYS,
       value=TOML_VALUES)
def test_any_value_gives_a_config_or_a_config_error(section, key, value):
    data: dict = {"upstreams": {"c": {"servers": ["a:1"]}}, "routes": [{"upstream": "c"}]}
    if value is None:
        value = {}
    if section in ("routes", "listeners"):
        entry = {"upstream": "c"} if section == "routes" else {"address": "127.0.0.1:0"}
        entry[key] = value
        data[section] = [entry]
    else:
        target = data
        for part in section.split("."):
            target = target.setdefault(part, {})
        target[key] = value
    try:
        parse_config(data, "fuzz.toml")
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("fuzz.toml: ") and "\n" not in message
