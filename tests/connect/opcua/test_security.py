"""Secure sessions: Basic256Sha256 Sign / SignAndEncrypt with certificates made here, the server
certificate pinned by the trust list, user name and password."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from asyncua import ua
from cryptography import x509
from typer.testing import CliRunner

from factory5g.connect.opcua import OpcUaAdapter, OpcUaSecurityError
from factory5g.connect.opcua.browse import save_server_cert
from factory5g.connect.opcua.cli import app
from factory5g.model import Site
from factory5g.sim.opcua import stop_server
from factory5g.stream import MemoryBus, Quality
from tests.connect.opcua.conftest import (
    CLIENT_URI,
    SERVER_URI,
    WITHIN_S,
    CertPair,
    LoopThread,
    device_site,
    make_cert,
    node,
    server_url,
    start_server,
)
from tests.connect.opcua.test_read import Collector
from tests.helpers import wait_until

USER = "operator"
PASSWORD = "s3cret-Pa55"
PASSWORD_ENV = "F5G_TEST_OPCUA_PASSWORD"


@dataclass
class SecureServer:
    url: str
    server_cert: CertPair
    files: Path  # client certificate and key, server certificate, an impostor certificate

    @property
    def thumbprint(self) -> str:
        return hashlib.sha1(self.server_cert.cert_der).hexdigest().upper()


@pytest.fixture(scope="module")
def secure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureServer]:
    """Only Basic256Sha256 (Sign, SignAndEncrypt), only user name and password."""
    files = tmp_path_factory.mktemp("pki")
    server_cert = make_cert(SERVER_URI, server=True)
    make_cert(CLIENT_URI, server=False).write(files, "client")
    server_cert.write(files, "server", pem=True)
    make_cert(SERVER_URI, server=True).write(files, "impostor")  # same name, other key
    with LoopThread("opcua-secure-server") as lt:
        server = lt.run(start_server(secure=server_cert, users={USER: PASSWORD}))
        try:
            yield SecureServer(server_url(server), server_cert, files)
        finally:
            lt.run(stop_server(server))


def secure_site(
    s: SecureServer, *, security: str = "sign_encrypt", trust: str = "server.pem", user: bool = True
) -> Site:
    lines = [
        "[[opcua]]",
        'id = "plc"',
        f'url = "{s.url}"',
        f'security = "{security}"',
        f'cert_file = "{s.files / "client.der"}"',
        f'key_file = "{s.files / "client-key.pem"}"',
        f'trust = ["{s.files / trust}"]',
        "publishing_ms = 50",
    ]
    if user:
        lines += [f'username = "{USER}"', f'password_env = "{PASSWORD_ENV}"']
    return device_site("plc", [("level", "float", node("double"))], opcua="\n".join(lines) + "\n")


@contextlib.asynccontextmanager
async def running(site: Site) -> AsyncIterator[tuple[OpcUaAdapter, Collector]]:
    async with MemoryBus() as bus:
        got = Collector(bus)
        async with OpcUaAdapter(site, bus) as adapter:
            yield adapter, got


@pytest.mark.parametrize(
    ("security", "mode"),
    [
        ("sign_encrypt", ua.MessageSecurityMode.SignAndEncrypt),
        ("sign", ua.MessageSecurityMode.Sign),
    ],
)
async def test_a_secure_session_with_a_password(
    secure_server: SecureServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    security: str,
    mode: ua.MessageSecurityMode,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    caplog.set_level(logging.DEBUG, logger="factory5g")
    site = secure_site(secure_server, security=security)
    level = site.signals.get("dev.level").id
    async with running(site) as (adapter, got):
        await wait_until(lambda: adapter.stats()["connected"], WITHIN_S, "a session")
        await wait_until(lambda: got.seen(level, Quality.GOOD), WITHIN_S, "data")
        client = adapter.endpoints["plc"].client
        assert client is not None
        assert client.security_policy.Mode == mode
        assert client.security_policy.URI.endswith("#Basic256Sha256")
        value = 4.25 if security == "sign" else 5.25  # the server is shared: a new value
        result = await adapter.write(level, value)
        assert result.status == "Good"
        await wait_until(lambda: got.seen(level, Quality.GOOD, value), WITHIN_S, "the write")
        (ep,) = adapter.stats()["endpoints"]
        assert ep["security"] == security
        assert ep["connected"] is True
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)


async def test_an_untrusted_server_certificate_is_refused(
    secure_server: SecureServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    site = secure_site(secure_server, trust="impostor.der")
    async with running(site) as (adapter, got):
        await wait_until(lambda: adapter.stats()["endpoints"][0]["errors"] >= 1, WITHIN_S)
        (ep,) = adapter.stats()["endpoints"]
        assert ep["connected"] is False
        assert f"server certificate {secure_server.thumbprint} is not trusted" in ep["last_error"]
        assert "impostor.der" in ep["last_error"]
        assert "--save-cert" in ep["last_error"]
        assert adapter.endpoints["plc"].sessions == 0  # never got as far as a session
        assert got.seen(site.signals.get("dev.level").id, Quality.BAD_NOT_CONNECTED)
    refused = [r for r in caplog.records if secure_server.thumbprint in r.getMessage()]
    assert refused
    assert refused[0].levelno == logging.ERROR
    assert "'plc'" in refused[0].getMessage()


async def test_a_wrong_password_is_refused_clearly(
    secure_server: SecureServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    caplog.set_level(logging.DEBUG, logger="factory5g")
    site = secure_site(secure_server)
    async with running(site) as (adapter, _):
        await wait_until(lambda: adapter.stats()["endpoints"][0]["errors"] >= 1, WITHIN_S)
        (ep,) = adapter.stats()["endpoints"]
        assert ep["connected"] is False
        assert f"the server refused user '{USER}': BadUserAccessDenied" in ep["last_error"]
    assert all("not-the-password" not in r.getMessage() for r in caplog.records)


async def test_security_none_against_a_secure_only_server(secure_server: SecureServer) -> None:
    site = device_site(secure_server.url, [("level", "float", node("double"))])
    async with running(site) as (adapter, _):
        await wait_until(lambda: adapter.stats()["endpoints"][0]["errors"] >= 1, WITHIN_S)
        (ep,) = adapter.stats()["endpoints"]
        assert "offers no endpoint with security none" in ep["last_error"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("missing-cert", "cannot read the client certificate"),
        ("wrong-key", "is not the private key of"),
        ("missing-trust", "cannot read the trusted certificate"),
        ("no-password", rf"environment variable {PASSWORD_ENV} \(password_env\) is not set"),
    ],
)
async def test_unusable_credentials_fail_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str, message: str
) -> None:
    """Certificates, keys and passwords are read when the adapter starts: a bad one is an
    error at once, naming the endpoint and the file (no server needed)."""
    files = tmp_path / "pki"
    make_cert(CLIENT_URI, server=False).write(files, "client")
    make_cert(SERVER_URI, server=True).write(files, "server", pem=True)
    make_cert(CLIENT_URI, server=False).write(files, "other")
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    if change == "missing-cert":
        (files / "client.der").unlink()
    elif change == "wrong-key":
        (files / "other-key.pem").replace(files / "client-key.pem")
    elif change == "missing-trust":
        (files / "server.pem").unlink()
    else:
        monkeypatch.delenv(PASSWORD_ENV)
    s = SecureServer("opc.tcp://127.0.0.1:4840", make_cert(SERVER_URI, server=True), files)
    async with MemoryBus() as bus:
        adapter = OpcUaAdapter(secure_site(s), bus)
        with pytest.raises(OpcUaSecurityError, match=message) as caught:
            async with adapter:
                pytest.fail("the adapter must not start")
    assert caught.value.endpoint == "plc"
    assert "'plc'" in str(caught.value)
    assert PASSWORD not in str(caught.value)


async def test_a_saved_server_certificate_is_trusted(
    secure_server: SecureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engineer's way: fetch the server certificate, put the file in trust, connect."""
    saved = tmp_path / "plc-server.pem"
    cert = await save_server_cert(secure_server.url, saved)
    assert cert.thumbprint == secure_server.thumbprint
    assert cert.der == secure_server.server_cert.cert_der
    assert "factory5g tests" in cert.subject
    assert saved.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert x509.load_pem_x509_certificate(saved.read_bytes()) == secure_server.server_cert.cert

    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    site = secure_site(secure_server, trust=str(saved))
    async with running(site) as (adapter, _):
        await wait_until(lambda: adapter.stats()["connected"], WITHIN_S, "a session")


def test_cli_saves_the_certificate_of_a_secure_only_server(
    secure_server: SecureServer, tmp_path: Path
) -> None:
    saved = tmp_path / "server.der"
    result = CliRunner().invoke(app, [secure_server.url, "--save-cert", str(saved)])
    assert result.exit_code == 0, result.output
    assert saved.read_bytes() == secure_server.server_cert.cert_der
    assert f"saved the server certificate {secure_server.thumbprint}" in result.stderr
    assert "not browsed" in result.stderr  # it offers no security None endpoint to browse
    assert result.stdout == ""
