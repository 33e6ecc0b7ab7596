"""A fault-injecting TCP channel: a proxy that frames each protocol's messages and delays,
drops, duplicates, reorders or corrupts whole messages (or cuts the connection).

It sits between the control app's adapters and real servers (pymodbus, asyncua), as a radio
link with a bad day would. Faults are armed per direction with a predicate that picks the
messages they apply to (a Modbus function code, an OPC UA service), and a count.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from tests.proxy import LoopbackProxy, Pair

Framer = Callable[[bytes | bytearray], int | None]
FaultKind = Literal["delay", "drop", "duplicate", "hold", "corrupt", "cut"]

# OPC UA binary encoding ids of the services the tests aim at (OPC 10000-6 §5.2.2.9)
WRITE_REQUEST, WRITE_RESPONSE = 673, 676
CALL_REQUEST, CALL_RESPONSE = 712, 715


def modbus_frame(buf: bytes | bytearray) -> int | None:
    """Modbus TCP: the MBAP header's length field counts what follows it (unit + PDU)."""
    return 6 + int.from_bytes(buf[4:6], "big") if len(buf) >= 6 else None


def opcua_frame(buf: bytes | bytearray) -> int | None:
    """OPC UA TCP: message type (3), chunk type (1), message size (4, little endian)."""
    return int.from_bytes(buf[4:8], "little") if len(buf) >= 8 else None


def modbus_function(fc: int) -> Callable[[bytes], bool]:
    return lambda frame: len(frame) > 7 and frame[7] & 0x7F == fc


def opcua_service(type_id: int) -> Callable[[bytes], bool]:
    """A MSG chunk of a service, security None: its type NodeId follows the 24-byte header."""

    def match(frame: bytes) -> bool:
        if frame[:3] != b"MSG" or len(frame) < 28 or frame[24] != 0x01:
            return False
        return int.from_bytes(frame[26:28], "little") == type_id

    return match


@dataclass
class Fault:
    kind: FaultKind
    match: Callable[[bytes], bool] = lambda frame: True
    count: int = 1
    delay_s: float = 0.0
    offset: int = -1  # corrupt: the byte flipped
    hits: int = 0


@dataclass
class Direction:
    name: str
    faults: list[Fault] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)
    held: list[bytes] = field(default_factory=list)

    def arm(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def count(self, match: Callable[[bytes], bool]) -> int:
        return sum(1 for f in self.frames if match(f))


class FaultProxy(LoopbackProxy):
    """``async with FaultProxy(upstream_port, framer) as proxy``; clients connect to
    ``proxy.port``; ``proxy.to_server`` / ``proxy.to_client`` take faults."""

    def __init__(self, upstream_port: int, framer: Framer) -> None:
        super().__init__(upstream_port)
        self.framer = framer
        self.to_server = Direction("to_server")
        self.to_client = Direction("to_client")

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, to_server: bool, pair: Pair
    ) -> None:
        d = self.to_server if to_server else self.to_client
        buf = bytearray()
        with contextlib.suppress(OSError, ConnectionError):
            while data := await src.read(65536):
                buf += data
                while (n := self.framer(buf)) is not None and 0 < n <= len(buf):
                    frame = bytes(buf[:n])
                    del buf[:n]
                    if not await self._forward(frame, dst, d, pair):
                        return
        dst.close()

    async def _forward(
        self,
        frame: bytes,
        dst: asyncio.StreamWriter,
        d: Direction,
        pair: Pair,
    ) -> bool:
        d.frames.append(frame)
        fault = next((f for f in d.faults if f.count > 0 and f.match(frame)), None)
        out = [frame]
        if fault is not None:
            fault.count -= 1
            fault.hits += 1
            if fault.kind == "drop":
                out = []
            elif fault.kind == "delay":
                await asyncio.sleep(fault.delay_s)
            elif fault.kind == "duplicate":
                out = [frame, frame]
            elif fault.kind == "corrupt":
                b = bytearray(frame)
                b[fault.offset] ^= 0xFF
                out = [bytes(b)]
            elif fault.kind == "hold":  # reorder: sent after the next message
                d.held.append(frame)
                return True
            elif fault.kind == "cut":
                for w in pair:
                    w.close()
                return False
        if d.held and fault is None:
            out += d.held
            d.held.clear()
        for f in out:
            dst.write(f)
        await dst.drain()
        return True
