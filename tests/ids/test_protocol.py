"""ResolutionProtocol: plain resolutions answered in uvicorn's parser callback, byte for byte
what the ASGI path sends, in order on keep-alive and pipelined connections; everything else
through the app; answers cached only while nothing was written, by any process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.sync.client import connect as ws_connect

from factory5g.ids.api import HandleFastPath, _AnswerCache, create_ids_app
from factory5g.ids.protocol import find_fast_path
from factory5g.ids.records import parse_values
from factory5g.ids.service import IdsService, NodeConfig
from factory5g.ids.store import EmbeddedHandleStore, HandleStore
from factory5g.ids.syntax import parse_handle
from tests.helpers import wait_until_sync
from tests.ids.conftest import PREFIX, ServerThread, free_tcp_port

SECRET = "s3cret-admin"
BASIC = "Basic " + base64.b64encode(f"300%3A{PREFIX}/admin:{SECRET}".encode()).decode()
WRONG = "Basic " + base64.b64encode(f"300%3A{PREFIX}/admin:wrong".encode()).decode()
SUB = f"{PREFIX}/dir/sub ü"  # a '/' in the suffix, a space and non-ASCII: percent-encoded
HANDLES = [f"{PREFIX}/P1", f"{PREFIX}/P2", SUB, f"0.NA/{PREFIX}"]


def url_value(value: str, index: int = 1, **extra: Any) -> dict[str, Any]:
    return {"index": index, "type": "URL", "data": {"format": "string", "value": value}, **extra}


async def _fill(path: Path) -> None:
    async with (
        EmbeddedHandleStore(path) as st,
        IdsService(st, NodeConfig(prefixes=(PREFIX,))) as svc,
    ):
        await svc.init_prefix(PREFIX, secret=SECRET)
        for h in HANDLES[:3]:
            await _put(svc, h, f"https://plant/{h}")
        secret = url_value("https://private", 2, permissions="1100")  # not public
        await _put(svc, f"{PREFIX}/Secret", "https://public", secret)


async def _put(svc: IdsService, handle: str, value: str, *more: dict[str, Any]) -> None:
    admin = await svc.authenticate(f"300:{PREFIX}/admin", SECRET)
    values = parse_values([url_value(value), *more], now=int(svc.clock()))
    await svc.put_values(parse_handle(handle), values, admin)


class CountingApp:
    """ASGI wrapper recording what reaches the app (find_fast_path looks through it)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.append(f"{scope['method']} {scope['path']}")
        await self.app(scope, receive, send)


def node(path: Path, http: str | None = None) -> tuple[ServerThread, CountingApp]:
    @contextlib.asynccontextmanager
    async def open_service() -> AsyncIterator[IdsService]:
        async with (
            EmbeddedHandleStore(path) as st,
            IdsService(st, NodeConfig(prefixes=(PREFIX,))) as svc,
        ):
            yield svc

    app = CountingApp(create_ids_app(open_service))
    return (ServerThread(app) if http is None else ServerThread(app, http=http)), app


class Conn:
    """A raw HTTP/1.1 client connection: send bytes, read whole responses as bytes."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, *requests: bytes) -> None:
        self.sock.sendall(b"".join(requests))

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self.buf += data

    def response(self, *, head: bool = False) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            self._more()
        end = self.buf.index(b"\r\n\r\n") + 4
        m = re.search(rb"\r\ncontent-length: (\d+)\r\n", self.buf[:end])
        assert m is not None, self.buf[:end]
        total = end + (0 if head else int(m.group(1)))
        while len(self.buf) < total:
            self._more()
        out, self.buf = self.buf[:total], self.buf[total:]
        return out

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def get(path: str, *headers: str, method: str = "GET", version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: node", *headers, "", ""]
    return "\r\n".join(lines).encode()


def path_of(handle: str, query: str = "") -> str:
    return "/api/handles/" + quote(handle, safe="/.") + (f"?{query}" if query else "")


def body(resp: bytes) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads(resp.split(b"\r\n\r\n", 1)[1])
    return result


def status(resp: bytes) -> int:
    return int(resp.split(b" ", 2)[1])


def undated(resp: bytes) -> bytes:
    dated = re.subn(rb"\r\ndate: [^\r]+\r\n", b"\r\ndate: -\r\n", resp)
    assert dated[1] == 1, resp  # uvicorn's date header, in both paths
    return dated[0]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "ids.sqlite"
    asyncio.run(_fill(path))
    return path


@pytest.fixture
def pair(db: Path) -> Iterator[tuple[ServerThread, CountingApp, ServerThread, CountingApp]]:
    """(ours, its app, uvicorn's httptools protocol, its app) over the same store file."""
    ours, ours_app = node(db)
    plain, plain_app = node(db, "httptools")
    with ours, plain:
        yield ours, ours_app, plain, plain_app


# Requests whose answers must be identical, whoever answers them.
CASES = [
    *(get(path_of(h)) for h in HANDLES),
    get(path_of(f"{PREFIX}/nope")),  # 404 HANDLE_NOT_FOUND: through the app
    get(path_of(f"{PREFIX}/Secret")),  # a non-public value: through the app
    get(f"/api/handles/{PREFIX}/%FF"),  # 400 INVALID_HANDLE (not UTF-8)
    get(path_of("99.1/elsewhere")),  # 301 SERVER_NOT_RESP
    get(path_of(f"{PREFIX}/P1", "index=1")),
    get(path_of(f"{PREFIX}/P1"), f"Authorization: {WRONG}"),  # 403 even for public values
    get(path_of(f"{PREFIX}/P1"), "Connection: close"),
    get(path_of(f"{PREFIX}/P1"), version="1.0"),
]


def test_answers_are_byte_identical_to_the_asgi_path(
    pair: tuple[ServerThread, CountingApp, ServerThread, CountingApp],
) -> None:
    ours, ours_app, plain, plain_app = pair
    for request in CASES:
        answers = []
        for server in (ours, plain):
            c = Conn(server.port)
            c.send(request)
            answers.append(undated(c.response()))
            c.close()
        assert answers[0] == answers[1], request
    statuses = [status(a) for a in answers]
    assert statuses  # the last case; the first ones are checked below
    c = Conn(ours.port)
    c.send(CASES[0])
    assert b"\r\ncontent-type: application/json\r\ncontent-length: " in c.response()
    c.close()
    # Our server answered the plain resolutions itself; uvicorn's sent all to the app.
    assert len(plain_app.seen) == len(CASES)
    assert len(ours_app.seen) == len(CASES) - len(HANDLES)
    assert not any(s.startswith("GET /api/handles/88.118.8/P2") for s in ours_app.seen)


def test_keep_alive_many_requests_on_one_connection(
    pair: tuple[ServerThread, CountingApp, ServerThread, CountingApp],
) -> None:
    ours, ours_app, _, _ = pair
    c = Conn(ours.port)
    for i in range(200):
        h = HANDLES[i % len(HANDLES)]
        c.send(get(path_of(h)))
        resp = c.response()
        assert status(resp) == 200
        assert body(resp)["handle"] == h
        assert b"connection: close" not in resp
    assert ours_app.seen == []
    # A request the app answers, then fast ones again, on the same connection.
    c.send(get(path_of(f"{PREFIX}/nope")))
    assert status(c.response()) == 404
    c.send(get(path_of(f"{PREFIX}/P1")))
    assert status(c.response()) == 200
    assert ours_app.seen == ["GET /api/handles/88.118.8/nope"]
    c.close()


def test_pipelined_requests_are_answered_in_order(
    pair: tuple[ServerThread, CountingApp, ServerThread, CountingApp],
) -> None:
    ours, ours_app, plain, _ = pair
    pipeline = [
        get(path_of(f"{PREFIX}/P1")),  # fast
        get(path_of(f"{PREFIX}/P1", "index=1")),  # app
        get(path_of(f"{PREFIX}/P2")),  # fast, but queued behind the app's answer
        get(path_of(f"{PREFIX}/nope")),  # app
        get(path_of(SUB)),  # queued
        get(path_of(f"{PREFIX}/P1"), method="HEAD"),  # app (no body in the answer)
        get(path_of(f"0.NA/{PREFIX}")),  # queued
        get(path_of(f"{PREFIX}/P2")),  # fast again: nothing in flight by then? either way
    ]
    answers = []
    for server in (ours, plain):
        c = Conn(server.port)
        c.send(*pipeline)
        answers.append([undated(c.response(head=r.startswith(b"HEAD"))) for r in pipeline])
        c.close()
    assert answers[0] == answers[1]
    got = [
        (status(a), body(a).get("handle") if b"HEAD" not in r else None)
        for a, r in zip(answers[0], pipeline, strict=True)
    ]
    assert got == [
        (200, f"{PREFIX}/P1"),
        (200, f"{PREFIX}/P1"),
        (200, f"{PREFIX}/P2"),
        (404, f"{PREFIX}/nope"),
        (200, SUB),
        (200, None),
        (200, f"0.NA/{PREFIX}"),
        (200, f"{PREFIX}/P2"),
    ]
    assert "HEAD /api/handles/88.118.8/P1" in ours_app.seen


def test_a_fast_request_waits_for_a_slow_one_in_flight(
    pair: tuple[ServerThread, CountingApp, ServerThread, CountingApp],
) -> None:
    ours, ours_app, _, _ = pair
    c = Conn(ours.port)
    # Wrong credentials: scrypt runs (milliseconds) off the event loop, so the app's answer
    # is still in flight when the next request arrives in a later packet.
    c.send(get(path_of(f"{PREFIX}/P1"), f"Authorization: {WRONG}"))
    c.send(get(path_of(f"{PREFIX}/P2")))
    first, second = c.response(), c.response()
    assert (status(first), body(first)["responseCode"]) == (403, 403)
    assert (status(second), body(second)["handle"]) == (200, f"{PREFIX}/P2")
    c.close()
    assert len(ours_app.seen) >= 1


@pytest.mark.parametrize("method", ["HEAD", "DELETE", "POST", "OPTIONS"])
def test_other_methods_go_to_the_app(
    pair: tuple[ServerThread, CountingApp, ServerThread, CountingApp], method: str
) -> None:
    ours, ours_app, plain, _ = pair
    answers = []
    for server in (ours, plain):
        c = Conn(server.port)
        c.send(get(path_of(f"{PREFIX}/P1"), "Content-Length: 0", method=method))
        answers.append(undated(c.response(head=method == "HEAD")))
        c.close()
    assert answers[0] == answers[1]
    assert ours_app.seen == [f"{method} /api/handles/88.118.8/P1"]


def test_a_get_with_a_body_or_credentials_goes_to_the_app(
    pair: tuple[ServerThread, CountingApp, ServerThread, CountingApp],
) -> None:
    ours, ours_app, _, _ = pair
    c = Conn(ours.port)
    c.send(get(path_of(f"{PREFIX}/P1"), "Content-Length: 2") + b"{}")
    assert status(c.response()) == 200
    c.send(get(path_of(f"{PREFIX}/Secret"), f"Authorization: {BASIC}"))
    resp = c.response()
    assert [v["index"] for v in body(resp)["values"]] == [1, 2, 100]  # with the private one
    c.close()
    assert len(ours_app.seen) == 2


@pytest.mark.parametrize(
    "request_bytes",
    [
        get(path_of(f"{PREFIX}/P1"), "Connection: close"),
        get(path_of(f"{PREFIX}/P1"), version="1.0"),
    ],
)
def test_connection_close_and_http_1_0_close_after_the_answer(
    pair: tuple[ServerThread, CountingApp, ServerThread, CountingApp], request_bytes: bytes
) -> None:
    ours, _, _, _ = pair
    c = Conn(ours.port)
    c.send(request_bytes)
    resp = c.response()
    assert status(resp) == 200
    assert b"\r\nconnection: close\r\n" in resp
    assert c.closed_by_server()
    c.close()


def test_a_write_on_one_node_is_read_at_once_on_another(db: Path) -> None:
    """Two nodes (separate stores, connections, caches) on one file: the reader has the
    answer cached, the writer changes it, the reader's next answer is the new one."""
    writer, _ = node(db)
    reader, reader_app = node(db)
    with writer, reader:
        w, r = Conn(writer.port), Conn(reader.port)
        h = f"{PREFIX}/P1"
        for round_ in range(5):
            for _ in range(3):  # cached after the first
                r.send(get(path_of(h)))
                assert status(r.response()) == 200
            new = orjson.dumps({"values": [url_value(f"https://v{round_}")]})
            w.send(
                get(
                    path_of(h, "index=1"),
                    f"Authorization: {BASIC}",
                    f"Content-Length: {len(new)}",
                    method="PUT",
                )
                + new
            )
            assert status(w.response()) == 200
            r.send(get(path_of(h)))
            values = body(r.response())["values"]
            assert values[0]["data"]["value"] == f"https://v{round_}"
        w.send(get(path_of(h), f"Authorization: {BASIC}", method="DELETE"))
        assert status(w.response()) == 200
        r.send(get(path_of(h)))
        assert status(r.response()) == 404
        w.close()
        r.close()
    assert reader_app.seen == [f"GET /api/handles/{h}"]  # only the 404


def test_a_write_is_read_at_once_by_every_worker_process(db: Path, tmp_path: Path) -> None:
    """``factory5g ids serve --workers 2``: writes and reads on connections spread over
    both worker processes; every read after an acknowledged write sees it."""
    port = free_tcp_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "factory5g.ids.cli", "serve", "--db", str(db)),
            *("--prefix", PREFIX, "--port", str(port), "--workers", "2", "--log-level", "warning"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    conns: list[Conn] = []
    try:

        def up() -> bool:
            assert proc.poll() is None, "ids serve exited"
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            return False

        wait_until_sync(up, 60, "ids serve to listen")
        conns = [Conn(port) for _ in range(8)]
        h = f"{PREFIX}/P2"
        for round_ in range(6):
            for c in conns:  # warm every worker's cache
                c.send(get(path_of(h)))
                assert status(c.response()) == 200
            writer = conns[round_ % len(conns)]
            new = orjson.dumps({"values": [url_value(f"https://w{round_}")]})
            writer.send(
                get(
                    path_of(h, "index=1"),
                    f"Authorization: {BASIC}",
                    f"Content-Length: {len(new)}",
                    method="PUT",
                )
                + new
            )
            assert status(writer.response()) == 200
            for c in conns:
                c.send(get(path_of(h)))
                assert body(c.response())["values"][0]["data"]["value"] == f"https://w{round_}"
    finally:
        for c in conns:
            c.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# -- in process ---------------------------------------------------------------------------


async def test_answer_sync_caches_until_the_store_changes(db: Path) -> None:
    async with (
        EmbeddedHandleStore(db) as st,
        IdsService(st, NodeConfig(prefixes=(PREFIX,))) as svc,
    ):
        fast = HandleFastPath(None, lambda: svc)  # type: ignore[arg-type]
        reads: list[object] = []
        real = svc.plain_values_sync

        def counted(h: Any) -> bytes | None:
            reads.append(h)
            return real(h)

        svc.plain_values_sync = counted  # type: ignore[method-assign]
        raw = b"88.118.8/P1"
        first = fast.answer_sync(raw)
        assert first is not None
        assert fast.answer_sync(raw) == first
        assert len(reads) == 1  # the second from the cache
        # Another connection (as another process would) writes: the next answer is new.
        async with EmbeddedHandleStore(db) as other, IdsService(other, svc.config) as svc2:
            await _put(svc2, f"{PREFIX}/P1", "https://changed")
        second = fast.answer_sync(raw)
        assert second is not None
        assert b"https://changed" in second
        assert len(reads) == 2
        assert fast.answer_sync(b"88.118.8/nope") is None
        assert fast.answer_sync(b"88.118.8/Secret") is None
        assert fast.answer_sync(b"88.118.8/%FF") is None
        nocache = HandleFastPath(None, lambda: svc, answer_cache_bytes=0)  # type: ignore[arg-type]
        assert nocache.answer_sync(raw) == second
        assert nocache.answer_sync(raw) == second
        assert len(reads) == 6  # nope, Secret, and P1 twice: nothing kept


async def test_the_change_stamp_moves_with_every_commit_of_any_process(db: Path) -> None:
    async with EmbeddedHandleStore(db) as st:
        stamp = st.change_stamp_sync()
        assert stamp is not None
        assert len(stamp) == 48
        st.get_sync("88.118.8/P1")
        assert st.change_stamp_sync() == stamp  # reads change nothing
        script = (
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute(\"INSERT INTO counters VALUES ('x', 1) ON CONFLICT DO UPDATE "
            'SET next = next + 1")'
        )
        for _ in range(3):
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, str(db))
            assert await proc.wait() == 0
            now = st.change_stamp_sync()
            assert now != stamp
            stamp = now
    assert st.change_stamp_sync() is None  # closed: unmapped


async def test_a_store_without_synchronous_reads_leaves_it_to_the_app(
    any_store: HandleStore,
) -> None:
    async with IdsService(any_store, NodeConfig(prefixes=(PREFIX,))) as svc:
        await svc.init_prefix(PREFIX, secret=SECRET)
        await _put(svc, f"{PREFIX}/P1", "https://x")
        fast = HandleFastPath(None, lambda: svc)  # type: ignore[arg-type]
        answer = fast.answer_sync(b"88.118.8/P1")
        if isinstance(any_store, EmbeddedHandleStore):
            assert svc.reads_sync
            assert answer is not None
        else:  # PostgreSQL: the ASGI path awaits the read
            assert not svc.reads_sync
            assert svc.change_stamp_sync() is None
            assert answer is None


def test_the_answer_cache_is_bounded_in_bytes() -> None:
    cache = _AnswerCache(64 * 100)
    cache.validate(b"s1")
    for i in range(200):
        cache.put(b"k%03d" % i, b"x" * 96)
    assert cache.size <= 64 * 100
    assert cache.get(b"k000") is None
    assert cache.get(b"k199") == b"x" * 96
    cache.put(b"huge", b"x" * 1000)  # more than 1/64 of the budget: not kept
    assert cache.get(b"huge") is None
    cache.validate(b"s2")
    assert cache.get(b"k199") is None
    assert cache.size == 0


def test_find_fast_path_looks_through_wrappers() -> None:
    fast = HandleFastPath(None, lambda: None)  # type: ignore[arg-type]
    assert find_fast_path(CountingApp(CountingApp(fast))) is fast
    assert find_fast_path(CountingApp(None)) is None
    assert fast.answer_sync(b"88.118.8/P1") is None  # no service yet


def test_websocket_upgrades_still_work() -> None:
    """`factory5g up` serves its live feed on the same protocol: upgrades go to the app."""

    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text(await ws.receive_text())
        await ws.close()

    app = HandleFastPath(Starlette(routes=[WebSocketRoute("/ws", echo)]), lambda: None)
    with ServerThread(app) as server, ws_connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
