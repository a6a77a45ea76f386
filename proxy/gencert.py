"""Certificate generation for development and tests: keys, CAs, leaf certificates.

Theory of operation
-------------------
``issue`` is the one flexible building block.  It makes a fresh key pair (EC
P-256 by default, RSA 2048 or Ed25519 on request) and a certificate for it,
signed by a given issuer (an ``Issued`` CA) or by its own key (self-signed).
Everything a test needs to vary is a keyword argument: the subject common
name, the subjectAltName entries (DNS names, IP addresses, e-mail addresses,
URIs), the validity window as explicit datetimes (so a test can make an
expired or not-yet-valid certificate without sleeping), whether it is a CA,
and the extended key usage (a list of OIDs, or ``None`` to leave the extension
out).  The result is an ``Issued``: the certificate, its private key and the
issuer certificate, with helpers that PEM-encode them.

Every certificate carries the extensions strict verifiers insist on:
BasicConstraints (critical), KeyUsage (critical), SubjectKeyIdentifier and,
when signed by a CA, AuthorityKeyIdentifier.

``make_ca`` is ``issue`` with ``is_ca=True``.  ``generate_dev_set`` writes a
ready-to-use set into a directory (see its docstring for the files) and backs
``edgeproxy gencert DIR``: it prints nothing and returns the paths it wrote.
Private keys are unencrypted PKCS#8 PEM, written with mode 0600.

This module is for development and tests only; nothing on the request path
imports it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CLIENT_AUTH",
    "DEV_SET_FILES",
    "Issued",
    "KEY_KINDS",
    "SERVER_AUTH",
    "generate_dev_set",
    "generate_key",
    "issue",
    "make_ca",
    "split_names",
]

PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey]

KEY_KINDS = ("ec", "rsa", "ed25519")
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH

DEFAULT_DEV_NAMES = ("localhost", "127.0.0.1")
DEV_SET_FILES = (
    "ca.pem",
    "ca.key",
    "server.pem",
    "server.key",
    "client.pem",
    "client.key",
    "client-wrong-eku.pem",
    "client-wrong-eku.key",
)

# A new certificate is valid from a little in the past, so that a peer whose
# clock is slightly behind does not see it as "not yet valid".
_BACKDATE = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class Issued:
    """A certificate, its private key and (unless self-signed) the certificate that signed it."""

    cert: x509.Certificate
    key: PrivateKey
    issuer: x509.Certificate | None = None

    def cert_pem(self) -> bytes:
        """The certificate alone, PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        """The private key, unencrypted PKCS#8 PEM."""
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def chain_pem(self) -> bytes:
        """Leaf first, then its issuer (just the leaf when self-signed)."""
        if self.issuer is None:
            return self.cert_pem()
        return self.cert_pem() + self.issuer.public_bytes(serialization.Encoding.PEM)


def generate_key(kind: str = "ec") -> PrivateKey:
    """A new private key: "ec" (P-256), "rsa" (2048 bits) or "ed25519"."""
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key kind {kind!r} (expected one of {', '.join(KEY_KINDS)})")


def split_names(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """Sort host names into (DNS names, IP addresses); "[::1]" and "::1" are both IPv6."""
    dns: list[str] = []
    ips: list[str] = []
    for name in names:
        text = name[1:-1] if name.startswith("[") and name.endswith("]") else name
        try:
            ips.append(str(ipaddress.ip_address(text)))
        except ValueError:
            dns.append(name.lower().rstrip("."))
    return dns, ips


def _utc(moment: datetime.datetime) -> datetime.datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def issue(
    *,
    common_name: str,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    emails: Sequence[str] = (),
    uris: Sequence[str] = (),
    issuer: Issued | None = None,
    key_kind: str = "ec",
    key: PrivateKey | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    days: int = 365,
    is_ca: bool = False,
    extended_key_usage: Sequence[x509.ObjectIdentifier] | None = (SERVER_AUTH,),
    organization: str | None = None,
) -> Issued:
    """Create a key (or use ``key``) and a certificate for it.

    ``issuer`` signs it (its ``key`` and subject are used); without one the
    certificate is self-signed.  ``not_before`` defaults to an hour ago,
    ``not_after`` to ``not_before + days``; naive datetimes are taken as UTC.
    No SAN extension is written when all SAN lists are empty; an empty
    ``extended_key_usage`` list writes an empty (hence malformed) extension,
    which is occasionally what a test wants.
    """
    if key is None:
        key = generate_key(key_kind)
    start = _utc(not_before) if not_before else datetime.datetime.now(datetime.timezone.utc) - _BACKDATE
    end = _utc(not_after) if not_after else start + datetime.timedelta(days=days)

    # Most general attribute first, so that the RFC 4514 form reads "CN=...,O=...".
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)] if organization else []
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    subject = x509.Name(attributes)
    signing_key = issuer.key if issuer is not None else key
    issuer_name = issuer.cert.subject if issuer is not None else subject

    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(_key_usage(key, is_ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    general_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    general_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    general_names += [x509.RFC822Name(email) for email in emails]
    general_names += [x509.UniformResourceIdentifier(uri) for uri in uris]
    if general_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(general_names), critical=False)
    if extended_key_usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(extended_key_usage)), critical=False)

    algorithm = None if isinstance(signing_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    cert = builder.sign(signing_key, algorithm)
    return Issued(cert=cert, key=key, issuer=issuer.cert if issuer is not None else None)


def _key_usage(key: PrivateKey, is_ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(key, rsa.RSAPrivateKey) and not is_ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=is_ca,
        crl_sign=is_ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(name: str = "edgeproxy development CA", **kwargs) -> Issued:
    """A CA certificate (self-signed unless ``issuer`` is given) without extended key usage."""
    kwargs.setdefault("extended_key_usage", None)
    kwargs.setdefault("days", 3650)
    return issue(common_name=name, is_ca=True, **kwargs)


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is filtered by the umask and ignored for an existing file
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(data)
    finally:
        if fd >= 0:
            os.close(fd)


def generate_dev_set(
    directory: str | os.PathLike[str],
    names: Sequence[str] | None = None,
    *,
    days: int = 365,
    key_kind: str = "ec",
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write a development CA, a server certificate and two client certificates into ``directory``.

    Files (keys mode 0600, certificates 0644):

    * ``ca.pem`` / ``ca.key``: a self-signed CA; trust it in clients
      (``curl --cacert``) and use it as the proxy's client CA;
    * ``server.pem`` / ``server.key``: the leaf for ``names`` (default
      "localhost" plus the IP SAN 127.0.0.1; IP literals become IP SANs,
      the first DNS name, else the first IP, is the CN), EKU serverAuth.  ``server.pem`` holds the
      leaf only: there is no intermediate, and the root belongs in the
      client's trust store, not in the chain;
    * ``client.pem`` / ``client.key``: EKU clientAuth, DNS SAN client.localhost;
    * ``client-wrong-eku.pem`` / ``.key``: EKU serverAuth only, for testing refusals.

    The directory is created if needed.  Existing files are not replaced unless
    ``overwrite`` is true (``FileExistsError`` names the first one).  Returns
    {file name: path} in the order above; prints nothing.
    """
    if names is not None and not names:
        raise ValueError("names must not be empty (or None for the defaults)")
    folder = Path(directory)
    paths = {name: folder / name for name in DEV_SET_FILES}
    if not overwrite:
        for path in paths.values():
            if path.exists():
                raise FileExistsError(f"{path}: already exists (choose another directory or overwrite)")
    dns, ips = split_names(names or DEFAULT_DEV_NAMES)
    days_kw = {"days": days, "key_kind": key_kind}

    ca = make_ca("edgeproxy development CA", **days_kw)
    server = issue(
        common_name=(dns or ips)[0], dns_names=dns, ip_addresses=ips, issuer=ca,
        extended_key_usage=[SERVER_AUTH], **days_kw,
    )
    client = issue(
        common_name="edgeproxy development client", dns_names=["client.localhost"], issuer=ca,
        extended_key_usage=[CLIENT_AUTH], **days_kw,
    )
    wrong = issue(
        common_name="edgeproxy development client (wrong EKU)", dns_names=["client-wrong-eku.localhost"],
        issuer=ca, extended_key_usage=[SERVER_AUTH], **days_kw,
    )

    folder.mkdir(parents=True, exist_ok=True)
    for stem, issued in (("ca", ca), ("server", server), ("client", client), ("client-wrong-eku", wrong)):
        _write(paths[f"{stem}.pem"], issued.cert_pem(), 0o644)
        _write(paths[f"{stem}.key"], issued.key_pem(), 0o600)
    return paths
