import datetime
import ssl
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from proxy.certs import load_certificate
from proxy.clientcert import ClientCertPolicy
from proxy.gencert import (
    CLIENT_AUTH,
    DEV_SET_FILES,
    SERVER_AUTH,
    generate_dev_set,
    generate_key,
    issue,
    make_ca,
    split_names,
)

UTC = datetime.timezone.utc


def ext(cert, cls):
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


@pytest.fixture(scope="module")
def ca():
    return make_ca("Test CA")


def test_generate_key_kinds():
    assert isinstance(generate_key(), ec.EllipticCurvePrivateKey)
    assert isinstance(generate_key("ec").curve, ec.SECP256R1)
    assert generate_key("rsa").key_size == 2048
    assert isinstance(generate_key("ed25519"), ed25519.Ed25519PrivateKey)
    with pytest.raises(ValueError, match="unknown key kind 'dsa'"):
        generate_key("dsa")


def test_split_names():
    assert split_names(["Localhost.", "127.0.0.1", "[::1]", "::2", "*.example.com"]) == (
        ["localhost", "*.example.com"],
        ["127.0.0.1", "::1", "::2"],
    )


def test_leaf_signed_by_ca_has_names_usages_and_identifiers(ca):
    leaf = issue(common_name="web", dns_names=["web.test", "*.web.test"], ip_addresses=["127.0.0.1", "::1"], issuer=ca)
    cert = leaf.cert
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "web"
    assert cert.issuer == ca.cert.subject
    cert.verify_directly_issued_by(ca.cert)
    san = ext(cert, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.DNSName) == ["web.test", "*.web.test"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert list(ext(cert, x509.ExtendedKeyUsage)) == [SERVER_AUTH]
    assert ext(cert, x509.BasicConstraints).ca is False
    usage = ext(cert, x509.KeyUsage)
    assert usage.digital_signature and not usage.key_cert_sign
    assert ext(cert, x509.AuthorityKeyIdentifier).key_identifier == ext(ca.cert, x509.SubjectKeyIdentifier).digest
    assert leaf.issuer == ca.cert


def test_self_signed_leaf_and_pem_helpers():
    leaf = issue(common_name="solo", dns_names=["solo.test"])
    assert leaf.issuer is None
    assert leaf.cert.issuer == leaf.cert.subject
    leaf.cert.verify_directly_issued_by(leaf.cert)
    assert ext(leaf.cert, x509.AuthorityKeyIdentifier) is None
    assert leaf.chain_pem() == leaf.cert_pem()
    assert x509.load_pem_x509_certificate(leaf.cert_pem()) == leaf.cert
    key = serialization.load_pem_private_key(leaf.key_pem(), None)
    assert key.public_key() == leaf.key.public_key()
    assert b"BEGIN PRIVATE KEY" in leaf.key_pem()


def test_chain_pem_is_leaf_then_issuer(ca):
    leaf = issue(common_name="c", dns_names=["c.test"], issuer=ca)
    assert x509.load_pem_x509_certificates(leaf.chain_pem()) == [leaf.cert, ca.cert]


def test_ca_flags(ca):
    assert ext(ca.cert, x509.BasicConstraints).ca is True
    usage = ext(ca.cert, x509.KeyUsage)
    assert usage.key_cert_sign and usage.crl_sign
    assert ext(ca.cert, x509.ExtendedKeyUsage) is None
    assert ca.cert.issuer == ca.cert.subject


def test_validity_window_and_naive_datetimes_are_utc():
    start = datetime.datetime(2020, 1, 1, 12, 0)
    end = datetime.datetime(2020, 2, 1, tzinfo=UTC)
    cert = issue(common_name="old", not_before=start, not_after=end).cert
    assert cert.not_valid_before_utc == start.replace(tzinfo=UTC)
    assert cert.not_valid_after_utc == end
    fresh = issue(common_name="fresh", days=10).cert
    now = datetime.datetime.now(UTC)
    assert fresh.not_valid_before_utc < now < fresh.not_valid_after_utc
    assert fresh.not_valid_after_utc - fresh.not_valid_before_utc == datetime.timedelta(days=10)


def test_extended_key_usage_list_or_none():
    both = issue(common_name="x", extended_key_usage=[SERVER_AUTH, CLIENT_AUTH]).cert
    assert list(ext(both, x509.ExtendedKeyUsage)) == [SERVER_AUTH, CLIENT_AUTH]
    assert ext(issue(common_name="x", extended_key_usage=None).cert, x509.ExtendedKeyUsage) is None


def test_no_san_extension_without_names_and_extra_san_kinds():
    assert ext(issue(common_name="bare").cert, x509.SubjectAlternativeName) is None
    cert = issue(common_name="p", emails=["p@example.com"], uris=["spiffe://example.com/p"], organization="Ex").cert
    san = ext(cert, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.RFC822Name) == ["p@example.com"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://example.com/p"]
    assert cert.subject.rfc4514_string() == "CN=p,O=Ex"


@pytest.mark.parametrize("kind", ["ec", "rsa", "ed25519"])
def test_key_kinds_sign_and_chain(kind):
    root = make_ca("CA " + kind, key_kind=kind)
    leaf = issue(common_name="l", dns_names=["l.test"], issuer=root, key_kind=kind)
    leaf.cert.verify_directly_issued_by(root.cert)
    expected = {"ec": ec.EllipticCurvePublicKey, "rsa": rsa.RSAPublicKey, "ed25519": ed25519.Ed25519PublicKey}[kind]
    assert isinstance(leaf.cert.public_key(), expected)
    assert ext(leaf.cert, x509.KeyUsage).key_encipherment is (kind == "rsa")


def test_issue_with_given_key():
    key = generate_key("ec")
    assert issue(common_name="k", key=key).key is key


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_dev_set_files_modes_chain_and_usages(tmp_path, capsys, kind):
    target = tmp_path / "certs"
    paths = generate_dev_set(target, key_kind=kind)
    assert capsys.readouterr() == ("", "")
    assert list(paths) == list(DEV_SET_FILES)
    for name, path in paths.items():
        assert path == target / name and path.is_file()
        assert _mode(path) == (0o600 if name.endswith(".key") else 0o644)

    ca_cert = x509.load_pem_x509_certificate(paths["ca.pem"].read_bytes())
    assert ext(ca_cert, x509.BasicConstraints).ca is True
    usages = {}
    for stem in ("server", "client", "client-wrong-eku"):
        certs = x509.load_pem_x509_certificates(paths[f"{stem}.pem"].read_bytes())
        assert len(certs) == 1, "the .pem holds the leaf only"
        certs[0].verify_directly_issued_by(ca_cert)
        key = serialization.load_pem_private_key(paths[f"{stem}.key"].read_bytes(), None)
        assert key.public_key() == certs[0].public_key()
        usages[stem] = list(ext(certs[0], x509.ExtendedKeyUsage))
    assert usages == {
        "server": [ExtendedKeyUsageOID.SERVER_AUTH],
        "client": [ExtendedKeyUsageOID.CLIENT_AUTH],
        "client-wrong-eku": [ExtendedKeyUsageOID.SERVER_AUTH],
    }

    server = load_certificate(paths["server.pem"], paths["server.key"])
    assert server.names == ("localhost", "127.0.0.1")
    assert server.key_type == kind and server.has_server_auth

    policy = ClientCertPolicy.from_pem_file(paths["ca.pem"])
    now = datetime.datetime.now(UTC)
    der = x509.load_pem_x509_certificate(paths["client.pem"].read_bytes()).public_bytes(serialization.Encoding.DER)
    assert policy.check(der, now).code == "ok"
    wrong = x509.load_pem_x509_certificate(paths["client-wrong-eku.pem"].read_bytes())
    assert policy.check(wrong.public_bytes(serialization.Encoding.DER), now).code == "eku_mismatch"


def test_dev_set_custom_names_and_days(tmp_path):
    paths = generate_dev_set(tmp_path, ["api.test", "[::1]", "Other.Test"], days=30)
    server = load_certificate(paths["server.pem"], paths["server.key"])
    assert server.names == ("api.test", "other.test", "::1")
    assert server.not_after - server.not_before == datetime.timedelta(days=30)
    assert "CN=api.test" in server.subject
    with pytest.raises(ValueError):
        generate_dev_set(tmp_path / "x", [])


def test_dev_set_refuses_to_overwrite_unless_asked(tmp_path):
    paths = generate_dev_set(tmp_path)
    before = paths["ca.pem"].read_bytes()
    with pytest.raises(FileExistsError, match="ca.pem"):
        generate_dev_set(tmp_path)
    assert paths["ca.pem"].read_bytes() == before
    paths["ca.key"].chmod(0o644)
    generate_dev_set(tmp_path, overwrite=True)
    assert paths["ca.pem"].read_bytes() != before
    assert _mode(paths["ca.key"]) == 0o600


def _handshake(client, server):
    """Drive two in-memory TLS endpoints until both finish (no sockets)."""
    for _ in range(20):
        done = 0
        for side, peer in ((client, server), (server, client)):
            try:
                side[0].do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
            data = side[2].read()
            if data:
                peer[1].write(data)
        if done == 2:
            return
    raise AssertionError("handshake did not finish")


def test_dev_set_works_with_openssl_mutual_tls(tmp_path):
    paths = generate_dev_set(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(paths["server.pem"], paths["server.key"])
    server_ctx.load_verify_locations(paths["ca.pem"])
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=str(paths["ca.pem"]))
    client_ctx.load_cert_chain(paths["client.pem"], paths["client.key"])

    ends = []
    for ctx, kwargs in ((client_ctx, {"server_hostname": "localhost"}), (server_ctx, {"server_side": True})):
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        ends.append((ctx.wrap_bio(incoming, outgoing, **kwargs), incoming, outgoing))
    _handshake(*ends)
    peer = x509.load_der_x509_certificate(ends[1][0].getpeercert(binary_form=True))
    assert peer == x509.load_pem_x509_certificate(paths["client.pem"].read_bytes())
