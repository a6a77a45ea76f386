"""Errors that carry their own policy: the status to answer and whether a
retry on another server is safe.

Theory of operation: the engine never decides "what status is a connect
timeout" inline. A failure is raised or passed as one of these; the engine
reads ``status`` for the client answer, ``code`` for the JSON body, metrics
and the access log, and ``retryable`` (together with the request's method and
whether any body byte or response byte has moved) to decide on a retry.
"""

from __future__ import annotations


class ProxyError(Exception):
    status = 502
    code = "bad_gateway"
    retryable = False

    def __init__(self, detail: str = ""):
        super().__init__(detail or self.code)
        self.detail = detail


class NoRoute(ProxyError):
    status = 404
    code = "no_route"


class NoServer(ProxyError):
    """Every server of the cluster was tried or is unavailable."""

    status = 503
    code = "no_upstream_available"


class ConnectRefused(ProxyError):
    status = 502
    code = "upstream_connect_failed"
    retryable = True


class ConnectTimeout(ProxyError):
    status = 504
    code = "upstream_connect_timeout"
    retryable = True


class UpstreamReset(ProxyError):
    """The connection closed or reset before a whole response head arrived.

    Retryable only on a reused pooled connection (the server may have closed
    it while idle) and only before any request body byte was sent; the engine
    checks both.
    """

    status = 502
    code = "upstream_reset"
    retryable = True


class ResponseTimeout(ProxyError):
    status = 504
    code = "upstream_timeout"


class RequestDeadline(ProxyError):
    status = 504
    code = "request_timeout"


class InvalidResponse(ProxyError):
    status = 502
    code = "invalid_upstream_response"
