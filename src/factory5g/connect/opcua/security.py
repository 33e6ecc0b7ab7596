"""Certificates and credentials of OPC UA sessions: what the site file points at, read once.

Trust is by pinning: the server must present (in GetEndpoints, then again in CreateSession)
a certificate that is byte for byte one of the ``trust`` files. Certificates are named by their
thumbprint, the SHA-1 of the DER encoding, as OPC UA tools show it (OPC 10000-6 §6.2.3).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from asyncua import ua
from asyncua.client import Client
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from factory5g.connect.opcua.errors import OpcUaSecurityError
from factory5g.model.site import OpcUaEndpoint

__all__ = [
    "DEFAULT_APPLICATION_URI",
    "Credentials",
    "application_uri_of",
    "first_certificate",
    "get_endpoints",
    "load_credentials",
    "read_certificate",
    "thumbprint",
]

DEFAULT_APPLICATION_URI: Final = "urn:factory5g:client"


@dataclass(frozen=True, slots=True)
class Credentials:
    """What one endpoint's session needs, loaded from the files and the environment."""

    cert_der: bytes | None  # client application instance certificate
    key: bytes | None  # its private key, as read
    key_format: str  # "pem" or "der"
    application_uri: str  # must equal the certificate's URI SubjectAltName
    trusted: dict[str, bytes]  # thumbprint → DER of each trusted server certificate
    trust_files: tuple[str, ...]
    username: str | None
    password: str | None

    def __repr__(self) -> str:  # never show the password (or the key) in a log or traceback
        return (
            f"Credentials(application_uri={self.application_uri!r}, "
            f"trusted={sorted(self.trusted)}, username={self.username!r})"
        )


def thumbprint(der: bytes) -> str:
    """The certificate's thumbprint as OPC UA tools show it: SHA-1 of the DER, upper-case hex."""
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def first_certificate(der: bytes) -> bytes:
    """The leading certificate of a DER blob that may carry its chain after it (X.690 §8.1.3)."""
    if len(der) < 2 or der[0] != 0x30:
        return der
    n = der[1]
    if n < 0x80:
        return der[: 2 + n]
    width = n & 0x7F
    length = int.from_bytes(der[2 : 2 + width], "big")
    return der[: 2 + width + length]


def read_certificate(path: Path) -> bytes:
    """A certificate file (PEM or DER) as DER; ValueError if it is not a certificate."""
    raw = path.read_bytes()
    cert = (
        x509.load_pem_x509_certificate(raw)
        if raw.lstrip().startswith(b"-----BEGIN")
        else x509.load_der_x509_certificate(raw)
    )
    return cert.public_bytes(serialization.Encoding.DER)


def application_uri_of(cert_der: bytes) -> str | None:
    """The URI SubjectAltName of an application certificate (OPC 10000-6 §6.2.2), if any."""
    cert = x509.load_der_x509_certificate(cert_der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def load_credentials(settings: OpcUaEndpoint, base_dir: Path) -> Credentials:
    """Read the endpoint's certificate, key, trusted server certificates and password.

    Raises OpcUaSecurityError naming the file (or environment variable) that is missing or bad.
    """

    def fail(reason: str) -> OpcUaSecurityError:
        return OpcUaSecurityError(settings.id, settings.url, reason)

    def path(name: str) -> Path:
        p = Path(name)
        return p if p.is_absolute() else base_dir / p

    cert_der: bytes | None = None
    key: bytes | None = None
    key_format = "pem"
    app_uri = DEFAULT_APPLICATION_URI
    trusted: dict[str, bytes] = {}
    if settings.security != "none":
        if not (settings.cert_file and settings.key_file):
            raise fail(f"security {settings.security!r} needs cert_file and key_file")
        try:
            cert_der = read_certificate(path(settings.cert_file))
        except (OSError, ValueError) as exc:
            raise fail(f"cannot read the client certificate {settings.cert_file}: {exc}") from exc
        try:
            key = path(settings.key_file).read_bytes()
            key_format = "pem" if key.lstrip().startswith(b"-----BEGIN") else "der"
            private = (
                serialization.load_pem_private_key(key, None)
                if key_format == "pem"
                else serialization.load_der_private_key(key, None)
            )
        except (OSError, ValueError, TypeError) as exc:
            # TypeError: the key is encrypted (a password would be needed)
            raise fail(f"cannot read the private key {settings.key_file}: {exc}") from exc
        spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        cert = x509.load_der_x509_certificate(cert_der)
        if cert.public_key().public_bytes(*spki) != private.public_key().public_bytes(*spki):
            raise fail(f"{settings.key_file} is not the private key of {settings.cert_file}")
        app_uri = application_uri_of(cert_der) or DEFAULT_APPLICATION_URI
        if not settings.trust:
            raise fail(
                "no server certificate in trust "
                "(factory5g connect browse URL --save-cert FILE fetches it)"
            )
        for name in settings.trust:
            try:
                der = read_certificate(path(name))
            except (OSError, ValueError) as exc:
                raise fail(f"cannot read the trusted certificate {name}: {exc}") from exc
            trusted[thumbprint(der)] = der
    password: str | None = None
    if settings.password_env is not None:
        password = os.environ.get(settings.password_env)
        if password is None:
            raise fail(
                f"the environment variable {settings.password_env} (password_env) is not set"
            )
    return Credentials(
        cert_der,
        key,
        key_format,
        app_uri,
        trusted,
        tuple(settings.trust),
        settings.username,
        password,
    )


async def get_endpoints(url: str, timeout_s: float) -> list[ua.EndpointDescription]:
    """The server's endpoints (GetEndpoints on an unsecured channel, as discovery allows)."""
    return await Client(url, timeout=timeout_s).connect_and_get_server_endpoints()
