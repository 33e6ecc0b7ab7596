"""Real Modbus TCP peers for the adapter tests, on free ports of 127.0.0.1.

``TestDevice`` is a plain pymodbus TCP server over a tiny datastore of its own (dicts of the
registers and coils that exist), written apart from ``factory5g.sim.modbus`` so the adapter is
checked against register values typed in by hand, not produced by our codec. It records every
request it answers. ``silent_server`` accepts connections and never answers.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from factory5g.stream import Batch, MemorySubscription

HOST = "127.0.0.1"
_WRITE_TABLE = {5: "coil", 15: "coil", 6: "holding", 16: "holding"}
_READ_TABLE = {1: "coil", 2: "discrete", 3: "holding", 4: "input", 5: "coil", 6: "holding"}


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free right now (the sockets stay open until all are chosen)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((HOST, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Memory:
    """What a test device holds: address → value per table; ``readonly`` holding addresses."""

    holding: dict[int, int] = field(default_factory=dict)
    input: dict[int, int] = field(default_factory=dict)
    coil: dict[int, bool] = field(default_factory=dict)
    discrete: dict[int, bool] = field(default_factory=dict)
    readonly: set[int] = field(default_factory=set)
    unit: int = 1
    requests: list[tuple[int, int, int]] = field(default_factory=list)  # (fc, address, count)

    def table(self, name: str) -> dict[int, int] | dict[int, bool]:
        tables: dict[str, dict[int, int] | dict[int, bool]] = {
            "holding": self.holding,
            "input": self.input,
            "coil": self.coil,
            "discrete": self.discrete,
        }
        return tables[name]

    # pymodbus' datastore protocol
    def device_ids(self) -> list[int]:
        return [self.unit]

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        if device_id != self.unit:
            return ExcCodes.GATEWAY_NO_RESPONSE
        if func_code in (1, 2, 3, 4):
            self.requests.append((func_code, address, count))
        table = self.table(_READ_TABLE[func_code])
        if any(a not in table for a in range(address, address + count)):
            return ExcCodes.ILLEGAL_ADDRESS
        return [table[a] for a in range(address, address + count)]  # type: ignore[return-value]

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: Sequence[int | bool]
    ) -> ExcCodes | None:
        if device_id != self.unit:
            return ExcCodes.GATEWAY_NO_RESPONSE
        self.requests.append((func_code, address, len(values)))
        name = _WRITE_TABLE[func_code]
        table = self.table(name)
        span = range(address, address + len(values))
        if any(a not in table or (name == "holding" and a in self.readonly) for a in span):
            return ExcCodes.ILLEGAL_ADDRESS
        for a, v in zip(span, values, strict=True):
            table[a] = v  # type: ignore[assignment]
        return None

    def functions(self) -> list[int]:
        return [fc for fc, _, _ in self.requests]


class _Server(ModbusTcpServer):
    def __init__(self, memory: Memory, port: int) -> None:
        super().__init__(
            SimDevice(0, SimData(0, datatype=DataType.REGISTERS)), address=(HOST, port)
        )
        self.context = memory  # type: ignore[assignment]


class TestDevice:
    """A pymodbus TCP server over ``memory`` on ``port``; ``stop()`` and ``start()`` again."""

    __test__ = False  # not a pytest test class

    def __init__(self, memory: Memory, port: int) -> None:
        self.memory = memory
        self.port = port
        self._server: _Server | None = None

    async def start(self) -> None:
        server = _Server(self.memory, self.port)
        await server.serve_forever(background=True)
        self._server = server

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()


@asynccontextmanager
async def running_device(memory: Memory, port: int) -> AsyncIterator[TestDevice]:
    device = TestDevice(memory, port)
    await device.start()
    try:
        yield device
    finally:
        await device.stop()


@asynccontextmanager
async def silent_server(port: int) -> AsyncIterator[list[int]]:
    """Accepts TCP connections and reads requests, never answers. Yields a list that counts
    the connections made (one entry per connection)."""
    connections: list[int] = []
    writers: list[asyncio.StreamWriter] = []
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        connections.append(1)
        writers.append(writer)
        try:
            while await reader.read(65536):
                pass
        finally:
            writer.close()
            handlers.discard(task)

    server = await asyncio.start_server(handle, HOST, port)
    try:
        yield connections
    finally:
        server.close()
        for w in writers:
            w.close()  # the handlers' reads end: they return by themselves
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def batches_until(
    sub: MemorySubscription,
    predicate: Callable[[Batch], bool],
    within: float = 5.0,
    what: str = "",
) -> tuple[Batch, list[Batch]]:
    """Consume batches until one satisfies ``predicate``; return it and every batch seen."""
    seen: list[Batch] = []
    deadline = time.monotonic() + within
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no batch {what or predicate} within {within} s; saw {seen}")
        try:
            batch = await asyncio.wait_for(anext(sub), left)
        except TimeoutError:
            continue
        seen.append(batch)
        if predicate(batch):
            return batch, seen


async def batches_while(
    sub: MemorySubscription, done: Callable[[], bool], within: float = 5.0, what: str = ""
) -> list[Batch]:
    """Every batch that arrives until ``done()`` (checked every 10 ms, batches or not)."""
    seen: list[Batch] = []
    deadline = time.monotonic() + within
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what or done} within {within} s; saw {seen}")
        with suppress(TimeoutError):
            seen.append(await asyncio.wait_for(anext(sub), 0.01))
    while (more := sub.get_nowait()) is not None:
        seen.append(more)
    return seen


def sample(batch: Batch, signal: int) -> tuple[float, int] | None:
    """(value, quality) of ``signal`` in ``batch``, or None."""
    rows = (batch.signal == signal).nonzero()[0]
    if not len(rows):
        return None
    return float(batch.value[rows[0]]), int(batch.quality[rows[0]])


def site_text(
    devices: Sequence[str], signals: Sequence[tuple[str, str]], equipment: str = "eq"
) -> str:
    """A site with one equipment whose signals are ``(name, binding or extra lines)``."""
    lines = ["[site]", 'name = "modbus tests"', 'prefix = "88.1"', "", "[[equipment]]"]
    lines += [f'id = "{equipment}"', 'area = "a"', 'line = "l"']
    for name, body in signals:
        lines += [
            "  [[equipment.signal]]",
            f'  name = "{name}"',
            *("  " + b for b in body.splitlines()),
        ]
    for d in devices:
        lines += ["", "[[modbus]]", d]
    return "\n".join(lines) + "\n"


def device_toml(id_: str, port: int, extra: str = "") -> str:
    return f'id = "{id_}"\nhost = "{HOST}"\nport = {port}\n{extra}'
