"""A throwaway certificate authority for loopback TLS, made at test time.

Why: the real model endpoints are ``wss://``, and some clients (the google-genai SDK
among them) insist on TLS. Simulators therefore serve TLS on 127.0.0.1 with a
self-signed certificate made here, and clients trust exactly that certificate; no
file on disk outlives the call and nothing touches the system trust store.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True, slots=True)
class TlsPair:
    """Contexts for the two ends of one loopback TLS connection."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    cert_pem: bytes  # the certificate the client trusts (e.g. for SSL_CERT_FILE)


def make_tls_pair(host: str = "127.0.0.1") -> TlsPair:
    """Make a fresh self-signed certificate for ``host`` (and ``localhost``).

    An EC P-256 key keeps generation to about a millisecond, so every test can have
    its own. The certificate carries the extensions strict verification asks for
    (key identifiers, basic constraints, key usage), so default client contexts
    accept it without loosening any check.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([alt, x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # load_cert_chain only reads files; the temporary one is removed at once.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "server.pem")
        with open(path, "wb") as fh:
            fh.write(cert_pem + key_pem)
        server.load_cert_chain(path)
    client = ssl.create_default_context(cadata=cert_pem.decode("ascii"))
    return TlsPair(server=server, client=client, cert_pem=cert_pem)
