"""Client-certificate policy: the proxy's own verdict on the certificate a client presented.

Theory of operation
-------------------
After a TLS handshake the connection layer hands ``ClientCertPolicy.check``
the client's leaf certificate (DER, as ``SSLObject.getpeercert(True)``
returns it, or ``None``) and the current time.  The answer is a ``Verdict``:
one code from the stable set ``CODES`` (for metrics labels and access logs),
the certificate's subject, SANs and SHA-256 fingerprint (for identity
headers and logs), and a human ``detail``.

The checks run in a fixed order and the first failure decides the code:

1. ``no_cert``: nothing was presented;
2. ``bad_cert``: not a parseable X.509 certificate (or malformed extensions);
3. ``unknown_ca``: not directly issued by one of the configured CA
   certificates (issuer name equals the CA's subject *and* the signature
   verifies with the CA's public key: RSA PKCS#1 v1.5 or PSS, ECDSA, Ed25519,
   Ed448).  There is no chain building: configure the CA that issues the
   client certificates (an intermediate, if that is what signs them);
4. ``not_yet_valid`` / ``expired``: ``now`` outside the validity window;
5. ``eku_missing``: no extended key usage extension at all;
   ``eku_mismatch``: none of the allowed usages (default clientAuth) and not
   anyExtendedKeyUsage;
6. ``san_not_allowed``: an allow-list of SANs is configured and no DNS name,
   IP address, e-mail address or URI of the certificate is on it (exact
   comparison after normalisation: DNS names lowercase, e-mail domains
   lowercase, IP addresses canonical);
7. ``subject_not_allowed``: an allow-list of subjects (RFC 4514 strings) is
   configured and the subject is not on it (compared attribute by attribute,
   attribute values case-folded and with runs of spaces collapsed).

Everything that does not depend on ``now`` (parsing, the signature check,
SAN and subject extraction) is cached by fingerprint in a small bounded
dict, oldest entry evicted first, so a client reconnecting with the same
certificate costs a SHA-256 of its DER and a few comparisons.  The time
checks always use the ``now`` passed in.  The cache belongs to one policy
object: a new configuration builds a new policy and starts empty.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Iterable

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509.oid import ExtendedKeyUsageOID

from .certs import EKU_NAMES, eku_name, load_pem_certificates

__all__ = ["CODES", "ClientCertPolicy", "Verdict", "eku_oid", "normalise_subject"]

CODES = (
    "ok",
    "no_cert",
    "unknown_ca",
    "expired",
    "not_yet_valid",
    "eku_missing",
    "eku_mismatch",
    "san_not_allowed",
    "subject_not_allowed",
    "bad_cert",
)

DEFAULT_CACHE_SIZE = 1024
_MAX_REASON = 120  # parser messages can be long; a verdict detail stays one short line
_ANY_EKU = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE
_UTC = datetime.timezone.utc
_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")

SubjectKey = tuple[frozenset[tuple[str, str]], ...]


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """The outcome of a client-certificate check; ``ok`` is ``code == "ok"``."""

    code: str
    ok: bool = field(init=False)
    subject: str = ""
    sans: tuple[str, ...] = ()
    fingerprint_sha256: str = ""
    detail: str = ""

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown verdict code {self.code!r}")
        object.__setattr__(self, "ok", self.code == "ok")


@dataclass(frozen=True)
class _Parsed:
    """What a certificate says, independent of the time: the cache entry."""

    subject: str = ""
    subject_key: SubjectKey = ()
    sans: tuple[str, ...] = ()
    not_before: datetime.datetime | None = None
    not_after: datetime.datetime | None = None
    ekus: frozenset[x509.ObjectIdentifier] | None = None
    failure: tuple[str, str] | None = None  # (code, detail) for bad_cert and unknown_ca


def _normalise_san(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    if _URI_RE.match(text):
        return text
    if "@" in text:
        local, _, domain = text.rpartition("@")
        return f"{local}@{domain.lower()}"
    return text.lower().rstrip(".")


def _tidy_dn(text: str) -> str:
    """Drop spaces around unescaped ',', '+' and '=' and uppercase attribute types ("cn = x, o=y" -> "CN=x,O=y")."""
    out: list[str] = []
    in_type = True
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(text[i : i + 2])
            i += 2
            continue
        if char in ",+=":
            while out and out[-1] == " ":
                out.pop()
            out.append(char)
            in_type = char != "="
            i += 1
            while i < len(text) and text[i] == " ":
                i += 1
            continue
        if not (char == " " and not out):
            out.append(char.upper() if in_type else char)
        i += 1
    while out and out[-1] == " ":
        out.pop()
    return "".join(out)


def _subject_key(name: x509.Name) -> SubjectKey:
    def fold(value: str | bytes) -> str:
        return value.hex() if isinstance(value, bytes) else " ".join(value.split()).casefold()

    return tuple(frozenset((a.oid.dotted_string, fold(a.value)) for a in rdn) for rdn in name.rdns)


def normalise_subject(text: str) -> SubjectKey:
    """The comparable form of an RFC 4514 subject string; ``ValueError`` if it is not one."""
    try:
        return _subject_key(x509.Name.from_rfc4514_string(_tidy_dn(text)))
    except ValueError:
        raise ValueError(f"not an RFC 4514 distinguished name: {text!r} (like \"CN=client,O=Example\")") from None


def eku_oid(value: x509.ObjectIdentifier | str) -> x509.ObjectIdentifier:
    if isinstance(value, x509.ObjectIdentifier):
        return value
    if value in EKU_NAMES:
        return EKU_NAMES[value]
    try:
        return x509.ObjectIdentifier(value)
    except ValueError:
        raise ValueError(
            f"unknown extended key usage {value!r} (use a dotted OID or one of {', '.join(EKU_NAMES)})"
        ) from None


class ClientCertPolicy:
    """Which client certificates the proxy accepts; see the module docstring for the checks."""

    def __init__(
        self,
        ca_certs: Iterable[x509.Certificate],
        *,
        allowed_ekus: Iterable[x509.ObjectIdentifier | str] | None = None,
        allowed_sans: Iterable[str] | None = None,
        allowed_subjects: Iterable[str] | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        """``allowed_ekus`` are OIDs, dotted strings or short names ("clientAuth"); None means clientAuth.
        Empty or None SAN and subject allow-lists mean no restriction."""
        self.ca_certs = tuple(ca_certs)
        if not self.ca_certs:
            raise ValueError("at least one CA certificate is needed")
        self._cas_by_subject: dict[x509.Name, list[x509.Certificate]] = {}
        for ca in self.ca_certs:
            self._cas_by_subject.setdefault(ca.subject, []).append(ca)
        ekus = [ExtendedKeyUsageOID.CLIENT_AUTH] if allowed_ekus is None else [eku_oid(e) for e in allowed_ekus]
        if not ekus:
            raise ValueError("allowed_ekus must not be empty (None means clientAuth)")
        self.allowed_ekus = frozenset(ekus)
        self.allowed_sans = frozenset(_normalise_san(s) for s in allowed_sans or ())
        self.allowed_subjects = frozenset(normalise_subject(s) for s in allowed_subjects or ())
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self.cache_size = cache_size
        self._cache: dict[str, _Parsed] = {}

    @classmethod
    def from_pem_file(cls, path: str | os.PathLike[str], **kwargs) -> ClientCertPolicy:
        """A policy trusting every certificate in a PEM bundle; ``certs.CertError`` if it is unusable."""
        return cls(load_pem_certificates(path, "client CA"), **kwargs)

    def check(self, leaf_der: bytes | None, now: datetime.datetime) -> Verdict:
        """The verdict on a presented leaf certificate at time ``now`` (naive means UTC)."""
        if not leaf_der:
            return Verdict(code="no_cert", detail="the client presented no certificate")
        fingerprint = hashlib.sha256(leaf_der).hexdigest()
        parsed = self._cache.get(fingerprint)
        if parsed is None:
            parsed = self._parse(leaf_der)
            if len(self._cache) >= self.cache_size:
                self._cache.pop(next(iter(self._cache)), None)
            self._cache[fingerprint] = parsed

        def verdict(code: str, detail: str) -> Verdict:
            return Verdict(
                code=code, subject=parsed.subject, sans=parsed.sans, fingerprint_sha256=fingerprint, detail=detail
            )

        if parsed.failure is not None:
            return verdict(*parsed.failure)
        if now.tzinfo is None:
            now = now.replace(tzinfo=_UTC)
        if now < parsed.not_before:
            return verdict("not_yet_valid", f"the certificate is valid from {parsed.not_before:%Y-%m-%d %H:%M} UTC")
        if now > parsed.not_after:
            return verdict("expired", f"the certificate expired at {parsed.not_after:%Y-%m-%d %H:%M} UTC")
        if parsed.ekus is None:
            return verdict("eku_missing", "the certificate has no extended key usage extension")
        if _ANY_EKU not in parsed.ekus and not parsed.ekus & self.allowed_ekus:
            has = ", ".join(sorted(eku_name(oid) for oid in parsed.ekus)) or "none"
            want = ", ".join(sorted(eku_name(oid) for oid in self.allowed_ekus))
            return verdict("eku_mismatch", f"extended key usage {has} does not include {want}")
        if self.allowed_sans and self.allowed_sans.isdisjoint(parsed.sans):
            sans = ", ".join(parsed.sans) or "none"
            return verdict("san_not_allowed", f"no SAN of the certificate is on the allow-list (it has: {sans})")
        if self.allowed_subjects and parsed.subject_key not in self.allowed_subjects:
            return verdict("subject_not_allowed", f"subject {parsed.subject!r} is not allowed")
        return verdict("ok", "accepted")

    def _parse(self, der: bytes) -> _Parsed:
        try:
            cert = x509.load_der_x509_certificate(der)
            subject = cert.subject.rfc4514_string()
        except ValueError:
            return _Parsed(failure=("bad_cert", "not a DER-encoded X.509 certificate"))
        try:
            sans = self._sans(cert)
            try:
                ekus = frozenset(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
            except x509.ExtensionNotFound:
                ekus = None
            subject_key = _subject_key(cert.subject)
            not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
        except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
            reason = str(exc)[:_MAX_REASON]
            return _Parsed(subject=subject, failure=("bad_cert", f"malformed certificate extension: {reason}"))
        failure = self._issuer_failure(cert)
        return _Parsed(subject, subject_key, sans, not_before, not_after, ekus, failure)

    @staticmethod
    def _sans(cert: x509.Certificate) -> tuple[str, ...]:
        try:
            extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return ()
        found = [
            _normalise_san(str(name.value))
            for name in extension
            if isinstance(name, (x509.DNSName, x509.IPAddress, x509.RFC822Name, x509.UniformResourceIdentifier))
        ]
        return tuple(dict.fromkeys(found))

    def _issuer_failure(self, cert: x509.Certificate) -> tuple[str, str] | None:
        issuer = cert.issuer.rfc4514_string()
        candidates = self._cas_by_subject.get(cert.issuer)
        if not candidates:
            return "unknown_ca", f"issuer {issuer!r} is not a configured CA"
        for ca in candidates:
            try:
                cert.verify_directly_issued_by(ca)
            except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
                continue
            return None
        return "unknown_ca", f"the signature does not verify with the key of the configured CA {issuer!r}"
