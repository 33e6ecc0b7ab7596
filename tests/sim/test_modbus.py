"""The demo's Modbus TCP devices (``ModbusPeers``), read and written by our adapter and by a
plain pymodbus client."""

from __future__ import annotations

import math
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import numpy as np
import pytest
from pymodbus.client import AsyncModbusTcpClient

from factory5g.connect.modbus import ModbusAdapter, ModbusExceptionError
from factory5g.model import Site, load_text
from factory5g.sim import Plant, Simulator
from factory5g.sim.modbus import DemoServer, ModbusPeers
from factory5g.stream import Batch, MemoryBus, MemorySubscription, Quality
from tests.connect.modbus.conftest import (
    HOST,
    batches_until,
    batches_while,
    device_toml,
    free_ports,
    sample,
    site_text,
)
from tests.helpers import wait_until

FAST = "timeout_ms = 300\nretries = 1"


def mb(address: int, extra: str = "", device: str = "plc") -> str:
    return f'binding = {{ kind = "modbus", device = "{device}", address = {address}{extra} }}'


def conveyor(output: str) -> str:
    return f'sim = {{ model = "conveyor", output = "{output}" }}'


SIGNALS = [
    ("speed", mb(0, ', type = "float32", word_order = "little"') + "\n" + conveyor("speed")),
    (
        "setpoint",
        "min = 0\nmax = 15\n"
        + mb(2, ', type = "int16", scale = 0.01')
        + "\n"
        + conveyor("speed_setpoint"),
    ),
    ("running_bit", mb(4, ', type = "bool", bit = 5') + "\n" + conveyor("running")),
    ("setpoint_bit", mb(4, ', type = "bool", bit = 6') + "\n" + conveyor("speed_setpoint")),
    ("current", mb(10, ', table = "input", scale = 0.1') + "\n" + conveyor("motor_current")),
    (
        "load",
        mb(11, ', table = "input", type = "int32", word_order = "little", scale = 0.001')
        + "\n"
        + conveyor("load"),
    ),
    ("running", mb(3, ', table = "discrete", type = "bool"') + "\n" + conveyor("running")),
    ("setpoint_coil", mb(0, ', table = "coil", type = "bool"') + "\n" + conveyor("speed_setpoint")),
]


def plc_site(port: int, extra: str = "request_cost = 0") -> Site:
    return load_text(site_text([device_toml("plc", port, f"{FAST}\n{extra}")], SIGNALS))


def sid(site: Site, name: str) -> int:
    return site.signals.get(f"eq.{name}").id


@asynccontextmanager
async def adapter_on(site: Site) -> AsyncIterator[tuple[ModbusAdapter, MemorySubscription]]:
    bus = MemoryBus()
    sub = bus.subscribe("test", maxsize=10_000)
    try:
        async with ModbusAdapter(site, bus) as adapter:
            yield adapter, sub
    finally:
        bus.close()


def port_is_free(port: int) -> bool:
    """Nothing listens on ``port``: a new server could listen there. SO_REUSEADDR, as every
    server sets it: closed connections may leave TIME_WAIT entries, which are not sockets of
    ours, but a socket still listening makes the bind fail even so."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
            s.listen()
        except OSError:
            return False
        return True


async def test_ticks_show_in_registers_and_reach_the_adapter(free_port: int) -> None:
    site = plc_site(free_port)
    plant = Plant(site)
    chosen = {
        "speed": 3.25,
        "setpoint": 5.5,
        "running_bit": 1.0,
        "setpoint_bit": 0.0,
        "current": 123.4,
        "load": -12.345,
        "running": 1.0,
        "setpoint_coil": 1.0,
    }
    ids = [sid(site, n) for n in chosen]
    async with ModbusPeers(site, plant) as peers:
        assert [(s.host, s.port, list(s.units)) for s in peers.servers] == [(HOST, free_port, [1])]
        await peers.update(Batch.of(ids, 1, list(chosen.values())), 1)
        # the registers, read by a plain client: 3.25 is 0x40500000, word-swapped here (CDAB)
        client = AsyncModbusTcpClient(HOST, port=free_port, reconnect_delay=0, timeout=2)
        await client.connect()
        try:
            regs = await client.read_holding_registers(0, count=3, device_id=1)
            bits = await client.read_holding_registers(4, count=1, device_id=1)
            gap = await client.read_holding_registers(0, count=5, device_id=1)  # 3 is unmapped
            inputs = await client.read_input_registers(10, count=3, device_id=1)
        finally:
            client.close()
        assert regs.registers == [0x0000, 0x4050, 550]
        assert bits.registers == [1 << 5]
        assert gap.exception_code == 2
        # -12.345 / 0.001 = -12345 = 0xFFFFCFC7, word-swapped
        assert inputs.registers == [1234, 0xCFC7, 0xFFFF]
        async with adapter_on(site) as (_, sub):
            got: dict[str, float] = {}

            def all_good(b: Batch) -> bool:
                for name, i in zip(chosen, ids, strict=True):
                    s = sample(b, i)
                    if s is not None and s[1] == Quality.GOOD:
                        got[name] = s[0]
                return len(got) == len(chosen)

            await batches_until(sub, all_good, what="every value")
    assert got == pytest.approx(chosen)


async def test_writes_go_to_the_plant_and_refusals_are_modbus_exceptions(free_port: int) -> None:
    site = plc_site(free_port)
    plant = Plant(site)
    setpoint, speed = sid(site, "setpoint"), sid(site, "speed")
    async with ModbusPeers(site, plant) as peers, adapter_on(site) as (adapter, _):
        await wait_until(lambda: adapter.stats()["connected"], 5, "connected")
        unit = peers.unit("plc")

        await adapter.write(setpoint, 3.5)
        assert plant.values()[setpoint] == 3.5
        await adapter.write(sid(site, "setpoint_coil"), True)  # function 5
        assert plant.values()[setpoint] == 1.0
        await adapter.write(sid(site, "setpoint_bit"), 0)  # functions 3 and 6, bit 5 kept
        assert plant.values()[setpoint] == 0.0
        assert unit.writes == 3

        with pytest.raises(ModbusExceptionError) as out_of_range:
            await adapter.write(setpoint, 15.5)  # the signal's max is 15
        assert (out_of_range.value.code, out_of_range.value.name) == (3, "illegal data value")
        with pytest.raises(ModbusExceptionError) as measurement:
            await adapter.write(speed, 1.0)  # a measurement in a holding register
        assert measurement.value.code == 2
        assert "write multiple registers (fc 16) at addresses 0..1" in str(measurement.value)
        assert plant.values()[setpoint] == 0.0
        assert unit.refused == 2
        # register 4 holds the running status (bit 5, read-only) next to the set point bit 6:
        # a write may set bit 6 but must leave bit 5 as it is
        client = AsyncModbusTcpClient(HOST, port=free_port, reconnect_delay=0, timeout=2)
        await client.connect()
        try:
            status = (await client.read_holding_registers(4, count=1, device_id=1)).registers[0]
            flipped = await client.write_register(4, status ^ (1 << 5), device_id=1)
            kept = await client.write_register(4, status | (1 << 6), device_id=1)
        finally:
            client.close()
        assert flipped.exception_code == 2
        assert not kept.isError()
        assert plant.values()[setpoint] == 1.0


async def test_unmapped_addresses_make_bridging_fail_and_request_cost_0_work() -> None:
    strict, bridging = free_ports(2)
    signals = [
        ("speed", mb(0, "", "strict") + "\n" + conveyor("speed")),
        ("current", mb(5, "", "strict") + "\n" + conveyor("motor_current")),
        ("speed2", mb(0, "", "bridging") + "\n" + conveyor("speed")),
        ("current2", mb(5, "", "bridging") + "\n" + conveyor("motor_current")),
    ]
    devices = [
        device_toml("strict", strict, f"{FAST}\nrequest_cost = 0"),
        device_toml("bridging", bridging, f"{FAST}\nrequest_cost = 16"),
    ]
    site = load_text(site_text(devices, signals))
    plant = Plant(site)
    good, bad = (
        [sid(site, "speed"), sid(site, "current")],
        [sid(site, "speed2"), sid(site, "current2")],
    )
    async with ModbusPeers(site, plant) as peers, adapter_on(site) as (adapter, sub):
        seen = await batches_while(
            sub, lambda: all(g["groups"][0]["cycles"] >= 2 for g in adapter.stats()["devices"])
        )
        stats = {d["id"]: d for d in adapter.stats()["devices"]}
        assert peers.unit("bridging").refused >= 2
    assert [g["requests_per_cycle"] for g in stats["strict"]["groups"]] == [2]
    assert [g["requests_per_cycle"] for g in stats["bridging"]["groups"]] == [1]
    assert stats["bridging"]["exceptions"] >= 2
    assert stats["strict"]["exceptions"] == 0
    for i in good:
        assert {sample(b, i)[1] for b in seen if sample(b, i)} == {Quality.GOOD}  # type: ignore[index]
    for i in bad:
        assert [sample(b, i)[1] for b in seen if sample(b, i)] == [Quality.BAD]  # type: ignore[index]


async def test_units_behind_one_port_and_unknown_units() -> None:
    shared, alone = free_ports(2)
    devices = [
        device_toml("u1", shared, FAST),
        device_toml("u2", shared, FAST + "\nunit = 2"),
        device_toml("single", alone, FAST + "\nunit = 7"),
    ]
    signals = [
        ("a", mb(0, "", "u1") + "\n" + conveyor("speed_setpoint")),
        ("b", mb(0, ', type = "float32"', "u2") + "\n" + conveyor("speed")),
        ("c", mb(0, "", "single") + "\n" + conveyor("speed_setpoint")),
    ]
    site = load_text(site_text(devices, signals))
    plant = Plant(site)
    async with ModbusPeers(site, plant) as peers:
        assert sorted((s.port, sorted(s.units)) for s in peers.servers) == sorted(
            [(shared, [1, 2]), (alone, [7])]
        )
        client = AsyncModbusTcpClient(HOST, port=shared, reconnect_delay=0, timeout=2)
        single = AsyncModbusTcpClient(HOST, port=alone, reconnect_delay=0, timeout=2)
        await client.connect()
        await single.connect()
        try:
            assert not (await client.read_holding_registers(0, count=1, device_id=1)).isError()
            assert not (await client.read_holding_registers(0, count=2, device_id=2)).isError()
            unknown = await client.read_holding_registers(0, count=1, device_id=9)
            anyone = await client.read_holding_registers(0, count=1, device_id=255)
            direct = await single.read_holding_registers(0, count=1, device_id=255)
        finally:
            client.close()
            single.close()
    assert unknown.exception_code == 11  # gateway target device failed to respond
    assert anyone.exception_code == 11  # two units here: 255 names none of them
    assert not direct.isError()  # the only unit of its server


async def test_a_failed_start_undoes_itself() -> None:
    first, taken = free_ports(2)
    devices = [device_toml("a", first, FAST), device_toml("b", taken, FAST)]
    signals = [
        ("x", mb(0, "", "a") + "\n" + conveyor("speed")),
        ("y", mb(0, "", "b") + "\n" + conveyor("speed")),
    ]
    site = load_text(site_text(devices, signals))
    with socket.socket() as squatter:
        squatter.bind((HOST, taken))
        squatter.listen()
        with pytest.raises(OSError, match=rf"b \(127.0.0.1:{taken} unit 1\) cannot listen on"):
            async with ModbusPeers(site, Plant(site)):
                pass
    assert port_is_free(first)  # the server that had started is stopped again


async def test_stop_and_start_again_on_the_same_port(free_port: int) -> None:
    site = plc_site(free_port)
    peers = ModbusPeers(site, Plant(site))
    async with peers:
        server = peers.servers[0]
        assert server.running
        await server.stop()
        assert port_is_free(free_port)
        await server.start()
        assert server.running
    assert not server.running
    assert port_is_free(free_port)


async def test_port_0_binds_a_free_port_and_reports_it(free_port: int) -> None:
    site = plc_site(free_port)
    unit = ModbusPeers(site, Plant(site)).unit("plc")
    async with DemoServer(HOST, 0, {1: unit}) as server:
        assert server.port not in (0, free_port)
        client = AsyncModbusTcpClient(HOST, port=server.port, reconnect_delay=0, timeout=2)
        await client.connect()
        try:
            answer = await client.read_holding_registers(2, count=1, device_id=1)
        finally:
            client.close()
        assert answer.registers == [round(Plant(site).values()[sid(site, "setpoint")] / 0.01)]
    assert port_is_free(server.port)


async def test_simulator_drives_the_devices_and_writes_close_the_loop(free_port: int) -> None:
    site = plc_site(free_port)
    plant = Plant(site)
    bus = MemoryBus()
    sub = bus.subscribe("test", maxsize=10_000)
    setpoint = sid(site, "setpoint")
    try:
        async with (
            ModbusPeers(site, plant) as peers,
            Simulator(site, bus, rate_hz=20, plant=plant, peers=[peers]),
            ModbusAdapter(site, bus) as adapter,
        ):
            initial = plant.values()[setpoint]

            def reads(value: float) -> Callable[[Batch], bool]:
                def check(b: Batch) -> bool:
                    s = sample(b, setpoint)
                    return s is not None and s[1] == Quality.GOOD and abs(s[0] - value) < 0.006

                return check

            await batches_until(sub, reads(initial), what=f"the initial set point {initial}")
            await adapter.write(setpoint, 2.25)
            batch, _ = await batches_until(sub, reads(2.25), what="the new set point")
            current = sample(batch, sid(site, "current"))
            assert current is not None
            assert math.isfinite(current[0])
    finally:
        bus.close()
    assert np.isclose(plant.values()[setpoint], 2.25)
