"""Poll plans: the read requests that fetch a device's bound values, per poll group.

Signals of one device with the same ``poll_ms`` form a poll group, polled together. Per group and
table, neighbouring values are coalesced into as few requests as the cost model allows::

    cost = requests × request_cost + registers read

``request_cost`` (per device, in registers) is what one more request costs next to reading more
registers: its round trip over the 5G link, its header, the device's per-request work. A gap of
unmapped registers between two values is therefore read (bridged) exactly when reading it is
cheaper than a request of its own; ``request_cost = 0`` never reads an unmapped register. For
coils and discrete inputs the same model counts bits, a register being 16 of them.

Every request stays within the device's limits (``max_registers``, at most 125, the MODBUS
Application Protocol v1.1b3 §6.3 limit; ``max_bits``, at most 2000, §6.1) and a multi-register
value is never split between two requests. Values that overlap (bit fields of one register, or
two types over the same registers) are read by the same request.

The plan is exact: a dynamic program over the sorted values, each request a run of consecutive
values (a request covering two values reads everything between them, so no other split can be
cheaper). Ties go to the plan with fewer requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from factory5g.connect.modbus.errors import ModbusConfigError
from factory5g.model.endpoints import Bound, Served
from factory5g.model.site import ModbusBinding, ModbusDevice, ModbusTable

__all__ = [
    "BITS_PER_REGISTER",
    "TABLES",
    "DevicePlan",
    "Item",
    "PollGroup",
    "Read",
    "item_of",
    "plan_cost",
    "plan_device",
    "plan_reads",
    "plan_uncoalesced",
]

TABLES: Final[tuple[ModbusTable, ...]] = ("coil", "discrete", "holding", "input")
READ_FUNCTION: Final[dict[str, int]] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
BITS_PER_REGISTER: Final = 16
_ADDRESSES: Final = 65_536


@dataclass(frozen=True, slots=True)
class Item:
    """One value to read: its table, first address and size (registers; 1 for a bit)."""

    table: ModbusTable
    address: int
    count: int

    @property
    def end(self) -> int:
        return self.address + self.count


@dataclass(frozen=True, slots=True)
class Read:
    """One read request: ``count`` registers (or bits) of ``table`` from ``address``.

    ``items`` are the indexes, into the planned items, of the values this request decodes —
    every one lies entirely inside the request.
    """

    table: ModbusTable
    address: int
    count: int
    items: tuple[int, ...]

    @property
    def end(self) -> int:
        return self.address + self.count

    @property
    def function(self) -> int:
        """The Modbus function code: 1 coils, 2 discrete inputs, 3 holding, 4 input registers."""
        return READ_FUNCTION[self.table]

    @property
    def bits(self) -> bool:
        return self.table in ("coil", "discrete")


def item_of(b: ModbusBinding) -> Item:
    """What the planner needs of a binding (a bit field takes its whole register)."""
    return Item(b.table, b.address, 1 if b.bit is not None else b.registers)


def plan_reads(
    items: Sequence[Item],
    *,
    max_registers: int = 125,
    max_bits: int = 2000,
    request_cost: int = 16,
) -> tuple[Read, ...]:
    """The cheapest requests that read every item (see the module's cost model).

    Raises ValueError if an item (or a chain of overlapping items) is longer than one request
    may be, or runs past address 65535.
    """
    if max_registers < 1 or max_bits < 1 or request_cost < 0:
        raise ValueError("max_registers and max_bits must be >= 1, request_cost >= 0")
    _check_addresses(items)
    reads: list[Read] = []
    for table in TABLES:
        bits = table in ("coil", "discrete")
        limit = max_bits if bits else max_registers
        per_request = request_cost * (BITS_PER_REGISTER if bits else 1)
        atoms = _atoms(items, table)
        for start, end, _ in atoms:
            if end - start > limit:
                what = "bits" if bits else "registers"
                raise ValueError(
                    f"{table} {start}..{end - 1} is one value (or overlapping values) of "
                    f"{end - start} {what}: more than the {limit} {what} one request may read"
                )
        reads += _cheapest(table, atoms, limit, per_request)
    return tuple(reads)


def plan_uncoalesced(
    items: Sequence[Item], *, max_registers: int = 125, max_bits: int = 2000
) -> tuple[Read, ...]:
    """One request per item, nothing coalesced: what a naive poller does (for comparison)."""
    _check_addresses(items)
    for it in items:
        limit = max_bits if it.table in ("coil", "discrete") else max_registers
        if it.count > limit:
            raise ValueError(
                f"{it.table} {it.address} spans {it.count}: more than the {limit} one request "
                "may read"
            )
    order = sorted(
        range(len(items)), key=lambda i: (TABLES.index(items[i].table), items[i].address)
    )
    return tuple(Read(items[i].table, items[i].address, items[i].count, (i,)) for i in order)


def plan_cost(reads: Sequence[Read], request_cost: int) -> float:
    """The cost of a plan, in registers: requests × request_cost + registers read (a coil or
    discrete input counts 1/16)."""
    bits = 0  # everything in bits: exact integer arithmetic, one division at the end
    for r in reads:
        bits += request_cost * BITS_PER_REGISTER + r.count * (1 if r.bits else BITS_PER_REGISTER)
    return bits / BITS_PER_REGISTER


def _check_addresses(items: Sequence[Item]) -> None:
    for it in items:
        if it.count < 1 or it.address < 0 or it.end > _ADDRESSES:
            raise ValueError(
                f"{it.table} {it.address} (+{it.count}) is outside the addresses 0..65535"
            )


def _atoms(items: Sequence[Item], table: ModbusTable) -> list[tuple[int, int, list[int]]]:
    """The items of ``table`` as sorted, disjoint intervals: overlapping items merged into one
    (they must be read by one request), each with its members in address order."""
    mine = sorted(
        (i for i, it in enumerate(items) if it.table == table), key=lambda i: items[i].address
    )
    atoms: list[tuple[int, int, list[int]]] = []
    for i in mine:
        it = items[i]
        if atoms and it.address < atoms[-1][1]:  # overlaps the previous atom
            start, end, members = atoms[-1]
            atoms[-1] = (start, max(end, it.end), [*members, i])
        else:
            atoms.append((it.address, it.end, [i]))
    return atoms


def _cheapest(
    table: ModbusTable, atoms: list[tuple[int, int, list[int]]], limit: int, per_request: int
) -> list[Read]:
    """Split the sorted atoms into runs, one request each, at the least (cost, requests)."""
    n = len(atoms)
    best: list[tuple[int, int]] = [(0, 0)] + [(0, 0)] * n  # best[i]: the first i atoms
    first: list[int] = [0] * (n + 1)  # the run ending at atom i starts at atom first[i]
    for i in range(1, n + 1):
        end = atoms[i - 1][1]
        found: tuple[int, int] | None = None
        for j in range(i, 0, -1):  # the last run: atoms j..i (1-based)
            span = end - atoms[j - 1][0]
            if span > limit:
                break
            cost, requests = best[j - 1]
            candidate = (cost + per_request + span, requests + 1)
            if found is None or candidate < found:
                found, first[i] = candidate, j
        assert found is not None  # one atom alone always fits (checked by the caller)
        best[i] = found
    reads: list[Read] = []
    i = n
    while i > 0:
        j = first[i]
        start, end = atoms[j - 1][0], atoms[i - 1][1]
        members = tuple(m for a in atoms[j - 1 : i] for m in a[2])
        reads.append(Read(table, start, end - start, members))
        i = j - 1
    reads.reverse()
    return reads


# -- per device -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PollGroup:
    """The signals of one device polled at one interval, and the requests that read them.

    ``Read.items`` index ``signals``.
    """

    interval_ms: float
    signals: tuple[Bound[ModbusBinding], ...]
    reads: tuple[Read, ...]


@dataclass(frozen=True, slots=True)
class DevicePlan:
    device: ModbusDevice
    groups: tuple[PollGroup, ...]

    @property
    def requests_per_second(self) -> float:
        return sum(len(g.reads) * 1000.0 / g.interval_ms for g in self.groups)


def plan_device(
    served: Served[ModbusDevice, ModbusBinding], *, coalesce: bool = True
) -> DevicePlan:
    """The poll plan of one device: a group per ``poll_ms``, fastest first.

    ``coalesce=False`` gives one request per signal. Raises :class:`ModbusConfigError` naming
    the signals a request cannot hold.
    """
    device = served.settings
    by_interval: dict[float, list[Bound[ModbusBinding]]] = {}
    for bound in served.signals:
        by_interval.setdefault(bound.binding.poll_ms, []).append(bound)
    groups: list[PollGroup] = []
    for interval in sorted(by_interval):
        signals = tuple(by_interval[interval])
        items = [item_of(s.binding) for s in signals]
        for s, it in zip(signals, items, strict=True):
            limit = device.max_bits if it.table in ("coil", "discrete") else device.max_registers
            if it.count > limit:
                raise ModbusConfigError(
                    device,
                    f"{s.path} ({s.binding.type} at {it.table} {it.address}) spans {it.count} "
                    f"registers, but the device allows {limit} per request (max_registers)",
                )
        try:
            if coalesce:
                reads = plan_reads(
                    items,
                    max_registers=device.max_registers,
                    max_bits=device.max_bits,
                    request_cost=device.request_cost,
                )
            else:
                reads = plan_uncoalesced(
                    items, max_registers=device.max_registers, max_bits=device.max_bits
                )
        except ValueError as exc:
            raise ModbusConfigError(device, f"poll group {interval:g} ms: {exc}") from exc
        groups.append(PollGroup(interval, signals, reads))
    return DevicePlan(device, tuple(groups))
