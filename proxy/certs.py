"""Server certificates: loading a PEM chain and key, choosing one by SNI, checking them.

Theory of operation
-------------------
``load_certificate`` reads what an operator configured for a TLS listener, a
PEM chain file (leaf first, then each issuer) and a PEM private key, and turns
it into a ``ServerCertificate``: the parsed chain plus the facts the rest of
the proxy needs (the names the leaf is valid for, its validity window, key
type, whether it may serve TLS, its SHA-256 fingerprint).  It refuses, with a
``CertError`` naming the file, anything the TLS stack would later choke on:
a missing or unreadable file, a file that is not PEM, no certificate, a key
that cannot be read or does not belong to the leaf.

``CertificateSelector`` answers, in the SNI callback, "which certificate for
this server name?".  Names are normalised once when it is built (lowercase,
no trailing dot) into two dicts, exact names and ``*.suffix`` wildcards keyed
by suffix, so ``select`` costs at most two dict lookups.  A wildcard covers
exactly one label, as in RFC 6125: ``*.example.com`` matches
``a.example.com`` but neither ``a.b.example.com`` nor ``example.com``.  No
match (or no SNI) yields the default entry with ``matched=False``.  Values
are opaque, so the caller can store ``ssl.SSLContext`` objects.

``check_certificate`` and ``check_client_ca`` are the findings behind
``edgeproxy check`` and start-up warnings: a list of ``(level, message)``
with level "error" or "warning".  They never raise for a bad certificate;
the time is passed in (``now``) so they are deterministic.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass, field
from typing import Generic, Iterable, Sequence, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "EKU_NAMES",
    "EXPIRY_WARNING",
    "CertError",
    "CertificateSelector",
    "ServerCertificate",
    "certificate_names",
    "check_certificate",
    "check_client_ca",
    "eku_name",
    "key_type",
    "load_certificate",
    "load_pem_certificates",
    "matches_name",
]

EXPIRY_WARNING = datetime.timedelta(days=14)

# Extended key usages by the short names OpenSSL and RFC 5280 use.
EKU_NAMES: dict[str, x509.ObjectIdentifier] = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
    "anyExtendedKeyUsage": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
}
_EKU_BY_OID = {oid: name for name, oid in EKU_NAMES.items()}

Finding = tuple[str, str]
V = TypeVar("V")

_PEM_LABEL_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_PEM_CERT_RE = re.compile(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.DOTALL)
_UTC = datetime.timezone.utc
_MISSING: object = object()


class CertError(Exception):
    """A certificate or key file that cannot be used; the message is one line naming the file."""


@dataclass(frozen=True)
class ServerCertificate:
    """A loaded server certificate chain and the facts derived from its leaf."""

    cert_file: str
    key_file: str
    names: tuple[str, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime
    key_type: str
    has_server_auth: bool
    fingerprint_sha256: str
    chain: tuple[x509.Certificate, ...] = field(repr=False, compare=False)

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def subject(self) -> str:
        """The leaf's subject as an RFC 4514 string."""
        return self.leaf.subject.rfc4514_string()


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise CertError(f"{path}: {what} file not found") from None
    except IsADirectoryError:
        raise CertError(f"{path}: is a directory, expected a PEM {what} file") from None
    except OSError as exc:
        raise CertError(f"{path}: cannot read the {what} file: {exc.strerror or exc}") from None


def _labels(data: bytes) -> list[str]:
    return [m.decode("ascii") for m in _PEM_LABEL_RE.findall(data)]


def load_pem_certificates(path: str | os.PathLike[str], what: str = "certificate") -> list[x509.Certificate]:
    """Every certificate in a PEM file, in file order; ``CertError`` if there is none or one is malformed."""
    path = os.fspath(path)
    data = _read(path, what)
    labels = _labels(data)
    if not labels:
        raise CertError(f"{path}: not a PEM file (no '-----BEGIN' line), expected PEM certificates")
    blocks = _PEM_CERT_RE.findall(data)
    if not blocks:
        raise CertError(f"{path}: contains no certificate (found {', '.join(labels)})")
    certs = []
    for index, block in enumerate(blocks, 1):
        try:
            certs.append(x509.load_pem_x509_certificate(block))
        except ValueError:
            raise CertError(f"{path}: certificate #{index} is malformed (bad base64 or DER)") from None
    return certs


def _load_key(path: str):
    data = _read(path, "key")
    labels = _labels(data)
    if not labels:
        raise CertError(f"{path}: not a PEM file (no '-----BEGIN' line), expected a PEM private key")
    if not any(label.endswith("PRIVATE KEY") for label in labels):
        raise CertError(f"{path}: contains no private key (found {', '.join(labels)})")
    if "ENCRYPTED PRIVATE KEY" in labels or b"Proc-Type: 4,ENCRYPTED" in data:
        raise CertError(f"{path}: the private key is encrypted; a passphrase is not supported")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CertError(f"{path}: the private key is encrypted; a passphrase is not supported") from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertError(f"{path}: the private key is malformed or of an unsupported type") from None


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_type(public_key) -> str:
    """A short name for a key's algorithm: "rsa", "ec", "ed25519", "ed448", "dsa"."""
    for kinds, name in (
        ((rsa.RSAPublicKey, rsa.RSAPrivateKey), "rsa"),
        ((ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey), "ec"),
        ((ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey), "ed25519"),
        ((ed448.Ed448PublicKey, ed448.Ed448PrivateKey), "ed448"),
        ((dsa.DSAPublicKey, dsa.DSAPrivateKey), "dsa"),
    ):
        if isinstance(public_key, kinds):
            return name
    return type(public_key).__name__.lower()


def certificate_names(cert: x509.Certificate) -> tuple[str, ...]:
    """DNS SANs (lowercase, no trailing dot) then IP SANs; the CN only when there is no SAN extension."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        found = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    else:
        found = san.get_values_for_type(x509.DNSName)
        found += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return tuple(dict.fromkeys(_normalise(name) for name in found if name))


def _extended_key_usage(cert: x509.Certificate) -> list[x509.ObjectIdentifier] | None:
    try:
        return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return None


def eku_name(oid: x509.ObjectIdentifier) -> str:
    """"serverAuth", "clientAuth", ... or the dotted OID for usages without a short name."""
    return _EKU_BY_OID.get(oid, oid.dotted_string)


def _serves_tls(cert: x509.Certificate) -> bool:
    usages = _extended_key_usage(cert)
    return usages is None or any(
        oid in (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE) for oid in usages
    )


def load_certificate(cert_file: str | os.PathLike[str], key_file: str | os.PathLike[str]) -> ServerCertificate:
    """Load a PEM chain (leaf first) and its private key; ``CertError`` if either is unusable.

    ``cert_file`` and ``key_file`` may be the same file holding both.
    """
    cert_file, key_file = os.fspath(cert_file), os.fspath(key_file)
    chain = load_pem_certificates(cert_file)
    leaf = chain[0]
    key = _load_key(key_file)
    if _spki(key.public_key()) != _spki(leaf.public_key()):
        raise CertError(
            f"{key_file}: the private key does not match the certificate in {cert_file} "
            f"(key is {key_type(key)}, certificate key is {key_type(leaf.public_key())})"
        )
    return ServerCertificate(
        cert_file=cert_file,
        key_file=key_file,
        names=certificate_names(leaf),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        key_type=key_type(leaf.public_key()),
        has_server_auth=_serves_tls(leaf),
        fingerprint_sha256=leaf.fingerprint(hashes.SHA256()).hex(),
        chain=tuple(chain),
    )


def _normalise(name: str) -> str:
    return name.lower().rstrip(".")


def matches_name(pattern: str, server_name: str) -> bool:
    """Does a certificate name (exact or ``*.suffix``) cover ``server_name``?  Same rules as the selector."""
    pattern, server_name = _normalise(pattern), _normalise(server_name)
    if pattern == server_name:
        return True
    if not pattern.startswith("*."):
        return False
    label, dot, rest = server_name.partition(".")
    return bool(label and dot) and rest == pattern[2:]


class CertificateSelector(Generic[V]):
    """Server name -> value (a certificate, an ``ssl.SSLContext``, ...) with a default.

    Built from ``(name, value)`` pairs; names are exact host names or
    ``*.suffix`` wildcards (other names containing "*" are ignored).  When two
    entries claim the same name the first one wins.
    """

    __slots__ = ("_exact", "_wildcard", "default")

    def __init__(self, entries: Iterable[tuple[str, V]], default: V) -> None:
        self._exact: dict[str, V] = {}
        self._wildcard: dict[str, V] = {}
        self.default = default
        for name, value in entries:
            name = _normalise(name)
            if name.startswith("*.") and "*" not in name[2:] and len(name) > 2:
                self._wildcard.setdefault(name[2:], value)
            elif "*" not in name and name:
                self._exact.setdefault(name, value)

    @classmethod
    def from_certificates(
        cls,
        certificates: Sequence[ServerCertificate],
        values: Sequence[V] | None = None,
        default_index: int = 0,
    ) -> CertificateSelector:
        """Select among certificates by their ``names``; ``values[i]`` (default: the certificate) stands for
        ``certificates[i]``, and ``default_index`` picks the default.  Earlier certificates win shared names."""
        if not certificates:
            raise ValueError("at least one certificate is needed")
        if values is None:
            values = certificates
        elif len(values) != len(certificates):
            raise ValueError(f"{len(values)} values for {len(certificates)} certificates")
        if not 0 <= default_index < len(certificates):
            raise ValueError(f"default_index {default_index} out of range (0 to {len(certificates) - 1})")
        entries = [(name, value) for cert, value in zip(certificates, values) for name in cert.names]
        return cls(entries, values[default_index])

    def select(self, server_name: str | None) -> tuple[V, bool]:
        """(value, True) for the exact or one-label wildcard match, else (default, False)."""
        if not server_name:
            return self.default, False
        name = server_name.lower()
        if name[-1] == ".":
            name = name.rstrip(".")
        value = self._exact.get(name, _MISSING)
        if value is not _MISSING:
            return value, True
        dot = name.find(".")
        if dot > 0:
            value = self._wildcard.get(name[dot + 1 :], _MISSING)
            if value is not _MISSING:
                return value, True
        return self.default, False

    def names(self) -> list[str]:
        """Every name with an entry, exact names first (for summaries)."""
        return list(self._exact) + ["*." + suffix for suffix in self._wildcard]

    def __len__(self) -> int:
        return len(self._exact) + len(self._wildcard)


def _aware(now: datetime.datetime) -> datetime.datetime:
    return now.replace(tzinfo=_UTC) if now.tzinfo is None else now


def _day(moment: datetime.datetime) -> str:
    return moment.astimezone(_UTC).strftime("%Y-%m-%d %H:%M UTC")


def _in_days(delta: datetime.timedelta) -> str:
    days = delta.days
    if days < 1:
        return "less than a day"
    return "1 day" if days == 1 else f"{days} days"


def _validity(where: str, cert: x509.Certificate, now: datetime.datetime) -> list[Finding]:
    if now > cert.not_valid_after_utc:
        ago = _in_days(now - cert.not_valid_after_utc)
        return [("error", f"{where} expired on {_day(cert.not_valid_after_utc)} ({ago} ago)")]
    if now < cert.not_valid_before_utc:
        return [("error", f"{where} is not valid until {_day(cert.not_valid_before_utc)}")]
    return []


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> str | None:
    """None if ``parent`` issued ``child``, else why not."""
    if child.issuer != parent.subject:
        return f"its issuer is {child.issuer.rfc4514_string()!r}"
    try:
        child.verify_directly_issued_by(parent)
    except InvalidSignature:
        return "its signature does not verify with that certificate's key"
    except (TypeError, ValueError, UnsupportedAlgorithm):
        return None  # a signature scheme we cannot check here: the names agree, accept it
    return None


def check_certificate(
    cert: ServerCertificate, now: datetime.datetime, server_names: Iterable[str] = ()
) -> list[Finding]:
    """Findings about a loaded server certificate; ``now`` naive means UTC.

    Errors: expired, not yet valid, chain out of order (each certificate must
    be issued by the next one), leaf without serverAuth EKU.  Warnings:
    expires within ``EXPIRY_WARNING``, a configured server name the leaf does
    not cover.
    """
    now = _aware(now)
    where = cert.cert_file
    findings = _validity(f"{where}: certificate", cert.leaf, now)
    if not findings and cert.not_after - now <= EXPIRY_WARNING:
        findings.append(
            ("warning", f"{where}: certificate expires in {_in_days(cert.not_after - now)} "
                        f"(on {_day(cert.not_after)})")
        )
    for index in range(len(cert.chain) - 1):
        child, parent = cert.chain[index], cert.chain[index + 1]
        reason = _issued_by(child, parent)
        if reason is not None:
            findings.append(
                ("error", f"{where}: chain out of order: certificate #{index + 1} "
                          f"({child.subject.rfc4514_string()}) is not issued by certificate #{index + 2} "
                          f"({parent.subject.rfc4514_string()}), {reason}; put the leaf first, then each issuer")
            )
    if not cert.has_server_auth:
        usages = ", ".join(eku_name(oid) for oid in _extended_key_usage(cert.leaf) or ())
        findings.append(
            ("error", f"{where}: the certificate's extended key usage does not allow serverAuth (it has: {usages})")
        )
    for name in server_names:
        if not any(matches_name(pattern, name) for pattern in cert.names):
            findings.append(
                ("warning", f"{where}: server name {name!r} is not covered by the certificate "
                            f"(it covers: {', '.join(cert.names) or 'nothing'})")
            )
    return findings


def check_client_ca(path: str | os.PathLike[str], now: datetime.datetime | None = None) -> list[Finding]:
    """Findings about a client-CA bundle: loadable, at least one certificate, each a CA by
    BasicConstraints; with ``now``, also each within its validity period."""
    path = os.fspath(path)
    try:
        certs = load_pem_certificates(path, "client CA")
    except CertError as exc:
        return [("error", str(exc))]
    findings: list[Finding] = []
    for index, cert in enumerate(certs, 1):
        where = f"{path}: certificate #{index} ({cert.subject.rfc4514_string()})"
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            findings.append(("error", f"{where} is not a CA (no BasicConstraints extension)"))
        else:
            if not is_ca:
                findings.append(("error", f"{where} is not a CA (BasicConstraints ca is false)"))
        if now is not None:
            findings += _validity(where, cert, _aware(now))
    return findings
