"""Run ASGI apps on real sockets (port 0) inside the test's event loop, and a callback sink."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """``http://127.0.0.1:PORT`` of ``app`` served by uvicorn until the block ends."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="uvicorn-test")
    try:
        while not server.started:
            if task.done():
                task.result()
                raise AssertionError("the server stopped before it started")
            await asyncio.sleep(0.005)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


class Sink:
    """A callback receiver: every POST body, per path."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Any]] = []
        self.app = FastAPI()
        self.event = asyncio.Event()

        @self.app.post("/{path:path}")
        async def receive(path: str, request: Request) -> Response:
            self.received.append(("/" + path, await request.json()))
            self.event.set()
            return Response(status_code=204)

    def on(self, path: str) -> list[Any]:
        return [b for p, b in self.received if p == path]
