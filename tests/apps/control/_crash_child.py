"""The child of test_store.py's kill -9 test: accepts one command, reports that the device
write has started (the idempotency key is durable by then), and hangs in the write until killed.

``python -m tests.apps.control._crash_child DATA_DIR``
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from factory5g.apps.control import CommandRequest, ControlService, Principal
from factory5g.connect.base import WriteResult, WriteValue
from factory5g.model import Role, load_text
from factory5g.stream import MemoryBus

SITE = """
[site]
name = "crash"
prefix = "88.1"

[[equipment]]
id = "table"
area = "a"
line = "l"
  [[equipment.signal]]
  name = "speed_setpoint"
  min = 0
  max = 15
  binding = { kind = "modbus", device = "plc", table = "holding", address = 2, type = "float32" }

[[modbus]]
id = "plc"
host = "127.0.0.1"
port = 1502

[[control.writable]]
signal = "table.speed_setpoint"
"""

WHO = Principal("tok-op", "olga", Role.OPERATOR)
REQUEST = CommandRequest("table.speed_setpoint", "crash-1", 60_000, value=7.5)


class HangingAdapter:
    name = "modbus"

    async def write(self, signal: int, value: WriteValue) -> WriteResult:
        print("writing", flush=True)  # the parent kills us now
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def stats(self) -> dict[str, Any]:
        return {}


async def main(data_dir: Path) -> None:
    site = load_text(SITE)
    adapters = {"modbus": HangingAdapter()}
    async with MemoryBus() as bus, ControlService(site, bus, adapters, data_dir=data_dir) as c:
        await c.submit(REQUEST, WHO)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
