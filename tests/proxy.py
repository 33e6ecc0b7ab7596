"""A TCP proxy on loopback for tests that put something between a client and a real server.

``LoopbackProxy(upstream_port)``: clients connect to ``proxy.port``; every connection opens its
own connection to ``127.0.0.1:upstream_port`` and runs :meth:`LoopbackProxy._pump` once per
direction. Subclasses decide how bytes flow (held, framed, faulted); leaving the ``async with``
closes every connection and leaves no task behind.
"""

from __future__ import annotations

import asyncio
from typing import Self

Pair = tuple[asyncio.StreamWriter, asyncio.StreamWriter]  # (client side, server side)


class LoopbackProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:  # the server is down: so is the client's connection
            writer.close()
            return
        self.connections += 1
        self._writers += [writer, up_writer]
        pair = (writer, up_writer)
        for src, dst, to_server in ((reader, up_writer, True), (up_reader, writer, False)):
            task = asyncio.create_task(self._pump(src, dst, to_server, pair))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        to_server: bool,
        pair: Pair,
    ) -> None:
        raise NotImplementedError
