"""Certificates made at test time, and a TLS client, for the TLS tests."""

from __future__ import annotations

import datetime
import socket
import ssl
from pathlib import Path

from proxy.gencert import CLIENT_AUTH, SERVER_AUTH, issue, make_ca
from support import Client

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


class Kit:
    """A CA, server certificates and client certificates (good and bad) in ``tmp``."""

    def __init__(self, tmp: Path):
        self.dir = tmp / "certs"
        self.dir.mkdir(exist_ok=True)
        self.ca = make_ca("test CA")
        self.other_ca = make_ca("some other CA")
        self.write("ca", self.ca, chain=False)
        self.write("other-ca", self.other_ca, chain=False)

    def write(self, name: str, issued, chain: bool = True) -> tuple[str, str]:
        cert = self.dir / f"{name}.pem"
        key = self.dir / f"{name}.key"
        cert.write_bytes(issued.chain_pem() if chain else issued.cert_pem())
        key.write_bytes(issued.key_pem())
        return str(cert), str(key)

    def server(self, name: str, names, key_kind: str = "ec") -> tuple[str, str]:
        return self.write(name, issue(common_name=names[0], dns_names=names, issuer=self.ca, key_kind=key_kind,
                                      extended_key_usage=(SERVER_AUTH,)))

    def client(self, name: str, *, ca=None, ekus=(CLIENT_AUTH,), sans=("app.clients.test",), not_before=None,
               not_after=None, cn: str = "app") -> tuple[str, str]:
        return self.write(name, issue(common_name=cn, dns_names=sans, issuer=ca or self.ca,
                                      extended_key_usage=ekus, not_before=not_before, not_after=not_after))

    @property
    def ca_file(self) -> str:
        return str(self.dir / "ca.pem")

    def context(self, client: tuple[str, str] | None = None, check_hostname: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        ctx.check_hostname = check_hostname
        if client is not None:
            ctx.load_cert_chain(*client)
        return ctx


class TLSClient(Client):
    """support.Client over TLS: the handshake happens in the constructor."""

    def __init__(self, addr, ctx: ssl.SSLContext, server_hostname: str | None, timeout: float = 10.0,
                 session=None):
        raw = socket.create_connection(addr, timeout=timeout)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname, session=session)
        except BaseException:
            raw.close()
            raise
        self.sock.settimeout(timeout)
        self.buf = b""

    def peer_names(self) -> list[str]:
        cert = self.sock.getpeercert()
        return [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]


def listener_block(cert_pairs, **keys) -> str:
    """A [[listeners]] TOML table named main on an ephemeral port with TLS on."""
    lines = ['[[listeners]]', 'name = "main"', 'address = "127.0.0.1:0"', "tls = true"]
    for k, v in keys.items():
        if isinstance(v, bool):
            lines.append(f"{k} = {'true' if v else 'false'}")
        elif isinstance(v, (list, tuple)):
            lines.append(f"{k} = [{', '.join(repr_toml(x) for x in v)}]")
        else:
            lines.append(f"{k} = {repr_toml(v)}")
    for cert, key in cert_pairs:
        lines += ["[[listeners.certificates]]", f"cert = {repr_toml(cert)}", f"key = {repr_toml(key)}"]
    return "\n".join(lines) + "\n"


def repr_toml(v) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(v)


PLAIN_LISTENER = '[[listeners]]\nname = "main"\naddress = "127.0.0.1:0"\n'


def tls_config(base: str, cert_pairs, **keys) -> str:
    assert PLAIN_LISTENER in base
    return base.replace(PLAIN_LISTENER, listener_block(cert_pairs, **keys))
