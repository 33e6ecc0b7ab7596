"""The adapter against real pymodbus TCP servers on 127.0.0.1: polls, qualities, writes,
exception responses, timeouts, lost and refused connections."""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from factory5g.connect.base import Adapter, UnknownTargetError, WriteRejectedError
from factory5g.connect.modbus import (
    ModbusAdapter,
    ModbusConfigError,
    ModbusConnectionError,
    ModbusExceptionError,
    ModbusTimeoutError,
)
from factory5g.model import Site, load_text
from factory5g.store.memory import MemoryStore
from factory5g.stream import MemoryBus, MemorySubscription, Quality
from tests.connect.modbus.conftest import (
    Memory,
    batches_until,
    batches_while,
    device_toml,
    free_ports,
    running_device,
    sample,
    silent_server,
    site_text,
)
from tests.helpers import wait_until

GOOD, BAD = Quality.GOOD, Quality.BAD
NOT_CONNECTED, COMM_FAILURE = Quality.BAD_NOT_CONNECTED, Quality.BAD_COMM_FAILURE
FAST = "timeout_ms = 200\nretries = 1"


def mb(address: int, extra: str = "", device: str = "d") -> str:
    return f'binding = {{ kind = "modbus", device = "{device}", address = {address}{extra} }}'


@asynccontextmanager
async def adapter_on(
    site: Site, **kw: bool
) -> AsyncIterator[tuple[ModbusAdapter, MemorySubscription]]:
    bus = MemoryBus()
    sub = bus.subscribe("test", maxsize=10_000)
    try:
        async with ModbusAdapter(site, bus, **kw) as adapter:
            yield adapter, sub
    finally:
        bus.close()


def ids(site: Site, *names: str) -> list[int]:
    return [site.signals.get(f"eq.{n}").id for n in names]


# -- decoding every type ----------------------------------------------------------------------

# Registers typed in by hand (IEEE 754 and common practice), and what each binding must read.
TYPED = [
    ("f_abcd", ', type = "float32"', 0, [0x42F6, 0xE979], 123.456),
    ("f_cdab", ', type = "float32", word_order = "little"', 2, [0xE979, 0x42F6], 123.456),
    ("f_badc", ', type = "float32", byte_order = "little"', 4, [0xF642, 0x79E9], 123.456),
    (
        "f_dcba",
        ', type = "float32", word_order = "little", byte_order = "little"',
        6,
        [0x79E9, 0xF642],
        123.456,
    ),
    ("i16", ', type = "int16", scale = 0.1', 8, [0xFF85], -12.3),
    ("u16", "", 9, [0xFF85], 65413.0),
    ("i32", ', type = "int32"', 10, [0xFFFE, 0x1DC0], -123456.0),
    ("u32_cdab", ', type = "uint32", word_order = "little"', 12, [0x5678, 0x1234], 305419896.0),
    ("i64", ', type = "int64"', 14, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE], -2.0),
    ("f64", ', type = "float64"', 18, [0x4009, 0x21FB, 0x5444, 0x2D18], math.pi),
    ("temp", ", scale = 0.1, offset = -40.0", 22, [1000], 60.0),
    ("bit0", ', type = "bool", bit = 0', 23, [0x8005], 1.0),
    ("bit1", ', type = "bool", bit = 1', 23, [], 0.0),
    ("bit15", ', type = "uint16", bit = 15, scale = 10.0', 23, [], 10.0),
]


async def test_poll_decodes_every_type_layout_scale_and_bit(free_port: int) -> None:
    memory = Memory()
    signals: list[tuple[str, str]] = []
    for name, extra, address, registers, _ in TYPED:
        for k, r in enumerate(registers):
            memory.holding[address + k] = r
        signals.append((name, mb(address, extra)))
    memory.input[0] = 0x022B  # MODBUS Application Protocol v1.1b3 §6.4's example value, 555
    memory.coil.update({20: True, 21: False, 22: True})
    memory.discrete[3] = True
    signals += [
        ("inp", mb(0, ', table = "input"')),
        ("c20", mb(20, ', table = "coil", type = "bool"')),
        ("c21", mb(21, ', table = "coil", type = "bool"')),
        ("c22", mb(22, ', table = "coil", type = "bool"')),
        ("di3", mb(3, ', table = "discrete", type = "bool"')),
    ]
    site = load_text(site_text([device_toml("d", free_port, FAST)], signals))
    expected = {name: want for name, _, _, _, want in TYPED}
    expected |= {"inp": 555.0, "c20": 1.0, "c21": 0.0, "c22": 1.0, "di3": 1.0}
    store = MemoryStore()
    async with running_device(memory, free_port), adapter_on(site) as (adapter, sub):
        before = time.time_ns()
        batch, _ = await batches_until(sub, lambda b: len(b) == len(expected), what="all values")
        after = time.time_ns()
        await store.write(batch)
        assert bool((batch.quality == GOOD).all())
        assert bool(((batch.ts >= before) & (batch.ts <= after)).all())  # time of the response
        for name, want in expected.items():
            got = sample(batch, site.signals.get(f"eq.{name}").id)
            assert got is not None, name
            assert got[0] == pytest.approx(want, rel=1e-6), name
        # the coalesced plan: one request per table (gaps <= request_cost 16 bridged)
        assert sorted((fc, a, c) for fc, a, c in memory.requests[:4]) == [
            (1, 20, 3),
            (2, 3, 1),
            (3, 0, 24),
            (4, 0, 1),
        ]
        assert adapter.stats()["devices"][0]["groups"][0]["requests_per_cycle"] == 4
    latest = await store.latest(ids(site, "f_cdab", "i16"))
    assert latest.value.tolist() == pytest.approx([123.456, -12.3], rel=1e-6)


async def test_one_batch_per_group_and_cycle_on_schedule(free_port: int) -> None:
    memory = Memory(holding={0: 1, 1: 2, 2: 3, 10: 4})
    signals = [
        ("a", mb(0, ", poll_ms = 40")),
        ("b", mb(2, ", poll_ms = 40")),
        ("c", mb(10, ", poll_ms = 100")),
    ]
    # A generous timeout: this test is about grouping and the schedule, not about timeouts,
    # and a loaded CI machine can hold a response up for a few hundred ms.
    site = load_text(site_text([device_toml("d", free_port, "timeout_ms = 3000")], signals))
    a, b, c = ids(site, "a", "b", "c")
    async with running_device(memory, free_port), adapter_on(site) as (adapter, sub):
        started = time.monotonic()
        seen = await batches_while(
            sub, lambda: adapter.stats()["devices"][0]["groups"][0]["cycles"] >= 15, within=5
        )
        elapsed = time.monotonic() - started
        groups = {frozenset(batch.signal.tolist()) for batch in seen}
        assert groups == {frozenset({a, b}), frozenset({c})}  # never mixed, never split
        stats = adapter.stats()["devices"][0]
        fast, slow = stats["groups"]
        assert (fast["interval_ms"], fast["signals"], fast["requests_per_cycle"]) == (40.0, 2, 1)
        assert (slow["interval_ms"], slow["signals"], slow["requests_per_cycle"]) == (100.0, 1, 1)
        # drift-free: never faster than the schedule (how far behind a loaded machine lets it
        # fall is for bench/, not for a unit test)
        assert fast["cycles"] <= elapsed / 0.040 + 2
        assert fast["cycles"] >= 15
        assert 0 <= stats["requests"] - stats["responses"] <= 1  # one may be on its way
        assert stats["responses"] >= fast["cycles"]
        assert stats["connected"]
        assert stats["last_error"] is None
        assert time.time() - stats["last_ok"] < 1.0
        assert isinstance(adapter, Adapter)


# -- exception responses ----------------------------------------------------------------------


async def test_illegal_address_read_bad_quality_counter_log_and_polling_goes_on(
    free_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    memory = Memory(holding={0: 7})  # nothing at 40..41
    signals = [
        ("ok", mb(0, ", poll_ms = 30")),
        ("gone", mb(40, ', type = "float32", poll_ms = 40')),
    ]
    site = load_text(site_text([device_toml("d", free_port, FAST)], signals))
    ok, gone = ids(site, "ok", "gone")
    caplog.set_level(logging.DEBUG, logger="factory5g.connect.modbus")
    async with running_device(memory, free_port), adapter_on(site) as (adapter, sub):

        def slow_cycles() -> int:
            return int(adapter.stats()["devices"][0]["groups"][1]["cycles"])

        seen = await batches_while(sub, lambda: slow_cycles() >= 6, what="6 cycles")
        stats = adapter.stats()["devices"][0]
    bad = [sample(b, gone) for b in seen if sample(b, gone) is not None]
    assert len(bad) == 1, "bad quality is published once, not every cycle"
    value, quality = bad[0]  # type: ignore[misc]
    assert math.isnan(value)
    assert quality == BAD
    good = [sample(b, ok) for b in seen if sample(b, ok) is not None]
    assert len(good) >= 6
    assert all(q == GOOD and v == 7.0 for v, q in good)
    assert stats["exceptions"] >= 6  # counted every time
    assert "illegal data address" in (stats["last_error"] or "")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "illegal data address" in w]) == 1  # once per change
    line = next(w for w in warnings if "illegal data address" in w)
    for part in (
        f"d (127.0.0.1:{free_port} unit 1)",
        "read holding registers",
        "40..41",
        "exception 2",
    ):
        assert part in line
    repeats = [
        r for r in caplog.records if r.levelno == logging.DEBUG and "illegal" in r.getMessage()
    ]
    assert len(repeats) >= 4  # every failure is logged, repeats at DEBUG


async def test_wrong_unit_is_a_gateway_exception(free_port: int) -> None:
    memory = Memory(holding={0: 1}, unit=1)
    site = load_text(site_text([device_toml("d", free_port, FAST + "\nunit = 7")], [("x", mb(0))]))
    (x,) = ids(site, "x")
    async with running_device(memory, free_port), adapter_on(site) as (adapter, sub):
        batch, _ = await batches_until(sub, lambda b: sample(b, x) is not None)
        assert sample(batch, x)[1] == BAD  # type: ignore[index]
        assert (
            "gateway target device failed to respond" in adapter.stats()["devices"][0]["last_error"]
        )


# -- writes -----------------------------------------------------------------------------------

WRITABLE = [
    ("sp", mb(100, ', type = "float32", word_order = "little"')),
    ("level", mb(102, ', type = "int16", scale = 0.1')),
    ("flag", mb(103, ', type = "bool", bit = 3')),
    ("pump", mb(5, ', table = "coil", type = "bool"')),
    ("counter", mb(104, ', type = "uint32"')),
    ("locked", mb(110)),
    ("meas", mb(0, ', table = "input"')),
    ("alarm", mb(0, ', table = "discrete", type = "bool"')),
]


def writable_memory() -> Memory:
    return Memory(
        holding={100: 0, 101: 0, 102: 0, 103: 0x0100, 104: 0, 105: 0, 110: 5},
        coil={5: False},
        input={0: 1},
        discrete={0: False},
        readonly={110},
    )


async def test_writes_land_in_the_device(free_port: int) -> None:
    memory = writable_memory()
    site = load_text(site_text([device_toml("d", free_port, FAST)], WRITABLE))
    sp, level, flag, pump, counter = ids(site, "sp", "level", "flag", "pump", "counter")
    async with running_device(memory, free_port), adapter_on(site) as (adapter, _):
        await wait_until(lambda: adapter.stats()["connected"], 5, "connected")
        memory.requests.clear()

        result = await adapter.write(sp, 123.456)
        assert result.ok
        assert result.signal == sp
        assert result.status.startswith("ok")
        assert [memory.holding[100], memory.holding[101]] == [0xE979, 0x42F6]  # CDAB
        assert memory.requests[-1] == (16, 100, 2)

        await adapter.write(level, -12.3)
        assert memory.holding[102] == 0xFF85
        assert memory.requests[-1] == (6, 102, 1)

        await adapter.write(flag, True)  # read-modify-write keeps bit 8
        assert memory.holding[103] == 0x0108
        assert memory.requests[-2:] == [(3, 103, 1), (6, 103, 1)]
        await adapter.write(flag, 0)
        assert memory.holding[103] == 0x0100

        await adapter.write(pump, True)
        assert memory.coil[5] is True
        assert memory.requests[-1] == (5, 5, 1)

        await adapter.write(counter, 0x12345678)
        assert [memory.holding[104], memory.holding[105]] == [0x1234, 0x5678]


async def test_writes_the_type_cannot_hold_or_tables_that_are_read_only_are_refused(
    free_port: int,
) -> None:
    memory = writable_memory()
    site = load_text(site_text([device_toml("d", free_port, FAST)], WRITABLE))
    level, flag, meas, alarm, counter = ids(site, "level", "flag", "meas", "alarm", "counter")
    async with running_device(memory, free_port), adapter_on(site) as (adapter, _):
        await wait_until(lambda: adapter.stats()["connected"], 5, "connected")
        memory.requests.clear()
        with pytest.raises(WriteRejectedError, match=r"read-only: eq\.meas is input register 0"):
            await adapter.write(meas, 1)
        with pytest.raises(WriteRejectedError, match=r"read-only: eq\.alarm is discrete input 0"):
            await adapter.write(alarm, 1)
        with pytest.raises(WriteRejectedError, match=r"out of range: int16 holds -32768\.\.32767"):
            await adapter.write(level, 4000.0)  # raw 40000
        with pytest.raises(WriteRejectedError, match="not an integer"):
            await adapter.write(level, 1.234)
        with pytest.raises(WriteRejectedError, match="out of range: uint32"):
            await adapter.write(counter, -1)
        with pytest.raises(WriteRejectedError, match="a bit is 0 or 1"):
            await adapter.write(flag, 2)
        with pytest.raises(WriteRejectedError, match="a number is needed"):
            await adapter.write(level, "high")
        with pytest.raises(UnknownTargetError):
            await adapter.write(99_999, 1)
        assert not [r for r in memory.requests if r[0] in (5, 6, 15, 16)], "nothing was sent"
        assert memory.holding[102] == 0


async def test_write_the_device_refuses_raises_modbus_exception_error(free_port: int) -> None:
    memory = writable_memory()
    site = load_text(site_text([device_toml("d", free_port, FAST)], WRITABLE))
    (locked,) = ids(site, "locked")
    async with running_device(memory, free_port), adapter_on(site) as (adapter, _):
        await wait_until(lambda: adapter.stats()["connected"], 5, "connected")
        with pytest.raises(ModbusExceptionError) as info:
            await adapter.write(locked, 6)
        assert memory.holding[110] == 5
    e = info.value
    assert isinstance(e, WriteRejectedError)  # a refusal, like any other
    assert (e.code, e.name, e.function, e.address, e.signal) == (
        2,
        "illegal data address",
        6,
        110,
        locked,
    )
    assert str(e) == (
        f"modbus device d (127.0.0.1:{free_port} unit 1): write single register (fc 6) at "
        "address 110: exception 2 illegal data address"
    )
    assert adapter.stats()["devices"][0]["exceptions"] >= 1


# -- timeouts, lost and refused connections ---------------------------------------------------


async def test_silent_device_times_out_retries_counted_then_reconnects(free_port: int) -> None:
    # One poll cycle a minute: the counters below are exact.
    site = load_text(
        site_text(
            [device_toml("d", free_port, "timeout_ms = 100\nretries = 1")],
            [("x", mb(0, ", poll_ms = 60000"))],
        )
    )
    (x,) = ids(site, "x")
    async with silent_server(free_port) as connections, adapter_on(site) as (adapter, sub):
        first, _ = await batches_until(sub, lambda b: sample(b, x) is not None, within=3)
        value, quality = sample(first, x)  # type: ignore[misc]
        assert math.isnan(value)
        assert quality == COMM_FAILURE
        stats = adapter.stats()["devices"][0]
        assert (stats["requests"], stats["timeouts"], stats["retries"]) == (2, 2, 1)
        assert stats["responses"] == 0
        assert stats["connected"]
        assert "no answer within 100 ms, 2 tries" in stats["last_error"]
        with pytest.raises(
            ModbusTimeoutError,
            match=r"write single register \(fc 6\) at address 0: no answer within 100 ms, 2 tries",
        ):
            await adapter.write(x, 1)
        stats = adapter.stats()["devices"][0]
        assert (stats["requests"], stats["timeouts"], stats["retries"]) == (4, 4, 2)
        assert stats["reconnects"] == 0
        # the third request in a row without an answer: the connection is made anew
        with pytest.raises(ModbusTimeoutError):
            await adapter.write(x, 1)
        await wait_until(lambda: adapter.stats()["devices"][0]["reconnects"] == 1, 5, "reconnect")
        assert len(connections) == 2


async def test_silent_device_bad_quality_once_per_change_and_overruns(free_port: int) -> None:
    site = load_text(
        site_text(
            [device_toml("d", free_port, "timeout_ms = 60\nretries = 1")],
            [("x", mb(0, ", poll_ms = 50"))],
        )
    )
    (x,) = ids(site, "x")
    async with silent_server(free_port), adapter_on(site) as (adapter, sub):

        def cycles() -> int:
            return int(adapter.stats()["devices"][0]["groups"][0]["cycles"])

        seen = await batches_while(sub, lambda: cycles() >= 8, within=10)
        group = adapter.stats()["devices"][0]["groups"][0]
    assert group["overruns"] >= 4  # 2 tries x 60 ms > 50 ms
    assert group["last_cycle_ms"] >= 100
    qualities = [sample(b, x)[1] for b in seen if sample(b, x) is not None]  # type: ignore[index]
    assert qualities[0] == COMM_FAILURE
    assert GOOD not in qualities
    assert all(a != b for a, b in itertools.pairwise(qualities)), qualities
    assert len(qualities) < 8  # not one per cycle


async def test_server_restart_not_connected_then_good_again(free_port: int) -> None:
    memory = Memory(holding={0: 42})
    site = load_text(
        site_text([device_toml("d", free_port, FAST)], [("x", mb(0, ", poll_ms = 50"))])
    )
    (x,) = ids(site, "x")
    async with running_device(memory, free_port) as device, adapter_on(site) as (adapter, sub):
        await batches_until(sub, lambda b: sample(b, x) == (42.0, GOOD), what="42")
        await device.stop()
        # (a request in flight at the stop may time out first: BAD_COMM_FAILURE, then this)
        down, seen = await batches_until(
            sub,
            lambda b: (
                sample(b, x) == (math.nan, NOT_CONNECTED)
                or (sample(b, x) is not None and sample(b, x)[1] == NOT_CONNECTED)
            ),
        )  # type: ignore[index]
        assert math.isnan(sample(down, x)[0])  # type: ignore[index]
        assert len(seen) <= 2
        assert not adapter.stats()["connected"]
        with pytest.raises(ModbusConnectionError, match="not connected"):
            await adapter.write(x, 1)
        # while down: no more samples, however many cycles pass
        cycles = adapter.stats()["devices"][0]["groups"][0]["cycles"]
        await wait_until(
            lambda: adapter.stats()["devices"][0]["groups"][0]["cycles"] >= cycles + 5, 5, "cycles"
        )
        assert sub.get_nowait() is None
        memory.holding[0] = 43
        await device.start()
        started = time.monotonic()
        await batches_until(sub, lambda b: sample(b, x) == (43.0, GOOD), within=5, what="43")
        assert time.monotonic() - started < 3.0
        stats = adapter.stats()["devices"][0]
        assert stats["reconnects"] >= 1
        assert stats["connected"]


async def test_device_down_at_start_then_up(free_port: int) -> None:
    memory = Memory(holding={0: 1})
    site = load_text(
        site_text([device_toml("d", free_port, FAST)], [("x", mb(0, ", poll_ms = 50"))])
    )
    (x,) = ids(site, "x")
    async with adapter_on(site) as (adapter, sub):
        first, _ = await batches_until(sub, lambda b: sample(b, x) is not None)
        assert sample(first, x)[1] == NOT_CONNECTED  # type: ignore[index]
        assert "cannot connect to 127.0.0.1" in adapter.stats()["devices"][0]["last_error"]
        async with running_device(memory, free_port):
            await batches_until(sub, lambda b: sample(b, x) == (1.0, GOOD), within=5)
        assert adapter.stats()["devices"][0]["reconnects"] == 0  # the first connection


async def test_two_devices_one_down_the_other_polls(free_port: int) -> None:
    (other,) = free_ports(1)
    memory = Memory(holding={0: 9})
    devices = [device_toml("up", free_port, FAST), device_toml("down", other, FAST)]
    signals = [("a", mb(0, ", poll_ms = 40", "up")), ("b", mb(0, ", poll_ms = 40", "down"))]
    site = load_text(site_text(devices, signals))
    a, b = ids(site, "a", "b")
    async with running_device(memory, free_port), adapter_on(site) as (adapter, sub):
        seen = await batches_while(
            sub, lambda: adapter.stats()["devices"][0]["groups"][0]["cycles"] >= 5
        )
        stats = adapter.stats()
    assert not stats["connected"]
    assert [d["connected"] for d in stats["devices"]] == [True, False]
    assert len([s for s in seen if sample(s, a) == (9.0, GOOD)]) >= 4
    assert [sample(s, b)[1] for s in seen if sample(s, b) is not None] == [NOT_CONNECTED]  # type: ignore[index]


# -- configuration and introspection ----------------------------------------------------------


def test_bindings_a_request_cannot_hold_fail_at_construction(free_port: int) -> None:
    signals = [("big", mb(0, ', type = "int64"'))]
    site = load_text(site_text([device_toml("d", free_port, "max_registers = 3")], signals))
    with pytest.raises(
        ModbusConfigError, match=r"eq\.big \(int64 at holding 0\) spans 4 registers"
    ):
        ModbusAdapter(site, MemoryBus())


async def test_stats_shape(free_port: int) -> None:
    site = load_text(site_text([device_toml("d", free_port, FAST)], [("x", mb(0))]))
    async with adapter_on(site, coalesce=False) as (adapter, _):
        stats = adapter.stats()
        cycle_ms = adapter.cycle_ms()
    assert set(stats) == {"connected", "devices"}
    (device,) = stats["devices"]
    assert set(device) == {
        "id",
        "host",
        "port",
        "unit",
        "connected",
        "requests",
        "writes",
        "responses",
        "timeouts",
        "exceptions",
        "retries",
        "reconnects",
        "last_error",
        "last_ok",
        "groups",
    }
    assert (device["id"], device["host"], device["port"], device["unit"]) == (
        "d",
        "127.0.0.1",
        free_port,
        1,
    )
    assert set(device["groups"][0]) == {
        "interval_ms",
        "requests_per_cycle",
        "signals",
        "cycles",
        "overruns",
        "last_cycle_ms",
    }
    assert list(cycle_ms) == [("d", 1000.0)]
    assert adapter.name == "modbus"
