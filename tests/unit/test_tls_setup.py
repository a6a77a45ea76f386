"""TLS listener setup (contexts, errors) and handshake failure classification, without sockets."""

from __future__ import annotations

import ssl
import types

import pytest

from proxy.config import ConfigError, parse_config
from proxy.gencert import CLIENT_AUTH, generate_dev_set, issue, make_ca
from proxy.tls import (FAILURE_REASONS, TICKET_KEYS_SIZE, TLSContexts, failure_reason, load_listener_tls,
                       new_ticket_keys, set_ticket_keys)


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    return {k: str(v) for k, v in generate_dev_set(d, ["a.test", "*.b.test"]).items()}


def config(listener: dict):
    return parse_config({"listeners": [dict({"address": "127.0.0.1:0"}, **listener)],
                         "upstreams": {"a": {"servers": ["127.0.0.1:1"]}}, "routes": [{"upstream": "a"}]},
                        "edge.toml")


def test_contexts_select_by_sni_and_default(dev):
    cfg = config({"tls": True, "certificates": [{"cert": dev["server.pem"], "key": dev["server.key"]}]})
    tls = load_listener_tls(cfg)["main"]
    assert isinstance(tls, TLSContexts) and tls.policy is None
    ctx, matched = tls.selector.select("x.b.test")
    assert ctx is tls.default and matched
    assert tls.selector.select("other.test") == (tls.default, False)
    assert tls.default.minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize(("listener", "key", "words"), [
    ({"certificates": [{"cert": "missing.pem", "key": "missing.key"}]}, "listeners[0].certificates[0]", "missing"),
    ({"ciphers": "NOPE-CIPHER"}, "listeners[0].ciphers", "cipher"),
    ({"client_auth": "required", "client_ca": "nothing.pem"}, "listeners[0].client_ca", "nothing.pem"),
])
def test_setup_errors_name_the_key(dev, listener, key, words):
    base = {"tls": True, "certificates": [{"cert": dev["server.pem"], "key": dev["server.key"]}]}
    with pytest.raises(ConfigError) as err:
        load_listener_tls(config(dict(base, **listener)))
    text = str(err.value)
    assert text.startswith("edge.toml: " + key) and words in text


def test_key_not_matching_certificate(dev):
    with pytest.raises(ConfigError) as err:
        load_listener_tls(config({"tls": True, "certificates": [{"cert": dev["server.pem"],
                                                                  "key": dev["client.key"]}]}))
    assert "listeners[0].certificates[0]" in str(err.value) and "match" in str(err.value).lower()


def test_client_policy_built_from_the_listener(dev):
    cfg = config({"tls": True, "certificates": [{"cert": dev["server.pem"], "key": dev["server.key"]}],
                  "client_auth": "optional", "client_ca": dev["ca.pem"], "client_allowed_sans": ["x.test"]})
    tls = load_listener_tls(cfg)["main"]
    assert tls.policy is not None and not tls.required
    assert tls.default.verify_mode == ssl.CERT_OPTIONAL
    ca = make_ca("t")
    leaf = issue(common_name="c", dns_names=["y.test"], issuer=ca, extended_key_usage=(CLIENT_AUTH,))
    from cryptography.hazmat.primitives.serialization import Encoding
    import datetime

    verdict = tls.policy.check(leaf.cert.public_bytes(Encoding.DER), datetime.datetime.now(datetime.timezone.utc))
    assert verdict.code == "unknown_ca"  # another CA than client_ca


class FakeVerifyError(ssl.SSLCertVerificationError):
    def __init__(self, code):
        super().__init__(1, "certificate verify failed")
        self.verify_code = code
        self.verify_message = "x"


class FakeError(ssl.SSLError):
    def __init__(self, reason):
        super().__init__(1, reason)
        self.reason = reason


@pytest.mark.parametrize(("exc", "reason"), [
    (FakeVerifyError(10), "expired"),
    (FakeVerifyError(9), "not_yet_valid"),
    (FakeVerifyError(20), "unknown_ca"),
    (FakeVerifyError(26), "eku_mismatch"),
    (FakeVerifyError(99), "bad_cert"),
    (FakeError("PEER_DID_NOT_RETURN_A_CERTIFICATE"), "no_client_cert"),
    (FakeError("NO_SHARED_CIPHER"), "no_shared_cipher"),
    (FakeError("UNSUPPORTED_PROTOCOL"), "protocol_version"),
    (FakeError("HTTP_REQUEST"), "http_request"),
    (FakeError("TLSV1_ALERT_UNKNOWN_CA"), "peer_alert"),
    (FakeError("SOMETHING_NEW"), "error"),
    (ssl.SSLEOFError(8, "eof"), "eof"),
])
def test_failure_reasons(exc, reason):
    assert failure_reason(exc) == reason
    assert reason in FAILURE_REASONS


# ----------------------------------------------------------------------
# session-ticket keys shared by the workers of a generation
def _ticket_keys_of(ctx: ssl.SSLContext) -> bytes:
    """The ticket key block OpenSSL holds for ``ctx`` (SSL_CTX_get_tlsext_ticket_keys)."""
    import ctypes

    from proxy import tls

    ptr = tls._ssl_ctx_pointer(ctx, "test")
    assert ptr is not None
    buf = ctypes.create_string_buffer(TICKET_KEYS_SIZE)
    assert tls._LIBSSL.SSL_CTX_ctrl(ptr, 58, TICKET_KEYS_SIZE, buf) == 1  # SSL_CTRL_GET_TLSEXT_TICKET_KEYS
    return buf.raw


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, session=None) -> ssl.SSLObject:
    """A handshake over memory BIOs, then one record from the server (which carries TLS 1.3 tickets)."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="a.test", session=session)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    server._edge_conn = types.SimpleNamespace(sni="", sni_time=0.0, fail_reason="")  # for TLSContexts' SNI callback
    done = set()
    for _ in range(8):
        for name, obj, out, peer_in in (("c", client, c_out, s_in), ("s", server, s_out, c_in)):
            if name not in done:
                try:
                    obj.do_handshake()
                    done.add(name)
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(out.read())
        if len(done) == 2:
            break
    assert done == {"c", "s"}
    server.write(b"ok")
    c_in.write(s_out.read())
    assert client.read(2) == b"ok"
    return client


def _client(dev, version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=dev["ca.pem"])
    ctx.minimum_version = ctx.maximum_version = version
    return ctx


def _server(dev) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(dev["server.pem"], dev["server.key"])
    return ctx


VERSIONS = pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3],
                                   ids=["tls1.2", "tls1.3"])


@VERSIONS
def test_contexts_given_the_same_ticket_keys_resume_each_others_sessions(dev, version):
    client = _client(dev, version)
    keys = new_ticket_keys()
    first, second, other = _server(dev), _server(dev), _server(dev)
    assert set_ticket_keys(first, keys) and set_ticket_keys(second, keys)
    assert _ticket_keys_of(first) == _ticket_keys_of(second) == keys
    session = _handshake(first, client).session
    assert session is not None
    assert _handshake(second, client, session).session_reused  # another process with the same block
    assert not _handshake(other, client, session).session_reused  # its own random keys: a full handshake
    assert set_ticket_keys(other, new_ticket_keys())
    assert not _handshake(other, client, session).session_reused  # another generation's keys


def test_ticket_keys_of_the_wrong_size_are_refused(dev):
    ctx = _server(dev)
    before = _ticket_keys_of(ctx)
    for size in (0, 48, 79, 81):
        with pytest.raises(ValueError, match=f"80 bytes .*not {size}"):
            set_ticket_keys(ctx, bytes(size))
    assert _ticket_keys_of(ctx) == before
    cfg = config({"tls": True, "certificates": [{"cert": dev["server.pem"], "key": dev["server.key"]}]})
    with pytest.raises(ValueError, match="80 bytes"):
        load_listener_tls(cfg, b"short")


@VERSIONS
def test_listener_contexts_share_the_keys_on_every_certificate(dev, tmp_path, version):
    ca = make_ca("other")
    other = issue(common_name="c.test", dns_names=["c.test"], issuer=ca)
    (tmp_path / "c.pem").write_bytes(other.chain_pem())
    (tmp_path / "c.key").write_bytes(other.key_pem())
    certs = [{"cert": dev["server.pem"], "key": dev["server.key"]},
             {"cert": str(tmp_path / "c.pem"), "key": str(tmp_path / "c.key")}]
    cfg = config({"tls": True, "certificates": certs})
    keys = new_ticket_keys()
    worker0, worker1 = load_listener_tls(cfg, keys)["main"], TLSContexts(cfg.listeners[0], keys)
    contexts = [ctx for tls in (worker0, worker1) for ctx in tls.contexts]
    assert len(contexts) == 4 and {_ticket_keys_of(ctx) for ctx in contexts} == {keys}
    client = _client(dev, version)
    session = _handshake(worker0.default, client).session
    assert _handshake(worker1.default, client, session).session_reused
    # a single process (no key block) keeps OpenSSL's own random keys: no change there
    alone = load_listener_tls(cfg)["main"]
    assert keys not in {_ticket_keys_of(ctx) for ctx in alone.contexts}
    assert not _handshake(alone.default, client, session).session_reused
    # session tickets off: no keys set
    off = load_listener_tls(config({"tls": True, "certificates": certs, "session_tickets": False}), keys)["main"]
    assert keys not in {_ticket_keys_of(ctx) for ctx in off.contexts}
