"""A Sparkplug B edge node: the demo plant's gateways, and the peer of tests and benchmarks.

It does what an edge node must (Sparkplug 3.0 §5): a Will of NDEATH with the session's ``bdSeq``;
NBIRTH (seq 0, ``bdSeq``, ``Node Control/Rebirth``) then one DBIRTH per device, waiting first for
the primary host's ``online`` STATE when one is named; ``seq`` +1 on every later message, wrapping
at 255; DATA by alias; a rebirth on ``Node Control/Rebirth``; other commands handed to a callback.

:class:`DataEncoder` writes DDATA payloads of numeric metrics with numpy instead of one Python
object per metric, so that a benchmark's publishers are not the bottleneck they measure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from factory5g.connect.mqtt import Message, MqttClient, MqttError, MqttOptions
from factory5g.connect.sparkplug.errors import SparkplugDecodeError
from factory5g.connect.sparkplug.payload import (
    DataType,
    Metric,
    MetricValue,
    Payload,
    decode_payload,
    encode_payload,
)
from factory5g.connect.sparkplug.topic import NAMESPACE, MessageType, Topic, check_id

__all__ = ["DataEncoder", "EdgeNode", "MetricSpec", "OnCommand"]

log = logging.getLogger(__name__)

OnCommand = Callable[[str | None, Metric], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """A metric an edge node or device publishes: name, datatype, alias and engineering unit."""

    name: str
    datatype: int = DataType.Double
    alias: int | None = None
    unit: str = ""


class EdgeNode:
    """An edge node: ``async with EdgeNode(options, group, edge, devices=...) as node``."""

    def __init__(
        self,
        options: MqttOptions,
        group: str,
        edge: str,
        *,
        node_metrics: Sequence[MetricSpec] = (),
        devices: Mapping[str, Sequence[MetricSpec]] | None = None,
        primary_host: str | None = None,
        on_command: OnCommand | None = None,
        initial: Mapping[tuple[str | None, str], MetricValue] | None = None,
    ) -> None:
        self.group = check_id(group, "group")
        self.edge = check_id(edge, "edge node")
        self.node_metrics = tuple(node_metrics)
        self.devices = {check_id(d, "device"): tuple(m) for d, m in (devices or {}).items()}
        self.primary_host = primary_host
        self.on_command = on_command
        self.values: dict[tuple[str | None, str], MetricValue] = dict(initial or {})
        self.bd_seq = -1  # incremented before each connect: the first session has 0
        self.seq = 0
        self.births = 0
        self.rebirth_requests = 0
        self._born = asyncio.Event()
        self._host_online = asyncio.Event()
        self._subscribed = False
        self._lock = asyncio.Lock()
        self._options = options
        self.client = self._new_client()
        self._tasks: set[asyncio.Task[Any]] = set()

    def _new_client(self) -> MqttClient:
        self.bd_seq = (self.bd_seq + 1) % 256
        will = Message(
            str(Topic(MessageType.NDEATH, self.group, self.edge)),
            encode_payload(
                Payload(metrics=(Metric.for_value("bdSeq", DataType.Int64, self.bd_seq),))
            ),
            qos=1,
        )
        opts = MqttOptions(
            host=self._options.host,
            port=self._options.port,
            client_id=self._options.client_id or f"f5g-edge-{self.group}-{self.edge}",
            username=self._options.username,
            password=self._options.password,
            tls=self._options.tls,
            keepalive_s=self._options.keepalive_s,
            will=will,
            wait_for_broker=self._options.wait_for_broker,
            connect_timeout_s=self._options.connect_timeout_s,
            reconnect_min_s=self._options.reconnect_min_s,
            reconnect_max_s=self._options.reconnect_max_s,
        )
        return MqttClient(opts, on_connect=self._on_connect, on_disconnect=self._on_disconnect)

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.client.__aenter__()
        try:
            task = asyncio.create_task(self._commands(), name=f"edge-{self.edge}-commands")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
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
        # A clean stop publishes NDEATH itself (the Will is only for a lost connection).
        if self.client.connected:
            try:
                await asyncio.wait_for(self.client.publish(*self._death()), 2)
            except (TimeoutError, OSError, MqttError) as e:
                log.warning("edge %s: NDEATH not sent: %s", self.edge, e)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.__aexit__(exc_type, exc, tb)

    @property
    def born(self) -> bool:
        """True once the births of the current session are out."""
        return self._born.is_set()

    async def wait_born(self, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            await self._born.wait()

    def _death(self) -> tuple[str, bytes, int]:
        payload = Payload(metrics=(Metric.for_value("bdSeq", DataType.Int64, self.bd_seq),))
        return str(Topic(MessageType.NDEATH, self.group, self.edge)), encode_payload(payload), 1

    async def _on_disconnect(self, client: MqttClient, reason: str) -> None:
        # Nothing may be published on the next session before its births (Sparkplug §5.7).
        self._born.clear()
        self._host_online.clear()

    async def _on_connect(self, client: MqttClient) -> None:
        self._born.clear()
        # A retained online STATE must trigger the births of this new session too.
        self._host_online.clear()
        if self._subscribed:  # the client re-sends its subscriptions after a reconnect
            if not self.primary_host:
                await self.birth()
            return
        self._subscribed = True
        subs = [
            (str(Topic(MessageType.NCMD, self.group, self.edge)), 1),
            (f"{NAMESPACE}/{self.group}/DCMD/{self.edge}/+", 1),
        ]
        if self.primary_host:
            subs.append((f"{NAMESPACE}/STATE/{self.primary_host}", 1))
        await client.subscribe(subs)
        if not self.primary_host:
            await self.birth()

    # -- publishing -------------------------------------------------------------------------

    def next_seq(self) -> int:
        seq = self.seq
        self.seq = (self.seq + 1) % 256
        return seq

    async def birth(self) -> None:
        """NBIRTH then every DBIRTH, with the current values (Sparkplug §5.7, §5.10)."""
        async with self._lock:
            self.seq = 0
            now = int(time.time() * 1000)
            metrics = [
                Metric.for_value("bdSeq", DataType.Int64, self.bd_seq),
                Metric.for_value("Node Control/Rebirth", DataType.Boolean, False),
                *(self._birth_metric(None, m) for m in self.node_metrics),
            ]
            await self.client.publish(
                str(Topic(MessageType.NBIRTH, self.group, self.edge)),
                encode_payload(Payload(timestamp=now, metrics=tuple(metrics), seq=self.next_seq())),
            )
            for device, specs in self.devices.items():
                payload = Payload(
                    timestamp=now,
                    metrics=tuple(self._birth_metric(device, m) for m in specs),
                    seq=self.next_seq(),
                )
                await self.client.publish(
                    str(Topic(MessageType.DBIRTH, self.group, self.edge, device)),
                    encode_payload(payload),
                )
            self.births += 1
            self._born.set()

    def _birth_metric(self, device: str | None, m: MetricSpec) -> Metric:
        from factory5g.connect.sparkplug.payload import PropertySet, PropertyValue

        props = (
            PropertySet(
                keys=("engUnit",), values=(PropertyValue(type=DataType.String, value=m.unit),)
            )
            if m.unit
            else None
        )
        return Metric.for_value(
            m.name,
            m.datatype,
            self.values.get((device, m.name)),
            alias=m.alias,
            properties=props,
        )

    async def publish(
        self,
        device: str | None,
        values: Mapping[str, MetricValue],
        *,
        timestamp_ms: int | None = None,
        historical: bool = False,
    ) -> None:
        """NDATA/DDATA of ``values`` by name → sent by alias when the metric has one."""
        specs = {m.name: m for m in (self.devices[device] if device else self.node_metrics)}
        ts = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
        metrics = []
        for name, value in values.items():
            spec = specs[name]
            self.values[(device, name)] = value
            key: str | int = spec.alias if spec.alias is not None else name
            metrics.append(
                Metric.for_value(key, spec.datatype, value, timestamp=ts, is_historical=historical)
            )
        await self.publish_raw(
            device,
            lambda seq: encode_payload(Payload(timestamp=ts, metrics=tuple(metrics), seq=seq)),
        )

    async def publish_raw(self, device: str | None, make: Callable[[int], bytes]) -> None:
        """Publish a DATA payload built by ``make(seq)`` (e.g. by a :class:`DataEncoder`)."""
        await self._born.wait()
        async with self._lock:
            mtype = MessageType.DDATA if device else MessageType.NDATA
            await self.client.publish(
                str(Topic(mtype, self.group, self.edge, device)), make(self.next_seq())
            )

    # -- commands ---------------------------------------------------------------------------

    async def _commands(self) -> None:
        async for messages in self.client.batches():
            for msg in messages:
                await self._command(msg)

    async def _command(self, msg: Message) -> None:
        if msg.topic.startswith(f"{NAMESPACE}/STATE/"):
            try:
                online = json.loads(msg.payload).get("online") is True
            except (ValueError, AttributeError):
                return
            if online and not self._host_online.is_set():
                self._host_online.set()
                await self.birth()
            elif not online:
                self._host_online.clear()
            return
        parts = msg.topic.split("/")
        device = parts[4] if len(parts) == 5 else None
        try:
            payload = decode_payload(msg.payload)
        except SparkplugDecodeError as e:
            log.warning("edge %s: bad command on %s: %s", self.edge, msg.topic, e)
            return
        for metric in payload.metrics:
            if device is None and metric.name == "Node Control/Rebirth" and metric.value is True:
                self.rebirth_requests += 1
                await self.birth()
            elif self.on_command is not None:
                await self.on_command(device, self._named(device, metric))

    def _named(self, device: str | None, metric: Metric) -> Metric:
        """A command metric with its name filled in from the alias (CMD may carry only it)."""
        if metric.name is not None or metric.alias is None:
            return metric
        for m in self.devices.get(device, ()) if device else self.node_metrics:
            if m.alias == metric.alias:
                return Metric(
                    name=m.name,
                    alias=metric.alias,
                    timestamp=metric.timestamp,
                    datatype=metric.datatype or m.datatype,
                    value=metric.value,
                    is_null=metric.is_null,
                )
        return metric

    def reconnect_with_new_session(self) -> None:
        """For tests: the next session uses a new bdSeq (as after a power cycle)."""
        self.client = self._new_client()


class DataEncoder:
    """DATA payloads of Double metrics by alias, written with numpy (no object per metric).

    Layout per metric (proto2, Sparkplug §6.4.4): ``0x12 len`` then alias (field 2, varint),
    timestamp (field 3, varint), datatype (field 4 = 10, Double) and double_value (field 13,
    fixed64). Aliases must all have the same varint length; timestamps the same too (true for
    ms timestamps between 2004 and 2527).
    """

    def __init__(self, aliases: ArrayLike) -> None:
        a = np.asarray(aliases, np.int64)
        enc = [_varint(int(x)) for x in a.tolist()]
        if len({len(e) for e in enc}) != 1:
            raise ValueError("aliases must share one varint length (e.g. all in 128..16383)")
        self.n = len(enc)
        self._alias = np.frombuffer(b"".join(enc), np.uint8).reshape(self.n, -1)

    def encode(self, values: NDArray[np.float64], timestamp_ms: int, seq: int) -> bytes:
        ts = _varint(timestamp_ms)
        alias_len = self._alias.shape[1]
        body = 1 + alias_len + 1 + len(ts) + 2 + 1 + 8
        rec = np.empty((self.n, 2 + body), np.uint8)
        rec[:, 0] = 0x12  # Payload.2 metrics, length-delimited
        rec[:, 1] = body
        o = 2
        rec[:, o] = 0x10  # Metric.2 alias, varint
        rec[:, o + 1 : o + 1 + alias_len] = self._alias
        o += 1 + alias_len
        rec[:, o] = 0x18  # Metric.3 timestamp, varint
        rec[:, o + 1 : o + 1 + len(ts)] = np.frombuffer(ts, np.uint8)
        o += 1 + len(ts)
        rec[:, o] = 0x20  # Metric.4 datatype
        rec[:, o + 1] = DataType.Double
        o += 2
        rec[:, o] = 0x69  # Metric.13 double_value, fixed64
        rec[:, o + 1 :] = np.asarray(values, "<f8").view(np.uint8).reshape(self.n, 8)
        head = b"\x08" + _varint(timestamp_ms)  # Payload.1 timestamp
        return head + rec.tobytes() + b"\x18" + _varint(seq)  # Payload.3 seq


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)
