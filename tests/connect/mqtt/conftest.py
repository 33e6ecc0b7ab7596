"""MQTT test fixtures: either broker (real Mosquitto or ours), a TCP proxy that can cut or freeze
the line, and small helpers to collect messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import pytest

from factory5g.connect.mqtt import Message, MqttBroker, MqttClient, MqttOptions
from tests.connect.conftest import running_mosquitto

BROKERS = ("mosquitto", "ours")


class Broker(Protocol):
    host: str
    port: int

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def restart(self) -> None: ...


class OurBroker:
    """Our in-process broker on a fixed port, so that a restart comes back where it was."""

    host = "127.0.0.1"

    def __init__(self, port: int, **kwargs: Any) -> None:
        self.port = port
        self.kwargs = kwargs
        self.broker: MqttBroker | None = None

    async def start(self) -> None:
        self.broker = MqttBroker(self.host, self.port, **self.kwargs)
        await self.broker.__aenter__()

    async def stop(self) -> None:
        broker, self.broker = self.broker, None
        if broker is not None:
            await broker.__aexit__(None, None, None)

    async def restart(self) -> None:
        await self.stop()
        await self.start()


@pytest.fixture(params=BROKERS)
async def broker(
    request: pytest.FixtureRequest, tmp_path: Path, free_port: int
) -> AsyncIterator[Broker]:
    """Each behavioural test runs against the real Mosquitto and against our broker."""
    if request.param == "mosquitto":
        async with running_mosquitto(tmp_path / "mosquitto", free_port) as m:
            yield m
    else:
        ours = OurBroker(free_port)
        await ours.start()
        try:
            yield ours
        finally:
            await ours.stop()


@pytest.fixture
async def our_broker(free_port: int) -> AsyncIterator[OurBroker]:
    ours = OurBroker(free_port)
    await ours.start()
    try:
        yield ours
    finally:
        await ours.stop()


class Address(Protocol):
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...


def options(where: Address, client_id: str, **overrides: Any) -> MqttOptions:
    """Client options for tests: quick reconnects, so a restart costs tenths of a second."""
    values: dict[str, Any] = {"reconnect_min_s": 0.05, "reconnect_max_s": 0.5}
    values.update(overrides)
    return MqttOptions(host=where.host, port=where.port, client_id=client_id, **values)


async def collect(client: MqttClient, n: int, within: float = 10.0) -> list[Message]:
    """Take batches until at least ``n`` messages arrived (everything taken is returned)."""
    got: list[Message] = []
    batches = client.batches()
    async with asyncio.timeout(within):
        while len(got) < n:
            got += await anext(batches)
    return got


class TcpProxy:
    """127.0.0.1:<port> → a broker. ``cut()`` kills every link at once, like a pulled cable:
    neither side says goodbye. ``freeze_down()`` stops forwarding broker → client (the client's
    packets still reach the broker; PINGRESPs do not come back)."""

    host = "127.0.0.1"

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.links = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._down = asyncio.Event()
        self._down.set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def cut(self) -> None:
        for w in list(self._writers):
            w.transport.abort()

    def freeze_down(self) -> None:
        self._down.clear()

    def thaw(self) -> None:
        self._down.set()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._link(reader, writer), name="tcp-proxy-link")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            self._writers.add(up_writer)
            self.links += 1
            async with asyncio.TaskGroup() as tg:  # an error on either side ends both
                tg.create_task(self._pipe(reader, up_writer, None))
                tg.create_task(self._pipe(up_reader, writer, self._down))
        except* OSError:
            pass  # a reset or a cut: the link is gone
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    self._writers.discard(w)
                    w.transport.abort()
                    w.close()

    @staticmethod
    async def _pipe(
        src: asyncio.StreamReader, dst: asyncio.StreamWriter, gate: asyncio.Event | None
    ) -> None:
        """Forward until end of stream, then pass the half-close on, as TCP would."""
        while True:
            data = await src.read(65536)
            if gate is not None:
                await gate.wait()
            if not data:
                if dst.can_write_eof():
                    dst.write_eof()
                return
            dst.write(data)
            await dst.drain()


@pytest.fixture
async def proxy_to(broker: Broker) -> AsyncIterator[TcpProxy]:
    """A TcpProxy in front of the ``broker`` fixture."""
    async with TcpProxy(broker.host, broker.port) as proxy:
        yield proxy
