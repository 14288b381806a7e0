"""A local certificate authority and a server certificate, for `lapis serve --tls`.

What the clients accept (real-clients.md §0): a CA with basicConstraints
CA:TRUE (critical) and keyUsage keyCertSign, and a leaf signed by it with a
subjectAltName (IP 127.0.0.1 and ::1, DNS localhost and *.openai.azure.com,
for the hosts-file route), extendedKeyUsage serverAuth and an
authorityKeyIdentifier. A bare self-signed leaf is refused by modern OpenSSL
and Node. Files live in LAPIS_HOME/tls; private keys are owner-only.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: Path  # what clients trust: REQUESTS_CA_BUNDLE, SSL_CERT_FILE, NODE_EXTRA_CA_CERTS
    cert: Path  # the server's chain: leaf then CA
    key: Path

    def trust_exports(self) -> str:
        return "\n".join(f"export {name}={self.ca}" for name in
                         ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS"))


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def ensure(home: Path) -> TlsFiles:
    """The CA and server certificate under `home`/tls, made on first use."""
    folder = home / "tls"
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    if files.ca.exists() and files.cert.exists() and files.key.exists():
        return files
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lapis local CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now)
          .not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    # 127.0.0.2-16 too: private endpoints listen on other loopback addresses
    # (lapis.network.private_endpoints, default 127.0.0.2) with this certificate.
    loopbacks = [ipaddress.ip_address(f"127.0.0.{i}") for i in range(1, 17)] + [ipaddress.ip_address("::1")]
    names = [x509.DNSName("localhost"), x509.DNSName("*.openai.azure.com"), *map(x509.IPAddress, loopbacks)]
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=397))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    _write_private(folder / "ca-key.pem", ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                               serialization.NoEncryption()))
    _write_private(files.key, key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    files.cert.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    files.ca.write_bytes(ca.public_bytes(pem))
    return files


def server_context(files: TlsFiles):  # noqa: ANN201 - ssl.SSLContext
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)
    return context
