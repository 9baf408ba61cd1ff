"""The state directory's credentials: CA, serving certificate, admin token, service-account key and
the kubeconfig that carries them.

Made on first start and reused afterwards (kubectl's trust and tokens survive restarts). kubectl
sends bearer tokens only over TLS, so TLS is required, not cosmetic. Certificates use ECDSA P-256:
made in milliseconds, accepted by Go, OpenSSL and Python alike.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True, slots=True)
class Credentials:
    ca_pem: bytes
    cert_file: Path
    key_file: Path
    admin_token: str
    sa_key: bytes


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _key_usage(signs_certificates: bool) -> x509.KeyUsage:
    """digitalSignature for both; keyCertSign and cRLSign for the CA (ECDSA needs no keyEncipherment)."""
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def _make_pki(directory: Path) -> None:
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    later = now + datetime.timedelta(days=3650)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mnp-local-ca")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            _key_usage(signs_certificates=True),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mnp-local-apiserver")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(signs_certificates=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(directory / "ca.key", _key_pem(ca_key))
    _write(directory / "ca.crt", ca.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(directory / "server.key", _key_pem(key))
    _write(directory / "server.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)


def ensure_credentials(directory: Path) -> Credentials:
    """Load the directory's credentials, making whatever is missing."""
    directory.mkdir(parents=True, exist_ok=True)
    if not all((directory / f).exists() for f in ("ca.crt", "server.crt", "server.key")):
        _make_pki(directory)
    token_file = directory / "token"
    if not token_file.exists():
        _write(token_file, secrets.token_urlsafe(32).encode())
    sa_file = directory / "sa.key"
    if not sa_file.exists():
        _write(sa_file, secrets.token_bytes(32))
    return Credentials(
        ca_pem=(directory / "ca.crt").read_bytes(),
        cert_file=directory / "server.crt",
        key_file=directory / "server.key",
        admin_token=token_file.read_text().strip(),
        sa_key=sa_file.read_bytes(),
    )


def kubeconfig(server: str, ca_pem: bytes, token: str, user: str = "admin") -> str:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "mnp-local",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {"name": "mnp-local", "context": {"cluster": "mnp-local", "user": user, "namespace": "default"}}
        ],
        "current-context": "mnp-local",
        "preferences": {},
    }
    return yaml.safe_dump(config, sort_keys=False)


def write_kubeconfig(path: Path, text: str) -> None:
    """Atomically: readers see no file or the whole file (its existence means 'serving')."""
    _write(path, text.encode())
