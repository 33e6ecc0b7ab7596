"""The Modbus TCP adapter: polls the site's Modbus devices onto the Bus, and writes to them.

Per device (a key of :func:`~factory5g.model.endpoints.modbus_devices`): one pymodbus
``AsyncModbusTcpClient``, one task that keeps it connected, and one task per poll group (the
device's signals with the same ``poll_ms``) that runs the group's :mod:`plan` on a drift-free
schedule. What the adapter does, case by case:

==============================  ==============================================================
each cycle                      the group's requests in turn; ONE Batch per group and cycle,
                                each value stamped with the time its response arrived
a cycle longer than poll_ms     counted (``overruns``); the schedule skips the deadlines it
                                missed instead of bursting to catch up
no answer within timeout_ms     the request is sent again, ``retries`` times (``timeouts``,
                                ``retries``); then its signals get NaN + BAD_COMM_FAILURE.
                                After 3 such requests in a row the connection is dropped and
                                made anew (a half-open TCP connection over a radio link never
                                recovers by itself)
exception response              its signals get NaN + BAD, a log line names device, unit,
                                table, addresses and the exception (``exceptions``); the
                                other requests and groups go on
connection refused / lost       signals get NaN + BAD_NOT_CONNECTED; reconnect at once, then
                                after 0.1 s, doubling to 10 s (``reconnects`` counts the
                                successful ones)
==============================  ==============================================================

Bad qualities are published once per change (good → comm failure → not connected...), not
every cycle; good values every cycle. Failures are logged once per change at WARNING (with
device id, host:port, unit, table and addresses), repeats at DEBUG, and counted always.

Writes (:meth:`ModbusAdapter.write`): holding registers with function 6 (one register) or 16
(several), coils with function 5; input registers and discrete inputs are read-only. A bit field
of a holding register is written read-modify-write (function 3, then 6): another client
writing the same register between the two requests loses its change — Modbus has no lock; where
devices support it, function 22 (mask write register) would be atomic, but many do not.

Several signals at once (:meth:`ModbusAdapter.write_many`): per device, the values are checked
first (all or nothing), then sent in the fewest requests — each run of contiguous coils in one
function 15, each run of contiguous holding registers in one function 16 (a lone coil: 5, a
lone register: 6), runs cut at the specification's limits. Bit fields keep their
read-modify-write, one per register (every bit of that register written at once).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self

import numpy as np
from numpy.typing import NDArray
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from factory5g.aio import cancel_and_wait
from factory5g.connect.base import UnknownTargetError, WriteRejectedError, WriteResult, WriteValue
from factory5g.connect.modbus.codec import BlockCodec, Format, encode, raw_value, set_bit
from factory5g.connect.modbus.errors import (
    FUNCTION_NAMES,
    ModbusConnectionError,
    ModbusError,
    ModbusExceptionError,
    ModbusProtocolError,
    ModbusTimeoutError,
    ModbusValueError,
    describe,
)
from factory5g.connect.modbus.plan import DevicePlan, PollGroup, Read, plan_device
from factory5g.model import Site
from factory5g.model.endpoints import Bound, modbus_devices
from factory5g.model.site import ModbusBinding, ModbusDevice
from factory5g.stream import Batch, Bus, BusClosedError, Quality

__all__ = [
    "BACKOFF_MAX_S",
    "BACKOFF_MIN_S",
    "WRITE_MAX_COILS",
    "WRITE_MAX_REGISTERS",
    "DeviceStats",
    "GroupStats",
    "ModbusAdapter",
]

log = logging.getLogger(__name__)

BACKOFF_MIN_S: Final = 0.1
BACKOFF_MAX_S: Final = 10.0
DROP_AFTER_TIMEOUTS: Final = 3  # requests in a row without any answer → reconnect
# MODBUS Application Protocol v1.1b3 §6.11 and §6.12: the most one request can write.
WRITE_MAX_COILS: Final = 1968  # function 15, quantity of outputs 1..0x07B0
WRITE_MAX_REGISTERS: Final = 123  # function 16, quantity of registers 1..0x007B
_WRITE_FUNCTIONS: Final = frozenset({5, 6, 15, 16})
_CYCLE_HISTORY: Final = 1000  # recent cycle durations kept per group
_TABLE_NAMES: Final = {
    "holding": "holding register",
    "input": "input register",
    "coil": "coil",
    "discrete": "discrete input",
}


@dataclass
class DeviceStats:
    """Counters of one device. ``requests`` counts every request sent (retries included)."""

    requests: int = 0
    writes: int = 0  # write requests sent (functions 5, 6, 15, 16; retries included)
    responses: int = 0  # exception responses included
    timeouts: int = 0  # requests sent that got no answer within timeout_ms
    exceptions: int = 0  # exception responses
    retries: int = 0  # requests sent again after a timeout
    reconnects: int = 0  # connections made after a lost or dropped one
    last_error: str | None = None
    last_ok: float | None = None  # unix s of the last good response


@dataclass
class GroupStats:
    cycles: int = 0
    overruns: int = 0  # cycles that ended after the next one was due
    last_cycle_ms: float | None = None
    history_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_CYCLE_HISTORY))


class _Link:
    """One device's connection: the pymodbus client, requests with timeout and retries, stats."""

    def __init__(self, device: ModbusDevice) -> None:
        self.device = device
        self.where = describe(device)
        self.timeout_s = device.timeout_ms / 1000.0
        self.stats = DeviceStats()
        self.lost = asyncio.Event()  # set when the connection goes down
        self.tried = asyncio.Event()  # set once the first connection attempt is over
        self.client: AsyncModbusTcpClient | None = None
        self.dropped = False  # the last connection was closed by us (drop), not lost
        self.down_reason = "not connected yet"  # why there is no connection, when there is none
        # One request at a time on the connection, taken BEFORE the timeout starts: a request
        # waiting behind a slow one has not timed out (pymodbus' own lock is inside the call).
        self._busy = asyncio.Lock()
        self._silent_requests = 0  # requests in a row that got no answer at all

    def open(self) -> None:
        """Make the client (it needs the running loop); connecting is :meth:`connect`'s job."""
        self.client = AsyncModbusTcpClient(
            self.device.host,
            port=self.device.port,
            name=f"f5g-modbus-{self.device.id}",
            reconnect_delay=0,  # we reconnect ourselves: our backoff, our counters
            # Our own timeouts (asyncio.timeout around every call) govern; pymodbus' own are
            # a backstop that must not fire first.
            timeout=self.timeout_s + 1.0,
            retries=0,  # we retry ourselves, to count retries and timeouts
            trace_connect=self._traced,
        )

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected

    def _traced(self, up: bool) -> None:
        if not up:  # the peer closed, or the socket failed (not our own close)
            self.lost.set()

    async def connect(self) -> bool:
        assert self.client is not None
        self.lost.clear()
        self.dropped = False
        self._silent_requests = 0
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.client.connect()
        except TimeoutError:
            pass
        return self.connected

    def drop(self, why: str) -> None:
        """Close the connection on purpose (the reconnect task makes a new one)."""
        log.warning("modbus device %s: %s; dropping the connection", self.where, why)
        self.stats.last_error = why
        self.down_reason = why
        self.dropped = True
        self.close()
        self.lost.set()  # our own close is not traced

    async def request(
        self,
        function: int,
        address: int,
        count: int,
        call: Callable[[AsyncModbusTcpClient], Awaitable[ModbusPDU]],
        *,
        signal: int | str = "",
    ) -> ModbusPDU:
        """One request with the device's timeout and retries; a good response, or raise
        ModbusConnectionError, ModbusTimeoutError, ModbusProtocolError, ModbusExceptionError."""
        tries = 1 + self.device.retries
        for attempt in range(tries):
            async with self._busy:
                client = self.client
                if client is None or not client.connected:
                    # Not noted as last_error: the connection task said why it is down.
                    raise ModbusConnectionError(self.device, f"not connected ({self.down_reason})")
                if attempt:
                    self.stats.retries += 1
                self.stats.requests += 1
                if function in _WRITE_FUNCTIONS:
                    self.stats.writes += 1
                try:
                    async with asyncio.timeout(self.timeout_s):
                        response = await call(client)
                except TimeoutError:
                    self.stats.timeouts += 1
                    continue
                except ModbusException as exc:  # pymodbus: lost connection, undecodable answer
                    if not self.connected:
                        raise self.failed(ModbusConnectionError(self.device, str(exc))) from exc
                    what = FUNCTION_NAMES.get(function, f"function {function}")
                    raise self.failed(
                        ModbusProtocolError(self.device, f"{what} at address {address}: {exc}")
                    ) from exc
            self.stats.responses += 1
            self._silent_requests = 0
            if response.isError():
                self.stats.exceptions += 1
                raise self.failed(
                    ModbusExceptionError(
                        self.device,
                        function,
                        address,
                        response.exception_code,
                        count=count,
                        signal=signal,
                    )
                )
            self.stats.last_ok = time.time()
            return response
        error = ModbusTimeoutError(
            self.device, function, address, count, tries, self.timeout_s * 1e3
        )
        self.failed(error)
        self._silent_requests += 1
        if self._silent_requests >= DROP_AFTER_TIMEOUTS and self.connected:
            self.drop(f"{self._silent_requests} requests in a row got no answer")
        raise error

    def failed(self, error: ModbusError) -> ModbusError:
        """Note ``error`` as the device's last error; return it (to raise)."""
        self.stats.last_error = str(error)
        return error


class _Poller:
    """One poll group of one device: its schedule, its requests, its decoders, its qualities."""

    def __init__(self, link: _Link, group: PollGroup, bus: Bus) -> None:
        self.link = link
        self.group = group
        self.bus = bus
        self.period_s = group.interval_ms / 1000.0
        self.ids = np.array([s.id for s in group.signals], dtype=np.int32)
        self.ids.flags.writeable = False  # shared by every Batch of this group
        self.codecs: list[BlockCodec] = []
        self.positions: list[NDArray[np.intp]] = []
        self.calls = [_read_call(r, link.device.unit) for r in group.reads]
        for r in group.reads:
            members = [group.signals[i].binding for i in r.items]
            self.codecs.append(
                BlockCodec(
                    [Format.of(b) for b in members], [b.address - r.address for b in members]
                )
            )
            self.positions.append(np.asarray(r.items, dtype=np.intp))
        # Per request: the quality last published (None: nothing yet) and the last failure.
        self.quality: list[int | None] = [None] * len(group.reads)
        self.failure: list[str | None] = [None] * len(group.reads)
        self.stats = GroupStats()

    async def run(self) -> None:
        await self.link.tried.wait()  # no "not connected" burst while the first connect runs
        deadline = time.monotonic()
        while True:
            started = time.monotonic()
            try:
                await self.cycle()
            except BusClosedError:
                log.info("bus closed: modbus poller of %s stops", self.link.where)
                return
            except Exception:  # a bug must not kill the poll task: log it, keep polling
                log.exception("modbus device %s: poll cycle failed", self.link.where)
            now = time.monotonic()
            took_ms = (now - started) * 1e3
            self.stats.cycles += 1
            self.stats.last_cycle_ms = took_ms
            self.stats.history_ms.append(took_ms)
            deadline += self.period_s
            if now > deadline:  # drift-free: stay on the grid, skip the deadlines missed
                self.stats.overruns += 1
                deadline += math.ceil((now - deadline) / self.period_s) * self.period_s
            await asyncio.sleep(deadline - now)

    async def cycle(self) -> None:
        n = len(self.ids)
        value = np.full(n, np.nan, dtype=np.float64)
        quality = np.zeros(n, dtype=np.uint8)
        ts = np.zeros(n, dtype=np.int64)
        send = np.zeros(n, dtype=np.bool_)
        for k, read in enumerate(self.group.reads):
            pos = self.positions[k]
            try:
                block = await self._fetch(read, self.calls[k])
                decoded = self.codecs[k].decode(block)
            except ModbusError as exc:
                q = _quality_of(exc)
                if self.quality[k] != q:
                    send[pos] = True
                    quality[pos] = q
                    ts[pos] = time.time_ns()
                self._failed(k, read, exc)
                self.quality[k] = q
                continue
            ts[pos] = time.time_ns()
            value[pos] = decoded
            quality[pos] = Quality.GOOD
            send[pos] = True
            if self.failure[k] is not None:
                log.info("modbus device %s: %s good again", self.link.where, _what(read))
                self.failure[k] = None
            self.quality[k] = Quality.GOOD
        if send.all():
            await self.bus.publish(Batch(self.ids, ts, value, quality))
        elif send.any():
            await self.bus.publish(Batch(self.ids[send], ts[send], value[send], quality[send]))

    async def _fetch(self, read: Read, call: _Call) -> NDArray[Any]:
        c = read.count
        response = await self.link.request(read.function, read.address, c, call)
        items = response.bits if read.bits else response.registers
        if len(items) < c:  # bits come padded to whole bytes; registers exactly
            raise self.link.failed(
                ModbusProtocolError(
                    self.link.device,
                    f"{_what(read)}: answer holds {len(items)} values, {c} were asked for",
                )
            )
        return np.asarray(items[:c], dtype=np.bool_ if read.bits else np.uint16)

    def _failed(self, k: int, read: Read, exc: ModbusError) -> None:
        message = str(exc)
        if isinstance(exc, ModbusConnectionError):  # the connection task logs those changes
            log.debug("%s (%s)", message, _what(read))
            return
        if message == self.failure[k]:  # a repeat: DEBUG, the counters count it
            log.debug("%s", message)
        else:
            log.warning("%s", message)  # names device, unit, function, addresses, why
        self.failure[k] = message


class ModbusAdapter:
    """Polls every Modbus device of ``site`` onto ``bus``; ``async with ModbusAdapter(...)``.

    ``coalesce=False`` reads each signal with a request of its own (for comparison, and for
    devices that refuse reads spanning several values). Raises :class:`ModbusConfigError` at
    construction when a device's bindings cannot be polled within its request limits.
    """

    name = "modbus"

    def __init__(self, site: Site, bus: Bus, *, coalesce: bool = True) -> None:
        self.site = site
        self.bus = bus
        self.plans: dict[str, DevicePlan] = {
            key: plan_device(served, coalesce=coalesce)
            for key, served in modbus_devices(site).items()
        }
        self._links = {key: _Link(plan.device) for key, plan in self.plans.items()}
        self._pollers: dict[str, list[_Poller]] = {
            key: [_Poller(self._links[key], g, bus) for g in plan.groups]
            for key, plan in self.plans.items()
        }
        self._targets: dict[int, tuple[_Link, Bound[ModbusBinding]]] = {
            s.id: (self._links[key], s)
            for key, plan in self.plans.items()
            for g in plan.groups
            for s in g.signals
        }
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            for key, link in self._links.items():
                link.open()
                self._spawn(self._keep_connected(link), f"modbus-connect-{key}")
                for p in self._pollers[key]:
                    self._spawn(p.run(), f"modbus-poll-{key}-{p.group.interval_ms:g}ms")
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        await cancel_and_wait(self._tasks, what="Modbus adapter")
        for link in self._links.values():
            link.close()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _keep_connected(self, link: _Link) -> None:
        delay = BACKOFF_MIN_S
        failures = 0
        connected_before = False
        while True:
            up = await link.connect()
            link.tried.set()
            if not up:
                failures += 1
                link.down_reason = f"cannot connect to {link.device.host}:{link.device.port}"
                link.stats.last_error = link.down_reason
                if failures == 1:
                    log.warning(
                        "modbus device %s: cannot connect; retrying with backoff "
                        "%.1f s doubling to %.0f s",
                        link.where,
                        BACKOFF_MIN_S,
                        BACKOFF_MAX_S,
                    )
                else:
                    log.debug("modbus device %s: connect attempt %d failed", link.where, failures)
                await asyncio.sleep(delay)
                delay = min(2 * delay, BACKOFF_MAX_S)
                continue
            if connected_before:
                link.stats.reconnects += 1
                log.info("modbus device %s: reconnected (%d failed attempts)", link.where, failures)
            else:
                log.info("modbus device %s: connected", link.where)
            connected_before = True
            failures = 0
            delay = BACKOFF_MIN_S
            await link.lost.wait()
            if not link.dropped:  # drop() logged why already
                log.warning("modbus device %s: connection lost", link.where)
                link.down_reason = link.stats.last_error = "connection lost"

    # -- writes -----------------------------------------------------------------------------

    async def write(self, signal: int, value: WriteValue) -> WriteResult:
        """Write ``value`` (engineering units) to the signal's register(s) or coil.

        Raises UnknownTargetError, WriteRejectedError (read-only table; a value the type
        cannot hold), ModbusExceptionError (the device refused: also a WriteRejectedError),
        ModbusConnectionError, ModbusTimeoutError.
        """
        target = self._targets.get(signal)
        if target is None:
            raise UnknownTargetError(signal)
        link, bound = target
        b = bound.binding
        if not b.writable:
            raise WriteRejectedError(
                signal,
                f"read-only: {bound.path} is {_TABLE_NAMES[b.table]} {b.address} of "
                f"{link.where}, and Modbus has no function to write {b.table} "
                f"{'inputs' if b.table == 'discrete' else 'registers'}",
            )
        fmt = Format.of(b)
        unit = link.device.unit
        try:
            raw = raw_value(value, fmt)  # checks the value before anything is sent
            if b.table == "coil":
                on = bool(raw)
                await link.request(
                    5,
                    b.address,
                    1,
                    lambda c: c.write_coil(b.address, on, device_id=unit),
                    signal=signal,
                )
                status = f"ok: fc 5 wrote coil {b.address} = {int(on)}"
            elif b.bit is not None:
                # Read-modify-write: see the module docstring for the race it leaves open.
                read = await link.request(
                    3,
                    b.address,
                    1,
                    lambda c: c.read_holding_registers(b.address, count=1, device_id=unit),
                    signal=signal,
                )
                if not read.registers:
                    raise link.failed(
                        ModbusProtocolError(link.device, f"read of {b.address} returned nothing")
                    )
                word = set_bit(int(read.registers[0]), value, fmt)
                await link.request(
                    6,
                    b.address,
                    1,
                    lambda c: c.write_register(b.address, word, device_id=unit),
                    signal=signal,
                )
                status = f"ok: fc 6 wrote bit {b.bit} of register {b.address}"
            else:
                regs = encode(value, fmt)
                if len(regs) == 1:
                    await link.request(
                        6,
                        b.address,
                        1,
                        lambda c: c.write_register(b.address, regs[0], device_id=unit),
                        signal=signal,
                    )
                else:
                    await link.request(
                        16,
                        b.address,
                        len(regs),
                        lambda c: c.write_registers(b.address, regs, device_id=unit),
                        signal=signal,
                    )
                fc = 6 if len(regs) == 1 else 16
                status = f"ok: fc {fc} wrote {len(regs)} register(s) at {b.address}"
        except ModbusValueError as exc:
            log.warning(
                "modbus write %s = %r to %s rejected: %s", bound.path, value, link.where, exc
            )
            raise WriteRejectedError(signal, str(exc)) from exc
        except ModbusError as exc:
            log.warning(
                "modbus write %s = %r (%s %d) failed: %s",
                bound.path,
                value,
                _TABLE_NAMES[b.table],
                b.address,
                exc,
            )
            raise
        log.info("modbus write %s = %r to %s: %s", bound.path, value, link.where, status)
        return WriteResult(signal, True, status)

    async def write_many(self, values: Mapping[int, WriteValue]) -> list[WriteResult]:
        """Write several signals (engineering units) in the fewest requests per device.

        Every value is checked before anything is sent: an unknown signal, a read-only table,
        a value its type cannot hold, or two signals writing the same register, bit or coil
        rejects the whole call (UnknownTargetError, WriteRejectedError naming the signal).
        Then, device by device, in address order: each run of contiguous coils is one
        function 15 (at most 1968 coils, §6.11), each run of contiguous holding registers one
        function 16 (at most 123 registers, §6.12, and the device's ``max_registers``); a run
        of one coil is function 5, of one register function 6. Bit fields are written
        read-modify-write, one function 3 + 6 per register whatever the number of its bits.

        A request that fails raises (ModbusExceptionError naming the request's function and
        address range, ModbusTimeoutError, ModbusConnectionError...) and nothing after it is
        sent; the requests before it have landed (the log says which). Returns one
        WriteResult per signal, in the order of ``values``.
        """
        by_link: dict[int, tuple[_Link, list[tuple[Bound[ModbusBinding], WriteValue]]]] = {}
        for signal, value in values.items():
            target = self._targets.get(signal)
            if target is None:
                raise UnknownTargetError(signal)
            link, bound = target
            by_link.setdefault(id(link), (link, []))[1].append((bound, value))
        plans = [(link, _plan_writes(link, items)) for link, items in by_link.values()]
        status: dict[int, str] = {}
        for link, requests in plans:
            unit = link.device.unit
            for k, w in enumerate(requests):
                try:
                    await self._send(link, w, unit)
                except ModbusError as exc:
                    landed = ", ".join(p.path for done in requests[:k] for p in done.pieces)
                    log.warning(
                        "modbus write of %s to %s failed: %s; written before: %s",
                        ", ".join(p.path for p in w.pieces),
                        link.where,
                        exc,
                        landed or "nothing",
                    )
                    raise
                for piece in w.pieces:
                    status[piece.signal] = f"ok: {w.describe()}"
            log.info(
                "modbus write of %d signal(s) to %s in %d request(s)",
                sum(len(w.pieces) for w in requests),
                link.where,
                len(requests),
            )
        return [WriteResult(signal, True, status[signal]) for signal in values]

    async def _send(self, link: _Link, w: _WriteRequest, unit: int) -> None:
        """One request of :meth:`write_many` (two for a read-modify-write)."""
        a, words, who = w.address, w.words, w.who
        if w.function == 5:
            on = bool(words[0])
            await link.request(5, a, 1, lambda c: c.write_coil(a, on, device_id=unit), signal=who)
        elif w.function == 15:
            bits = [bool(x) for x in words]
            await link.request(
                15, a, len(bits), lambda c: c.write_coils(a, bits, device_id=unit), signal=who
            )
        elif w.function == 16:
            await link.request(
                16, a, len(words), lambda c: c.write_registers(a, words, device_id=unit), signal=who
            )
        elif not w.bits:
            await link.request(
                6, a, 1, lambda c: c.write_register(a, words[0], device_id=unit), signal=who
            )
        else:
            # Read-modify-write: see the module docstring for the race it leaves open.
            read = await link.request(
                3, a, 1, lambda c: c.read_holding_registers(a, count=1, device_id=unit), signal=who
            )
            if not read.registers:
                raise link.failed(ModbusProtocolError(link.device, f"read of {a} returned nothing"))
            word = int(read.registers[0])
            for fmt, value in w.bits:
                word = set_bit(word, value, fmt)
            await link.request(
                6, a, 1, lambda c: c.write_register(a, word, device_id=unit), signal=who
            )

    # -- introspection ----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        devices = [self._device_dict(key) for key in self._links]
        return {
            "connected": all(d["connected"] for d in devices),
            "devices": devices,
        }

    def cycle_ms(self) -> dict[tuple[str, float], list[float]]:
        """The recent cycle durations (ms, oldest first) of every (device, poll interval)."""
        return {
            (key, p.group.interval_ms): list(p.stats.history_ms)
            for key, pollers in self._pollers.items()
            for p in pollers
        }

    def _device_dict(self, key: str) -> dict[str, Any]:
        link = self._links[key]
        d, s = link.device, link.stats
        return {
            "id": d.id,
            "host": d.host,
            "port": d.port,
            "unit": d.unit,
            "connected": link.connected,
            "requests": s.requests,
            "writes": s.writes,
            "responses": s.responses,
            "timeouts": s.timeouts,
            "exceptions": s.exceptions,
            "retries": s.retries,
            "reconnects": s.reconnects,
            "last_error": s.last_error,
            "last_ok": s.last_ok,
            "groups": [
                {
                    "interval_ms": p.group.interval_ms,
                    "requests_per_cycle": len(p.group.reads),
                    "signals": len(p.group.signals),
                    "cycles": p.stats.cycles,
                    "overruns": p.stats.overruns,
                    "last_cycle_ms": p.stats.last_cycle_ms,
                }
                for p in self._pollers[key]
            ],
        }


_Call = Callable[[AsyncModbusTcpClient], Awaitable[ModbusPDU]]


@dataclass(frozen=True, slots=True)
class _Piece:
    """One signal's share of a multiple write: its first address and how many it spans."""

    signal: int
    path: str
    address: int
    words: tuple[int, ...]  # the registers, or (0|1,) for a coil; () for a bit field


@dataclass(slots=True)
class _WriteRequest:
    """One write request of :meth:`ModbusAdapter.write_many` (fc 5, 6, 15 or 16), or a
    read-modify-write of one register's bit fields (``bits``: fc 3, then 6)."""

    function: int
    address: int
    words: list[int]
    pieces: list[_Piece]
    bits: list[tuple[Format, WriteValue]] = field(default_factory=list)

    @property
    def who(self) -> int | str:
        """The signal an error names: its id, or the paths of all the request writes."""
        if len(self.pieces) == 1:
            return self.pieces[0].signal
        return ", ".join(p.path for p in self.pieces)

    def describe(self) -> str:
        if self.bits:
            return f"fc 3 + 6 wrote {len(self.bits)} bit(s) of register {self.address}"
        n = len(self.words)
        what = "coil" if self.function in (5, 15) else "register"
        span = f"{self.address}" if n == 1 else f"{self.address}..{self.address + n - 1}"
        return f"fc {self.function} wrote {what}{'s' if n > 1 else ''} {span}"


def _plan_writes(
    link: _Link, items: Sequence[tuple[Bound[ModbusBinding], WriteValue]]
) -> list[_WriteRequest]:
    """The requests that write ``items`` to one device, in address order (coils first).

    Raises WriteRejectedError naming the signal for a read-only table, a value its type cannot
    hold, or a register, bit or coil that two signals write.
    """
    coils: list[_Piece] = []
    registers: list[_Piece] = []
    bit_fields: dict[int, _WriteRequest] = {}
    owner: dict[tuple[str, int, int | None], str] = {}  # (table, address, bit) → path

    def claim(bound: Bound[ModbusBinding], table: str, address: int, bit: int | None) -> None:
        # A register is claimed whole (bit None) or bit by bit: a whole claim conflicts with
        # any bit of it, a bit claim with the whole register and the same bit.
        keys = [(table, address, bit)] + ([(table, address, None)] if bit is not None else [])
        if bit is None:
            keys += [(table, address, b) for b in range(16)]
        for key in keys:
            other = owner.get(key)
            if other is not None:
                raise WriteRejectedError(
                    bound.id,
                    f"{bound.path} and {other} both write {_TABLE_NAMES[table]} {address}"
                    + (f" bit {bit}" if bit is not None and key[2] is not None else ""),
                )
        owner[(table, address, bit)] = bound.path

    for bound, value in items:
        b = bound.binding
        if not b.writable:
            raise WriteRejectedError(
                bound.id,
                f"read-only: {bound.path} is {_TABLE_NAMES[b.table]} {b.address} of "
                f"{link.where}: Modbus has no function to write it",
            )
        fmt = Format.of(b)
        try:
            if b.table == "coil":
                claim(bound, "coil", b.address, None)
                on = 1 if raw_value(value, fmt) else 0
                coils.append(_Piece(bound.id, bound.path, b.address, (on,)))
            elif b.bit is not None:
                raw_value(value, fmt)  # 0 or 1 after scale: checked now, set after the read
                claim(bound, "holding", b.address, b.bit)
                piece = _Piece(bound.id, bound.path, b.address, ())
                rmw = bit_fields.setdefault(b.address, _WriteRequest(6, b.address, [], []))
                rmw.pieces.append(piece)
                rmw.bits.append((fmt, value))
            else:
                regs = encode(value, fmt)
                for a in range(b.address, b.address + len(regs)):
                    claim(bound, "holding", a, None)
                registers.append(_Piece(bound.id, bound.path, b.address, tuple(regs)))
        except ModbusValueError as exc:
            raise WriteRejectedError(bound.id, f"{bound.path}: {exc}") from exc
    d = link.device
    requests = _runs(coils, min(WRITE_MAX_COILS, d.max_bits), single=5, multiple=15)
    requests += _runs(registers, min(WRITE_MAX_REGISTERS, d.max_registers), single=6, multiple=16)
    requests += [bit_fields[a] for a in sorted(bit_fields)]
    return requests


def _runs(pieces: list[_Piece], limit: int, *, single: int, multiple: int) -> list[_WriteRequest]:
    """Contiguous pieces joined into requests of at most ``limit`` items, greedily (for runs in
    address order that cannot split a piece, filling each request is optimal)."""
    out: list[_WriteRequest] = []
    for p in sorted(pieces, key=lambda p: p.address):
        last = out[-1] if out else None
        if (
            last is not None
            and last.address + len(last.words) == p.address
            and len(last.words) + len(p.words) <= limit
        ):
            last.words.extend(p.words)
            last.pieces.append(p)
        else:
            out.append(_WriteRequest(multiple, p.address, list(p.words), [p]))
    for w in out:
        if len(w.words) == 1:
            w.function = single
    return out


def _read_call(read: Read, unit: int) -> _Call:
    """The pymodbus call that sends ``read``."""
    a, c = read.address, read.count
    if read.table == "coil":
        return lambda cl: cl.read_coils(a, count=c, device_id=unit)
    if read.table == "discrete":
        return lambda cl: cl.read_discrete_inputs(a, count=c, device_id=unit)
    if read.table == "holding":
        return lambda cl: cl.read_holding_registers(a, count=c, device_id=unit)
    return lambda cl: cl.read_input_registers(a, count=c, device_id=unit)


def _quality_of(exc: ModbusError) -> int:
    if isinstance(exc, ModbusConnectionError):
        return int(Quality.BAD_NOT_CONNECTED)
    if isinstance(exc, ModbusExceptionError):
        return int(Quality.BAD)
    return int(Quality.BAD_COMM_FAILURE)  # timeouts, answers that do not fit


def _what(read: Read) -> str:
    """``holding registers 100..109 (fc 3)``: what a log line says of a request."""
    name = _TABLE_NAMES[read.table] + "s"
    span = f"{read.address}" if read.count == 1 else f"{read.address}..{read.end - 1}"
    return f"{name} {span} (fc {read.function})"
