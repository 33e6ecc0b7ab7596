"""The demo plant's Sparkplug B gateways: one edge node per (group, edge) of the site's bindings.

Each signal bound ``{kind = "sparkplug", group, edge, device, metric}`` with a ``sim`` source
becomes a metric of that edge node (of its device), with an alias. Every simulator tick publishes
one DDATA per device; a DCMD to a writable output (a set point) writes the plant.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Self

import numpy as np

from factory5g.connect.mqtt import MqttOptions
from factory5g.connect.sparkplug.edge import DataEncoder, EdgeNode, MetricSpec, OnCommand
from factory5g.connect.sparkplug.payload import DataType, Metric
from factory5g.model import Site
from factory5g.model.site import SparkplugBinding
from factory5g.sim.errors import SimWriteError
from factory5g.sim.plant import Plant
from factory5g.stream import Batch

log = logging.getLogger(__name__)

_ALIAS_BASE = 128  # aliases 128..16383 share one varint length (DataEncoder needs that)


class _Device:
    def __init__(self, name: str | None, ids: list[int], metrics: list[MetricSpec]) -> None:
        self.name = name
        self.ids = np.asarray(ids, np.int64)
        self.metrics = metrics
        self.encoder = DataEncoder([m.alias or 0 for m in metrics])


class SparkplugPeers:
    """The site's simulated edge nodes, as one async context manager and one ``SimPeer``."""

    def __init__(
        self,
        site: Site,
        plant: Plant,
        *,
        host: str,
        port: int,
        primary_host: str | None,
        fronts: Mapping[tuple[str, str], tuple[str, int]] | None = None,
    ) -> None:
        """``fronts``: per (group, edge id), another broker address to connect to (the edge
        node's 5G link, emulated); the others connect to ``host:port``."""
        self.plant = plant
        groups: dict[tuple[str, str], dict[str | None, list[tuple[int, MetricSpec]]]] = {}
        simulated = {s.id for s in plant.signals}
        for eq in site.file.equipment:
            for s in eq.signal:
                b = s.binding
                info = site.signals.get(f"{eq.id}.{s.name}")
                if not isinstance(b, SparkplugBinding) or info.id not in simulated:
                    continue
                devs = groups.setdefault((b.group, b.edge), {})
                metrics = devs.setdefault(b.device, [])
                # Every metric is a Double on the wire (bools as 0/1): one DataEncoder layout
                # per device keeps the simulated gateways cheap; the site gives the signal type.
                # Aliases are unique per edge node, across its devices (Sparkplug §6.4.4).
                alias = _ALIAS_BASE + sum(len(ms) for ms in devs.values())
                spec = MetricSpec(b.metric, DataType.Double, alias, s.unit)
                metrics.append((info.id, spec))
        self.nodes: list[EdgeNode] = []
        self._devices: dict[int, list[_Device]] = {}
        self._by_metric: dict[tuple[int, str | None, str], int] = {}
        for (group, edge), devs in groups.items():
            node_host, node_port = (fronts or {}).get((group, edge), (host, port))
            options = MqttOptions(
                host=node_host,
                port=node_port,
                client_id=f"f5g-sim-{group}-{edge}",
                wait_for_broker=True,
            )
            node = EdgeNode(
                options,
                group,
                edge,
                node_metrics=[m for _, m in devs.get(None, [])],
                devices={d: [m for _, m in ms] for d, ms in devs.items() if d is not None},
                primary_host=primary_host,
                on_command=self._command_handler(len(self.nodes)),
            )
            self._devices[len(self.nodes)] = [
                _Device(d, [i for i, _ in ms], [m for _, m in ms]) for d, ms in devs.items()
            ]
            for d, ms in devs.items():
                for sid, m in ms:
                    self._by_metric[(len(self.nodes), d, m.name)] = sid
            self.nodes.append(node)
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        try:
            for node in self.nodes:
                await self._stack.enter_async_context(node)
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

    async def update(self, batch: Batch, ts_ns: int) -> None:
        """One DDATA per device of every born edge node, with this tick's values."""
        ts_ms = ts_ns // 1_000_000
        index = np.full(int(batch.signal.max()) + 1 if len(batch) else 0, -1, np.int64)
        index[batch.signal] = np.arange(len(batch))
        for n, node in enumerate(self.nodes):
            if not node.client.connected or not node.born:
                continue
            for dev in self._devices[n]:
                values = batch.value[index[dev.ids]]
                for (d, name), v in zip(
                    ((dev.name, m.name) for m in dev.metrics), values.tolist(), strict=True
                ):
                    node.values[(d, name)] = v  # what the next birth reports
                encoder = dev.encoder

                def make(seq: int, enc: DataEncoder = encoder, v: np.ndarray = values) -> bytes:
                    return enc.encode(v, ts_ms, seq)

                await node.publish_raw(dev.name, make)

    def _command_handler(self, n: int) -> OnCommand:
        async def handle(device: str | None, metric: Metric) -> None:
            sid = self._by_metric.get((n, device, metric.name or ""))
            if sid is None or not isinstance(metric.value, int | float):
                log.warning("sim edge: command for unknown metric %s/%s", device, metric.name)
                return
            try:
                self.plant.write(sid, float(metric.value))
            except SimWriteError as e:
                log.warning("sim edge: %s", e)

        return handle


__all__ = ["SparkplugPeers"]
