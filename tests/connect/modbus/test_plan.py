"""Poll plans: complete, within the device's limits, and as cheap as a brute force finds."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factory5g.connect.modbus import ModbusConfigError
from factory5g.connect.modbus.plan import (
    Item,
    Read,
    plan_cost,
    plan_device,
    plan_reads,
    plan_uncoalesced,
)
from factory5g.model import load_text
from factory5g.model.endpoints import modbus_devices
from tests.connect.modbus.conftest import device_toml, site_text

# -- examples ---------------------------------------------------------------------------------


def test_a_gap_is_bridged_only_when_cheaper_than_a_request() -> None:
    items = [Item("holding", 0, 1), Item("holding", 10, 1)]  # a gap of 9 registers
    assert len(plan_reads(items, request_cost=8)) == 2  # 9 > 8: two requests
    # 9 == 9: a tie (20 either way); the plan with fewer requests wins
    assert plan_reads(items, request_cost=9) == (Read("holding", 0, 11, (0, 1)),)
    assert plan_reads(items, request_cost=10) == (Read("holding", 0, 11, (0, 1)),)
    # request_cost = 0 never reads an unmapped register, but still joins touching values
    touching = [Item("holding", 0, 2), Item("holding", 2, 1), Item("holding", 5, 1)]
    assert plan_reads(touching, request_cost=0) == (
        Read("holding", 0, 3, (0, 1)),
        Read("holding", 5, 1, (2,)),
    )


def test_limits_and_values_never_split() -> None:
    run = [Item("input", a, 1) for a in range(200)]
    reads = plan_reads(run, max_registers=125)
    assert [(r.address, r.count) for r in reads] == [(0, 125), (125, 75)]
    doubles = [Item("holding", 0, 4), Item("holding", 4, 4)]
    assert [(r.address, r.count) for r in plan_reads(doubles, max_registers=6)] == [(0, 4), (4, 4)]
    with pytest.raises(ValueError, match="more than the 2 registers"):
        plan_reads([Item("holding", 0, 4)], max_registers=2)
    with pytest.raises(ValueError, match="outside the addresses"):
        plan_reads([Item("holding", 65534, 4)])


def test_bits_count_a_sixteenth_of_a_register() -> None:
    # request_cost 16 registers = 256 bits: a gap of 99 coils is bridged, one of 300 is not
    near = plan_reads([Item("coil", 0, 1), Item("coil", 100, 1)], request_cost=16)
    assert near == (Read("coil", 0, 101, (0, 1)),)
    far = plan_reads([Item("coil", 0, 1), Item("coil", 300, 1)], request_cost=16)
    assert len(far) == 2
    assert plan_cost(near, 16) == 16 + 101 / 16
    # bits of different tables, and registers, never share a request
    mixed = [Item("coil", 0, 1), Item("discrete", 0, 1), Item("holding", 0, 1)]
    assert [r.function for r in plan_reads(mixed)] == [1, 2, 3]


def test_uncoalesced_plan_is_one_request_per_value() -> None:
    items = [Item("holding", 4, 2), Item("holding", 0, 1), Item("coil", 3, 1)]
    reads = plan_uncoalesced(items)
    assert [(r.table, r.address, r.count, r.items) for r in reads] == [
        ("coil", 3, 1, (2,)),
        ("holding", 0, 1, (1,)),
        ("holding", 4, 2, (0,)),
    ]


SITE_SIGNALS = [
    ("a", 'binding = { kind = "modbus", device = "d", address = 0, type = "float32" }'),
    ("b", 'binding = { kind = "modbus", device = "d", address = 3, type = "uint16" }'),
    ("c", 'binding = { kind = "modbus", device = "d", address = 9, poll_ms = 100 }'),
    ("d", 'binding = { kind = "modbus", device = "d", address = 4, bit = 2, type = "bool" }'),
    ("e", 'binding = { kind = "modbus", device = "d", address = 4, bit = 3, type = "bool" }'),
]


def test_plan_device_groups_by_poll_interval() -> None:
    site = load_text(site_text([device_toml("d", 5020, "request_cost = 4")], SITE_SIGNALS))
    plan = plan_device(modbus_devices(site)["d"])
    assert [g.interval_ms for g in plan.groups] == [100.0, 1000.0]
    fast, slow = plan.groups
    assert [s.path for s in fast.signals] == ["eq.c"]
    assert [s.path for s in slow.signals] == ["eq.a", "eq.b", "eq.d", "eq.e"]
    # a (0..1), gap at 2, b (3), the register 4 with two bit fields: one request 0..4
    assert slow.reads == (Read("holding", 0, 5, (0, 1, 2, 3)),)
    assert plan.requests_per_second == 10 + 1
    per_signal = plan_device(modbus_devices(site)["d"], coalesce=False)
    assert [len(g.reads) for g in per_signal.groups] == [1, 4]


def test_plan_device_names_the_signal_too_long_for_a_request() -> None:
    signals = [("x", 'binding = { kind = "modbus", device = "d", address = 0, type = "float64" }')]
    site = load_text(site_text([device_toml("d", 5020, "max_registers = 2")], signals))
    with pytest.raises(ModbusConfigError, match=r"eq\.x \(float64 at holding 0\) spans 4") as e:
        plan_device(modbus_devices(site)["d"])
    assert "d (127.0.0.1:5020 unit 1)" in str(e.value)


# -- properties -------------------------------------------------------------------------------


@st.composite
def item_lists(draw: st.DrawFn, max_items: int = 7) -> list[Item]:
    """Values of all four tables. Register values do not overlap, except bit fields (several
    items on one register), as a site file allows."""
    items: list[Item] = []
    for table in ("holding", "input", "coil", "discrete"):
        address = draw(st.integers(0, 5))
        for _ in range(draw(st.integers(0, max_items // 2))):
            if table in ("coil", "discrete"):
                items.append(Item(table, address, 1))
                address += 1 + draw(st.integers(0, 40))
                continue
            count = draw(st.sampled_from([1, 1, 2, 4]))
            for _ in range(draw(st.integers(1, 2)) if count == 1 else 1):  # bit fields
                items.append(Item(table, address, count))
            address += count + draw(st.integers(0, 12))
    return draw(st.permutations(items))


limits = st.tuples(st.integers(4, 24), st.integers(1, 80), st.integers(0, 10))


def check_plan(
    items: Sequence[Item], reads: Sequence[Read], max_registers: int, max_bits: int
) -> None:
    covered = sorted(i for r in reads for i in r.items)
    assert covered == list(range(len(items))), "every value read by exactly one request"
    for r in reads:
        limit = max_bits if r.table in ("coil", "discrete") else max_registers
        assert 1 <= r.count <= limit
        mine = [items[i] for i in r.items]
        assert all(it.table == r.table for it in mine)
        assert all(r.address <= it.address and it.end <= r.end for it in mine)
        # nothing read before the first value or after the last one
        assert r.address == min(it.address for it in mine)
        assert r.end == max(it.end for it in mine)


@settings(max_examples=300)
@given(item_lists(), limits)
def test_plan_is_complete_and_within_limits(items: list[Item], lim: tuple[int, int, int]) -> None:
    max_registers, max_bits, request_cost = lim
    reads = plan_reads(
        items, max_registers=max_registers, max_bits=max_bits, request_cost=request_cost
    )
    check_plan(items, reads, max_registers, max_bits)
    if request_cost == 0:  # then no unmapped register or bit is ever read
        for r in reads:
            used = {a for i in r.items for a in range(items[i].address, items[i].end)}
            assert used == set(range(r.address, r.end))
    check_plan(items, plan_uncoalesced(items), max_registers, max_bits)


def set_partitions(xs: list[int]) -> Iterator[list[list[int]]]:
    """Every partition of ``xs`` into non-empty blocks."""
    if not xs:
        yield []
        return
    first, rest = xs[0], xs[1:]
    for part in set_partitions(rest):
        yield [[first], *part]
        for k in range(len(part)):
            yield [*part[:k], [first, *part[k]], *part[k + 1 :]]


def brute_force(
    items: Sequence[Item], max_registers: int, max_bits: int, request_cost: int
) -> tuple[float, int]:
    """The least (cost, requests) over every grouping of each table's values into requests,
    a request reading from its first value to its last: no assumption about which groupings
    are worth trying."""
    total, requests = 0, 0  # in sixteenths of a register: exact
    for table in ("holding", "input", "coil", "discrete"):
        mine = [i for i, it in enumerate(items) if it.table == table]
        if not mine:
            continue
        bits = table in ("coil", "discrete")
        limit = max_bits if bits else max_registers
        best: tuple[int, int] | None = None
        for part in set_partitions(mine):
            cost, feasible = 0, True
            for block in part:
                span = max(items[i].end for i in block) - min(items[i].address for i in block)
                if span > limit:
                    feasible = False
                    break
                cost += 16 * request_cost + (span if bits else 16 * span)
            if feasible and (best is None or (cost, len(part)) < best):
                best = (cost, len(part))
        assert best is not None
        total += best[0]
        requests += best[1]
    return total / 16, requests


@settings(max_examples=300, deadline=None)
@given(item_lists(max_items=6), limits)
def test_plan_is_minimal(items: list[Item], lim: tuple[int, int, int]) -> None:
    max_registers, max_bits, request_cost = lim
    reads = plan_reads(
        items, max_registers=max_registers, max_bits=max_bits, request_cost=request_cost
    )
    cost, requests = brute_force(items, max_registers, max_bits, request_cost)
    assert plan_cost(reads, request_cost) == pytest.approx(cost, abs=1e-9)
    assert len(reads) == requests
    assert plan_cost(reads, request_cost) <= plan_cost(plan_uncoalesced(items), request_cost)
