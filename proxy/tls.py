"""TLS termination: contexts per listener, SNI selection, the handshake driven
by hand so each phase is timed, and the client-certificate policy.

Theory of operation
-------------------
``TLSContexts`` is everything a TLS listener needs, built from its
``ListenerConfig``: one ``ssl.SSLContext`` per configured certificate (same
protocol settings; the SANs of each certificate are the names it serves), a
``CertificateSelector`` over them, and the ``ClientCertPolicy`` when client
certificates are asked for. It is immutable; reloading certificates builds a
new one and swaps it on the listener, so connections already established
keep the contexts they were made with and new ones get the new certificates.
Any problem (unreadable file, key not matching, bad cipher list) raises
``TLSSetupError`` naming the config key, and the old contexts keep serving.

Session tickets: a single process keeps OpenSSL's own random ticket keys.
Under a supervisor, every worker of a generation gets the same key block
from it (``ticket_keys``), set on every context through ctypes
(``set_ticket_keys``), so a ticket one worker issued resumes on any other.

``TLSConnection`` is the asyncio protocol on the TCP transport of a TLS
listener. Neither uvloop nor asyncio tells a protocol anything about a
handshake but its end, so the handshake runs here on an OpenSSL connection
object over two memory BIOs (what ``ssl.SSLObject`` wraps, created and
called without that Python wrapper, whose every method only forwards), which
makes every phase observable:

``client_hello``   TCP accept -> the first ClientHello bytes arrive;
``sni``            the SNI callback picking the certificate (the first
                   context's callback swaps the connection's context);
``handshake``      first ClientHello bytes -> handshake finished (OpenSSL's
                   chain verification of a client certificate included);
``client_verify``  the proxy's own policy check of the client certificate
                   (``clientcert.ClientCertPolicy``: CA, validity, EKU,
                   SAN/subject allow-lists), after the handshake;
``total``          TCP accept -> ready for the first request.

A failed handshake is classified into a small stable set of reasons
(``FAILURE_REASONS``), counted, and logged once with the reason and the
OpenSSL text; the alert OpenSSL produced is flushed before the close. The
handshake has a deadline (``handshake_timeout``; the listener's
``deadlines.DeadlineQueue`` of handshakes): a client that stalls it is
closed then, and its admission slot is released with the connection.

Once established, the connection hands a ``Downstream`` a ``TLSTransport``
that encrypts on ``write`` and feeds it decrypted bytes: the HTTP layer is
the same for plain and TLS connections. Flow control passes through both
ways (``pause_reading`` stops delivering already-decrypted bytes too).

A client certificate the policy refuses after a completed handshake does
not abort the connection: its requests get ``403`` with the reason code
(``Downstream`` reads ``TLSInfo.refusal``), which a client can act on,
unlike an alert.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime
import os
import ssl

try:
    import cython
except ImportError:  # Cython absent: this module runs as plain Python
    class cython:  # noqa: N801
        compiled = False

from . import clock
from . import log

__all__ = ["FAILURE_REASONS", "TICKET_KEYS_SIZE", "TLSConnection", "TLSContexts", "TLSInfo", "TLSSetupError",
           "failure_reason", "load_listener_tls", "new_ticket_keys", "set_ticket_keys"]

_READ_SIZE = 16 * 1024  # one TLS record at most; a bigger buffer costs an mmap per read

FAILURE_REASONS = (
    "timeout", "eof", "sni_unknown", "no_sni", "no_client_cert", "unknown_ca", "expired", "not_yet_valid",
    "eku_mismatch", "bad_cert", "protocol_version", "no_shared_cipher", "http_request", "peer_alert", "error",
)

# X509_V_ERR_* codes of a client certificate OpenSSL refused during the handshake
_VERIFY_CODES = {
    2: "unknown_ca", 18: "unknown_ca", 19: "unknown_ca", 20: "unknown_ca", 21: "unknown_ca",
    9: "not_yet_valid", 10: "expired", 26: "eku_mismatch",
}
# OpenSSL reason strings (ssl.SSLError.reason) -> failure reason
_REASONS = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no_client_cert",
    "UNSUPPORTED_PROTOCOL": "protocol_version",
    "WRONG_VERSION_NUMBER": "protocol_version",
    "TLSV1_ALERT_PROTOCOL_VERSION": "protocol_version",
    "VERSION_TOO_LOW": "protocol_version",
    "NO_PROTOCOLS_AVAILABLE": "protocol_version",
    "NO_SHARED_CIPHER": "no_shared_cipher",
    "HTTP_REQUEST": "http_request",
    "HTTPS_PROXY_REQUEST": "http_request",
    "CERTIFICATE_VERIFY_FAILED": "bad_cert",
}


def failure_reason(exc: BaseException) -> str:
    """The stable failure reason of an exception raised by a server-side handshake."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _VERIFY_CODES.get(exc.verify_code, "bad_cert")
    if isinstance(exc, ssl.SSLEOFError):
        return "eof"
    reason = getattr(exc, "reason", None) or ""
    if reason in _REASONS:
        return _REASONS[reason]
    if reason.startswith(("SSLV3_ALERT_", "TLSV1_ALERT_", "TLSV13_ALERT_")):
        return "peer_alert"  # the client refused us (e.g. our certificate is not trusted there)
    return "error"


def _ssl_ctx_pointer(ctx: ssl.SSLContext, unchanged: str) -> int | None:
    """The ``SSL_CTX`` pointer of ``ctx``, checked, for what Python's ssl has no API for; else None.

    CPython keeps the pointer right after the object header; it is checked
    before any use (OpenSSL must report the options Python reports for the
    same context). When the check fails (another Python, another libssl),
    the caller leaves OpenSSL's defaults and one warning named ``unchanged``
    is logged per process: never a wild pointer.
    """
    global _LIBSSL
    try:
        if _LIBSSL is None:
            lib = ctypes.CDLL(ctypes.util.find_library("ssl") or "libssl.so.3")
            lib.SSL_CTX_get_options.restype = ctypes.c_uint64
            lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
            lib.SSL_CTX_ctrl.restype = ctypes.c_long
            lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
            _LIBSSL = lib
        ptr = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
        if not ptr or _LIBSSL.SSL_CTX_get_options(ptr) != int(ctx.options):
            raise OSError("SSL_CTX pointer check failed")
    except (OSError, AttributeError, ValueError) as exc:
        _warn_once(unchanged, str(exc))
        return None
    return ptr


def _warn_once(name: str, reason: str) -> None:
    if name not in _WARNED:
        _WARNED.add(name)
        log.warn(name, reason=reason)


def _set_groups(ctx: ssl.SSLContext, groups: str) -> bool:
    """Limit the key exchange groups of ``ctx`` (``SSL_CTX_set1_groups_list``).

    When the context's pointer cannot be used, the groups stay OpenSSL's
    defaults (a warning says so). Returns False only when OpenSSL refuses
    the list.
    """
    ptr = _ssl_ctx_pointer(ctx, "tls_groups_unchanged")
    if ptr is None:
        return True
    return _LIBSSL.SSL_CTX_ctrl(ptr, _SSL_CTRL_SET_GROUPS_LIST, 0, ctypes.c_char_p(groups.encode())) == 1


def new_ticket_keys() -> bytes:
    """A random session-ticket key block: 16-byte key name, 32-byte HMAC key, 32-byte AES key."""
    return os.urandom(TICKET_KEYS_SIZE)


def set_ticket_keys(ctx: ssl.SSLContext, keys: bytes) -> bool:
    """Make ``ctx`` seal and open session tickets with ``keys`` instead of its own random ones.

    Contexts given the same block (the workers of one generation) resume
    each other's sessions. ``SSL_CTX_set_tlsext_ticket_keys`` is a macro
    over ``SSL_CTX_ctrl``, called through ctypes on the checked pointer.
    A block of the wrong size raises ``ValueError``. Returns False, the
    context keeping OpenSSL's per-process keys (resumption then works only
    against this process), when the pointer cannot be used or OpenSSL
    refuses the keys; a warning says so.
    """
    if len(keys) != TICKET_KEYS_SIZE:
        raise ValueError(f"a session ticket key block is {TICKET_KEYS_SIZE} bytes (16-byte name, 32-byte HMAC "
                         f"key, 32-byte AES key), not {len(keys)}")
    ptr = _ssl_ctx_pointer(ctx, "tls_ticket_keys_per_process")
    if ptr is None:
        return False
    if _LIBSSL.SSL_CTX_ctrl(ptr, _SSL_CTRL_SET_TLSEXT_TICKET_KEYS, len(keys), ctypes.c_char_p(keys)) != 1:
        _warn_once("tls_ticket_keys_per_process", "OpenSSL refused the ticket keys")
        return False
    return True


_LIBSSL = None
_WARNED: set = set()  # the warnings already logged by this process
_SSL_CTRL_SET_GROUPS_LIST = 92
_SSL_CTRL_SET_TLSEXT_TICKET_KEYS = 59
TICKET_KEYS_SIZE = 80  # OpenSSL 1.1+ and 3: key name 16, HMAC key 32, AES key 32


class TLSSetupError(Exception):
    """A listener's TLS settings cannot be used; ``key`` is the config key path under the listener."""

    def __init__(self, key: str, value, reason: str):
        super().__init__(reason)
        self.key = key
        self.value = value
        self.reason = reason


def load_listener_tls(config, ticket_keys: bytes | None = None) -> dict:
    """``{listener name: TLSContexts}`` for the TLS listeners of ``config``.

    Reads every certificate and key; a problem raises ``ConfigError`` naming
    the config file, the key (``listeners[1].certificates[0]``), the value
    and what is wrong, like any other configuration error.
    """
    from .config import ConfigError

    out = {}
    for i, lc in enumerate(config.listeners):
        if not lc.tls:
            continue
        try:
            out[lc.name] = TLSContexts(lc, ticket_keys)
        except TLSSetupError as exc:
            raise ConfigError(config.source, f"listeners[{i}].{exc.key}", exc.value,
                              "a usable certificate, key and client CA", reason=exc.reason) from None
    return out


_MIN_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class TLSContexts:
    """The SSL contexts, certificate selector and client policy of one TLS listener.

    ``ticket_keys``: the session-ticket key block shared by the workers of
    one generation (``set_ticket_keys``), set on every certificate's context
    (the SNI callback switches contexts) unless ``session_tickets`` is off;
    None (a single process) leaves OpenSSL's own random keys.
    """

    def __init__(self, cfg, ticket_keys: bytes | None = None):
        # certificate handling (``cryptography``, about a fifth of the proxy's start-up) is imported
        # by the first TLS listener, not by every start
        from .certs import CertError, CertificateSelector, load_certificate
        from .clientcert import ClientCertPolicy

        self.cfg = cfg
        self.ticket_keys = ticket_keys
        self.certificates = []
        for i, c in enumerate(cfg.certificates):
            try:
                self.certificates.append(load_certificate(c.cert, c.key))
            except CertError as exc:
                raise TLSSetupError(f"certificates[{i}]", c.cert, str(exc)) from None
        self.policy = None
        if cfg.client_auth != "none":
            try:
                self.policy = ClientCertPolicy.from_pem_file(
                    cfg.client_ca, allowed_ekus=cfg.client_eku, allowed_sans=cfg.client_allowed_sans or None,
                    allowed_subjects=cfg.client_allowed_subjects or None)
            except (CertError, ValueError) as exc:
                raise TLSSetupError("client_ca", cfg.client_ca, str(exc)) from None
        self.contexts = [self._context(i, c) for i, c in enumerate(self.certificates)]  # one per certificate
        self.selector = CertificateSelector.from_certificates(self.certificates, self.contexts, 0)
        self.default = self.contexts[0]
        self.default.sni_callback = self._on_sni
        self.required = cfg.client_auth == "required"

    def _context(self, i: int, cert) -> ssl.SSLContext:
        cfg = self.cfg
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _MIN_VERSIONS[cfg.min_tls_version]
        try:
            ctx.set_ciphers(cfg.ciphers)
        except ssl.SSLError:
            raise TLSSetupError("ciphers", cfg.ciphers, "OpenSSL accepts none of these cipher suites") from None
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_SINGLE_ECDH_USE
        if not cfg.session_tickets:
            ctx.options |= ssl.OP_NO_TICKET
            ctx.num_tickets = 0
        elif self.ticket_keys is not None:
            set_ticket_keys(ctx, self.ticket_keys)
        ctx.set_alpn_protocols(["http/1.1"])
        if not _set_groups(ctx, cfg.groups):
            raise TLSSetupError("groups", cfg.groups, "OpenSSL accepts none of these groups")
        try:
            ctx.load_cert_chain(cert.cert_file, cert.key_file)
        except (ssl.SSLError, OSError) as exc:
            raise TLSSetupError(f"certificates[{i}]", cert.cert_file, f"OpenSSL refused it: {exc}") from None
        if cfg.client_auth != "none":
            ctx.verify_mode = ssl.CERT_REQUIRED if cfg.client_auth == "required" else ssl.CERT_OPTIONAL
            try:
                ctx.load_verify_locations(cafile=cfg.client_ca)
            except (ssl.SSLError, OSError) as exc:
                raise TLSSetupError("client_ca", cfg.client_ca, f"OpenSSL refused it: {exc}") from None
        return ctx

    def _on_sni(self, conn, server_name, _ctx):
        """OpenSSL's servername callback: pick the certificate, time it, apply the policy.
        ``conn``: the TLSConnection, the OpenSSL object's owner (see TLSConnection.connection_made)."""
        t0 = clock.monotonic()
        cfg = self.cfg
        if server_name is None:
            conn.server.metrics.tls_sni(conn.listener.name, missing=True)
            if cfg.no_sni_policy == "reject":
                conn.fail_reason = "no_sni"
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            ctx = self.default
        else:
            ctx, matched = self.selector.select(server_name)
            if not matched:
                conn.server.metrics.tls_sni(conn.listener.name, missing=False)
                if cfg.sni_policy == "reject":
                    conn.fail_reason = "sni_unknown"
                    conn.sni = server_name
                    return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            conn.sni = server_name
        if ctx is not self.default:
            conn.records.context = ctx
        conn.sni_time = clock.monotonic() - t0
        return None


class TLSInfo:
    """What a request handler knows about its TLS connection (access log, policy, headers)."""

    __slots__ = ("sni", "version", "cipher", "resumed", "handshake_time", "subject", "refusal", "identity")

    def __init__(self, sni, version, cipher, resumed, handshake_time, subject, refusal, identity):
        self.sni = sni  # the SNI the client sent (lowercase str) or ""
        self.version = version
        self.cipher = cipher
        self.resumed = resumed
        self.handshake_time = handshake_time  # seconds, accept to ready
        self.subject = subject  # verified client certificate subject, or ""
        self.refusal = refusal  # the policy's code when the client certificate is refused, else ""
        self.identity = identity  # [(header name, value)] added to requests sent upstream


class TLSTransport:
    """What the Downstream sees: a transport that encrypts and decrypts (asyncio.Transport's methods,
    without the base: compiled, this is an extension type, which cannot derive from a Python class)."""

    if not cython.compiled:  # compiled (tls.pxd), typed slots
        __slots__ = ("_conn", "_raw", "_records", "_outgoing")

    def __init__(self, conn: TLSConnection):
        self._conn = conn
        self._raw = conn.raw
        self._records = conn.records
        self._outgoing = conn.outgoing

    def write(self, data) -> None:
        if not data:
            return
        sslobj = self._records
        try:
            n = sslobj.write(data)
            while n < len(data):  # only with partial writes; the memory BIO normally takes it all
                data = memoryview(data)[n:]
                n = sslobj.write(data)
        except ssl.SSLError:
            self._raw.abort()
            return
        self._conn.held = False
        self._raw.write(self._outgoing.read())

    def writelines(self, chunks) -> None:
        self.write(b"".join(chunks))

    def close(self) -> None:
        raw = self._raw
        if raw.is_closing():
            return
        try:
            self._records.shutdown()  # queues our close_notify; the peer's is not awaited
        except (ssl.SSLError, ValueError):
            pass
        out = self._outgoing.read()
        if out:
            raw.write(out)
        raw.close()

    def abort(self) -> None:
        self._raw.abort()

    def is_closing(self) -> bool:
        return self._raw.is_closing()

    def pause_reading(self) -> None:
        self._conn.app_paused = True
        self._raw.pause_reading()

    def resume_reading(self) -> None:
        conn = self._conn
        conn.app_paused = False
        self._raw.resume_reading()
        if conn.incoming.pending or self._records.pending():
            conn.server.loop.call_soon(conn.read_app)  # bytes decrypted or received while paused

    def is_reading(self) -> bool:
        return not self._conn.app_paused

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size()

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        self._raw.set_write_buffer_limits(high, low)

    def get_extra_info(self, name, default=None):
        if name == "ssl_object":  # the OpenSSL connection object (ssl.SSLObject's _sslobj)
            return self._records
        if name == "sslcontext":
            return self._records.context
        if name == "peercert":
            return self._records.getpeercert()
        if name == "cipher":
            return self._records.cipher()
        return self._raw.get_extra_info(name, default)


class TLSConnection:
    """The protocol on a TLS listener's TCP transport: handshake, then relay to a Downstream
    (asyncio.Protocol's methods, without the base, as for TLSTransport)."""

    def __init__(self, server, listener, ip: str, accepted_at: float, make_downstream):
        self.server = server
        self.listener = listener
        self.ip = ip
        self.accepted_at = accepted_at
        self.make_downstream = make_downstream
        self.contexts = listener.tls
        self.raw = None
        self.records = None  # the OpenSSL connection object (see connection_made)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.app = None  # the Downstream, once the handshake is done
        self.app_paused = False
        self.hello_at = 0.0
        self.sni = ""
        self.sni_time = 0.0
        self.fail_reason = ""
        self.ended = False  # the handshake ended (done, failed or timed out)
        self.peer = ""
        self.peer_addr = None  # the client (ip, port): accept()'s, or a PROXY protocol header's
        self.held = False  # post-handshake messages wait for the first answer (see data_received)

    # -- handshake ---------------------------------------------------------
    def connection_made(self, transport):
        self.raw = transport
        peer = self.peer_addr or transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        # SSLContext.wrap_bio's own step without its ssl.SSLObject wrapper (Python code per
        # connection and a frame on every call, all of it forwarding): this connection is the
        # OpenSSL object's owner, held weakly, which the SNI callback receives
        self.records = self.contexts.default._wrap_bio(self.incoming, self.outgoing, server_side=True,
                                                       server_hostname=None, owner=self, session=None)
        deadlines: DeadlineQueue = self.listener.handshakes
        deadlines.add(self, clock.monotonic())  # its deadline (handshake_timeout) is from now

    def data_received(self, data):
        if self.app is not None:
            self.incoming.write(data)
            if not self.app_paused:
                self.read_app()
            return
        if self.ended:
            return
        if not self.hello_at:
            self.hello_at = clock.monotonic()
        self.incoming.write(data)
        try:
            self.records.do_handshake()  # the C object: no wrapper frame in the usual SSLWantReadError
        except ssl.SSLWantReadError:
            self._flush()
            return
        except ssl.SSLError as exc:
            self._failed(self.fail_reason or failure_reason(exc), exc)
            return
        if self.incoming.pending and self.records.version() == "TLSv1.3":
            # the client's first request came with its Finished: the session tickets OpenSSL just
            # queued leave with the answer (TLSTransport.write and close send whatever is queued),
            # one write and one packet fewer per new connection. Only in TLS 1.3: a TLS 1.2 client
            # waits for the server's last flight before it sends anything.
            self.held = True
        else:
            self._flush()
        self._established()

    def _flush(self) -> None:
        out = self.outgoing.read()
        if out:
            self.raw.write(out)

    def _end_handshake(self) -> None:
        self.ended = True
        deadlines: DeadlineQueue = self.listener.handshakes
        deadlines.remove(self)

    def _failed(self, reason, exc) -> None:
        if self.ended:
            return
        self._end_handshake()
        name = self.listener.name
        self.server.metrics.tls_failure(name, reason)
        self.server.metrics.tls_phases(name, {"total": clock.monotonic() - self.accepted_at})
        log.event("tls_handshake_failed", level="info", listener=name, client=self.peer, reason=reason,
                  sni=self.sni or None, detail=_detail(exc))
        if self.raw is not None and not self.raw.is_closing():
            self._flush()  # the alert, if OpenSSL made one
            self.raw.close()

    def on_deadline(self) -> None:
        """The handshake's deadline passed (its listener's DeadlineQueue of handshakes)."""
        if not self.ended:
            self.server.metrics.timeout("downstream", "tls_handshake")
            self._failed("timeout", None)
            if self.raw is not None:
                self.raw.abort()

    def _established(self) -> None:
        now = clock.monotonic()
        self._end_handshake()
        sslobj = self.records
        ctxs = self.contexts
        listener = self.listener
        name = listener.name
        subject, refusal, identity = "", "", []
        if ctxs.policy is not None:
            der = sslobj.getpeercert(True)
            t0 = clock.monotonic()
            verdict = ctxs.policy.check(der, datetime.datetime.now(datetime.timezone.utc))
            self.server.metrics.tls_phases(name, {"client_verify": clock.monotonic() - t0})
            self.server.metrics.tls_client_cert(name, verdict.code)
            if verdict.ok:
                subject = verdict.subject
                identity = _identity_headers(self.listener.cfg, verdict)
            elif der is not None or ctxs.required:
                refusal = verdict.code
                log.event("tls_client_refused", level="info", listener=name, client=self.peer, reason=verdict.code,
                          subject=verdict.subject or None, detail=verdict.detail)
        total = clock.monotonic() - self.accepted_at
        resumed = sslobj.session_reused
        stats: TLSStats = listener.tls_stats
        if stats is None:
            stats = listener.tls_stats = self.server.metrics.tls_stats(name)
        stats.finished(self.hello_at - self.accepted_at, self.sni_time, now - self.hello_at, total, resumed)
        cipher = sslobj.cipher()
        info = TLSInfo(self.sni.lower().rstrip(".") if self.sni else "", sslobj.version(),
                       cipher[0] if cipher else "", resumed, total, subject, refusal, identity)
        app = self.make_downstream()
        app.tls = info
        app.peer_addr = self.peer_addr
        self.app = app
        app.connection_made(TLSTransport(self))
        if self.incoming.pending or sslobj.pending():
            self.read_app()  # the first request came with the handshake's last flight

    # -- established ---------------------------------------------------------
    def read_app(self) -> None:
        """Decrypt what has arrived and hand it to the Downstream (until it pauses)."""
        app = self.app
        if app is None:  # closed since this call was scheduled
            return
        sslobj = self.records
        incoming = self.incoming
        while not self.app_paused:
            try:
                chunk = sslobj.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # the client's close_notify: an orderly end of input
                self._flush()
                if not app.eof_received():
                    self.raw.close()
                return
            except ssl.SSLError as exc:
                log.event("tls_error", level="info", listener=self.listener.name, client=self.peer,
                          detail=_detail(exc))
                self.raw.abort()
                return
            if not chunk:
                break
            app.data_received(chunk)
            if not incoming.pending and not sslobj.pending():
                break
        if self.outgoing.pending and not self.held:
            self._flush()  # post-handshake messages (session tickets, key updates)

    def eof_received(self):
        if self.app is not None:
            return self.app.eof_received()
        self._failed("eof", None)
        return False

    def connection_lost(self, exc):
        app = self.app
        if app is not None:
            self.app = None  # the Downstream's transport leads back here: no cycle left behind
            app.connection_lost(exc)
            return
        if not self.ended:
            self._failed("eof", exc)
        # no Downstream took over the admission slot: release it here
        self.server.admission_released(self.listener, self.ip)

    def pause_writing(self):
        if self.app is not None:
            self.app.pause_writing()

    def resume_writing(self):
        if self.app is not None:
            self.app.resume_writing()

    # -- diagnostics ---------------------------------------------------------
    def abort(self) -> None:
        if self.raw is not None:
            self.raw.abort()


def _identity_headers(cfg, verdict) -> list:
    out = []
    if cfg.client_subject_header and verdict.subject:
        out.append((cfg.client_subject_header.encode("latin-1"), _header_value(verdict.subject)))
    if cfg.client_san_header and verdict.sans:
        out.append((cfg.client_san_header.encode("latin-1"), _header_value(", ".join(verdict.sans))))
    if cfg.client_fingerprint_header and verdict.fingerprint_sha256:
        out.append((cfg.client_fingerprint_header.encode("latin-1"), verdict.fingerprint_sha256.encode("ascii")))
    return out


def _header_value(text: str) -> bytes:
    """A certificate string made safe as a header value: visible ASCII and spaces only."""
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text).encode("ascii")


def _detail(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"{exc.verify_message} (code {exc.verify_code})"
    return str(exc)[:200]
