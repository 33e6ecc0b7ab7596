"""The adapter's read path against real asyncua servers: subscriptions into Batches, qualities,
refused items, loss and reconnection."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import numpy as np
import pytest
from asyncua import ua

from factory5g.connect.opcua import OpcUaAdapter, OpcUaConnectionError
from factory5g.model import Site
from factory5g.sim import Plant, Simulator
from factory5g.sim.opcua import OpcUaPeers, stop_server
from factory5g.store import MemoryStore
from factory5g.stream import Batch, MemoryBus, MemorySubscription, Quality
from tests.connect.opcua.conftest import (
    WITHIN_S,
    Proxy,
    SharedServer,
    device_site,
    node,
    start_server,
)
from tests.connect.opcua.test_sim import demo_site
from tests.helpers import eventually, wait_until

# A signal the demo server does not have.
GHOST = """  [[equipment.signal]]
  name = "ghost"
  binding = { kind = "opcua", endpoint = "mill", node = "ns=2;s=f1.ghost" }
"""
T0 = datetime(2026, 1, 1, 8, 0, 0, 250_000, tzinfo=UTC)
T0_NS = 1_767_254_400_250_000_000


class Collector:
    """Everything published on the bus, kept in order (the store of the test)."""

    def __init__(self, bus: MemoryBus) -> None:
        self.sub: MemorySubscription = bus.subscribe("test", maxsize=100_000)
        self.batches: list[Batch] = []

    def drain(self) -> list[Batch]:
        while (b := self.sub.get_nowait()) is not None:
            self.batches.append(b)
        return self.batches

    def samples(self, signal: int) -> Batch:
        return Batch.concat(self.drain()).for_signals([signal])

    def seen(self, signal: int, quality: int, value: float | None = None) -> bool:
        s = self.samples(signal)
        hit = s.quality == quality
        if value is not None:
            hit &= s.value == value
        return bool(hit.any())


@contextlib.asynccontextmanager
async def running(site: Site) -> AsyncIterator[tuple[OpcUaAdapter, Collector]]:
    async with MemoryBus() as bus:
        collector = Collector(bus)
        async with OpcUaAdapter(site, bus) as adapter:
            yield adapter, collector


async def test_the_demo_plant_reaches_the_bus_and_the_store(
    free_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Simulator → demo OPC UA server → adapter → bus → store: the values of the ticks, with
    the ticks' timestamps, GOOD; an item the server does not have is BAD and counted."""
    url = f"opc.tcp://127.0.0.1:{free_port}/demo"
    site = demo_site(url, extra=GHOST)
    speed = site.signals.get("f1.speed").id
    present = site.signals.get("f1.strip_present").id
    ghost = site.signals.get("f1.ghost").id
    plant = Plant(site)
    ticks: dict[int, dict[int, float]] = {}  # µs timestamp → the tick's values

    class Recorder:
        def __init__(self, peers: OpcUaPeers) -> None:
            self.peers = peers

        async def update(self, batch: Batch, ts_ns: int) -> None:
            ticks[ts_ns // 1000] = dict(
                zip(batch.signal.tolist(), batch.value.tolist(), strict=True)
            )
            await self.peers.update(batch, ts_ns)

    caplog.set_level(logging.WARNING, logger="factory5g.connect.opcua")
    async with MemoryBus() as bus, MemoryStore() as store:
        collector = Collector(bus)
        async with OpcUaPeers(site, plant) as peers, OpcUaAdapter(site, bus) as adapter:
            async with Simulator(site, bus, plant=plant, peers=[Recorder(peers)], rate_hz=20):
                written = 0

                async def stored() -> bool:
                    nonlocal written
                    for b in collector.drain()[written:]:
                        await store.write(b)
                    written = len(collector.batches)
                    return len(await store.query(speed, 0, 2**62)) >= 20

                await eventually(stored, WITHIN_S, "20 samples of f1.speed in the store")
            stats = adapter.stats()
        batches = collector.drain()
        samples = await store.query(speed, 0, 2**62)
        last_present = await store.latest([present])

    assert (samples.quality == Quality.GOOD).all()
    for ts, value in zip(samples.ts.tolist(), samples.value.tolist(), strict=True):
        assert ts % 1000 == 0  # a SourceTimestamp (µs), not the time of arrival
        assert ticks[ts // 1000][speed] == value
    assert set(np.unique(samples.value).tolist()) > {samples.value[0]}  # values that move
    assert last_present.value[0] in (0.0, 1.0)

    bad = Batch.concat(batches).for_signals([ghost])
    assert len(bad) == 1
    assert bad.quality[0] == Quality.BAD
    assert math.isnan(bad.value[0])

    (ep,) = stats["endpoints"]
    assert stats["connected"] is True
    assert ep["id"] == "mill"
    assert ep["url"] == url
    assert ep["items"] == 4
    assert ep["bad_items"] == 1
    assert ep["errors"] >= 1
    assert "ns=2;s=f1.ghost" in ep["last_error"]
    assert "BadNodeIdUnknown" in ep["last_error"]
    assert ep["reconnects"] == 0
    assert ep["publishing_ms"] == 100.0
    assert ep["last_data"] is not None
    # ONE Batch per NotificationMessage: the data batches are as many as the notifications
    data = [b for b in batches if not (len(b) == 1 and b.signal[0] == ghost)]
    assert len(data) == ep["notifications"]
    assert ep["samples"] == sum(len(b) for b in data)
    assert max(len(b) for b in data) >= 3  # the first message carries every item
    refused = [r for r in caplog.records if "ns=2;s=f1.ghost" in r.getMessage()]
    assert refused
    assert "'mill'" in refused[0].getMessage()
    assert url in refused[0].getMessage()


async def test_values_qualities_and_text(shared_server: SharedServer) -> None:
    """Numbers, Booleans and text, with the server's source timestamps; Uncertain and Bad
    status codes become UNCERTAIN and BAD samples."""
    url = shared_server.url
    site = device_site(
        "plc",
        [
            ("level", "float", node("double")),
            ("running", "bool", node("bool")),
            ("state", "string", node("text")),
            ("count", "int", node("int16")),
        ],
        opcua=f'[[opcua]]\nid = "plc"\nurl = "{url}"\npublishing_ms = 50\n',
    )
    level, run, state, count = (
        site.signals.get(f"dev.{n}").id for n in ("level", "running", "state", "count")
    )
    async with running(site) as (adapter, got):
        await wait_until(lambda: adapter.stats()["connected"], WITHIN_S, "a session")

        def put(name: str, value: object, vtype: ua.VariantType, status: int = 0) -> None:
            shared_server.set_value(
                name,
                ua.DataValue(
                    Value=ua.Variant(value, vtype),
                    StatusCode=ua.StatusCode(ua.UInt32(status)),
                    SourceTimestamp=T0,  # type: ignore[arg-type]
                ),
            )

        put("double", 2.25, ua.VariantType.Double)
        put("bool", True, ua.VariantType.Boolean)
        put("text", "rolling", ua.VariantType.String)
        put("int16", -300, ua.VariantType.Int16)
        await wait_until(lambda: got.seen(level, Quality.GOOD, 2.25), WITHIN_S, "2.25")
        await wait_until(lambda: got.seen(run, Quality.GOOD, 1.0), WITHIN_S, "True")
        await wait_until(lambda: got.seen(count, Quality.GOOD, -300.0), WITHIN_S, "-300")
        await wait_until(
            lambda: any(e.data == "rolling" for b in got.drain() for e in b.events),
            WITHIN_S,
            "the text event",
        )
        good = got.samples(level)
        assert good.ts[good.value == 2.25][0] == T0_NS
        (event,) = [e for b in got.drain() for e in b.events if e.data == "rolling"]
        assert event.signal == state
        assert event.ts == T0_NS
        assert not len(got.samples(state))  # text travels as events only

        put("double", 2.5, ua.VariantType.Double, ua.StatusCodes.UncertainLastUsableValue)
        await wait_until(lambda: got.seen(level, Quality.UNCERTAIN, 2.5), WITHIN_S, "uncertain")
        put("double", 0.0, ua.VariantType.Double, ua.StatusCodes.BadSensorFailure)
        await wait_until(lambda: got.seen(level, Quality.BAD), WITHIN_S, "a bad sample")
        (ep,) = adapter.stats()["endpoints"]
        assert ep["bad_items"] == 0
        assert ep["unsupported"] == 0


async def test_a_server_restart_is_survived(free_port: int) -> None:
    """The server goes away: BAD_NOT_CONNECTED once (however many reconnect attempts fail),
    then the adapter reconnects on its own and GOOD data flows again."""
    url = f"opc.tcp://127.0.0.1:{free_port}/test"
    site = device_site(
        "plc",
        [("level", "float", node("double"))],
        opcua=(f'[[opcua]]\nid = "plc"\nurl = "{url}"\npublishing_ms = 50\n'),
    )
    level = site.signals.get("dev.level").id
    server = await start_server(free_port)
    try:
        async with running(site) as (adapter, got):
            await wait_until(lambda: got.seen(level, Quality.GOOD, 1.5), WITHIN_S, "data")
            await stop_server(server)
            await wait_until(lambda: got.seen(level, Quality.BAD_NOT_CONNECTED), WITHIN_S, "bad")
            await wait_until(lambda: adapter.stats()["endpoints"][0]["errors"] >= 3, WITHIN_S)
            assert adapter.stats()["connected"] is False
            server = await start_server(free_port)
            await server.write_attribute_value(
                ua.NodeId.from_string(node("double")),
                ua.DataValue(ua.Variant(7.5, ua.VariantType.Double)),
            )
            await wait_until(lambda: got.seen(level, Quality.GOOD, 7.5), WITHIN_S, "data again")
            # Connected once subscribed: the first notification may come a moment before.
            await wait_until(lambda: adapter.stats()["connected"], WITHIN_S, "connected")
            (ep,) = adapter.stats()["endpoints"]
            assert ep["connected"] is True
            assert ep["reconnects"] >= 1
            s = got.samples(level)
            assert int(np.count_nonzero(s.quality == Quality.BAD_NOT_CONNECTED)) == 1
    finally:
        await stop_server(server)


async def test_an_unreachable_server_is_reported(free_port: int) -> None:
    url = f"opc.tcp://127.0.0.1:{free_port}"
    site = device_site(url, [("level", "float", node("double"))])
    level = site.signals.get("dev.level").id
    async with running(site) as (adapter, got):
        await wait_until(lambda: adapter.stats()["endpoints"][0]["errors"] >= 3, WITHIN_S)
        (ep,) = adapter.stats()["endpoints"]
        assert ep["id"] == url  # an inline endpoint: its URL is its id
        assert ep["connected"] is False
        assert "ConnectionRefused" in ep["last_error"]
        assert url in ep["last_error"]
        bad = got.samples(level)
        assert len(bad) == 1  # once per transition, not once per attempt
        assert bad.quality[0] == Quality.BAD_NOT_CONNECTED
        with pytest.raises(OpcUaConnectionError, match="not connected") as caught:
            await adapter.write(level, 1.0)
        assert caught.value.endpoint == url
        assert caught.value.signal == level


async def test_a_silent_server_is_detected(shared_server: SharedServer) -> None:
    """The link goes dead without closing (a hung server, a pulled cable somewhere): the
    watchdog notices, the signals go BAD_NOT_CONNECTED, and the session comes back with it."""
    port = int(shared_server.url.rsplit(":", 1)[1].split("/")[0])
    async with Proxy(port) as proxy:
        url = f"opc.tcp://127.0.0.1:{proxy.port}/test"
        site = device_site(
            "plc",
            [("level", "float", node("readonly"))],  # 3.0: no other test here changes it
            opcua=f'[[opcua]]\nid = "plc"\nurl = "{url}"\npublishing_ms = 50\ntimeout_s = 1\n',
        )
        level = site.signals.get("dev.level").id
        async with running(site) as (adapter, got):
            await wait_until(lambda: adapter.stats()["connected"], WITHIN_S, "a session")
            await wait_until(lambda: got.seen(level, Quality.GOOD, 3.0), WITHIN_S, "data")
            proxy.pause()
            await wait_until(lambda: got.seen(level, Quality.BAD_NOT_CONNECTED), WITHIN_S, "bad")
            assert adapter.stats()["connected"] is False
            proxy.resume()
            await wait_until(lambda: adapter.stats()["connected"], WITHIN_S, "the session back")
            assert adapter.stats()["endpoints"][0]["reconnects"] >= 1
