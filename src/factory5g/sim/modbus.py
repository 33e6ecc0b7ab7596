"""The demo plant's Modbus TCP devices: pymodbus servers showing the simulator's values.

Every Modbus device of the site (a ``[[modbus]]`` entry or an inline ``host``/``port``/``unit``)
with signals that have a ``sim`` source becomes a unit of a pymodbus TCP server listening on the
device's host and port (devices sharing a host:port are units behind one server, as behind a
gateway). Each simulator tick (:meth:`ModbusPeers.update`) encodes the plant's values into the
registers and coils the bindings name — inverse scale and offset, the binding's type, word and
byte order, bit — rounding and saturating like a device's firmware.

What a client sees, like on a strict real device:

* reads of an address no simulated signal is bound to → exception 2 (illegal data address), so
  a poll plan that bridges gaps (``request_cost > 0``) and one that does not behave differently;
* writes (functions 5, 6, 15, 16) to the registers or coil of a simulated **set point** (a
  writable model output, e.g. ``conveyor.speed_setpoint``) → ``plant.write(signal, value)``
  with the engineering value; a value the plant refuses (out of the signal's min/max, ...) →
  exception 3 (illegal data value);
* writes to anything else (a measurement, an unmapped address; a bit field register whose
  other, read-only bits would change) → exception 2;
* a unit id no device has → exception 11 (gateway target device failed to respond); unit 0
  and 255 reach the only unit of a server that has one (MODBUS Messaging on TCP/IP
  Implementation Guide v1.0b §4.4.2: the unit id is "not used" when addressing a TCP device
  directly).

Signals of a simulated device that have no ``sim`` source are not served (exception 2): the
demo has no value for them.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self

import numpy as np
from numpy.typing import NDArray
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from factory5g.connect.modbus.codec import BlockCodec, Format, decode
from factory5g.connect.modbus.errors import describe
from factory5g.model import Site
from factory5g.model.endpoints import Bound, modbus_devices
from factory5g.model.site import ModbusBinding, ModbusDevice, ModbusTable
from factory5g.sim.errors import SimWriteError
from factory5g.sim.plant import Plant
from factory5g.stream import Batch

__all__ = ["DemoServer", "ModbusPeers", "UnitImage"]

log = logging.getLogger(__name__)

# Function code → table (MODBUS Application Protocol v1.1b3 §6). Reads that follow a write
# (the echo of functions 5 and 6) come with the write's function code.
_TABLE_OF: Final[dict[int, ModbusTable]] = {
    1: "coil",
    5: "coil",
    15: "coil",
    2: "discrete",
    3: "holding",
    6: "holding",
    16: "holding",
    22: "holding",
    23: "holding",
    4: "input",
}
_BIT_TABLES: Final = ("coil", "discrete")


@dataclass(frozen=True, slots=True)
class _Value:
    """One simulated signal in a unit's tables."""

    bound: Bound[ModbusBinding]
    fmt: Format
    setpoint: bool  # writable through Modbus: a writable table and a writable plant output

    @property
    def address(self) -> int:
        return self.bound.binding.address

    @property
    def end(self) -> int:
        return self.address + self.fmt.registers


class _Table:
    """One table of a unit: its values, which addresses exist, which a client may write."""

    def __init__(self, table: ModbusTable, values: Sequence[_Value]) -> None:
        self.table = table
        self.values = sorted(values, key=lambda v: v.address)
        size = max((v.end for v in self.values), default=0)
        bits = table in _BIT_TABLES
        self.image: NDArray[np.generic] = np.zeros(size, dtype=np.bool_ if bits else np.uint16)
        self.valid = np.zeros(size, dtype=np.bool_)
        self.writable = np.zeros(size, dtype=np.bool_)
        for v in self.values:
            self.valid[v.address : v.end] = True
            if v.setpoint:
                self.writable[v.address : v.end] = True
        self.ids = np.array([v.bound.id for v in self.values], dtype=np.int64)
        self.codec = BlockCodec([v.fmt for v in self.values], [v.address for v in self.values])

    def covered(self, address: int, count: int) -> bool:
        end = address + count
        return count > 0 and end <= len(self.valid) and bool(self.valid[address:end].all())

    def overlapping(self, address: int, count: int) -> list[_Value]:
        return [v for v in self.values if v.address < address + count and address < v.end]


class UnitImage:
    """What one Modbus unit shows: its four tables, filled from the plant, written to it."""

    def __init__(self, device: ModbusDevice, values: Sequence[_Value], plant: Plant) -> None:
        self.device = device
        self.plant = plant
        self.tables: dict[ModbusTable, _Table] = {
            t: _Table(t, [v for v in values if v.bound.binding.table == t])
            for t in ("holding", "input", "coil", "discrete")
        }
        self.signals = tuple(v.bound for v in values)
        self.reads = 0
        self.writes = 0
        self.refused = 0  # requests answered with an exception

    def update(self, index: NDArray[np.int64], batch: Batch) -> None:
        """Encode the batch's values of this unit's signals (``index``: signal id → row)."""
        for t in self.tables.values():
            if not t.values:
                continue
            rows = index[t.ids]  # the index spans every id of ours
            present = rows >= 0
            if not present.any():
                continue
            if present.all():
                values = batch.value[rows]
            else:  # keep what the unit showed for signals the batch does not carry
                values = t.codec.decode(t.image)
                values[present] = batch.value[rows[present]]
            t.codec.encode_into(values, t.image)

    # -- the pymodbus datastore protocol, for one unit ------------------------------------------

    def get(self, func_code: int, address: int, count: int) -> list[int] | list[bool] | ExcCodes:
        table = _TABLE_OF.get(func_code)
        if table is None:
            self.refused += 1
            return ExcCodes.ILLEGAL_FUNCTION
        t = self.tables[table]
        if not t.covered(address, count):
            self.refused += 1
            return ExcCodes.ILLEGAL_ADDRESS
        self.reads += 1
        out: list[int] | list[bool] = t.image[address : address + count].tolist()
        return out

    def set(self, func_code: int, address: int, values: Sequence[int | bool]) -> ExcCodes | None:
        table = _TABLE_OF.get(func_code)
        if table not in ("holding", "coil"):
            self.refused += 1
            return ExcCodes.ILLEGAL_FUNCTION
        t = self.tables[table]
        n = len(values)
        if not t.covered(address, n) or not t.writable[address : address + n].all():
            self.refused += 1
            return ExcCodes.ILLEGAL_ADDRESS
        proposed = t.image.copy()
        proposed[address : address + n] = values
        changes: list[tuple[_Value, float]] = []
        for v in t.overlapping(address, n):
            after = _value(proposed, v)
            if v.setpoint:  # written, changed or not: writing the same set point is a write
                changes.append((v, after))
                continue
            # A read-only value in the written registers (a status bit next to a command bit)
            # may be written back as it is, not changed.
            before = _value(t.image, v)
            if not (before == after or (math.isnan(before) and math.isnan(after))):
                self.refused += 1
                return ExcCodes.ILLEGAL_ADDRESS
        for v, value in changes:
            try:
                self.plant.write(v.bound.id, value)
            except SimWriteError as exc:
                log.info("sim modbus %s: write refused: %s", describe(self.device), exc)
                self.refused += 1
                return ExcCodes.ILLEGAL_VALUE
        t.image[address : address + n] = values
        self.writes += 1
        return None


def _value(image: NDArray[np.generic], v: _Value) -> float:
    items = image[v.address : v.end].tolist()
    return decode([int(x) for x in items], v.fmt)


class _Datastore:
    """pymodbus' datastore protocol (what its PDUs call on ``server.context``) over our units."""

    def __init__(self, units: dict[int, UnitImage]) -> None:
        self.units = units

    def device_ids(self) -> list[int]:
        return list(self.units)

    def _unit(self, device_id: int) -> UnitImage | None:
        unit = self.units.get(device_id)
        if unit is None and device_id in (0, 255) and len(self.units) == 1:
            unit = next(iter(self.units.values()))
        return unit

    async def async_getValues(  # pymodbus names it so
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        unit = self._unit(device_id)
        if unit is None:
            return ExcCodes.GATEWAY_NO_RESPONSE
        return unit.get(func_code, address, count)

    async def async_setValues(  # pymodbus names it so
        self, device_id: int, func_code: int, address: int, values: Sequence[int | bool]
    ) -> ExcCodes | None:
        unit = self._unit(device_id)
        if unit is None:
            return ExcCodes.GATEWAY_NO_RESPONSE
        return unit.set(func_code, address, values)


class _TcpServer(ModbusTcpServer):
    def __init__(self, store: _Datastore, address: tuple[str, int]) -> None:
        # pymodbus builds a datastore from its constructor argument; ours then answers instead:
        # its request PDUs call only async_getValues / async_setValues / device_ids.
        super().__init__(SimDevice(0, SimData(0, datatype=DataType.REGISTERS)), address=address)
        self.context = store  # type: ignore[assignment]


class DemoServer:
    """One pymodbus TCP server: the units behind one host:port. ``port`` is where it listens
    (the actual port once started, when asked for port 0)."""

    def __init__(self, host: str, port: int, units: dict[int, UnitImage]) -> None:
        self.host = host
        self.port = port
        self.units = units
        self._server: _TcpServer | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError(f"the demo Modbus server on {self.host}:{self.port} already runs")
        server = _TcpServer(_Datastore(self.units), (self.host, self.port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus logged the OSError (address in use...)
            await server.shutdown()  # type: ignore[no-untyped-call]
            devices = ", ".join(describe(u.device) for u in self.units.values())
            raise OSError(
                f"demo Modbus server for {devices} cannot listen on {self.host}:{self.port} "
                "(address in use? see the pymodbus log line above)"
            ) from exc
        self._server = server
        sockets = getattr(server.transport, "sockets", None) or ()
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info(
            "demo Modbus server on %s:%d, units %s",
            self.host,
            self.port,
            ", ".join(str(u) for u in self.units),
        )

    async def stop(self) -> None:
        """Close the listening socket and every client connection."""
        server, self._server = self._server, None
        if server is None:
            return
        listener = server.transport
        await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus: untyped
        wait_closed = getattr(listener, "wait_closed", None)
        if wait_closed is not None:
            await wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class ModbusPeers:
    """The site's simulated Modbus devices, as one async context manager and one ``SimPeer``."""

    def __init__(self, site: Site, plant: Plant) -> None:
        self.plant = plant
        by_address: dict[tuple[str, int], dict[int, UnitImage]] = {}
        for served in modbus_devices(site).values():
            device = served.settings
            simulated = [b for b in served.signals if b.simulated]
            if not simulated:
                continue
            skipped = len(served.signals) - len(simulated)
            if skipped:
                log.info(
                    "sim modbus %s: %d bound signal(s) without a sim source are not served",
                    describe(device),
                    skipped,
                )
            values = [_Value(b, Format.of(b.binding), _is_setpoint(b, plant)) for b in simulated]
            units = by_address.setdefault((device.host, device.port), {})
            if device.unit in units:  # two entries for one unit: one image with both
                values = [*_values_of(units[device.unit]), *values]
            units[device.unit] = UnitImage(device, values, plant)
        self.servers = [DemoServer(h, p, units) for (h, p), units in by_address.items()]
        self._ids = np.array(
            sorted({b.id for s in self.servers for u in s.units.values() for b in u.signals}),
            dtype=np.int64,
        )
        self._stack = contextlib.AsyncExitStack()
        self._apply(plant.batch(0))  # every register shows the plant before the first tick

    async def __aenter__(self) -> Self:
        try:
            for server in self.servers:
                await self._stack.enter_async_context(server)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    def unit(self, device_id: str) -> UnitImage:
        """The unit image of a device, by its id (for tests and introspection)."""
        for server in self.servers:
            for unit in server.units.values():
                if unit.device.id == device_id:
                    return unit
        raise KeyError(f"no simulated Modbus device {device_id!r}")

    async def update(self, batch: Batch, ts_ns: int) -> None:
        """Show this tick's values in every unit's registers and coils."""
        self._apply(batch)

    def _apply(self, batch: Batch) -> None:
        if not len(batch) or not len(self._ids):
            return
        size = int(max(batch.signal.max(), self._ids.max())) + 1
        index = np.full(size, -1, dtype=np.int64)
        index[batch.signal] = np.arange(len(batch))
        for server in self.servers:
            for unit in server.units.values():
                unit.update(index, batch)


def _is_setpoint(b: Bound[ModbusBinding], plant: Plant) -> bool:
    """A client may write it: a writable table, and a model output that takes writes."""
    if not b.binding.writable or b.signal.sim is None:
        return False
    equipment = b.path.split(".", 1)[0]
    try:
        model = plant.model(equipment, b.signal.sim.model)
    except KeyError:
        return False
    output = model.outputs.get(b.signal.sim.output)
    return output is not None and output.writable


def _values_of(unit: UnitImage) -> list[_Value]:
    return [v for t in unit.tables.values() for v in t.values]
