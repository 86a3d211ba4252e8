"""Test helper: a throw-away CA and a server certificate for 127.0.0.1.

Generates, with `cryptography`, a self-signed CA and a server certificate
signed by it, valid for IP 127.0.0.1 and DNS localhost, and writes them as
PEM files.  Tests point the server at the certificate and key and the client
(boto3 `verify=`, ssl.create_default_context(cafile=)) at the CA.  Never use
these outside tests: the keys are generated unprotected in a temp directory.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertPaths:
    ca_cert: str        # PEM path: give to the client as its trust root
    server_cert: str    # PEM path: the server's certificate
    server_key: str     # PEM path: the server's private key


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "shardserver tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def make_test_certificates(directory, days: int = 2) -> CertPaths:
    """Create ca.pem, server.pem and server-key.pem in `directory`."""
    directory = os.fspath(directory)
    now = datetime.datetime.now(datetime.timezone.utc)
    not_before = now - datetime.timedelta(minutes=5)
    not_after = now + datetime.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("shardserver test CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                x509.DNSName("localhost"),
            ]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    paths = CertPaths(
        ca_cert=os.path.join(directory, "ca.pem"),
        server_cert=os.path.join(directory, "server.pem"),
        server_key=os.path.join(directory, "server-key.pem"),
    )
    _write(paths.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(paths.server_cert, server_cert.public_bytes(serialization.Encoding.PEM))
    _write(
        paths.server_key,
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    os.chmod(paths.server_key, 0o600)
    return paths
