"""Real asyncua servers for the OPC UA tests, and what builds sites and certificates for them.

A server several tests share runs on an event loop in a thread of its own (:class:`LoopThread`),
started once per module: its tasks are not the tests' (the per-test task-leak check stays strict
for what each test starts itself), and sync tests (the CLI, hypothesis) can reach it too.
Servers a test stops and starts (restart, the demo peers) run on the test's own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import pytest
from asyncua import ua
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server import Server
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from factory5g.model import Site, load_text
from factory5g.sim.opcua import stop_server
from tests.proxy import LoopbackProxy, Pair

T = TypeVar("T")

NAMESPACE: Final = "urn:factory5g:test"
SERVER_URI: Final = "urn:factory5g:test:server"
CLIENT_URI: Final = "urn:factory5g:test:client"
WITHIN_S: Final = 15.0

# The test device: (name, Variant type, initial value, writable). Node ids ns=2;s=dev.<name>.
VARIABLES: Final = (
    ("int16", ua.VariantType.Int16, 0, True),
    ("uint32", ua.VariantType.UInt32, 0, True),
    ("float", ua.VariantType.Float, 0.0, True),
    ("bool", ua.VariantType.Boolean, False, True),
    ("text", ua.VariantType.String, "idle", True),
    ("double", ua.VariantType.Double, 1.5, True),
    ("readonly", ua.VariantType.Double, 3.0, False),
)


def node(name: str) -> str:
    return f"ns=2;s=dev.{name}"


class LoopThread:
    """An asyncio loop running in a thread; ``run(coro)`` runs a coroutine there and waits."""

    def __init__(self, name: str = "opcua-test-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)

    def __enter__(self) -> LoopThread:
        self.thread.start()
        return self

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __exit__(self, *exc: object) -> None:
        async def drain() -> None:
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in others:
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await self.loop.shutdown_default_executor()

        try:
            self.run(drain(), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)
            self.loop.close()


# -- certificates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CertPair:
    cert_der: bytes
    key_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.cert_der)

    def write(self, directory: Path, stem: str, *, pem: bool = False) -> tuple[Path, Path]:
        """Write the certificate (DER, or PEM) and the key (PEM); return both paths."""
        directory.mkdir(parents=True, exist_ok=True)
        cert = directory / f"{stem}.{'pem' if pem else 'der'}"
        cert.write_bytes(
            self.cert.public_bytes(serialization.Encoding.PEM) if pem else self.cert_der
        )
        key = directory / f"{stem}-key.pem"
        key.write_bytes(self.key_pem)
        return cert, key


def make_cert(uri: str, *, server: bool) -> CertPair:
    """A self-signed application instance certificate (OPC 10000-6 §6.2.2) and its key."""
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        uri,
        {"organizationName": "factory5g tests"},
        [x509.UniformResourceIdentifier(uri), x509.DNSName("localhost")],
        [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH],
        days=30,
    )
    return CertPair(
        cert.public_bytes(serialization.Encoding.DER), cert_gen.dump_private_key_as_pem(key)
    )


# -- servers ----------------------------------------------------------------------------------


class Users:
    """A user manager: known users with their passwords, nobody else (no anonymous)."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(
        self,
        iserver: object,
        username: str | None = None,
        password: str | None = None,
        certificate: object = None,
    ) -> User | None:
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


async def start_server(
    port: int = 0,
    *,
    secure: CertPair | None = None,
    users: dict[str, str] | None = None,
) -> Server:
    """A started asyncua server with the test device (see VARIABLES) and two methods:
    ``dev.Add(a, b) -> a + b`` (Doubles) and ``dev.Fail()`` (answers BadInvalidState).

    ``secure``: only Basic256Sha256 Sign and SignAndEncrypt, with this certificate; ``users``:
    user name and password required (a user manager), else anonymous.
    """
    server = Server(user_manager=Users(users) if users is not None else None)
    server.disable_clock()  # stopping waits for the clock's 1 s sleep otherwise
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/test")
    await server.set_application_uri(SERVER_URI)
    if secure is not None:
        await server.load_certificate(secure.cert_der, format="der")
        await server.load_private_key(secure.key_pem, format="pem")
        server.set_security_policy(
            [
                ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                ua.SecurityPolicyType.Basic256Sha256_Sign,
            ]
        )
    else:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    server.set_identity_tokens(
        [ua.UserNameIdentityToken] if users is not None else [ua.AnonymousIdentityToken]
    )
    ns = await server.register_namespace(NAMESPACE)
    dev = await server.nodes.objects.add_object(
        ua.NodeId(ua.String("dev"), ua.Int16(ns)), ua.QualifiedName("dev", ns)
    )
    for name, vtype, value, writable in VARIABLES:
        var = await dev.add_variable(
            ua.NodeId(ua.String(f"dev.{name}"), ua.Int16(ns)),
            ua.QualifiedName(name, ns),
            ua.Variant(value, vtype),
        )
        if writable:
            await var.set_writable()

    async def add(parent: ua.NodeId, a: ua.Variant, b: ua.Variant) -> list[ua.Variant]:
        return [ua.Variant(a.Value + b.Value, ua.VariantType.Double)]

    async def fail(parent: ua.NodeId) -> ua.StatusCode:
        return ua.StatusCode(ua.UInt32(ua.StatusCodes.BadInvalidState))

    def arg(name: str) -> ua.Argument:
        return ua.Argument(
            Name=name, DataType=ua.NodeId(ua.Int32(ua.ObjectIds.Double)), ValueRank=-1
        )

    await dev.add_method(
        ua.NodeId(ua.String("dev.Add"), ua.Int16(ns)),
        ua.QualifiedName("Add", ns),
        add,
        [arg("a"), arg("b")],
        [arg("sum")],
    )
    await dev.add_method(
        ua.NodeId(ua.String("dev.Fail"), ua.Int16(ns)), ua.QualifiedName("Fail", ns), fail, [], []
    )
    await server.start()
    return server


def server_url(server: Server) -> str:
    assert server.bserver is not None
    return f"opc.tcp://127.0.0.1:{server.bserver.port}/test"


@dataclass
class SharedServer:
    """A server on a LoopThread: ``lt.run(...)`` reaches it."""

    lt: LoopThread
    server: Server
    url: str

    def set_value(self, name: str, value: ua.DataValue) -> None:
        nid = ua.NodeId.from_string(node(name))
        self.lt.run(self.server.write_attribute_value(nid, value))

    def value(self, name: str) -> Any:
        nid = ua.NodeId.from_string(node(name))
        dv = self.server.read_attribute_value(nid)
        return dv.Value.Value if dv.Value is not None else None


@pytest.fixture(scope="module")
def shared_server() -> Iterator[SharedServer]:
    """The test device, anonymous, security None, shared by a module's tests."""
    with LoopThread("opcua-shared-server") as lt:
        server = lt.run(start_server())
        try:
            yield SharedServer(lt, server, server_url(server))
        finally:
            lt.run(stop_server(server))


# -- sites ------------------------------------------------------------------------------------


def device_site(
    endpoint: str,
    signals: list[tuple[str, str, str]],
    *,
    opcua: str = "",
    equipment: str = "dev",
) -> Site:
    """A site with one equipment whose signals (name, type, node) are bound to ``endpoint``
    (an [[opcua]] id declared by the ``opcua`` TOML, or a URL)."""
    lines = [
        "[site]",
        'name = "opcua-test"',
        'prefix = "88.1"',
        opcua,
        "[[equipment]]",
        f'id = "{equipment}"',
        'area = "test"',
        'line = "l1"',
    ]
    for name, type_, where in signals:
        lines += [
            "  [[equipment.signal]]",
            f'  name = "{name}"',
            f'  type = "{type_}"',
            f'  binding = {{ kind = "opcua", endpoint = "{endpoint}", node = "{where}" }}',
        ]
    return load_text("\n".join(lines) + "\n", "opcua-test.toml")


class Proxy(LoopbackProxy):
    """A TCP proxy to ``port`` that can go silent: ``paused`` holds every byte (both ways)
    while the connections stay open, as a hung server or a dead link would."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.flowing = asyncio.Event()
        self.flowing.set()

    def pause(self) -> None:
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, to_server: bool, pair: Pair
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                await self.flowing.wait()
                dst.write(data)
                await dst.drain()
        dst.close()
