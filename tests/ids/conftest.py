"""Fixtures of the identifier node tests: both stores (PostgreSQL started here, as a non-root
user when we are root), and real HTTP servers on free ports in threads."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn

from factory5g.ids.api import create_ids_app
from factory5g.ids.protocol import PROTOCOL
from factory5g.ids.service import Credentials, IdsService, NodeConfig
from factory5g.ids.store import EmbeddedHandleStore, HandleStore
from factory5g.ids.store.postgres import PostgresHandleStore
from tests.helpers import wait_until_sync

PREFIX = "88.118.8"
PG_DIRS = [Path(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_tool(name: str) -> str:
    for d in PG_DIRS:
        if (d / name).exists():
            return str(d / name)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"PostgreSQL's {name} is missing: run scripts/system-deps (apt-get install postgresql)"
        )
    return found


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A PostgreSQL server for this test session: initdb + pg_ctl in a temporary directory,
    on a free port; as root it runs as the ``postgres`` user (postgres refuses root)."""
    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    base = Path(tempfile.mkdtemp(prefix="f5g-ids-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root needs a 'postgres' user to run PostgreSQL as")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", free_tcp_port()
    run = {"check": True, "capture_output": True, "text": True, "timeout": 60}
    subprocess.run(
        [
            *as_user,
            initdb,
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
        **run,
    )
    opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-o", opts, "-l", str(base / "log"), "-w", "start"],
        **run,
    )
    try:
        yield f"host=127.0.0.1 port={port} user=postgres"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
            check=False,
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_dsn(pg_server: str) -> Iterator[str]:
    """A fresh database per test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{pg_server} dbname=postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{pg_server} dbname={name}"
    finally:
        with psycopg.connect(f"{pg_server} dbname=postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


STORE_KINDS = ("embedded", "postgres")


@contextlib.asynccontextmanager
async def open_store(
    kind: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> AsyncIterator[HandleStore]:
    store: HandleStore
    if kind == "embedded":
        store = EmbeddedHandleStore(tmp_path / "ids.sqlite")
    else:
        store = PostgresHandleStore(request.getfixturevalue("pg_dsn"))
    async with store:
        yield store


@pytest.fixture(params=STORE_KINDS)
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[HandleStore]:
    async with open_store(request.param, tmp_path, request) as s:
        yield s


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedHandleStore]:
    async with EmbeddedHandleStore(tmp_path / "ids.sqlite") as s:
        yield s


@dataclass
class Node:
    service: IdsService
    admin: Credentials


@pytest.fixture
async def node(store: EmbeddedHandleStore) -> AsyncIterator[Node]:
    """A service for 88.118.8 with its admin handle (no HTTP)."""
    async with IdsService(store, NodeConfig(prefixes=(PREFIX,))) as svc:
        creds = await svc.init_prefix(PREFIX, secret="s3cret-admin")
        yield Node(svc, creds)


class ServerThread:
    """``with ServerThread(app, port) as url``: uvicorn serving ``app`` in a thread, with the
    HTTP protocol ``factory5g ids serve`` uses (``http="httptools"``: uvicorn's own)."""

    def __init__(self, app: Any, port: int | None = None, *, http: str = PROTOCOL) -> None:
        self.port = port or free_tcp_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            access_log=False,
            http=http,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"ids-node-{self.port}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_until_sync(
            lambda: self.server.started or not self.thread.is_alive(), 20, "the server to start"
        )
        if not self.server.started:
            self.thread.join(5)
            raise RuntimeError(f"the server on port {self.port} did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        assert not self.thread.is_alive(), "the server thread did not stop"

    def __exit__(self, *exc: object) -> None:
        if self.thread.is_alive():
            self.stop()


def serve_node(
    path: Path,
    config: NodeConfig,
    *,
    init: str | None = PREFIX,
    secret: str = "s3cret-admin",
    port: int | None = None,
    http: str = PROTOCOL,
) -> ServerThread:
    """A standalone node on an embedded store at ``path`` (its prefix initialised)."""

    @contextlib.asynccontextmanager
    async def open_service() -> AsyncIterator[IdsService]:
        async with EmbeddedHandleStore(path) as st, IdsService(st, config) as svc:
            yield svc

    async def ready(svc: IdsService) -> None:
        if init and await svc.store.get(f"0.NA/{init}") is None:
            await svc.init_prefix(init, secret=secret)

    return ServerThread(create_ids_app(open_service, on_ready=ready), port, http=http)
