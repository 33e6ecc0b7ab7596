"""``write_many``: several signals in the fewest requests (functions 15 and 16), checked as a
whole before anything is sent; read back with a bare pymodbus client."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient

from factory5g.connect.base import UnknownTargetError, WriteRejectedError
from factory5g.connect.modbus import Format, ModbusAdapter, ModbusExceptionError, decode
from factory5g.model import Site, load_text
from factory5g.model.endpoints import modbus_devices
from factory5g.stream import MemoryBus
from tests.connect.modbus.conftest import HOST, Memory, device_toml, running_device, site_text
from tests.connect.opcua.conftest import LoopThread
from tests.helpers import wait_until

# Polled once at start, then not for a minute: the device sees only the writes under test.
QUIET = "timeout_ms = 500\nretries = 0"
WRITES = (5, 6, 15, 16)


def mb(address: int, extra: str = "") -> str:
    return (
        f'binding = {{ kind = "modbus", device = "d", address = {address}{extra}, '
        "poll_ms = 60000 }"
    )


def coil(address: int) -> str:
    return mb(address, ', table = "coil", type = "bool"')


def sid(site: Site, name: str) -> int:
    return site.signals.get(f"eq.{name}").id


@contextlib.asynccontextmanager
async def polled_once(
    memory: Memory, port: int, site: Site
) -> AsyncIterator[tuple[ModbusAdapter, AsyncModbusTcpClient]]:
    """The device, the adapter after its first poll cycle (requests cleared), a bare client."""
    async with (
        running_device(memory, port),
        MemoryBus() as bus,
        ModbusAdapter(site, bus) as adapter,
    ):
        await wait_until(
            lambda: all(g["cycles"] >= 1 for g in adapter.stats()["devices"][0]["groups"]),
            10,
            "the first poll cycle",
        )
        memory.requests.clear()
        bare = AsyncModbusTcpClient(HOST, port=port)
        await bare.connect()
        try:
            yield adapter, bare
        finally:
            bare.close()


def writes(memory: Memory) -> list[tuple[int, int, int]]:
    return [r for r in memory.requests if r[0] in WRITES]


def device_writes(adapter: ModbusAdapter) -> int:
    return int(adapter.stats()["devices"][0]["writes"])


# -- requests -----------------------------------------------------------------------------------

MIXED = [
    *[(f"c{a}", coil(a)) for a in range(10, 15)],  # 5 contiguous coils → fc 15
    ("c20", coil(20)),  # a lone coil → fc 5
    ("sp", mb(100, ', type = "float32", word_order = "little"')),  # 100..101
    ("level", mb(102, ', type = "int16", scale = 0.1')),  # 102
    ("count", mb(103, ', type = "uint32"')),  # 103..104
    ("temp", mb(105, ", scale = 0.1, offset = -40.0")),  # 105 → one fc 16, 100..105
    ("alone", mb(200)),  # a lone register → fc 6
    ("run", mb(300, ', type = "bool", bit = 0')),
    ("fwd", mb(300, ', type = "bool", bit = 3')),  # two bits of 300: one fc 3 + one fc 6
    ("meas", mb(0, ', table = "input"')),
    ("alarm", mb(0, ', table = "discrete", type = "bool"')),
]


def mixed_memory() -> Memory:
    return Memory(
        holding={a: 0 for a in range(100, 106)} | {110: 5, 200: 0, 300: 0x8010},
        coil={a: False for a in (*range(10, 15), 20)},
        input={0: 1},
        discrete={0: False},
        readonly={110},
    )


async def test_fc15_and_fc16_land_in_the_fewest_requests(free_port: int) -> None:
    memory = mixed_memory()
    site = load_text(site_text([device_toml("d", free_port, QUIET)], MIXED))
    values: dict[int, float | int | bool] = {
        sid(site, "c10"): True,
        sid(site, "c11"): False,
        sid(site, "c12"): 1,
        sid(site, "c13"): True,
        sid(site, "c14"): True,
        sid(site, "c20"): True,
        sid(site, "temp"): 60.0,
        sid(site, "sp"): 123.456,
        sid(site, "level"): -12.3,
        sid(site, "count"): 0x12345678,
        sid(site, "alone"): 42,
        sid(site, "run"): True,
        sid(site, "fwd"): True,
    }
    async with polled_once(memory, free_port, site) as (adapter, bare):
        results = await adapter.write_many(values)
        assert writes(memory) == [(15, 10, 5), (5, 20, 1), (16, 100, 6), (6, 200, 1), (6, 300, 1)]
        assert memory.requests[-2:] == [(3, 300, 1), (6, 300, 1)]  # read-modify-write
        assert len(memory.requests) == 6
        assert device_writes(adapter) == 5
        # What the device holds, read by a client of its own, against values typed in by hand.
        coils = await bare.read_coils(10, count=5)
        assert coils.bits[:5] == [True, False, True, True, True]
        assert (await bare.read_coils(20, count=1)).bits[0] is True
        regs = (await bare.read_holding_registers(100, count=6)).registers
        assert regs == [0xE979, 0x42F6, 0xFF85, 0x1234, 0x5678, 1000]  # CDAB float, ...
        assert (await bare.read_holding_registers(200, count=1)).registers == [42]
        # bits 0 and 3 set, bits 4 and 15 kept
        assert (await bare.read_holding_registers(300, count=1)).registers == [0x8019]
    assert [r.signal for r in results] == list(values)
    assert all(r.ok for r in results)
    by_signal = {r.signal: r.status for r in results}
    assert by_signal[sid(site, "sp")] == "ok: fc 16 wrote registers 100..105"
    assert by_signal[sid(site, "c12")] == "ok: fc 15 wrote coils 10..14"
    assert by_signal[sid(site, "c20")] == "ok: fc 5 wrote coil 20"
    assert by_signal[sid(site, "alone")] == "ok: fc 6 wrote register 200"
    assert by_signal[sid(site, "fwd")] == "ok: fc 3 + 6 wrote 2 bit(s) of register 300"


async def test_runs_are_cut_at_the_specification_limits_never_inside_a_value(
    free_port: int,
) -> None:
    # 1970 coils: 1968 in one fc 15 (§6.11), 2 in another. 62 float32 (124 registers): 61 in
    # one fc 16 (122 registers: a 62nd would make 124 > 123, §6.12), the last one alone.
    signals = [(f"c{a}", coil(a)) for a in range(1970)]
    signals += [(f"f{k}", mb(2 * k, ', type = "float32"')) for k in range(62)]
    memory = Memory(holding={a: 0 for a in range(124)}, coil={a: False for a in range(1970)})
    site = load_text(site_text([device_toml("d", free_port, QUIET)], signals))
    values: dict[int, float | int | bool] = {sid(site, f"c{a}"): a % 3 == 0 for a in range(1970)}
    values |= {sid(site, f"f{k}"): k + 0.5 for k in range(62)}
    async with polled_once(memory, free_port, site) as (adapter, bare):
        await adapter.write_many(values)
        assert writes(memory) == [(15, 0, 1968), (15, 1968, 2), (16, 0, 122), (16, 122, 2)]
        bits = (await bare.read_coils(0, count=1970)).bits[:1970]
        assert bits == [a % 3 == 0 for a in range(1970)]
        regs = (await bare.read_holding_registers(0, count=124)).registers
    fmt = Format(type="float32")
    assert [decode(regs[2 * k : 2 * k + 2], fmt) for k in range(62)] == [k + 0.5 for k in range(62)]


async def test_a_device_with_a_smaller_limit_gets_smaller_requests(free_port: int) -> None:
    signals = [(f"r{a}", mb(a)) for a in range(5)]
    memory = Memory(holding={a: 0 for a in range(5)})
    device = device_toml("d", free_port, QUIET + "\nmax_registers = 2")
    site = load_text(site_text([device], signals))
    async with polled_once(memory, free_port, site) as (adapter, _):
        await adapter.write_many({sid(site, f"r{a}"): a + 1 for a in range(5)})
    assert writes(memory) == [(16, 0, 2), (16, 2, 2), (6, 4, 1)]
    assert [memory.holding[a] for a in range(5)] == [1, 2, 3, 4, 5]


# -- rejected as a whole ------------------------------------------------------------------------

OVERLAPPING = [
    ("wide", mb(100, ', type = "uint32"')),  # 100..101
    ("low", mb(101)),  # the second register of wide
    ("b3", mb(300, ', type = "bool", bit = 3')),
    ("whole", mb(300)),
]


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        ({"meas": 1}, WriteRejectedError, r"read-only: eq\.meas is input register 0"),
        ({"alarm": True}, WriteRejectedError, r"read-only: eq\.alarm is discrete input 0"),
        ({"level": 4000.0}, WriteRejectedError, r"eq\.level: 4000\.0 .*int16 holds"),
        ({"count": -1}, WriteRejectedError, r"eq\.count: -1 .*out of range: uint32"),
        ({"fwd": 2}, WriteRejectedError, r"eq\.fwd: 2 .*a bit is 0 or 1"),
        ({"c20": "on"}, WriteRejectedError, r"eq\.c20: 'on' .*a number is needed"),
        ({"sp": math.inf}, WriteRejectedError, r"eq\.sp: inf .*not a finite number"),
        ({"?": 1}, UnknownTargetError, r"signal 99999 is not served"),
    ],
)
async def test_one_bad_value_rejects_all_before_anything_is_sent(
    free_port: int, bad: dict[str, object], error: type[Exception], match: str
) -> None:
    memory = mixed_memory()
    site = load_text(site_text([device_toml("d", free_port, QUIET)], MIXED))
    good: dict[int, float | int | bool] = {
        sid(site, "c10"): True,
        sid(site, "c11"): True,
        sid(site, "alone"): 7,
        sid(site, "run"): True,
    }
    ((name, value),) = bad.items()
    values = good | {99_999 if name == "?" else sid(site, name): value}
    before = (dict(memory.holding), dict(memory.coil))
    async with polled_once(memory, free_port, site) as (adapter, _):
        with pytest.raises(error, match=match):
            await adapter.write_many(values)  # type: ignore[arg-type]
        assert device_writes(adapter) == 0
    assert memory.requests == []  # not even the read of the read-modify-write
    assert (memory.holding, memory.coil) == before


@pytest.mark.parametrize(
    ("names", "match"),
    [
        (("wide", "low"), r"eq\.low and eq\.wide both write holding register 101"),
        (("b3", "whole"), r"eq\.whole and eq\.b3 both write holding register 300"),
        (("whole", "b3"), r"eq\.b3 and eq\.whole both write holding register 300"),
    ],
)
async def test_two_signals_writing_the_same_register_or_bit_are_rejected(
    free_port: int, names: tuple[str, str], match: str
) -> None:
    memory = Memory(holding={100: 0, 101: 0, 300: 0})
    site = load_text(site_text([device_toml("d", free_port, QUIET)], OVERLAPPING))
    async with polled_once(memory, free_port, site) as (adapter, _):
        with pytest.raises(WriteRejectedError, match=match) as info:
            await adapter.write_many({sid(site, n): 1 for n in names})
    assert info.value.signal == sid(site, names[1])
    assert memory.requests == []


async def test_a_refused_request_names_its_address_range_and_stops_the_rest(
    free_port: int,
) -> None:
    memory = mixed_memory()
    memory.holding |= {108: 0, 109: 0}
    signals = [*MIXED, ("a108", mb(108)), ("a109", mb(109)), ("locked", mb(110))]
    site = load_text(site_text([device_toml("d", free_port, QUIET)], signals))
    a108, a109, locked, alone = (sid(site, n) for n in ("a108", "a109", "locked", "alone"))
    async with polled_once(memory, free_port, site) as (adapter, _):
        with pytest.raises(ModbusExceptionError) as info:
            await adapter.write_many(
                {sid(site, "c20"): True, a108: 1, a109: 2, locked: 3, alone: 4}
            )
        assert device_writes(adapter) == 2
    e = info.value
    assert isinstance(e, WriteRejectedError)
    assert (e.function, e.address, e.count, e.code) == (16, 108, 3, 2)
    assert e.signal == "eq.a108, eq.a109, eq.locked"
    assert str(e) == (
        f"modbus device d ({HOST}:{free_port} unit 1): write multiple registers (fc 16) at "
        "addresses 108..110: exception 2 illegal data address"
    )
    # the coil before it landed, the register after it was not sent
    assert writes(memory) == [(5, 20, 1), (16, 108, 3)]
    assert memory.coil[20] is True
    assert (memory.holding[108], memory.holding[200]) == (0, 0)


async def test_nothing_to_write_sends_nothing(free_port: int) -> None:
    memory = mixed_memory()
    site = load_text(site_text([device_toml("d", free_port, QUIET)], MIXED))
    async with polled_once(memory, free_port, site) as (adapter, _):
        assert await adapter.write_many({}) == []
    assert memory.requests == []


# -- round trip ---------------------------------------------------------------------------------

BLOCK = [
    ("f32", mb(0, ', type = "float32"')),  # 0..1
    ("f32_cdab", mb(2, ', type = "float32", word_order = "little"')),  # 2..3
    ("i16", mb(4, ', type = "int16", scale = 0.1')),  # 4
    ("u32", mb(5, ', type = "uint32"')),  # 5..6
    ("i64_badc", mb(7, ', type = "int64", byte_order = "little"')),  # 7..10
    ("f64_dcba", mb(11, ', type = "float64", word_order = "little", byte_order = "little"')),
    ("temp", mb(15, ", scale = 0.1, offset = -40.0")),  # 15
    ("u16", mb(16)),  # 16
    *[(f"c{a}", coil(a)) for a in range(4)],
    ("b0", mb(20, ', type = "bool", bit = 0')),
    ("b9", mb(20, ', type = "bool", bit = 9, byte_order = "little"')),
]
SPAN = 17  # registers 0..16


def tenths(lo: int, hi: int, offset: float = 0.0) -> st.SearchStrategy[float]:
    return st.integers(lo, hi).map(lambda raw: raw * 0.1 + offset)


VALUES = st.fixed_dictionaries(
    {
        "f32": st.floats(width=32, allow_nan=False, allow_infinity=False),
        "f32_cdab": st.floats(width=32, allow_nan=False, allow_infinity=False),
        "i16": tenths(-(2**15), 2**15 - 1),
        "u32": st.integers(0, 2**32 - 1),
        "i64_badc": st.integers(-(2**63), 2**63 - 1),
        "f64_dcba": st.floats(allow_nan=False, allow_infinity=False),
        "temp": tenths(0, 2**16 - 1, -40.0),
        "u16": st.integers(0, 2**16 - 1),
        **{f"c{a}": st.booleans() for a in range(4)},
        "b0": st.booleans(),
        "b9": st.booleans(),
    }
)


async def read_back(bare: AsyncModbusTcpClient) -> tuple[list[int], list[bool], int]:
    """The block's registers, its coils, and the register of its bit fields."""
    regs = (await bare.read_holding_registers(0, count=SPAN)).registers
    bits = (await bare.read_coils(0, count=4)).bits[:4]
    word = (await bare.read_holding_registers(20, count=1)).registers[0]
    return list(regs), list(bits), int(word)


def test_a_block_of_mixed_types_reads_back_what_was_written(free_port: int) -> None:
    """Hypothesis over the values of a block of every type, layout, scale and bit: written
    with write_many, read back with a bare client (on a loop of their own: hypothesis calls the
    test synchronously)."""
    memory = Memory(
        holding={a: 0 for a in range(SPAN)} | {20: 0x4004},  # bits 2 and 14 are not ours
        coil={a: False for a in range(4)},
    )
    site = load_text(site_text([device_toml("d", free_port, QUIET)], BLOCK))
    bindings = {
        bound.path.removeprefix("eq."): bound.binding
        for served in modbus_devices(site).values()
        for bound in served.signals
    }
    with LoopThread("modbus-write-many") as lt:
        stack = contextlib.AsyncExitStack()
        adapter, bare = lt.run(stack.enter_async_context(polled_once(memory, free_port, site)))
        try:

            @settings(max_examples=60, deadline=None)
            @given(VALUES)
            def roundtrip(values: dict[str, float | int | bool]) -> None:
                memory.requests.clear()
                lt.run(adapter.write_many({sid(site, n): v for n, v in values.items()}))
                assert writes(memory) == [(15, 0, 4), (16, 0, SPAN), (6, 20, 1)]
                regs, bits, word = lt.run(read_back(bare))
                assert word & 0x4004 == 0x4004
                for name, b in bindings.items():
                    fmt, want = Format.of(b), values[name]
                    if fmt.in_bit_table:
                        got = decode([bits[int(name[1:])]], fmt)
                    elif fmt.bit is not None:
                        got = decode([word], fmt)
                    else:
                        got = decode(regs[b.address : b.address + fmt.registers], fmt)
                    assert got == pytest.approx(float(want), rel=1e-12, abs=1e-9), name

            roundtrip()
        finally:
            lt.run(stack.aclose())
