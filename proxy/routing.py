"""Route matching: Host, then longest path prefix.

Theory of operation
-------------------
Routes are grouped once, at build time, into three host tiers, tried in
order of specificity:

1. exact host routes (``host = "api.example.com"``),
2. wildcard routes (``host = "*.example.com"``: any name with at least one
   more label, not ``example.com`` itself), longest suffix first,
3. routes without a host (match any Host).

The request's Host is lowercased and its port dropped. Inside a tier the
route with the longest matching ``path_prefix`` wins (a plain string prefix
of the path without the query, as in Envoy and nginx: ``/api`` also matches
``/apix``; write ``/api/`` for a segment boundary); ties go to the route
written first. If a tier has routes for the host but none whose prefix
matches, the next tier is tried, so a catch-all route still catches.
No match anywhere is the caller's 404.
"""

from __future__ import annotations

import re

from typing import Iterable, Optional

try:
    import cython
except ImportError:  # Cython absent: this module runs as plain Python
    class cython:  # noqa: N801
        compiled = False


_HOST_CACHE = 4096  # distinct Host values remembered normalized


class Route:
    """Runtime view of one [[routes]] entry."""

    if not cython.compiled:  # compiled (routing.pxd), the fields are typed slots
        __slots__ = ("name", "host", "prefix", "upstream", "strip_prefix", "host_rewrite", "websocket", "order",
                     "max_body_size")

    def __init__(self, name, host, prefix, upstream, strip_prefix=False, host_rewrite="", websocket=False, order=0,
                 max_body_size=0):
        self.name = name
        self.host = host
        self.prefix = prefix.encode() if isinstance(prefix, str) else prefix
        self.upstream = upstream
        self.strip_prefix = strip_prefix
        self.host_rewrite = host_rewrite.encode() if isinstance(host_rewrite, str) else host_rewrite
        self.websocket = websocket
        self.order = order
        self.max_body_size = max_body_size  # 0 = no limit

    @classmethod
    def from_config(cls, cfg, order: int) -> "Route":
        return cls(cfg.name, cfg.host, cfg.path_prefix, cfg.upstream, cfg.strip_prefix, cfg.host_rewrite, cfg.websocket,
                   order, cfg.max_body_size)

    def rewrite_target(self, target: bytes) -> bytes:
        """The request target sent upstream (prefix stripped when configured)."""
        if not self.strip_prefix:
            return target
        rest = target[len(self.prefix):]
        if not rest.startswith(b"/"):
            rest = b"/" + rest
        return rest


def _by_prefix(routes: list[Route]) -> list[Route]:
    return sorted(routes, key=lambda r: (-len(r.prefix), r.order))


def normalize_host(host: bytes) -> bytes:
    """Lowercase, port removed (``[::1]:80`` → ``[::1]``), trailing dot removed."""
    if host.startswith(b"["):
        end = host.find(b"]")
        host = host[: end + 1] if end > 0 else host
    else:
        colon = host.rfind(b":")
        if colon >= 0:
            host = host[:colon]
    return host.rstrip(b".").lower()


class Router:
    def __init__(self, routes: Iterable[Route]):
        exact: dict[bytes, list[Route]] = {}
        wild: dict[bytes, list[Route]] = {}
        anyhost: list[Route] = []
        for r in routes:
            h = r.host.lower()
            if not h:
                anyhost.append(r)
            elif h.startswith("*."):
                wild.setdefault(h[1:].encode(), []).append(r)  # key ".example.com"
            else:
                exact.setdefault(h.encode(), []).append(r)
        self._exact = {h: _by_prefix(rs) for h, rs in exact.items()}
        self._wild = sorted(((s, _by_prefix(rs)) for s, rs in wild.items()), key=lambda t: -len(t[0]))
        self._any = _by_prefix(anyhost)
        self._by_host = bool(self._exact or self._wild)
        self._hosts: dict[bytes, bytes] = {}  # raw Host -> normalized, bounded

    @classmethod
    def from_config(cls, routes_cfg) -> "Router":
        return cls(Route.from_config(c, i) for i, c in enumerate(routes_cfg))

    def match(self, host: bytes, target: bytes) -> Optional[Route]:
        q = target.find(b"?")
        path = target if q < 0 else target[:q]
        if self._by_host:
            h = self._hosts.get(host)
            if h is None:
                h = normalize_host(host) if host else b""
                if len(self._hosts) >= _HOST_CACHE:
                    self._hosts.clear()
                self._hosts[host] = h
        else:
            h = b""  # no host-specific route: skip the Host work entirely
        r: Route
        if h:
            tier = self._exact.get(h)
            if tier:
                for r in tier:
                    if path.startswith(r.prefix):
                        return r
            for suffix, tier in self._wild:
                if h.endswith(suffix) and len(h) > len(suffix):
                    for r in tier:
                        if path.startswith(r.prefix):
                            return r
        for r in self._any:
            if path.startswith(r.prefix):
                return r
        return None


# RFC 9112 section 3.2: request-target forms other than origin-form ("/path").
_ABSOLUTE_FORM = re.compile(rb"[hH][tT][tT][pP][sS]?://([^/?#@\s]+)((?:[/?][^#\s]*)?)")


def adopt_target_form(head) -> tuple[int, str]:
    """Bring a request whose target is not origin-form to origin-form, in place.

    absolute-form (``http://host:port/path?q``): the authority replaces Host
    (RFC 9112 section 3.2.2: a server ignores Host then) and the path (``/``
    when empty) becomes the target; userinfo (``user@host``) is refused.
    asterisk-form (``*``) is kept for OPTIONS only. authority-form is
    CONNECT's, and this is not a forward proxy: 405. Returns ``(0, "")`` when
    the request may go on, else the status and error code to answer.
    """
    target = head.target
    if target == b"*":
        return (0, "") if head.method == b"OPTIONS" else (400, "bad_request_target")
    m = _ABSOLUTE_FORM.fullmatch(target)
    if m is not None:
        head.host = m.group(1)
        path = m.group(2)
        head.target = path if path[:1] == b"/" else b"/" + path
        return 0, ""
    if head.method == b"CONNECT":
        return 405, "method_not_allowed"
    return 400, "bad_request_target"

