import dataclasses
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from proxy.certs import CertError
from proxy.clientcert import CODES, ClientCertPolicy, Verdict, normalise_subject
from proxy.gencert import CLIENT_AUTH, SERVER_AUTH, issue, make_ca

UTC = datetime.timezone.utc
NOW = datetime.datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
DAY = datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def ca():
    return make_ca("Clients CA", not_before=NOW - 1000 * DAY, not_after=NOW + 1000 * DAY)


def client(ca, *, start=NOW - DAY, end=NOW + 30 * DAY, eku=(CLIENT_AUTH,), **kwargs):
    kwargs.setdefault("common_name", "alice")
    kwargs.setdefault("organization", "Example")
    kwargs.setdefault("dns_names", ["alice.clients.example.com"])
    issued = issue(issuer=ca, not_before=start, not_after=end, extended_key_usage=eku, **kwargs)
    return issued.cert.public_bytes(serialization.Encoding.DER)


def test_every_code_is_reachable(ca):
    stranger = make_ca("Stranger CA")
    impostor = make_ca("Clients CA")  # right name, wrong key
    policy = ClientCertPolicy([ca.cert], allowed_sans=["alice.clients.example.com", "bob@example.com"])
    subjects = ClientCertPolicy([ca.cert], allowed_subjects=["CN=alice,O=Example"])
    verdicts = {
        "ok": policy.check(client(ca), NOW),
        "no_cert": policy.check(None, NOW),
        "bad_cert": policy.check(b"\x30\x03\x02\x01\x01", NOW),
        "unknown_ca": policy.check(client(stranger), NOW),
        "expired": policy.check(client(ca, start=NOW - 10 * DAY, end=NOW - DAY), NOW),
        "not_yet_valid": policy.check(client(ca, start=NOW + DAY), NOW),
        "eku_missing": policy.check(client(ca, eku=None), NOW),
        "eku_mismatch": policy.check(client(ca, eku=[SERVER_AUTH]), NOW),
        "san_not_allowed": policy.check(client(ca, dns_names=["mallory.example.com"]), NOW),
        "subject_not_allowed": subjects.check(client(ca, common_name="mallory"), NOW),
    }
    assert {code: v.code for code, v in verdicts.items()} == {code: code for code in CODES}
    assert set(verdicts) == set(CODES)
    assert [code for code, v in verdicts.items() if v.ok] == ["ok"]
    assert policy.check(client(impostor), NOW).code == "unknown_ca"
    assert policy.check(b"", NOW).code == "no_cert"
    for verdict in verdicts.values():
        assert verdict.detail


def test_ok_verdict_fields(ca):
    der = client(ca, dns_names=["Alice.Clients.Example.com"], emails=["Alice@Example.COM"],
                 uris=["spiffe://example.com/alice"], ip_addresses=["10.1.2.3"])
    verdict = ClientCertPolicy([ca.cert]).check(der, NOW)
    assert verdict == Verdict(
        code="ok",
        subject="CN=alice,O=Example",
        sans=("alice.clients.example.com", "10.1.2.3", "Alice@example.com", "spiffe://example.com/alice"),
        fingerprint_sha256=x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256()).hex(),
        detail="accepted",
    )
    assert verdict.ok is True
    assert dataclasses.asdict(verdict)["ok"] is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.code = "no_cert"


def test_no_cert_verdict_is_empty():
    verdict = ClientCertPolicy([make_ca().cert]).check(None, NOW)
    assert (verdict.code, verdict.ok, verdict.subject, verdict.sans, verdict.fingerprint_sha256) == (
        "no_cert", False, "", (), ""
    )


def test_rejections_still_identify_the_certificate(ca):
    der = client(ca, eku=[SERVER_AUTH])
    verdict = ClientCertPolicy([ca.cert]).check(der, NOW)
    assert verdict.code == "eku_mismatch" and not verdict.ok
    assert verdict.subject == "CN=alice,O=Example" and verdict.sans == ("alice.clients.example.com",)
    assert len(verdict.fingerprint_sha256) == 64
    assert verdict.detail == "extended key usage serverAuth does not include clientAuth"
    unknown = ClientCertPolicy([make_ca("Other").cert]).check(der, NOW)
    assert unknown.code == "unknown_ca" and unknown.subject == "CN=alice,O=Example"
    assert "'CN=Clients CA' is not a configured CA" in unknown.detail


def test_malformed_extension_is_bad_cert_but_keeps_subject(ca):
    verdict = ClientCertPolicy([ca.cert]).check(client(ca, eku=[]), NOW)
    assert verdict.code == "bad_cert" and verdict.subject == "CN=alice,O=Example"
    assert verdict.detail.startswith("malformed certificate extension: ") and "\n" not in verdict.detail


def test_verdict_rejects_unknown_codes():
    with pytest.raises(ValueError):
        Verdict(code="maybe")


@pytest.mark.parametrize("kind", ["ec", "rsa", "ed25519"])
def test_signature_algorithms(kind):
    root = make_ca(f"{kind} CA", key_kind=kind)
    policy = ClientCertPolicy([root.cert])
    assert policy.check(client(root, key_kind=kind), NOW).code == "ok"
    impostor = make_ca(f"{kind} CA", key_kind=kind)
    verdict = policy.check(client(impostor, key_kind=kind), NOW)
    assert verdict.code == "unknown_ca" and "signature does not verify" in verdict.detail


def test_several_cas_including_same_name(ca):
    twin = make_ca("Clients CA")
    policy = ClientCertPolicy([twin.cert, ca.cert, make_ca("Third").cert])
    assert policy.check(client(ca), NOW).code == "ok"
    assert policy.check(client(twin), NOW).code == "ok"


def test_validity_edges_and_naive_now(ca):
    der = client(ca, start=NOW - DAY, end=NOW + DAY)
    policy = ClientCertPolicy([ca.cert])
    assert policy.check(der, NOW - DAY).code == "ok"
    assert policy.check(der, NOW + DAY).code == "ok"
    assert policy.check(der, NOW + DAY + datetime.timedelta(seconds=1)).code == "expired"
    assert policy.check(der, NOW - DAY - datetime.timedelta(seconds=1)).code == "not_yet_valid"
    assert policy.check(der, NOW.replace(tzinfo=None)).code == "ok"


@pytest.mark.parametrize(
    ("allowed", "ekus", "code"),
    [
        (None, [CLIENT_AUTH], "ok"),
        (None, [SERVER_AUTH, CLIENT_AUTH], "ok"),
        (None, [ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE], "ok"),
        (None, [SERVER_AUTH], "eku_mismatch"),
        (None, [], "bad_cert"),  # an empty EKU extension is malformed DER
        (["serverAuth"], [SERVER_AUTH], "ok"),
        ([ExtendedKeyUsageOID.SERVER_AUTH], [CLIENT_AUTH], "eku_mismatch"),
        (["1.3.6.1.5.5.7.3.2", "serverAuth"], [CLIENT_AUTH], "ok"),
        (["1.2.3.4"], [x509.ObjectIdentifier("1.2.3.4")], "ok"),
    ],
)
def test_extended_key_usage(ca, allowed, ekus, code):
    assert ClientCertPolicy([ca.cert], allowed_ekus=allowed).check(client(ca, eku=ekus), NOW).code == code


def test_bad_policy_arguments(ca):
    with pytest.raises(ValueError, match="unknown extended key usage 'clientauth'"):
        ClientCertPolicy([ca.cert], allowed_ekus=["clientauth"])
    with pytest.raises(ValueError, match="must not be empty"):
        ClientCertPolicy([ca.cert], allowed_ekus=[])
    with pytest.raises(ValueError, match="at least one CA"):
        ClientCertPolicy([])
    with pytest.raises(ValueError, match="not an RFC 4514 distinguished name"):
        ClientCertPolicy([ca.cert], allowed_subjects=["alice"])
    with pytest.raises(ValueError):
        ClientCertPolicy([ca.cert], cache_size=0)


@pytest.mark.parametrize(
    ("allowed", "code"),
    [
        (["ALICE.clients.example.com."], "ok"),
        (["alice@EXAMPLE.com"], "ok"),
        (["spiffe://example.com/alice"], "ok"),
        (["10.1.2.3"], "ok"),
        (["Alice@example.com"], "san_not_allowed"),  # the local part is case-sensitive
        (["spiffe://example.com/ALICE"], "san_not_allowed"),
        (["bob.clients.example.com", "10.1.2.4"], "san_not_allowed"),
        ([], "ok"),
        (None, "ok"),
    ],
)
def test_san_allow_list(ca, allowed, code):
    der = client(ca, emails=["alice@example.com"], uris=["spiffe://example.com/alice"], ip_addresses=["10.1.2.3"])
    assert ClientCertPolicy([ca.cert], allowed_sans=allowed).check(der, NOW).code == code


def test_san_allow_list_without_sans(ca):
    verdict = ClientCertPolicy([ca.cert], allowed_sans=["a.test"]).check(client(ca, dns_names=[]), NOW)
    assert verdict.code == "san_not_allowed" and verdict.sans == ()
    assert verdict.detail == "no SAN of the certificate is on the allow-list (it has: none)"


@pytest.mark.parametrize(
    ("allowed", "code"),
    [
        (["CN=alice,O=Example"], "ok"),
        (["cn = Alice , o=EXAMPLE"], "ok"),
        (["CN=alice,  O=Example"], "ok"),
        (["CN=bob,O=Example", "CN=alice,O=Example"], "ok"),
        (["O=Example,CN=alice"], "subject_not_allowed"),  # RDN order matters
        (["CN=alice"], "subject_not_allowed"),
        (["CN=alice,O=Example,C=DE"], "subject_not_allowed"),
        ([], "ok"),
    ],
)
def test_subject_allow_list(ca, allowed, code):
    assert ClientCertPolicy([ca.cert], allowed_subjects=allowed).check(client(ca), NOW).code == code


def test_subject_with_escaped_comma_and_spaces(ca):
    der = client(ca, common_name="Smith,  John", organization="Acme Inc")
    policy = ClientCertPolicy([ca.cert], allowed_subjects=[r"CN=smith\, john, O=ACME  inc"])
    assert policy.check(der, NOW).code == "ok"
    assert normalise_subject(r"CN=a\, b") == normalise_subject(r"cn=A\,  B")


def test_check_order_ca_before_time_before_eku(ca):
    policy = ClientCertPolicy([ca.cert], allowed_sans=["nobody.test"])
    expired_stranger = client(make_ca("Stranger"), start=NOW - 10 * DAY, end=NOW - DAY, eku=None)
    assert policy.check(expired_stranger, NOW).code == "unknown_ca"
    assert policy.check(client(ca, start=NOW - 10 * DAY, end=NOW - DAY, eku=None), NOW).code == "expired"
    assert policy.check(client(ca, eku=None), NOW).code == "eku_missing"


def counting(policy):
    calls = []
    original = policy._parse

    def parse(der):
        calls.append(der)
        return original(der)

    policy._parse = parse
    return calls


def test_cache_hit_skips_parsing_but_uses_now(ca):
    policy = ClientCertPolicy([ca.cert])
    calls = counting(policy)
    der = client(ca, start=NOW - DAY, end=NOW + DAY)
    assert policy.check(der, NOW).code == "ok"
    assert policy.check(der, NOW).code == "ok"
    assert policy.check(der, NOW + 2 * DAY).code == "expired"
    assert policy.check(der, NOW - 2 * DAY).code == "not_yet_valid"
    assert len(calls) == 1


def test_cache_keeps_failures_and_is_bounded(ca):
    policy = ClientCertPolicy([ca.cert], cache_size=2)
    calls = counting(policy)
    stranger = client(make_ca("Stranger"))
    assert policy.check(stranger, NOW).code == "unknown_ca"
    assert policy.check(stranger, NOW).code == "unknown_ca"
    assert policy.check(b"junk", NOW).code == "bad_cert"
    assert policy.check(b"junk", NOW).code == "bad_cert"
    assert len(calls) == 2
    certs = [client(ca, common_name=f"c{i}") for i in range(3)]
    for der in certs:
        assert policy.check(der, NOW).code == "ok"
    assert len(policy._cache) == 2
    assert len(calls) == 5
    policy.check(certs[0], NOW)  # evicted first, parsed again
    assert len(calls) == 6


def test_from_pem_file(tmp_path, ca):
    other = make_ca("Second CA")
    path = tmp_path / "clients.pem"
    path.write_bytes(ca.cert_pem() + other.cert_pem())
    policy = ClientCertPolicy.from_pem_file(path, allowed_sans=["alice.clients.example.com"])
    assert policy.ca_certs == (ca.cert, other.cert)
    assert policy.check(client(other), NOW).code == "ok"
    with pytest.raises(CertError, match="client CA file not found"):
        ClientCertPolicy.from_pem_file(tmp_path / "missing.pem")
