import datetime
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from proxy.certs import (
    CertError,
    CertificateSelector,
    certificate_names,
    check_certificate,
    check_client_ca,
    key_type,
    load_certificate,
    load_pem_certificates,
    matches_name,
)
from proxy.gencert import CLIENT_AUTH, SERVER_AUTH, generate_key, issue, make_ca

UTC = datetime.timezone.utc
NOW = datetime.datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
DAY = datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def ca():
    return make_ca("Certs Test CA", not_before=NOW - 1000 * DAY, not_after=NOW + 1000 * DAY)


def leaf(ca, *, names=("www.example.com",), start=NOW - 10 * DAY, end=NOW + 90 * DAY, **kwargs):
    kwargs.setdefault("dns_names", list(names))
    return issue(common_name=names[0] if names else "leaf", issuer=ca, not_before=start, not_after=end, **kwargs)


def write(tmp_path, issued, chain=None, name="server"):
    cert_file, key_file = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_file.write_bytes(issued.chain_pem() if chain is None else chain)
    key_file.write_bytes(issued.key_pem())
    return cert_file, key_file


def loaded(tmp_path, issued, chain=None, name="server"):
    return load_certificate(*write(tmp_path, issued, chain, name))


# -- loading ------------------------------------------------------------------------------------------------------


def test_load_extracts_facts(tmp_path, ca):
    issued = leaf(ca, names=("WWW.Example.com", "api.example.com."), ip_addresses=["10.0.0.1", "::1"])
    cert_file, key_file = write(tmp_path, issued)
    server = load_certificate(cert_file, key_file)
    assert server.names == ("www.example.com", "api.example.com", "10.0.0.1", "::1")
    assert server.not_before == NOW - 10 * DAY and server.not_before.tzinfo is not None
    assert server.not_after == NOW + 90 * DAY
    assert server.key_type == "ec"
    assert server.has_server_auth is True
    assert server.fingerprint_sha256 == issued.cert.fingerprint(hashes.SHA256()).hex()
    assert server.cert_file == str(cert_file) and server.key_file == str(key_file)
    assert server.chain == (issued.cert, ca.cert) and server.leaf == issued.cert
    assert server.subject == "CN=WWW.Example.com"
    assert "chain" not in repr(server)


def test_common_name_only_without_san_extension(tmp_path, ca):
    server = loaded(tmp_path, leaf(ca, names=("Legacy.Example.com",), dns_names=[]))
    assert server.names == ("legacy.example.com",)


def test_san_extension_wins_over_common_name(ca):
    assert certificate_names(leaf(ca, names=("cn.example.com",), dns_names=["san.example.com"]).cert) == (
        "san.example.com",
    )


@pytest.mark.parametrize(
    ("ekus", "serves"),
    [
        (None, True),
        ([SERVER_AUTH], True),
        ([ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE], True),
        ([CLIENT_AUTH], False),
    ],
)
def test_has_server_auth(tmp_path, ca, ekus, serves):
    assert loaded(tmp_path, leaf(ca, extended_key_usage=ekus)).has_server_auth is serves


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_key_types(tmp_path, ca, kind):
    assert loaded(tmp_path, leaf(ca, key_kind=kind)).key_type == kind


def test_key_type_of_private_key():
    assert key_type(generate_key("ec")) == "ec"


def test_cert_and_key_in_one_file(tmp_path, ca):
    issued = leaf(ca)
    both = tmp_path / "both.pem"
    both.write_bytes(issued.key_pem() + issued.chain_pem())
    server = load_certificate(both, both)
    assert server.chain == (issued.cert, ca.cert)


def test_key_mismatch_names_the_files(tmp_path, ca):
    cert_file, _ = write(tmp_path, leaf(ca))
    _, other_key = write(tmp_path, leaf(ca, key_kind="rsa"), name="other")
    with pytest.raises(CertError) as info:
        load_certificate(cert_file, other_key)
    message = str(info.value)
    assert message.startswith(f"{other_key}: the private key does not match the certificate in {cert_file}")
    assert "key is rsa, certificate key is ec" in message
    assert "\n" not in message


def test_not_pem(tmp_path, ca):
    der = tmp_path / "cert.der"
    der.write_bytes(leaf(ca).cert.public_bytes(serialization.Encoding.DER))
    _, key_file = write(tmp_path, leaf(ca))
    with pytest.raises(CertError, match=rf"^{re.escape(str(der))}: not a PEM file"):
        load_certificate(der, key_file)


def test_not_pem_key(tmp_path, ca):
    cert_file, key_file = write(tmp_path, leaf(ca))
    key_file.write_text("hello\n")
    with pytest.raises(CertError, match=rf"^{re.escape(str(key_file))}: not a PEM file .*private key"):
        load_certificate(cert_file, key_file)


def test_missing_file_and_directory(tmp_path, ca):
    cert_file, key_file = write(tmp_path, leaf(ca))
    with pytest.raises(CertError, match=rf"^{re.escape(str(tmp_path / 'nope.pem'))}: certificate file not found$"):
        load_certificate(tmp_path / "nope.pem", key_file)
    with pytest.raises(CertError, match=rf"^{re.escape(str(tmp_path / 'nope.key'))}: key file not found$"):
        load_certificate(cert_file, tmp_path / "nope.key")
    with pytest.raises(CertError, match="is a directory"):
        load_certificate(tmp_path, key_file)


def test_no_certificate_in_file(tmp_path, ca):
    _, key_file = write(tmp_path, leaf(ca))
    expected = rf"^{re.escape(str(key_file))}: contains no certificate \(found PRIVATE KEY\)$"
    with pytest.raises(CertError, match=expected):
        load_certificate(key_file, key_file)


def test_no_private_key_in_file(tmp_path, ca):
    cert_file, _ = write(tmp_path, leaf(ca))
    with pytest.raises(CertError, match=r"contains no private key \(found CERTIFICATE, CERTIFICATE\)"):
        load_certificate(cert_file, cert_file)


def test_malformed_certificate_block(tmp_path, ca):
    issued = leaf(ca)
    bad = issued.cert_pem() + b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    with pytest.raises(CertError, match="certificate #2 is malformed"):
        loaded(tmp_path, issued, bad)


def test_encrypted_key_is_refused(tmp_path, ca):
    issued = leaf(ca)
    cert_file, key_file = write(tmp_path, issued)
    key_file.write_bytes(
        issued.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(CertError, match="encrypted"):
        load_certificate(cert_file, key_file)


def test_load_pem_certificates_in_order(tmp_path, ca):
    issued = leaf(ca)
    path = tmp_path / "bundle.pem"
    path.write_bytes(issued.chain_pem())
    assert load_pem_certificates(path) == [issued.cert, ca.cert]


# -- selection ----------------------------------------------------------------------------------------------------


@pytest.fixture()
def selector():
    return CertificateSelector(
        [("www.example.com", "www"), ("*.example.com", "wild"), ("API.Example.org.", "api"), ("a*.x.com", "odd")],
        default="default",
    )


@pytest.mark.parametrize(
    ("sni", "expected"),
    [
        ("www.example.com", ("www", True)),
        ("WWW.EXAMPLE.COM", ("www", True)),
        ("www.example.com.", ("www", True)),
        ("api.example.org", ("api", True)),
        ("a.example.com", ("wild", True)),
        ("A.Example.Com.", ("wild", True)),
        ("a.b.example.com", ("default", False)),
        ("example.com", ("default", False)),
        (".example.com", ("default", False)),
        ("other.test", ("default", False)),
        ("ab.x.com", ("default", False)),
        ("", ("default", False)),
        (None, ("default", False)),
    ],
)
def test_selector(selector, sni, expected):
    assert selector.select(sni) == expected


def test_selector_first_entry_wins_and_names(selector):
    s = CertificateSelector([("a.test", 1), ("A.test", 2), ("*.test", 3), ("*.test", 4)], default=0)
    assert s.select("a.test") == (1, True)
    assert s.select("b.test") == (3, True)
    assert s.names() == ["a.test", "*.test"] and len(s) == 2
    assert selector.names() == ["www.example.com", "api.example.org", "*.example.com"]


def test_selector_stores_falsy_values():
    s = CertificateSelector([("a.test", None), ("*.b.test", 0)], default="d")
    assert s.select("a.test") == (None, True)
    assert s.select("x.b.test") == (0, True)


def test_selector_from_certificates(tmp_path, ca):
    first = loaded(tmp_path, leaf(ca, names=("a.test", "*.w.test")), name="first")
    second = loaded(tmp_path, leaf(ca, names=("b.test", "a.test")), name="second")
    by_cert = CertificateSelector.from_certificates([first, second])
    assert by_cert.select("a.test") == (first, True)
    assert by_cert.select("b.test") == (second, True)
    assert by_cert.select("x.w.test") == (first, True)
    assert by_cert.select("c.test") == (first, False)
    by_value = CertificateSelector.from_certificates([first, second], ["ctx1", "ctx2"], default_index=1)
    assert by_value.select("a.test") == ("ctx1", True)
    assert by_value.select("nothing") == ("ctx2", False)
    with pytest.raises(ValueError):
        CertificateSelector.from_certificates([first], ["a", "b"])
    with pytest.raises(ValueError):
        CertificateSelector.from_certificates([first], default_index=1)
    with pytest.raises(ValueError):
        CertificateSelector.from_certificates([])


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("a.test", "A.TEST.", True),
        ("*.test", "a.test", True),
        ("*.test", "a.b.test", False),
        ("*.test", "test", False),
        ("*.test", "*.test", True),
        ("a.test", "b.test", False),
    ],
)
def test_matches_name(pattern, name, expected):
    assert matches_name(pattern, name) is expected


# -- check_certificate --------------------------------------------------------------------------------------------


def levels(findings):
    return [level for level, _ in findings]


def test_check_clean(tmp_path, ca):
    server = loaded(tmp_path, leaf(ca, names=("www.example.com", "*.api.example.com")))
    assert check_certificate(server, NOW, ["www.example.com", "v1.api.example.com", "WWW.example.com."]) == []
    assert check_certificate(server, NOW.replace(tzinfo=None)) == []


def test_check_expired(tmp_path, ca):
    server = loaded(tmp_path, leaf(ca, start=NOW - 100 * DAY, end=NOW - 3 * DAY))
    [(level, message)] = check_certificate(server, NOW)
    assert level == "error"
    assert message == f"{server.cert_file}: certificate expired on 2030-05-29 12:00 UTC (3 days ago)"


def test_check_not_yet_valid(tmp_path, ca):
    server = loaded(tmp_path, leaf(ca, start=NOW + DAY, end=NOW + 100 * DAY))
    [(level, message)] = check_certificate(server, NOW)
    assert level == "error" and "is not valid until 2030-06-02 12:00 UTC" in message


@pytest.mark.parametrize(("left", "text"), [(5 * DAY, "5 days"), (DAY, "1 day"), (DAY / 2, "less than a day")])
def test_check_expires_soon(tmp_path, ca, left, text):
    server = loaded(tmp_path, leaf(ca, end=NOW + left))
    [(level, message)] = check_certificate(server, NOW)
    assert level == "warning" and f"certificate expires in {text} (on " in message


def test_check_expiry_beyond_fourteen_days_is_quiet(tmp_path, ca):
    assert check_certificate(loaded(tmp_path, leaf(ca, end=NOW + 15 * DAY)), NOW) == []


def test_check_chain_order(tmp_path, ca):
    issued = leaf(ca)
    reversed_chain = ca.cert_pem() + issued.cert_pem()
    cert_file, key_file = write(tmp_path, issued, reversed_chain)
    key_file.write_bytes(ca.key_pem())  # the first certificate is the one whose key must match
    server = load_certificate(cert_file, key_file)
    findings = check_certificate(server, NOW)
    assert levels(findings) == ["error"]
    assert "chain out of order: certificate #1 (CN=Certs Test CA) is not issued by certificate #2" in findings[0][1]


def test_check_chain_signature(tmp_path, ca):
    impostor = make_ca("Certs Test CA")  # same name, different key
    issued = leaf(ca)
    server = loaded(tmp_path, issued, issued.cert_pem() + impostor.cert_pem())
    findings = check_certificate(server, NOW)
    assert levels(findings) == ["error"]
    assert "signature does not verify" in findings[0][1]


def test_check_three_level_chain(tmp_path, ca):
    intermediate = issue(common_name="Intermediate", issuer=ca, is_ca=True, extended_key_usage=None)
    issued = leaf(intermediate)
    server = loaded(tmp_path, issued, issued.chain_pem() + ca.cert_pem())
    assert len(server.chain) == 3 and check_certificate(server, NOW) == []


def test_check_server_auth_missing(tmp_path, ca):
    server = loaded(tmp_path, leaf(ca, extended_key_usage=[CLIENT_AUTH]))
    [(level, message)] = check_certificate(server, NOW)
    assert level == "error" and "does not allow serverAuth (it has: clientAuth)" in message


def test_check_uncovered_server_name(tmp_path, ca):
    server = loaded(tmp_path, leaf(ca, names=("www.example.com", "*.example.org")))
    findings = check_certificate(server, NOW, ["www.example.com", "example.org", "a.b.example.org"])
    assert levels(findings) == ["warning", "warning"]
    assert "server name 'example.org' is not covered" in findings[0][1]
    assert "(it covers: www.example.com, *.example.org)" in findings[0][1]
    assert "'a.b.example.org'" in findings[1][1]


# -- check_client_ca ----------------------------------------------------------------------------------------------


def bundle(tmp_path, *certs):
    path = tmp_path / "clients-ca.pem"
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


def no_basic_constraints_cert():
    key = generate_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Old CA")])
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(NOW - DAY).not_valid_after(NOW + DAY)
        .sign(key, hashes.SHA256())
    )


def test_check_client_ca(tmp_path, ca):
    other = make_ca("Second CA")
    assert check_client_ca(bundle(tmp_path, ca.cert, other.cert)) == []
    assert check_client_ca(bundle(tmp_path, ca.cert), now=NOW) == []


def test_check_client_ca_not_a_ca(tmp_path, ca):
    path = bundle(tmp_path, ca.cert, leaf(ca).cert, no_basic_constraints_cert())
    findings = check_client_ca(path)
    assert findings == [
        ("error", f"{path}: certificate #2 (CN=www.example.com) is not a CA (BasicConstraints ca is false)"),
        ("error", f"{path}: certificate #3 (CN=Old CA) is not a CA (no BasicConstraints extension)"),
    ]


def test_check_client_ca_unloadable(tmp_path):
    missing = tmp_path / "missing.pem"
    assert check_client_ca(missing) == [("error", f"{missing}: client CA file not found")]
    text = tmp_path / "text.pem"
    text.write_text("not a certificate\n")
    assert levels(check_client_ca(text)) == ["error"]
    key_only = tmp_path / "key.pem"
    key_only.write_bytes(issue(common_name="k").key_pem())
    assert check_client_ca(key_only) == [("error", f"{key_only}: contains no certificate (found PRIVATE KEY)")]


def test_check_client_ca_expired_with_now(tmp_path):
    old = make_ca("Old", not_before=NOW - 10 * DAY, not_after=NOW - DAY)
    path = bundle(tmp_path, old.cert)
    assert check_client_ca(path) == []
    [(level, message)] = check_client_ca(path, now=NOW)
    assert level == "error" and "certificate #1 (CN=Old) expired on" in message
