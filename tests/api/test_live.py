"""The live WebSocket, over a real uvicorn server on a free port and a real WebSocket client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import websockets
from websockets.asyncio.client import ClientConnection

from factory5g.api import Settings, create_app
from factory5g.model import Role
from factory5g.runtime import Runtime
from factory5g.stream import Batch

from ..helpers import wait_until

T0 = 1_800_000_000 * 10**9


class Server:
    def __init__(self, url: str, runtime: Runtime, tokens: dict[Role, str]) -> None:
        self.url = url
        self.runtime = runtime
        self.tokens = tokens


@pytest.fixture
async def server(site_file: Path, free_port: int) -> AsyncIterator[Server]:
    app = create_app(Settings(site=site_file, port=free_port, live_max_rate_hz=100))
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port, log_level="warning")
    srv = uvicorn.Server(config)
    srv.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(srv.serve())
    await wait_until(lambda: srv.started, what="uvicorn start")
    tokens = {r: app.state.tokens.create(r).token for r in Role}
    try:
        yield Server(f"ws://127.0.0.1:{free_port}/api/v1/live", app.state.runtime, tokens)
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, 10)


async def recv(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """The next message of type ``kind`` (skipping others), within 5 s."""
    async with asyncio.timeout(5):
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == kind:
                return msg  # type: ignore[no-any-return]


async def test_subscribe_gets_latest_then_live_values(server: Server) -> None:
    await server.runtime.bus.publish(Batch.of([0], [T0], [10.0]))
    await wait_until(lambda: server.runtime.written_samples >= 1, what="store write")
    token = server.tokens[Role.VIEWER]
    async with websockets.connect(f"{server.url}?token={token}") as ws:
        await ws.send(json.dumps({"subscribe": ["press.force", 2]}))
        sub = await recv(ws, "subscribed")
        assert [s["path"] for s in sub["signals"]] == ["press.force", "robot.state"]
        first = await recv(ws, "samples")
        assert (first["signal"], first["value"]) == ([0], [10.0])
        # live: only subscribed signals arrive (signal 1 is filtered out)
        await server.runtime.bus.publish(Batch.of([1, 0, 2], [T0 + 1] * 3, [5.0, 11.0, 3.0]))
        live = await recv(ws, "samples")
        assert sorted(zip(live["signal"], live["value"], strict=True)) == [(0, 11.0), (2, 3.0)]
        await ws.send(json.dumps({"unsubscribe": ["press.force"]}))
        await recv(ws, "unsubscribed")
        await server.runtime.bus.publish(Batch.of([0, 2], [T0 + 2] * 2, [12.0, 4.0]))
        live = await recv(ws, "samples")
        assert live["signal"] == [2]


async def test_bad_messages_get_errors_and_the_connection_stays(server: Server) -> None:
    token = server.tokens[Role.VIEWER]
    async with websockets.connect(f"{server.url}?token={token}") as ws:
        for bad, fragment in [
            ("not json", "not JSON"),
            ("[1, 2]", "JSON object"),
            ('{"subscribe": "press.force"}', "list"),
            ('{"subscribe": ["press.forse"]}', "did you mean 'press.force'"),
            ('{"hello": 1}', "expected"),
        ]:
            await ws.send(bad)
            err = await recv(ws, "error")
            assert fragment in err["detail"], (bad, err)
        await ws.send(json.dumps({"subscribe": ["press.temp"]}))
        assert (await recv(ws, "subscribed"))["signals"][0]["id"] == 1


async def test_token_in_header_works(server: Server) -> None:
    headers = {"Authorization": f"Bearer {server.tokens[Role.ADMIN]}"}
    async with websockets.connect(server.url, additional_headers=headers) as ws:
        await ws.send(json.dumps({"subscribe": "*"}))
        assert len((await recv(ws, "subscribed"))["signals"]) == 3


@pytest.mark.parametrize("query", ["", "?token=f5g_00000000_nope"])
async def test_without_valid_token_the_socket_closes_4401(server: Server, query: str) -> None:
    async with websockets.connect(server.url + query) as ws:
        err = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert err["status"] == 401
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 4401
