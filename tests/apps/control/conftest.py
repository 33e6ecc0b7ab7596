"""A control rig: real pymodbus and asyncua servers, each behind a fault-injecting proxy, the
real adapters, the alarm app and the control app on one bus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from asyncua.server import Server

from factory5g.apps.alarms import AlarmService
from factory5g.apps.control import Command, CommandRequest, ControlService, Principal
from factory5g.apps.events import EventHub
from factory5g.connect.base import Adapter
from factory5g.connect.modbus import ModbusAdapter
from factory5g.connect.opcua import OpcUaAdapter
from factory5g.model import Role, Site, load_text
from factory5g.sim.opcua import stop_server
from factory5g.stream import Batch, MemoryBus, now_ns
from tests.apps.control.faults import FaultProxy, modbus_frame, opcua_frame
from tests.connect.modbus.conftest import Memory, free_ports, running_device
from tests.connect.opcua.conftest import start_server
from tests.helpers import wait_until

OPERATOR = Principal("tok-op", "olga", Role.OPERATOR)
VIEWER = Principal("tok-view", "vera", Role.VIEWER)


def float32_regs(value: float) -> tuple[int, int]:
    import struct

    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return hi, lo


def regs_float32(hi: int, lo: int) -> float:
    import struct

    return float(struct.unpack(">f", struct.pack(">HH", hi, lo))[0])


def control_site(
    modbus_port: int | None,
    opcua_url: str | None,
    *,
    poll_ms: float = 60_000,
    confirm: str = "ack",
    survival_ms: float = 300,
) -> str:
    lines = [
        "[site]",
        'name = "control tests"',
        'prefix = "88.1"',
        "[[equipment]]",
        'id = "guard"',
        'area = "a"',
        'line = "l"',
        "  [[equipment.signal]]",
        '  name = "door_closed"',
        '  type = "bool"',
        "[[alarm]]",
        'signal = "guard.door_closed"',
        'kind = "state"',
        "state = false",
        'priority = "low"',
    ]
    if modbus_port is not None:
        lines += [
            "[[equipment]]",
            'id = "table"',
            'area = "a"',
            'line = "l"',
            "  [[equipment.signal]]",
            '  name = "speed_setpoint"',
            '  unit = "m/s"',
            "  min = 0",
            "  max = 15",
            "  binding = { kind = 'modbus', device = 'plc', table = 'holding', address = 2, "
            f"type = 'float32', poll_ms = {poll_ms} }}",
            "  [[equipment.signal]]",
            '  name = "motor_current"',
            '  unit = "A"',
            "[[alarm]]",
            'signal = "table.motor_current"',
            'kind = "high"',
            "limit = 1500",
            'priority = "high"',
            "[[modbus]]",
            'id = "plc"',
            'host = "127.0.0.1"',
            f"port = {modbus_port}",
            "timeout_ms = 150",
            "retries = 1",
            "[[control.writable]]",
            'signal = "table.speed_setpoint"',
            'role = "operator"',
            "safe_value = 0",
            f"survival_ms = {survival_ms}",
            'interlocks = ["guard.door_closed == true"]',
            'alarm_interlocks = ["table"]',
            f'confirm = "{confirm}"',
            "tolerance = 0.001",
        ]
    if opcua_url is not None:
        lines += [
            "[[equipment]]",
            'id = "dev"',
            'area = "a"',
            'line = "l"',
            "  [[equipment.signal]]",
            '  name = "double"',
            "  binding = { kind = 'opcua', endpoint = 'ua', node = 'ns=2;s=dev.double' }",
            "[[opcua]]",
            'id = "ua"',
            f'url = "{opcua_url}"',
            "timeout_s = 0.5",
            "[[control.writable]]",
            'signal = "dev.double"',
            "min = -100",
            "max = 100",
            "safe_value = 0",
            f"survival_ms = {survival_ms}",
            "[[control.method]]",
            'id = "dev.add"',
            'endpoint = "ua"',
            'object = "ns=2;s=dev"',
            'method = "ns=2;s=dev.Add"',
            "args = 2",
            "min = -1000",
            "max = 1000",
        ]
    return "\n".join(lines) + "\n"


@dataclass
class Rig:
    site: Site
    bus: MemoryBus
    control: ControlService
    alarms: AlarmService
    events: EventHub
    memory: Memory | None
    mb_proxy: FaultProxy | None
    ua_server: Server | None
    ua_proxy: FaultProxy | None
    keys: int = 0

    async def door(self, closed: bool) -> None:
        sid = self.site.signals.get("guard.door_closed").id
        await self.bus.publish(Batch.of(sid, now_ns(), float(closed)))
        await wait_until(
            lambda: (got := self.control.table.get(sid)) is not None and got[0] == float(closed),
            what="the door value in the control table",
        )

    async def command(
        self,
        target: str,
        value: float | None = None,
        *,
        deadline_ms: float = 1000,
        key: str | None = None,
        args: tuple[float, ...] | None = None,
        issued_at_ms: float | None = None,
        who: Principal = OPERATOR,
    ) -> Command:
        self.keys += 1
        req = CommandRequest(
            target,
            key or f"k{self.keys}",
            deadline_ms,
            value=value,
            args=args,
            issued_at_ms=issued_at_ms,
        )
        return await self.control.submit(req, who)

    def setpoint(self) -> float:
        assert self.memory is not None
        return regs_float32(self.memory.holding[2], self.memory.holding[3])

    def modbus_writes(self) -> int:
        assert self.memory is not None
        return self.memory.functions().count(16)

    async def ua_value(self, name: str = "double") -> float:
        from asyncua import ua

        assert self.ua_server is not None
        dv = self.ua_server.read_attribute_value(ua.NodeId.from_string(f"ns=2;s=dev.{name}"))
        return float(dv.Value.Value)


@pytest.fixture
def protocols() -> tuple[str, ...]:
    return ("modbus",)


@pytest.fixture
def rig_options() -> dict[str, object]:
    return {}


@pytest.fixture
async def rig(
    tmp_path: Path, protocols: tuple[str, ...], rig_options: dict[str, object]
) -> AsyncIterator[Rig]:
    async with AsyncExitStack() as stack:
        memory = mb_proxy = ua_server = ua_proxy = None
        modbus_port = opcua_url = None
        if "modbus" in protocols:
            (port,) = free_ports(1)
            memory = Memory(holding={0: 0, 1: 0, 2: 0, 3: 0})
            await stack.enter_async_context(running_device(memory, port))
            mb_proxy = await stack.enter_async_context(FaultProxy(port, modbus_frame))
            modbus_port = mb_proxy.port
        if "opcua" in protocols:
            ua_server = await start_server()
            stack.push_async_callback(stop_server, ua_server)
            assert ua_server.bserver is not None
            ua_proxy = await stack.enter_async_context(
                FaultProxy(ua_server.bserver.port, opcua_frame)
            )
            opcua_url = f"opc.tcp://127.0.0.1:{ua_proxy.port}/test"
        text = control_site(modbus_port, opcua_url, **rig_options)  # type: ignore[arg-type]
        site = load_text(text, "control-test.toml")
        bus = await stack.enter_async_context(MemoryBus())
        adapters: dict[str, Adapter] = {}
        if modbus_port is not None:
            mb = await stack.enter_async_context(ModbusAdapter(site, bus))
            adapters["modbus"] = mb
        if opcua_url is not None:
            ua_ad = await stack.enter_async_context(OpcUaAdapter(site, bus))
            adapters["opcua"] = ua_ad
        for name, ad in adapters.items():
            await wait_until(lambda ad=ad: ad.stats()["connected"], 15, f"{name} connected")
        events = EventHub()
        alarms = await stack.enter_async_context(
            AlarmService(site, bus, data_dir=tmp_path, events=events)
        )
        control = await stack.enter_async_context(
            ControlService(site, bus, adapters, data_dir=tmp_path, alarms=alarms, events=events)
        )
        r = Rig(site, bus, control, alarms, events, memory, mb_proxy, ua_server, ua_proxy)
        await r.door(True)
        yield r
