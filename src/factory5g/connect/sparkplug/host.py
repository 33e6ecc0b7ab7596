"""The Sparkplug B 3.0 Primary Host Application.

What it does, in the order of the specification:

* connects to the broker with a Will on ``spBv1.0/STATE/<host_id>`` (``online: false``, retained,
  QoS 1), publishes ``online: true`` with the same timestamp after every (re)connect, subscribes
  to the Sparkplug namespace (all groups, or the configured ones) and to its own STATE topic;
* NBIRTH/DBIRTH create or update signals: mapped to the site file's equipment (a signal binding,
  or a ``[[sparkplug.map]]`` entry), else under the ``unassigned`` area — never dropped;
* NDATA/DDATA are decoded in bulk into columnar Batches (``fastdecode``): many payloads per call,
  aliases mapped to signal ids with one vectorised lookup;
* sequence numbers per edge node (0..255, wrapping): a message that arrives early waits up to
  ``reorder_timeout_s`` for the missing one; then the host requests a rebirth and marks the node's
  signals stale. DATA before BIRTH, an unknown alias or a bdSeq mismatch → rebirth request;
* NDEATH with the current bdSeq, DDEATH, or the loss of our own MQTT session → the signals get a
  bad-quality sample at that instant; an NDEATH with an older bdSeq is stale and ignored;
* ``write(signal, value)`` publishes NCMD/DCMD by alias with the metric's datatype.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import os
import re
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self

import numpy as np
from numpy.typing import NDArray

from factory5g.aio import cancel_and_wait
from factory5g.connect.base import UnknownTargetError, WriteRejectedError, WriteResult, WriteValue
from factory5g.connect.mqtt import Message, MqttClient, MqttError, MqttOptions
from factory5g.connect.sparkplug import fastdecode
from factory5g.connect.sparkplug.errors import SparkplugDecodeError, SparkplugTopicError
from factory5g.connect.sparkplug.payload import (
    DataType as SpType,
)
from factory5g.connect.sparkplug.payload import (
    Metric,
    Payload,
    decode_payload,
    encode_payload,
)
from factory5g.connect.sparkplug.topic import NAMESPACE, MessageType, Topic, parse_topic
from factory5g.model import Site
from factory5g.model.site import DataType, SparkplugSettings
from factory5g.stream import Batch, Bus, Event, Quality

__all__ = ["NodeStats", "SparkplugHost"]

log = logging.getLogger(__name__)

REBIRTH_METRIC: Final = "Node Control/Rebirth"
BD_SEQ_METRIC: Final = "bdSeq"
UNASSIGNED_AREA: Final = "unassigned"
_NS_PER_MS: Final = 1_000_000
_IGNORE: Final = -1  # alias known, but not a signal (bdSeq, Node Control/...)
_LOG_EVERY_S: Final = 10.0
_TOPIC_CACHE: Final = 65_536  # parsed topics kept (a plant has a few thousand)

_INT_TYPES: Final = frozenset(
    {
        SpType.Int8,
        SpType.Int16,
        SpType.Int32,
        SpType.Int64,
        SpType.UInt8,
        SpType.UInt16,
        SpType.UInt32,
        SpType.UInt64,
        SpType.DateTime,
    }
)
_FLOAT_TYPES: Final = frozenset({SpType.Float, SpType.Double})
_INT_RANGES: Final = {
    SpType.Int8: (-(2**7), 2**7 - 1),
    SpType.Int16: (-(2**15), 2**15 - 1),
    SpType.Int32: (-(2**31), 2**31 - 1),
    SpType.Int64: (-(2**63), 2**63 - 1),
    SpType.UInt8: (0, 2**8 - 1),
    SpType.UInt16: (0, 2**16 - 1),
    SpType.UInt32: (0, 2**32 - 1),
    SpType.UInt64: (0, 2**64 - 1),
    SpType.DateTime: (0, 2**64 - 1),
}


def our_type(sp: int) -> DataType:
    """The platform datatype of a Sparkplug datatype."""
    if sp in _INT_TYPES:
        return DataType.INT
    if sp in _FLOAT_TYPES:
        return DataType.FLOAT
    if sp == SpType.Boolean:
        return DataType.BOOL
    return DataType.STRING


def signal_name(metric: str) -> str:
    """A metric name as a signal name: ``Motor/Current (A)`` → ``motor_current_a``."""
    s = re.sub(r"[^a-z0-9]+", "_", metric.lower()).strip("_")
    if not s or not s[0].isalpha():
        s = "m_" + s
    return s


def equipment_id(*parts: str) -> str:
    return "sp_" + re.sub(r"[^a-z0-9]+", "_", "_".join(parts).lower()).strip("_")


@dataclass
class MetricRef:
    """Where a signal lives in Sparkplug: what a write needs."""

    device: str | None
    name: str
    alias: int | None
    datatype: int


@dataclass
class NodeStats:
    messages: int = 0
    metrics: int = 0
    gaps: int = 0
    rebirths: int = 0
    decode_errors: int = 0
    births: int = 0
    deaths: int = 0
    stale_deaths: int = 0
    alias_conflicts: int = 0
    last_seen: float | None = None


@dataclass
class DeviceState:
    born: bool = False
    online: bool = False
    signals: set[int] = field(default_factory=set)


@dataclass
class NodeState:
    group: str
    edge: str
    index: int
    equipment: str | None  # the equipment mapped to the node itself
    unassigned: bool = False
    born: bool = False
    online: bool = False
    bd_seq: int | None = None
    seq: int | None = None  # last seq processed
    aliases: dict[int, int] = field(default_factory=dict)  # alias → signal id (or _IGNORE)
    names: dict[tuple[str | None, str], int] = field(default_factory=dict)  # (device, name) → id
    signals: set[int] = field(default_factory=set)  # node-level signals
    devices: dict[str, DeviceState] = field(default_factory=dict)
    pending: dict[int, tuple[Message, Topic, float]] = field(default_factory=dict)
    gap_since: float | None = None
    last_rebirth_request: float = -1e18
    stats: NodeStats = field(default_factory=NodeStats)

    def births_seen(self, device: str | None, signal: int) -> bool:
        """True if ``signal`` was born by a device (or the node) other than ``device``."""
        if device is not None and signal in self.signals:
            return True
        return any(d != device and signal in st.signals for d, st in self.devices.items())

    def all_signals(self) -> set[int]:
        out = set(self.signals)
        for d in self.devices.values():
            out |= d.signals
        return out


class SparkplugHost:
    """A Sparkplug B Primary Host Application feeding the bus. ``async with SparkplugHost(...)``."""

    name = "sparkplug"

    def __init__(
        self,
        site: Site,
        bus: Bus,
        settings: SparkplugSettings,
        *,
        broker_host: str,
        broker_port: int,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.site = site
        self.bus = bus
        self.settings = settings
        self.broker = f"{broker_host}:{broker_port}"
        self.state_topic = f"{NAMESPACE}/STATE/{settings.host_id}"
        self._born_ms = int(time.time() * 1000)
        password = os.environ.get(settings.password_env) if settings.password_env else None
        will = Message(self.state_topic, self._state_payload(online=False), qos=1, retain=True)
        self.client = MqttClient(
            MqttOptions(
                host=broker_host,
                port=broker_port,
                client_id=f"f5g-host-{settings.host_id}",
                username=settings.username,
                password=password,
                tls=tls,
                clean_session=True,
                will=will,
                wait_for_broker=True,
                max_packet_bytes=settings.max_payload_bytes + 65_536,
            ),
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
        )
        self.nodes: dict[tuple[str, str], NodeState] = {}
        self._by_index: list[NodeState] = []
        self._refs: dict[int, tuple[NodeState, MetricRef]] = {}  # signal id → where it lives
        self._bindings = self._site_bindings()
        # Where unbound metrics go: an explicit [[sparkplug.map]], else the one equipment that the
        # site's bindings put that node's (or device's) metrics under.
        self._maps = self._inferred_maps()
        self._maps.update({(m.group, m.edge, m.device): m.equipment for m in settings.map})
        self._keys = np.empty(0, np.int64)  # sorted (node index << 32 | alias)
        self._key_signal = np.empty(0, np.int32)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_log: dict[str, float] = {}
        self._topics: dict[str, Topic] = {}  # topic name → parsed (Topic is immutable)
        self._subscribed = False
        self.unknown_topics = 0
        self.oversized = 0
        self.session_losses = 0

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.client.__aenter__()
        try:
            self._spawn(self._consume(), "sparkplug-consume")
            self._spawn(self._reorder_watch(), "sparkplug-reorder")
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
        # Stop consuming first: the broker echoes our offline STATE back to us, and _own_state
        # would answer it with online (left retained after a clean exit).
        await cancel_and_wait(self._tasks, what="Sparkplug host")
        # A clean stop says so: publish offline ourselves (the broker keeps the Will for crashes).
        if self.client.connected:
            try:
                await asyncio.wait_for(
                    self.client.publish(
                        self.state_topic, self._state_payload(online=False), qos=1, retain=True
                    ),
                    2,
                )
            except (TimeoutError, OSError, MqttError) as e:
                log.warning("could not publish offline STATE: %s", e)
        await self.client.__aexit__(exc_type, exc, tb)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _state_payload(self, *, online: bool) -> bytes:
        # Sparkplug 3.0 §7.3: the Will and the online message carry the same timestamp.
        return json.dumps({"online": online, "timestamp": self._born_ms}).encode()

    async def _on_connect(self, client: MqttClient) -> None:
        if not self._subscribed:  # the client re-sends its subscriptions after a reconnect
            groups = self.settings.groups or ("+",)
            filters = [(f"{NAMESPACE}/{g}/#", 1) for g in groups]
            filters.append((self.state_topic, 1))
            await client.subscribe(filters)
            self._subscribed = True
        await client.publish(self.state_topic, self._state_payload(online=True), qos=1, retain=True)
        for node in self.nodes.values():  # we may have missed births while away
            await self._request_rebirth(node, "host reconnected", force=True)

    async def _on_disconnect(self, client: MqttClient, reason: str) -> None:
        # Sparkplug §: the host's session ended → everything we got from the edge is now stale.
        self.session_losses += 1
        now = time.time_ns()
        dead: set[int] = set()
        for node in self.nodes.values():
            node.online = False
            node.born = False
            node.seq = None
            node.pending.clear()
            dead |= node.all_signals()
        log.warning("MQTT session lost (%s): %d signals marked bad", reason, len(dead))
        await self._publish_quality(dead, now, Quality.BAD_COMM_FAILURE)

    # -- the consume loop -------------------------------------------------------------------

    async def _consume(self) -> None:
        async for messages in self.client.batches():
            data: list[tuple[Message, Topic, NodeState]] = []
            for msg in messages:
                topic = self._topic(msg)
                if topic is None:
                    continue
                if len(msg.payload) > self.settings.max_payload_bytes:
                    self.oversized += 1
                    self._warn(
                        "oversized",
                        "payload of %d bytes on %s dropped",
                        len(msg.payload),
                        msg.topic,
                    )
                    continue
                if topic.type.is_data:
                    node = self.nodes.get((topic.group, topic.edge))
                    if node is None or not node.born:
                        node = node or self._node(topic.group, topic.edge)
                        node.stats.messages += 1
                        await self._request_rebirth(node, f"{topic.type.value} before NBIRTH")
                        continue
                    data.append((msg, topic, node))
                    continue
                if data:  # keep the order of data and births/deaths of the same node
                    await self._data(data)
                    data = []
                await self._control(msg, topic)
            if data:
                await self._data(data)

    def _topic(self, msg: Message) -> Topic | None:
        # Every DATA message repeats one of a few topics: parse each once (parse_topic costs
        # ~2.6 µs, about a tenth of the event loop's time per message; bench/ingest.py).
        topic = self._topics.get(msg.topic)
        if topic is not None:
            return topic
        try:
            topic = parse_topic(msg.topic)
        except SparkplugTopicError as e:
            self.unknown_topics += 1
            self._warn("topic", "ignored message on %r: %s", msg.topic, e.reason)
            return None
        if len(self._topics) >= _TOPIC_CACHE:
            self._topics.clear()  # bounded, whatever topics a client makes up
        self._topics[msg.topic] = topic
        return topic

    async def _control(self, msg: Message, topic: Topic) -> None:
        if topic.type is MessageType.STATE:
            if topic.host == self.settings.host_id:
                await self._own_state(msg)
            return
        if topic.type in (MessageType.NCMD, MessageType.DCMD):
            return  # commands (ours or another host's) are not data
        node = self._node(topic.group, topic.edge)
        node.stats.messages += 1
        node.stats.last_seen = time.time()
        try:
            payload = decode_payload(msg.payload)
        except SparkplugDecodeError as e:
            node.stats.decode_errors += 1
            self._warn("decode", "%s: undecodable %s: %s", msg.topic, topic.type.value, e)
            if topic.type is MessageType.NBIRTH or topic.type is MessageType.DBIRTH:
                await self._request_rebirth(node, "undecodable birth")
            return
        if topic.type is MessageType.NBIRTH:
            await self._nbirth(node, payload)
        elif topic.type is MessageType.DBIRTH:
            assert topic.device is not None
            await self._dbirth(node, topic.device, payload)
        elif topic.type is MessageType.NDEATH:
            await self._ndeath(node, payload)
        elif topic.type is MessageType.DDEATH:
            assert topic.device is not None
            await self._ddeath(node, topic.device, payload)

    async def _own_state(self, msg: Message) -> None:
        # Sparkplug 3.0: a host that sees itself declared offline (an old Will) says online again.
        try:
            state = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(state, dict) and state.get("online") is False:
            await self.client.publish(
                self.state_topic, self._state_payload(online=True), qos=1, retain=True
            )

    # -- births and deaths ------------------------------------------------------------------

    def _node(self, group: str, edge: str) -> NodeState:
        node = self.nodes.get((group, edge))
        if node is None:
            eq = self._maps.get((group, edge, None))
            node = NodeState(group, edge, len(self._by_index), eq)
            self.nodes[(group, edge)] = node
            self._by_index.append(node)
        return node

    def _site_bindings(self) -> dict[tuple[str, str, str | None, str], int]:
        out: dict[tuple[str, str, str | None, str], int] = {}
        for eq in self.site.file.equipment:
            for s in eq.signal:
                b = s.binding
                if b is not None and b.kind == "sparkplug":
                    out[(b.group, b.edge, b.device, b.metric)] = self.site.signals.get(
                        f"{eq.id}.{s.name}"
                    ).id
        return out

    def _inferred_maps(self) -> dict[tuple[str, str, str | None], str]:
        seen: dict[tuple[str, str, str | None], set[str]] = {}
        for eq in self.site.file.equipment:
            for s in eq.signal:
                b = s.binding
                if b is not None and b.kind == "sparkplug":
                    seen.setdefault((b.group, b.edge, b.device), set()).add(eq.id)
        return {key: next(iter(eqs)) for key, eqs in seen.items() if len(eqs) == 1}

    def _resolve(self, node: NodeState, device: str | None, metric: Metric) -> int:
        """The signal id of a birth metric: its binding, else its mapped equipment, else new."""
        name = metric.name or ""
        if (
            name == BD_SEQ_METRIC
            or name.startswith("Node Control/")
            or name.startswith("Device Control/")
        ):
            return _IGNORE
        bound = self._bindings.get((node.group, node.edge, device, name))
        if bound is not None:
            return bound
        eq = self._maps.get((node.group, node.edge, device))
        if eq is None and device is None:
            eq = node.equipment
        if eq is None:
            parts = (node.group, node.edge) + ((device,) if device else ())
            eq = equipment_id(*parts)
            node.unassigned = True
        unit = ""
        if metric.properties is not None:
            for key in ("engUnit", "EngUnit", "engineeringUnits"):  # Ignition's conventions
                pv = metric.properties.get(key)
                if pv is not None and isinstance(pv.value, str):
                    unit = pv.value
                    break
        info = self.site.signals.add(
            eq,
            signal_name(name),
            unit=unit,
            type=our_type(int(metric.datatype or 0)),
            description=f"Sparkplug {node.group}/{node.edge}{'/' + device if device else ''}"
            f" metric {name!r}",
            binding="sparkplug",
        )
        return info.id

    def _learn(self, node: NodeState, device: str | None, metrics: Sequence[Metric]) -> list[int]:
        ids: list[int] = []
        for m in metrics:
            if m.name is None:
                ids.append(_IGNORE)
                continue
            sid = self._resolve(node, device, m)
            ids.append(sid)
            node.names[(device, m.name)] = sid
            if m.alias is not None:
                known = node.aliases.get(int(m.alias))
                if known is not None and known != sid and node.births_seen(device, known):
                    # Sparkplug §6.4.4: aliases are unique per edge node, devices included.
                    node.stats.alias_conflicts += 1
                    self._warn(
                        "alias",
                        "%s/%s: alias %d reused by %s/%s",
                        node.group,
                        node.edge,
                        int(m.alias),
                        device or "(node)",
                        m.name,
                    )
                node.aliases[int(m.alias)] = sid
            if sid != _IGNORE:
                ref = MetricRef(device, m.name, m.alias, int(m.datatype or 0))
                self._refs[sid] = (node, ref)
                if device is None:
                    node.signals.add(sid)
                else:
                    node.devices.setdefault(device, DeviceState()).signals.add(sid)
        self._rebuild_keys()
        return ids

    def _rebuild_keys(self) -> None:
        keys: list[int] = []
        sigs: list[int] = []
        for node in self._by_index:
            for alias, sid in node.aliases.items():
                keys.append((node.index << 32) | alias)
                sigs.append(sid)
        order = np.argsort(np.asarray(keys, np.int64), kind="stable")
        self._keys = np.asarray(keys, np.int64)[order]
        self._key_signal = np.asarray(sigs, np.int32)[order]

    async def _nbirth(self, node: NodeState, payload: Payload) -> None:
        bd = next((m.value for m in payload.metrics if m.name == BD_SEQ_METRIC), None)
        node.stats.births += 1
        # Sparkplug §: NBIRTH resets the node: aliases, devices and sequence start again.
        node.aliases.clear()
        node.names.clear()
        for d in node.devices.values():
            d.born = False
            d.online = False
        node.pending.clear()
        node.gap_since = None
        node.bd_seq = int(bd) if isinstance(bd, int) else None
        node.seq = int(payload.seq) if payload.seq is not None else 0
        node.born = True
        node.online = True
        ids = self._learn(node, None, payload.metrics)
        await self._publish_birth_values(node, ids, payload)

    async def _dbirth(self, node: NodeState, device: str, payload: Payload) -> None:
        if not node.born:
            await self._request_rebirth(node, f"DBIRTH of {device} before NBIRTH")
            return
        self._advance_seq(node, payload.seq)
        dev = node.devices.setdefault(device, DeviceState())
        dev.born = True
        dev.online = True
        node.stats.births += 1
        ids = self._learn(node, device, payload.metrics)
        await self._publish_birth_values(node, ids, payload)

    async def _publish_birth_values(
        self, node: NodeState, ids: list[int], payload: Payload
    ) -> None:
        now = time.time_ns()
        sig: list[int] = []
        ts: list[int] = []
        val: list[float] = []
        q: list[int] = []
        events: list[Event] = []
        for sid, m in zip(ids, payload.metrics, strict=True):
            if sid == _IGNORE:
                continue
            t_ms = m.timestamp if m.timestamp is not None else payload.timestamp
            t = int(t_ms) * _NS_PER_MS if t_ms is not None else now
            v = m.value
            if m.is_null or v is None:
                sample = (float("nan"), Quality.BAD)
            elif isinstance(v, bool | int | float):
                sample = (float(v), Quality.GOOD)
            else:
                events.append(Event(sid, t, _event_data(v)))
                continue
            sig.append(sid)
            ts.append(t)
            val.append(sample[0])
            q.append(sample[1])
        node.stats.metrics += len(payload.metrics)
        if sig or events:
            await self.bus.publish(Batch.of(sig, ts, val, q, events))

    async def _ndeath(self, node: NodeState, payload: Payload) -> None:
        bd = next((m.value for m in payload.metrics if m.name == BD_SEQ_METRIC), None)
        if node.bd_seq is not None and isinstance(bd, int) and bd != node.bd_seq:
            node.stats.stale_deaths += 1
            log.info(
                "stale NDEATH of %s/%s (bdSeq %s, current %s) ignored",
                node.group,
                node.edge,
                bd,
                node.bd_seq,
            )
            return
        node.stats.deaths += 1
        node.born = False
        node.online = False
        node.seq = None
        node.pending.clear()
        for d in node.devices.values():
            d.online = False
            d.born = False
        await self._publish_quality(node.all_signals(), time.time_ns(), Quality.BAD_NOT_CONNECTED)

    async def _ddeath(self, node: NodeState, device: str, payload: Payload) -> None:
        self._advance_seq(node, payload.seq)
        dev = node.devices.get(device)
        if dev is None:
            return
        node.stats.deaths += 1
        dev.online = False
        dev.born = False
        t = int(payload.timestamp) * _NS_PER_MS if payload.timestamp else time.time_ns()
        await self._publish_quality(dev.signals, t, Quality.BAD_NOT_CONNECTED)

    def _advance_seq(self, node: NodeState, seq: int | None) -> None:
        if seq is None:
            return
        expected = ((node.seq if node.seq is not None else -1) + 1) % 256
        if seq != expected:
            node.stats.gaps += 1
        node.seq = seq

    async def _publish_quality(self, signals: set[int], ts: int, quality: Quality) -> None:
        if not signals:
            return
        ids = np.fromiter(sorted(signals), np.int32, len(signals))
        await self.bus.publish(Batch.of(ids, ts, np.nan, quality))

    # -- data -------------------------------------------------------------------------------

    async def _data(self, items: list[tuple[Message, Topic, NodeState]]) -> None:
        """Decode DATA messages in bulk, keep each node's sequence, publish the samples."""
        now = time.time()
        cols = fastdecode.decode_messages([m.payload for m, _, _ in items])
        ready: list[int] = []
        for i, (msg, topic, node) in enumerate(items):
            node.stats.messages += 1
            node.stats.last_seen = now
            if cols.status[i] != 0:
                node.stats.decode_errors += 1
                self._warn(
                    "decode",
                    "%s: undecodable payload (%s)",
                    msg.topic,
                    fastdecode.Status(int(cols.status[i])).name,
                )
                continue
            seq = int(cols.seq[i])
            if seq < 0 or node.seq is None:
                node.seq = seq if seq >= 0 else node.seq
                ready.append(i)
                continue
            expected = (node.seq + 1) % 256
            if seq == expected:
                node.seq = seq
                ready.append(i)
                drained = self._drain(node) if node.pending else []
                if drained:  # publish in seq order: what is ready, the drained, then the rest
                    await self._emit(items, cols, ready)
                    ready = []
                    await self._data_in_order(drained)
            elif (seq - expected) % 256 < 128:  # ahead: hold it, the missing ones may come
                if node.gap_since is None:
                    node.gap_since = now
                node.pending[seq] = (msg, topic, now)
            else:  # behind: a duplicate or a very late message, already given up on
                node.stats.gaps += 1
        if ready:
            await self._emit(items, cols, ready)

    async def _data_in_order(self, items: list[tuple[Message, Topic, NodeState]]) -> None:
        """DATA messages whose sequence was already settled (drained from the reorder buffer)."""
        cols = fastdecode.decode_messages([m.payload for m, _, _ in items])
        ready = [i for i in range(len(items)) if cols.status[i] == 0]
        for i in range(len(items)):
            if cols.status[i] != 0:
                items[i][2].stats.decode_errors += 1
        if ready:
            await self._emit(items, cols, ready)

    def _drain(self, node: NodeState) -> list[tuple[Message, Topic, NodeState]]:
        """The held messages that are now next in sequence, in order."""
        out: list[tuple[Message, Topic, NodeState]] = []
        while node.pending and node.seq is not None:
            nxt = (node.seq + 1) % 256
            entry = node.pending.pop(nxt, None)
            if entry is None:
                break
            out.append((entry[0], entry[1], node))
            node.seq = nxt
        if not node.pending:
            node.gap_since = None
        return out

    async def _emit(
        self,
        items: list[tuple[Message, Topic, NodeState]],
        cols: fastdecode.DataColumns,
        ready: list[int],
    ) -> None:
        """Map the rows of the ``ready`` payloads to signals and publish them: vectorised.

        The common case — every payload ready, every metric by a known alias, live, numeric and
        not null — uses whole columns as they are: each gather or mask below is skipped when it
        would keep everything (they were half of this method's time; bench/ingest.py).
        """
        every = len(ready) == len(items)
        rows = (
            np.arange(len(cols), dtype=np.intp)
            if every
            else np.flatnonzero(np.isin(cols.msg, np.asarray(ready, np.int32)))
        )
        if len(rows) == 0:
            return
        sel: slice | NDArray[np.intp] = slice(None) if every else rows  # picks rows of cols
        msg_idx = cols.msg[sel]
        node_of_msg = np.fromiter((it[2].index for it in items), np.int64, len(items))
        node_idx = node_of_msg[msg_idx]
        alias = cols.alias[sel]
        sig = np.full(len(rows), -2, np.int64)  # -2: unknown metric
        has_alias = alias >= 0
        all_alias = bool(has_alias.all())
        if len(self._keys) and (all_alias or has_alias.any()):
            if all_alias:
                key = (node_idx << 32) | alias
            else:
                key = (node_idx[has_alias] << 32) | alias[has_alias]
            pos = np.minimum(np.searchsorted(self._keys, key), len(self._keys) - 1)
            found = np.where(self._keys[pos] == key, self._key_signal[pos], -2)
            if all_alias:
                sig[:] = found
            else:
                sig[has_alias] = found
        for r in [] if all_alias else np.flatnonzero(~has_alias).tolist():  # DATA by name: rare
            row = int(rows[r])
            _, topic, node = items[int(cols.msg[row])]
            try:
                name = cols.name(row)
            except SparkplugDecodeError:
                name = None
            if name is not None:
                sig[r] = node.names.get((topic.device, name), -2)
        unknown = sig == -2
        if unknown.any():
            for i in np.unique(msg_idx[unknown]).tolist():
                await self._request_rebirth(items[i][2], f"unknown metric in {items[i][0].topic}")
        counts = np.bincount(msg_idx, minlength=len(items))
        for i in ready:
            items[i][2].stats.metrics += int(counts[i])
        keep = sig >= 0
        if not keep.all():
            if not keep.any():
                return
            rows = rows[keep]
            sel = rows
            sig = sig[keep]
        ids: NDArray[np.int32] = sig.astype(np.int32)
        datatype = cols.datatype[sel]
        value = cols.value[sel]
        flags = cols.flags[sel]
        if (datatype == 0).any():  # DATA may leave the datatype out: take the birth's
            fixed = cols.with_datatypes(self._datatype_of_rows(cols, rows, ids))
            value, flags = fixed.value[sel], fixed.flags[sel]
        ts_ms = cols.ts_ms[sel]
        if bool((ts_ms >= 0).all()):
            ts = ts_ms * _NS_PER_MS
        else:
            ts = np.where(ts_ms >= 0, ts_ms * _NS_PER_MS, time.time_ns()).astype(np.int64)
        null = (flags & fastdecode.IS_NULL) != 0
        if null.any():
            quality = np.where(null, Quality.BAD, Quality.GOOD).astype(np.uint8)
        else:
            quality = np.full(len(rows), Quality.GOOD, np.uint8)
        complex_ = (flags & fastdecode.COMPLEX) != 0
        historical = (flags & fastdecode.IS_HISTORICAL) != 0
        events: list[Event] = []
        for r in np.flatnonzero(complex_).tolist():
            row = int(rows[r])
            try:
                metric = cols.metric(row)
            except SparkplugDecodeError:
                items[int(cols.msg[row])][2].stats.decode_errors += 1
                continue
            if metric.value is not None and not metric.is_null:
                events.append(Event(int(ids[r]), int(ts[r]), _event_data(metric.value)))
        live = ~complex_ & ~historical
        past = ~complex_ & historical
        if live.all():
            await self.bus.publish(Batch(ids, ts, value, quality))
            return
        if live.any() or events:
            await self.bus.publish(
                Batch(ids[live], ts[live], value[live], quality[live], tuple(events))
            )
        if past.any():
            await self.bus.publish(
                Batch(ids[past], ts[past], value[past], quality[past], historical=True)
            )

    def _datatype_of_rows(
        self, cols: fastdecode.DataColumns, rows: NDArray[np.intp], sig: NDArray[np.int32]
    ) -> NDArray[np.uint8]:
        """Per row of ``cols``: the datatype the birth gave the row's signal (0 elsewhere)."""
        out = np.zeros(len(cols), np.uint8)
        dt = np.fromiter(
            (self._refs[int(s)][1].datatype if int(s) in self._refs else 0 for s in sig),
            np.uint8,
            len(sig),
        )
        out[rows] = dt
        return out

    # -- reorder timeout and rebirth --------------------------------------------------------

    async def _reorder_watch(self) -> None:
        timeout = self.settings.reorder_timeout_s
        while True:
            await asyncio.sleep(max(0.05, min(0.5, timeout / 4)))
            now = time.time()
            for node in self.nodes.values():
                if node.gap_since is not None and now - node.gap_since >= timeout:
                    await self._gap_expired(node)

    async def _gap_expired(self, node: NodeState) -> None:
        node.stats.gaps += 1
        # What arrived after the gap is real data: keep it, in order, then ask for a rebirth.
        pending = sorted(node.pending.items(), key=lambda kv: (kv[0] - (node.seq or 0)) % 256)
        node.pending.clear()
        node.gap_since = None
        items = [(msg, topic, node) for _, (msg, topic, _) in pending]
        if items:
            await self._data_in_order(items)
            node.seq = int(pending[-1][0])
        await self._publish_quality(node.all_signals(), time.time_ns(), Quality.BAD_STALE)
        await self._request_rebirth(node, "sequence gap", force=True)

    async def _request_rebirth(self, node: NodeState, why: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - node.last_rebirth_request < max(
            1.0, self.settings.reorder_timeout_s
        ):
            return
        node.last_rebirth_request = now
        node.stats.rebirths += 1
        log.info("requesting rebirth of %s/%s: %s", node.group, node.edge, why)
        payload = Payload(
            timestamp=int(time.time() * 1000),
            metrics=(Metric(name=REBIRTH_METRIC, datatype=SpType.Boolean, value=True),),
        )
        topic = Topic(MessageType.NCMD, node.group, node.edge)
        if self.client.connected:
            await self.client.publish(str(topic), encode_payload(payload), qos=0)

    # -- writes -----------------------------------------------------------------------------

    async def write(self, signal: int, value: WriteValue) -> WriteResult:
        entry = self._refs.get(signal)
        if entry is None:
            raise UnknownTargetError(signal)
        node, ref = entry
        if not node.online:
            raise WriteRejectedError(signal, f"edge node {node.group}/{node.edge} is offline")
        device = node.devices.get(ref.device) if ref.device is not None else None
        if device is not None and not device.online:  # after its DDEATH
            raise WriteRejectedError(
                signal, f"device {ref.device} of edge node {node.group}/{node.edge} is offline"
            )
        v = _convert(signal, ref.datatype, value)
        metric = Metric(
            name=None if ref.alias is not None else ref.name,
            alias=ref.alias,
            datatype=ref.datatype,
            value=v,
        )
        payload = Payload(timestamp=int(time.time() * 1000), metrics=(metric,))
        mtype = MessageType.DCMD if ref.device is not None else MessageType.NCMD
        topic = Topic(mtype, node.group, node.edge, ref.device)
        await self.client.publish(str(topic), encode_payload(payload), qos=0)
        return WriteResult(signal, True, f"{mtype.value} sent")

    # -- introspection ----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "host_id": self.settings.host_id,
            "broker": self.broker,
            "connected": self.client.connected,
            "state_topic": self.state_topic,
            "unknown_topics": self.unknown_topics,
            "oversized": self.oversized,
            "session_losses": self.session_losses,
            "mqtt": self.client.stats(),
            "nodes": [self._node_dict(n) for n in self._by_index],
        }

    def _node_dict(self, n: NodeState) -> dict[str, Any]:
        s = n.stats
        return {
            "group": n.group,
            "edge": n.edge,
            "online": n.online,
            "born": n.born,
            "bd_seq": n.bd_seq,
            "seq": n.seq,
            "mapped": not n.unassigned,
            "equipment": n.equipment,
            "signals": len(n.all_signals()),
            "devices": [
                {"device": d, "online": st.online, "signals": len(st.signals)}
                for d, st in sorted(n.devices.items())
            ],
            "messages": s.messages,
            "metrics": s.metrics,
            "gaps": s.gaps,
            "rebirths": s.rebirths,
            "decode_errors": s.decode_errors,
            "births": s.births,
            "deaths": s.deaths,
            "stale_deaths": s.stale_deaths,
            "alias_conflicts": s.alias_conflicts,
            "last_seen": s.last_seen,
        }

    def _warn(self, kind: str, fmt: str, *args: object) -> None:
        """Log, at most once per ten seconds per kind: a flood must not flood the log too."""
        now = time.monotonic()
        if now - self._last_log.get(kind, -1e18) >= _LOG_EVERY_S:
            self._last_log[kind] = now
            log.warning(fmt, *args)


def _event_data(v: object) -> str | dict[str, Any] | list[Any]:
    """A non-numeric metric value as JSON-ready data for a Batch event."""
    out = _jsonable(v)
    return out if isinstance(out, str | dict | list) else {"value": out}


def _jsonable(v: object) -> Any:
    if isinstance(v, bytes):
        return {"bytes": v.hex()}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        data = {f.name: _jsonable(getattr(v, f.name)) for f in dataclasses.fields(v)}
        return {"kind": type(v).__name__, **data}
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def _convert(signal: int, datatype: int, value: WriteValue) -> int | float | bool | str:
    if datatype in _INT_RANGES:
        if isinstance(value, float) and not value.is_integer():
            raise WriteRejectedError(signal, f"{value} is not an integer")
        if isinstance(value, str):
            raise WriteRejectedError(signal, "a number is needed")
        iv = int(value)
        lo, hi = _INT_RANGES[SpType(datatype)]
        if not lo <= iv <= hi:
            raise WriteRejectedError(
                signal, f"{iv} is outside {SpType(datatype).name} [{lo}, {hi}]"
            )
        return iv
    if datatype in _FLOAT_TYPES:
        if isinstance(value, str):
            raise WriteRejectedError(signal, "a number is needed")
        return float(value)
    if datatype == SpType.Boolean:
        if isinstance(value, str):
            raise WriteRejectedError(signal, "true or false is needed")
        return bool(value)
    if datatype in (SpType.String, SpType.Text, SpType.UUID):
        return str(value)
    raise WriteRejectedError(signal, f"writing {SpType(datatype).name} metrics is not supported")
