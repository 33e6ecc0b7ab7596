"""Wire the components a site file describes and run them: ``async with Runtime(site) as rt``.

Start order: bus → store → store writer → simulated equipment (OPC UA servers, Modbus devices)
→ adapters (OPC UA, Modbus, Sparkplug host) → apps (alarms, control) → simulated Sparkplug edge
nodes → simulator → housekeeping. Stop order is the reverse, and lossless: producers stop
first, the bus closes, the store writer drains what the bus still holds into the store, then the
store closes. Every task the runtime starts is held in ``self._tasks`` and awaited on exit —
none is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from factory5g.apps.events import EventHub
from factory5g.connect import Adapter
from factory5g.connect.mqtt import MqttBroker
from factory5g.connect.sparkplug import SparkplugHost
from factory5g.model import Site
from factory5g.model.endpoints import modbus_devices, opcua_endpoints
from factory5g.model.site import SparkplugSettings
from factory5g.sim import Plant, SimPeer, Simulator
from factory5g.sim.sparkplug import SparkplugPeers
from factory5g.store import EmbeddedStore, Store
from factory5g.stream import Batch, MemoryBus, MemorySubscription, SlowConsumerPolicy, now_ns

if TYPE_CHECKING:  # the protocol stacks load only for sites that use them
    from factory5g.apps.alarms import AlarmService
    from factory5g.apps.control import ControlService
    from factory5g.connect.modbus import ModbusAdapter
    from factory5g.connect.opcua import OpcUaAdapter
    from factory5g.net.linkemu import LinkEmulator
    from factory5g.net.nef.emulator import NefEmulator
    from factory5g.net.plan import Plan

__all__ = ["Runtime", "RuntimeStats"]

log = logging.getLogger(__name__)

_WRITE_COALESCE_SAMPLES = 200_000  # one store transaction per this many queued samples at most
_RETENTION_PERIOD_S = 3600.0
_GROUP_COMMIT_POLL_S = 0.005  # how soon a filling queue ends a group-commit wait
_TRICKLE_SAMPLES = 1_000  # a transaction smaller than this: the feed is light, group commits
_NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True, slots=True)
class RuntimeStats:
    started_at: float
    written_batches: int
    written_samples: int
    write_errors: int
    last_write_error: str | None
    write_failing: bool


class Runtime:
    """Everything one factory5g process runs for a site, as one async context manager."""

    def __init__(
        self,
        site: Site,
        *,
        data_dir: Path | None = None,
        sim_rate_hz: float = 10.0,
        sim_seed: int = 0,
        store: Store | None = None,
    ) -> None:
        self.site = site
        self.data_dir = data_dir or site.store_dir()
        self.sim_rate_hz = sim_rate_hz
        self.sim_seed = sim_seed
        self._given_store = store
        self.bus = MemoryBus()
        self.store: Store
        self.sim: Simulator | None = None
        self.broker: MqttBroker | None = None
        self.sparkplug: SparkplugHost | None = None
        self.opcua: OpcUaAdapter | None = None
        self.modbus: ModbusAdapter | None = None
        self.adapters: dict[str, Adapter] = {}
        self.network_plan: Plan | None = None
        self.nef: NefEmulator | None = None
        self.linkemu: LinkEmulator | None = None
        # What the adapters are given: the site, or a copy reaching equipment through the
        # link emulator's proxies ([network] emulate).
        self._adapter_site = site
        self.events = EventHub()
        self.alarms: AlarmService | None = None
        self.control: ControlService | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stack = contextlib.AsyncExitStack()  # the store: closed last
        self._io = contextlib.AsyncExitStack()  # brokers, adapters, protocol peers
        self._writer: asyncio.Task[None] | None = None
        self._store_sub: MemorySubscription | None = None
        self.started_at = 0.0
        self.written_batches = 0
        self.commits = 0  # store transactions (group commit: several batches each)
        self.written_samples = 0
        self.write_errors = 0
        self.last_write_error: str | None = None
        self.write_failing = False

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            await self._start()
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

    async def _start(self) -> None:
        self.started_at = time.time()
        if self._given_store is not None:
            self.store = self._given_store
        else:
            self.store = await self._stack.enter_async_context(EmbeddedStore(self.data_dir))
        self._store_sub = self.bus.subscribe(
            "store", maxsize=self.site.file.bus.queue_batches, policy=SlowConsumerPolicy.BLOCK
        )
        self._writer = self._spawn(self._write_loop(self._store_sub), "store-writer")
        plant = Plant(self.site, seed=self.sim_seed)
        await self._start_network_emulation()
        # Simulated OPC UA servers and Modbus devices listen before the adapters connect.
        peers = await self._start_device_peers(plant) if plant.signals else []
        await self._start_device_adapters()
        mqtt = await self._start_sparkplug()
        await self._start_apps()
        if plant.signals:
            if mqtt is not None:
                fronts = None
                if self.linkemu is not None:
                    from factory5g.net.emulation import front_sparkplug_edges

                    fronts = await front_sparkplug_edges(self.site, self.linkemu, *mqtt)
                sp_peers = SparkplugPeers(
                    self.site,
                    plant,
                    host=mqtt[0],
                    port=mqtt[1],
                    primary_host=(self.site.file.sparkplug or SparkplugSettings()).host_id,
                    fronts=fronts,
                )
                if sp_peers.nodes:
                    peers.append(await self._io.enter_async_context(sp_peers))
            self.sim = Simulator(
                self.site, self.bus, rate_hz=self.sim_rate_hz, plant=plant, peers=peers
            )
            await self.sim.__aenter__()
        self._spawn(self._retention_loop(), "retention")
        log.info("runtime started: %s", self.site.summary())

    async def _start_network_emulation(self) -> None:
        """``[network] emulate``: the plan, the NEF emulator, and the link emulator that the
        equipment's traffic goes through (events of the NEF emulator change the links live)."""
        net = self.site.file.network
        if not (net.emulate and net.cell):
            return
        from factory5g.net.emulation import front_site
        from factory5g.net.linkemu import LinkEmulator
        from factory5g.net.nef.emulator import NefEmulator
        from factory5g.net.plan import plan_site

        self.network_plan = plan_site(self.site)
        self.nef = await self._io.enter_async_context(NefEmulator(self.site, self.network_plan))
        self.linkemu = await self._io.enter_async_context(
            LinkEmulator(self.site, self.network_plan, seed=self.sim_seed)
        )
        self.nef.listeners.append(self.linkemu.on_event)
        self._adapter_site = await front_site(self.site, self.linkemu)
        log.info(
            "network emulation: %d devices behind emulated 5G links", len(self.site.file.device)
        )

    async def _start_device_peers(self, plant: Plant) -> list[SimPeer]:
        """The demo's OPC UA servers and Modbus devices, for signals with a ``sim`` source."""
        from factory5g.sim.modbus import ModbusPeers
        from factory5g.sim.opcua import OpcUaPeers

        peers: list[SimPeer] = []
        if any(b.simulated for e in opcua_endpoints(self.site).values() for b in e.signals):
            peers.append(await self._io.enter_async_context(OpcUaPeers(self.site, plant)))
        if any(b.simulated for d in modbus_devices(self.site).values() for b in d.signals):
            peers.append(await self._io.enter_async_context(ModbusPeers(self.site, plant)))
        return peers

    async def _start_device_adapters(self) -> None:
        """One OPC UA adapter for every endpoint, one Modbus adapter for every device."""
        from factory5g.connect.modbus import ModbusAdapter
        from factory5g.connect.opcua import OpcUaAdapter

        if any(e.signals for e in opcua_endpoints(self.site).values()):
            self.opcua = await self._io.enter_async_context(
                OpcUaAdapter(self._adapter_site, self.bus)
            )
            self.adapters["opcua"] = self.opcua
        if any(d.signals for d in modbus_devices(self.site).values()):
            self.modbus = await self._io.enter_async_context(
                ModbusAdapter(self._adapter_site, self.bus)
            )
            self.adapters["modbus"] = self.modbus

    async def _start_sparkplug(self) -> tuple[str, int] | None:
        """Start the Sparkplug host (and the demo broker when no URL is set); (host, port)."""
        settings = self.site.file.sparkplug
        if settings is None and not any(s.binding == "sparkplug" for s in self.site.signals):
            return None
        settings = settings or SparkplugSettings()
        tls: ssl.SSLContext | None = None
        if settings.url is None:
            self.broker = await self._io.enter_async_context(MqttBroker(host="127.0.0.1", port=0))
            host, port = "127.0.0.1", self.broker.port
            log.info("in-process MQTT broker (demo) on %s:%d", host, port)
        else:
            url = urlsplit(settings.url)
            host = url.hostname or "127.0.0.1"
            port = url.port or (8883 if url.scheme == "mqtts" else 1883)
            if url.scheme == "mqtts":
                tls = ssl.create_default_context(cafile=self._path(settings.ca_file))
                if settings.cert_file:
                    tls.load_cert_chain(
                        self._path(settings.cert_file) or "", self._path(settings.key_file)
                    )
        self.sparkplug = await self._io.enter_async_context(
            SparkplugHost(
                self.site, self.bus, settings, broker_host=host, broker_port=port, tls=tls
            )
        )
        self.adapters["sparkplug"] = self.sparkplug
        return host, port

    async def _start_apps(self) -> None:
        """Alarms, then control (its alarm interlocks ask the alarms): after the adapters, so
        that they stop before them (``_io`` closes in reverse order) — a hold-to-run session
        still writes its safe value on the way down."""
        from factory5g.apps.alarms import AlarmService
        from factory5g.apps.control import ControlService

        self.alarms = await self._io.enter_async_context(
            AlarmService(self.site, self.bus, data_dir=self.data_dir, events=self.events)
        )
        self.control = await self._io.enter_async_context(
            ControlService(
                self.site,
                self.bus,
                self.adapters,
                data_dir=self.data_dir,
                alarms=self.alarms,
                events=self.events,
            )
        )

    def _path(self, name: str | None) -> str | None:
        if name is None:
            return None
        p = Path(name)
        return str(p if p.is_absolute() else self.site.base_dir / p)

    async def _stop(self) -> None:
        # 1. producers stop: the simulator, its protocol peers, the adapters, the brokers
        if self.sim is not None:
            await self.sim.__aexit__(None, None, None)
            self.sim = None
        await self._io.aclose()
        # 2. housekeeping tasks stop; the writer drains the bus after it closes
        for task in list(self._tasks):
            if task is not self._writer:
                task.cancel()
        self.bus.close()
        if self._writer is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._writer), timeout=30)
            except TimeoutError:
                log.error("store writer did not drain within 30 s; cancelling it")  # noqa: TRY400
                self._writer.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        # 3. the store closes last
        await self._stack.aclose()
        log.info("runtime stopped: %d samples written", self.written_samples)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"f5g-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- loops ------------------------------------------------------------------------------

    async def _write_loop(self, sub: MemorySubscription) -> None:
        """Bus → store, coalescing queued batches into one transaction; never drops a batch.

        Live and historical batches are never coalesced together (historical ones must not move
        the latest values), so a change of kind starts a new transaction.
        """
        carry: Batch | None = None
        interval_s = self.site.file.store.commit_interval_ms / 1000.0
        low_water = max(1, sub.stats().maxsize // 4)
        last_commit = -math.inf
        last_size = 0
        while True:
            # Group commit: a transaction costs the store about a millisecond of CPU however
            # small it is (bench/control.py: the tail it put on commands). While the feed is a
            # trickle, what arrives within commit_interval_ms shares one transaction; a feed
            # that fills transactions (or the queue) is written as fast as the store allows.
            if carry is None and last_size < _TRICKLE_SAMPLES:
                await self._gather(sub, last_commit + interval_s, low_water)
            last_commit = time.monotonic()
            first = carry if carry is not None else await anext(sub, None)
            carry = None
            if first is None:
                return
            batches = [first]
            n = len(first)
            while n < _WRITE_COALESCE_SAMPLES and (more := sub.get_nowait()) is not None:
                if more.historical != first.historical:
                    carry = more
                    break
                batches.append(more)
                n += len(more)
            await self._write_with_retry(Batch.concat(batches))
            self.commits += 1
            last_size = n
            self.written_batches += len(batches)
            self.written_samples += n

    @staticmethod
    async def _gather(sub: MemorySubscription, due: float, low_water: int) -> None:
        """Wait until ``due`` (monotonic s) or until ``low_water`` batches are queued."""
        # A deadline and a queue length, which no single event signals: poll both.
        while sub.stats().queued_batches < low_water:
            left_s = due - time.monotonic()
            if left_s <= 0:
                return
            await asyncio.sleep(min(left_s, _GROUP_COMMIT_POLL_S))

    async def _write_with_retry(self, batch: Batch) -> None:
        backoff = 0.1
        while True:
            try:
                await self.store.write(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep the batch and retry: the bus backpressures meanwhile
                self.write_errors += 1
                self.last_write_error = f"{type(exc).__name__}: {exc}"
                self.write_failing = True
                log.exception("store write failed; retrying in %.1f s", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            else:
                self.write_failing = False
                return

    async def _retention_loop(self) -> None:
        days = self.site.file.store.retention_days
        while True:
            before = now_ns() - int(days * _NS_PER_DAY)
            try:
                removed = await self.store.apply_retention(before)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention failed; will try again in an hour")
            else:
                if removed:
                    log.info("retention removed %d samples older than %.0f days", removed, days)
            await asyncio.sleep(_RETENTION_PERIOD_S)

    # -- introspection ----------------------------------------------------------------------

    def stats(self) -> RuntimeStats:
        return RuntimeStats(
            started_at=self.started_at,
            written_batches=self.written_batches,
            written_samples=self.written_samples,
            write_errors=self.write_errors,
            last_write_error=self.last_write_error,
            write_failing=self.write_failing,
        )

    @property
    def tasks(self) -> frozenset[asyncio.Task[Any]]:
        return frozenset(self._tasks)
