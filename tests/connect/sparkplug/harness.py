"""What the Sparkplug host tests share: the host on a broker with a recorder of what it publishes
on the bus, a hand-driven edge node that can misbehave, and an MQTT listener.

The host under test is ``SparkplugHost`` as the platform runs it: a site file (TOML text), a
``MemoryBus``, the real Mosquitto of ``tests/connect/conftest.py``. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, NamedTuple, Protocol, Self

import numpy as np

from factory5g.connect.mqtt import Message, MqttClient, MqttOptions
from factory5g.connect.sparkplug import SparkplugHost
from factory5g.connect.sparkplug.payload import (
    DataType,
    Metric,
    MetricValue,
    Payload,
    PropertySet,
    PropertyValue,
    decode_payload,
    encode_payload,
)
from factory5g.connect.sparkplug.topic import MessageType, Topic
from factory5g.model import Site, load_text
from factory5g.store import MemoryStore
from factory5g.stream import Batch, Event, MemoryBus, MemorySubscription, Quality

HOST_ID: Final = "h1"
STATE_TOPIC: Final = f"spBv1.0/STATE/{HOST_ID}"
# Fixed timestamps (2026-01-01T00:00:00Z): a sample's ts says which message it came from.
T0_MS: Final = 1_767_225_600_000
NS_PER_MS: Final = 1_000_000
WITHIN_S: Final = 10.0

# A plant with one press whose Force is bound to a Sparkplug metric, an oven that a
# [[sparkplug.map]] entry gives edge node g1/e2, and a mill whose Speed is bound to a node metric
# of g1/e4. The reorder timeout is short so that gap tests stay fast.
SITE: Final = """
[site]
name = "sparkplug-test"
prefix = "88.1"

[[equipment]]
id = "press"
area = "forming"
line = "l1"
  [[equipment.signal]]
  name = "force"
  unit = "kN"
  binding = { kind = "sparkplug", group = "g1", edge = "e1", device = "press", metric = "Force" }

[[equipment]]
id = "oven"
area = "forming"
line = "l1"
  [[equipment.signal]]
  name = "door"
  type = "bool"
  binding = { kind = "sparkplug", group = "g1", edge = "e5", device = "split", metric = "Door" }

[[equipment]]
id = "mill"
area = "forming"
line = "l1"
  [[equipment.signal]]
  name = "speed"
  unit = "rpm"
  binding = { kind = "sparkplug", group = "g1", edge = "e4", metric = "Speed" }
  [[equipment.signal]]
  name = "torque"
  unit = "Nm"
  binding = { kind = "sparkplug", group = "g1", edge = "e5", device = "split", metric = "Torque" }

[sparkplug]
host_id = "h1"
reorder_timeout_s = 0.3

[[sparkplug.map]]
group = "g1"
edge = "e2"
equipment = "oven"
"""


class Where(Protocol):
    """A broker, or a TCP proxy in front of one."""

    host: str
    port: int


def mqtt_options(where: Where, client_id: str, **overrides: Any) -> MqttOptions:
    """Client options for test peers: quick reconnects, so a broker restart costs tenths of a s."""
    values: dict[str, Any] = {"reconnect_min_s": 0.05, "reconnect_max_s": 0.5}
    values.update(overrides)
    return MqttOptions(host=where.host, port=where.port, client_id=client_id, **values)


def ns(ms: int) -> int:
    return ms * NS_PER_MS


# -- what the host published ----------------------------------------------------------------


class Sample(NamedTuple):
    ts: int
    value: float
    quality: int
    historical: bool


class Recorder:
    """Every Batch the host publishes, in order, and a MemoryStore fed with them."""

    def __init__(self, sub: MemorySubscription) -> None:
        self.sub = sub
        self.batches: list[Batch] = []
        self.store = MemoryStore()

    async def run(self) -> None:
        async for batch in self.sub:
            self.batches.append(batch)
            await self.store.write(batch)

    def samples(self, signal: int) -> list[Sample]:
        out: list[Sample] = []
        for b in self.batches:
            for i in np.flatnonzero(b.signal == signal).tolist():
                out.append(Sample(int(b.ts[i]), float(b.value[i]), int(b.quality[i]), b.historical))
        return out

    def values(self, signal: int, quality: int = Quality.GOOD) -> list[float]:
        return [s.value for s in self.samples(signal) if s.quality == quality]

    def with_quality(self, signal: int, quality: int) -> list[Sample]:
        return [s for s in self.samples(signal) if s.quality == quality]

    def events(self, signal: int) -> list[Event]:
        return [e for b in self.batches for e in b.events if e.signal == signal]


@dataclass
class Harness:
    host: SparkplugHost
    site: Site
    bus: MemoryBus
    rec: Recorder

    def sid(self, path: str) -> int:
        """The id of the signal at ``equipment.signal``."""
        return self.site.signals.get(path).id

    def has(self, path: str) -> bool:
        return path in self.site.signals

    def node(self, edge: str, group: str = "g1") -> dict[str, Any]:
        """The host's stats of one edge node."""
        for n in self.host.stats()["nodes"]:
            if n["group"] == group and n["edge"] == edge:
                return dict(n)
        raise AssertionError(f"the host does not know {group}/{edge}")


def spy_on_batches(client: MqttClient, taken: list[Message]) -> None:
    """Record in ``taken`` every message ``client.batches()`` hands its consumer, in order."""
    batches = client.batches

    async def spied() -> AsyncIterator[list[Message]]:
        async for batch in batches():
            taken.extend(batch)
            yield batch

    client.batches = spied  # type: ignore[method-assign]


@asynccontextmanager
async def running_host(
    where: Where, site_text: str = SITE, *, spy: list[Message] | None = None, **settings: Any
) -> AsyncIterator[Harness]:
    """The host on ``where`` with the site's [sparkplug] settings (``settings`` override them),
    connected and subscribed; what it publishes is recorded, and with ``spy`` every message its
    MQTT client handed it too."""
    site = load_text(site_text)
    assert site.file.sparkplug is not None
    sp = site.file.sparkplug.model_copy(update=settings)
    async with MemoryBus() as bus:
        rec = Recorder(bus.subscribe("test", maxsize=1_000_000))
        task = asyncio.create_task(rec.run(), name="test-recorder")
        try:
            host = SparkplugHost(site, bus, sp, broker_host=where.host, broker_port=where.port)
            if spy is not None:
                spy_on_batches(host.client, spy)
            async with host:
                async with asyncio.timeout(WITHIN_S):
                    await host.client.wait_connected()
                yield Harness(host, site, bus, rec)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await rec.store.close()


# -- a hand-driven edge node ----------------------------------------------------------------


def unit(name: str) -> PropertySet:
    """The engUnit property (Ignition's convention)."""
    return PropertySet(keys=("engUnit",), values=(PropertyValue(type=DataType.String, value=name),))


def m(
    name_or_alias: str | int,
    datatype: int,
    value: MetricValue | None,
    *,
    alias: int | None = None,
    **kwargs: Any,
) -> Metric:
    return Metric.for_value(name_or_alias, datatype, value, alias=alias, **kwargs)


class RawEdge:
    """An edge node whose every message is built by the test: it can send a wrong seq, DATA
    before BIRTH, unknown aliases, bad bytes. ``seq`` is kept as the specification says unless
    a message passes its own."""

    def __init__(self, where: Where, edge: str = "e1", group: str = "g1") -> None:
        self.group = group
        self.edge = edge
        self.client = MqttClient(mqtt_options(where, f"raw-{group}-{edge}"))
        self.seq = 0

    async def __aenter__(self) -> Self:
        await self.client.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.client.__aexit__(exc_type, exc, tb)

    def topic(self, mtype: MessageType, device: str | None = None) -> str:
        return str(Topic(mtype, self.group, self.edge, device))

    def next_seq(self) -> int:
        seq = self.seq
        self.seq = (seq + 1) % 256
        return seq

    async def send(
        self,
        mtype: MessageType,
        metrics: Sequence[Metric],
        *,
        device: str | None = None,
        ts: int | None = T0_MS,
        seq: int | None = None,
    ) -> int:
        """Publish ``mtype`` with the next seq (or ``seq``); returns the seq sent."""
        s = self.next_seq() if seq is None else seq
        payload = Payload(timestamp=ts, metrics=tuple(metrics), seq=s)
        await self.client.publish(self.topic(mtype, device), encode_payload(payload))
        return s

    async def nbirth(self, *metrics: Metric, bd_seq: int = 0, ts: int = T0_MS) -> None:
        self.seq = 0
        await self.send(
            MessageType.NBIRTH,
            (
                m("bdSeq", DataType.Int64, bd_seq),
                m("Node Control/Rebirth", DataType.Boolean, False),
                *metrics,
            ),
            ts=ts,
        )

    async def dbirth(self, device: str, *metrics: Metric, ts: int = T0_MS) -> None:
        await self.send(MessageType.DBIRTH, metrics, device=device, ts=ts)

    async def ndata(self, *metrics: Metric, ts: int | None = T0_MS, seq: int | None = None) -> int:
        return await self.send(MessageType.NDATA, metrics, ts=ts, seq=seq)

    async def ddata(
        self, device: str, *metrics: Metric, ts: int | None = T0_MS, seq: int | None = None
    ) -> int:
        return await self.send(MessageType.DDATA, metrics, device=device, ts=ts, seq=seq)

    async def ndeath(self, bd_seq: int, ts: int = T0_MS) -> None:
        payload = Payload(timestamp=ts, metrics=(m("bdSeq", DataType.Int64, bd_seq),))
        await self.client.publish(self.topic(MessageType.NDEATH), encode_payload(payload), qos=1)

    async def ddeath(self, device: str, ts: int = T0_MS) -> None:
        await self.send(MessageType.DDEATH, (), device=device, ts=ts)

    async def raw(self, topic: str, payload: bytes) -> None:
        await self.client.publish(topic, payload)


# -- a listener -----------------------------------------------------------------------------


class Listener:
    """A plain MQTT client recording what the broker sends it on ``filters``."""

    def __init__(self, where: Where, filters: Sequence[str], client_id: str = "listener") -> None:
        self.client = MqttClient(mqtt_options(where, client_id))
        self.filters = list(filters)
        self.messages: list[Message] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self.client.__aenter__()
        try:
            await self.client.subscribe([(f, 1) for f in self.filters])
            self._task = asyncio.create_task(self._run(), name="test-listener")
        except BaseException:
            await self.client.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.client.__aexit__(exc_type, exc, tb)

    async def _run(self) -> None:
        async for batch in self.client.batches():
            self.messages.extend(batch)

    def on(self, topic: str) -> list[Message]:
        return [msg for msg in self.messages if msg.topic == topic]


def is_rebirth_request(msg: Message) -> bool:
    """An NCMD carrying exactly ``Node Control/Rebirth`` = true (Sparkplug 3.0 §6.4.x)."""
    payload = decode_payload(msg.payload)
    got = [(x.name, x.datatype, x.value) for x in payload.metrics]
    return got == [("Node Control/Rebirth", DataType.Boolean, True)]


def rebirth_requests(listener: Listener, edge: str, group: str = "g1") -> list[Message]:
    topic = str(Topic(MessageType.NCMD, group, edge))
    return [msg for msg in listener.on(topic) if is_rebirth_request(msg)]


def state(msg: Message) -> dict[str, Any]:
    out = json.loads(msg.payload)
    assert isinstance(out, dict)
    return out
