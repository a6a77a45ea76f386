"""Router: host tiers (exact, wildcard, any), longest prefix, ties, rewrite."""

import pytest

from proxy.config import parse_config
from proxy.routing import Route, Router, normalize_host

# (name, host, path_prefix); ``order`` is the position in this list, as in a
# config file. Upstream names do not matter to the router.
TABLE = [
    ("exact-root", "api.example.com", "/"),
    ("exact-v1", "api.example.com", "/v1/"),
    ("exact-v1-dup", "api.example.com", "/v1/"),
    ("exact-admin", "admin.example.net", "/admin/"),
    ("exact-partial", "partial.example.com", "/only/"),
    ("exact-mixed", "Mixed.Example.ORG", "/"),
    ("exact-ipv4", "127.0.0.1", "/"),
    ("exact-ipv6", "[::1]", "/"),
    ("wild", "*.example.com", "/"),
    ("wild-static", "*.example.com", "/static/"),
    ("wild-eu", "*.eu.example.com", "/"),
    ("wild-shop-cart", "*.shop.example.com", "/cart/"),
    ("any-api", "", "/api"),
    ("any-api-v2", "", "/api/v2/"),
    ("any-api-dup", "", "/api"),
    ("any-shop", "", "/shop/"),
]


def build(table=TABLE):
    return Router(Route(name, host, prefix, "up", order=i) for i, (name, host, prefix) in enumerate(table))


MATCH_CASES = [
    # exact host
    ("api.example.com", "/", "exact-root"),
    ("api.example.com", "/anything/else", "exact-root"),
    ("api.example.com", "/v1/users", "exact-v1"),
    ("admin.example.net", "/admin/users", "exact-admin"),
    ("127.0.0.1", "/x", "exact-ipv4"),
    # port ignored
    ("api.example.com:8443", "/v1/users", "exact-v1"),
    ("api.example.com:80", "/", "exact-root"),
    ("127.0.0.1:8080", "/x", "exact-ipv4"),
    ("[::1]:8080", "/x", "exact-ipv6"),
    ("[::1]", "/x", "exact-ipv6"),
    # case-insensitive, on both the request and the route side; trailing dot
    ("API.Example.COM", "/v1/users", "exact-v1"),
    ("API.EXAMPLE.COM:9000", "/", "exact-root"),
    ("mixed.example.org", "/", "exact-mixed"),
    ("MIXED.EXAMPLE.ORG", "/", "exact-mixed"),
    ("api.example.com.", "/v1/x", "exact-v1"),
    # prefix is a plain string prefix of the path: "/v1/" does not match "/v1"
    ("api.example.com", "/v1", "exact-root"),
    ("example.com", "/apix", "any-api"),
    # wildcard: one or more extra labels; the bare suffix is not matched
    ("foo.example.com", "/", "wild"),
    ("a.b.example.com", "/page", "wild"),
    ("FOO.Example.Com:8080", "/static/app.js", "wild-static"),
    ("example.com", "/", None),
    ("badexample.com", "/", None),
    ("example.com.evil.net", "/", None),
    # the longest wildcard suffix is tried first
    ("x.eu.example.com", "/", "wild-eu"),
    ("x.eu.example.com", "/static/app.js", "wild-eu"),
    ("eu.example.com", "/", "wild"),
    ("x.shop.example.com", "/cart/1", "wild-shop-cart"),
    # an exact host beats a wildcard that also matches it
    ("api.example.com", "/static/x", "exact-root"),
    # fall-through: exact tier without a matching prefix -> wildcard tier
    ("partial.example.com", "/only/here", "exact-partial"),
    ("partial.example.com", "/static/x", "wild-static"),
    ("partial.example.com", "/other", "wild"),
    # fall-through: longer wildcard without a matching prefix -> shorter wildcard
    ("x.shop.example.com", "/other", "wild"),
    # fall-through: host tiers without a matching prefix -> any-host routes
    ("admin.example.net", "/api/x", "any-api"),
    ("admin.example.net", "/other", None),
    ("example.com", "/api/v2/x", "any-api-v2"),
    # bare suffix of a wildcard falls to any-host routes
    ("example.com", "/shop/item", "any-shop"),
    # longest prefix wins regardless of order; ties go to the first written
    ("other.test", "/api/v2/items", "any-api-v2"),
    ("other.test", "/api/v1/items", "any-api"),
    ("other.test", "/api", "any-api"),
    ("api.example.com", "/v1/", "exact-v1"),
    # the query is not part of the path
    ("other.test", "/api/v2/items?x=1", "any-api-v2"),
    ("other.test", "/api?next=/api/v2/", "any-api"),
    ("other.test", "/?to=/api/v2/", None),
    ("other.test", "/shop?/shop/", None),
    ("foo.example.com", "/static?x=/y", "wild"),
    ("foo.example.com", "/static/?x=/y", "wild-static"),
    # no Host at all: only any-host routes
    ("", "/api/v2/x", "any-api-v2"),
    ("", "/", None),
    # unknown host, unknown path
    ("nowhere.test", "/nothing", None),
]


@pytest.mark.parametrize("host,target,expected", MATCH_CASES)
def test_match(host, target, expected):
    route = build().match(host.encode(), target.encode())
    assert (route.name if route else None) == expected


def test_tie_goes_to_first_written_whatever_the_insertion_order():
    routes = [Route("second", "", "/a/", "up", order=1), Route("first", "", "/a/", "up", order=0)]
    assert Router(routes).match(b"h", b"/a/x").name == "first"
    assert Router(reversed(routes)).match(b"h", b"/a/x").name == "first"


@pytest.mark.parametrize(
    "host,target,expected",
    [
        ("admin.example.net", "/other", "catch-all"),  # exact tier falls through to the catch-all
        ("admin.example.net", "/admin/x", "exact-admin"),
        ("example.com", "/", "catch-all"),
        ("foo.example.com", "/", "wild"),
        ("", "/", "catch-all"),
        ("nowhere.test", "/nothing", "catch-all"),
        ("nowhere.test", "/api/x", "any-api"),
    ],
)
def test_catch_all_still_catches(host, target, expected):
    table = [("catch-all", "", "/")] + [t for t in TABLE if t[0] in ("exact-admin", "wild", "any-api")]
    route = build(table).match(host.encode(), target.encode())
    assert route is not None and route.name == expected


def test_empty_router_matches_nothing():
    assert Router([]).match(b"example.com", b"/") is None


def test_from_config_keeps_file_order_and_fields():
    cfg = parse_config(
        {
            "upstreams": {"a": {"servers": ["127.0.0.1:1"]}, "b": {"servers": ["127.0.0.1:2"]}},
            "routes": [
                {"name": "one", "path_prefix": "/x/", "upstream": "a"},
                {"name": "two", "path_prefix": "/x/", "upstream": "b"},
                {"name": "svc", "host": "*.Example.com", "path_prefix": "/svc/", "upstream": "b",
                 "strip_prefix": True, "host_rewrite": "backend.internal:8080", "websocket": True},
            ],
        },
        "test",
    )
    router = Router.from_config(cfg.routes)
    assert router.match(b"h", b"/x/1").name == "one"
    r = router.match(b"a.example.com", b"/svc/items?q=1")
    assert r.name == "svc"
    assert r.upstream == "b"
    assert r.websocket is True
    assert r.host_rewrite == b"backend.internal:8080"
    assert r.rewrite_target(b"/svc/items?q=1") == b"/items?q=1"
    assert router.match(b"example.com", b"/svc/items") is None


REWRITE_CASES = [
    # (prefix, strip_prefix, target, expected upstream target)
    ("/svc/", True, "/svc/items", "/items"),
    ("/svc/", True, "/svc/a/b/c", "/a/b/c"),
    ("/svc/", True, "/svc/", "/"),
    ("/svc/", True, "/svc/items?x=1&y=/svc/", "/items?x=1&y=/svc/"),
    ("/svc/", True, "/svc/?x=1", "/?x=1"),
    ("/svc", True, "/svc/items", "/items"),
    ("/svc", True, "/svc", "/"),
    ("/svc", True, "/svc?x=1", "/?x=1"),
    ("/svc", True, "/svcx", "/x"),
    ("/", True, "/a/b", "/a/b"),
    ("/", True, "/", "/"),
    ("/svc/", False, "/svc/items?x=1", "/svc/items?x=1"),
    ("/", False, "/a", "/a"),
]


@pytest.mark.parametrize("prefix,strip,target,expected", REWRITE_CASES)
def test_rewrite_target(prefix, strip, target, expected):
    route = Route("r", "", prefix, "up", strip_prefix=strip)
    # the route matches the target it is asked to rewrite
    assert Router([route]).match(b"h", target.encode()) is route
    assert route.rewrite_target(target.encode()) == expected.encode()


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("Example.COM", "example.com"),
        ("example.com:8080", "example.com"),
        ("example.com.", "example.com"),
        ("Example.com.:443", "example.com"),
        ("[::1]:80", "[::1]"),
        ("[::1]", "[::1]"),
        ("[2001:DB8::1]:8443", "[2001:db8::1]"),
        ("10.0.0.1:80", "10.0.0.1"),
    ],
)
def test_normalize_host(raw, expected):
    assert normalize_host(raw.encode()) == expected.encode()


class _Head:
    def __init__(self, method: bytes, target: bytes, host: bytes = b"h"):
        self.method, self.target, self.host = method, target, host


@pytest.mark.parametrize(("method", "target", "result", "host", "new_target"), [
    (b"GET", b"http://api.test/a/b?q=1", (0, ""), b"api.test", b"/a/b?q=1"),
    (b"GET", b"HTTPS://Api.Test:8443", (0, ""), b"Api.Test:8443", b"/"),
    (b"GET", b"http://api.test?q", (0, ""), b"api.test", b"/?q"),
    (b"GET", b"http://user@api.test/", (400, "bad_request_target"), b"h", b"http://user@api.test/"),
    (b"GET", b"ftp://api.test/", (400, "bad_request_target"), b"h", b"ftp://api.test/"),
    (b"OPTIONS", b"*", (0, ""), b"h", b"*"),
    (b"GET", b"*", (400, "bad_request_target"), b"h", b"*"),
    (b"CONNECT", b"api.test:443", (405, "method_not_allowed"), b"h", b"api.test:443"),
    (b"GET", b"api.test:443", (400, "bad_request_target"), b"h", b"api.test:443"),
])
def test_request_target_forms(method, target, result, host, new_target):
    from proxy.routing import adopt_target_form

    head = _Head(method, target)
    assert adopt_target_form(head) == result
    assert (head.host, head.target) == (host, new_target)
