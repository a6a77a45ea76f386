"""TLS listener setup (contexts, errors) and handshake failure classification, without sockets."""

from __future__ import annotations

import ssl

import pytest

from proxy.config import ConfigError, parse_config
from proxy.gencert import CLIENT_AUTH, generate_dev_set, issue, make_ca
from proxy.tls import FAILURE_REASONS, TLSContexts, failure_reason, load_listener_tls


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
