"""The demo plant's OPC UA servers: one asyncua server per endpoint of simulated signals.

For every endpoint (``[[opcua]]`` entry or inline URL) with a bound signal that has a ``sim``
source, a server listens at the endpoint URL's host, port and path — security None, anonymous —
with one namespace, ``urn:factory5g:demo`` (index 2), and:

* per equipment, an Object ``ns=2;s=<equipment id>`` (browse name = the equipment id) under
  Objects, holding one Variable per simulated signal, whose node id is the binding's
  (``ns=2;s=f1.speed``): Double (Boolean for bool signals), with an ``EngineeringUnits``
  property (EUInformation, OPC 10000-8 §5.6.3) when the signal has a unit;
* every simulator tick writes the plant's values with the tick's time as SourceTimestamp;
* a Variable is writable (AccessLevel CurrentRead | CurrentWrite) when its model output is
  (a set point): a client's write goes to ``plant.write``, and one the plant refuses is
  answered ``BadOutOfRange``. Other Variables are read-only: asyncua answers writes to them
  with ``BadUserAccessDenied``;
* per writable Variable, a Method ``Set_<signal name>(value)`` on its equipment object that does
  the same write (``BadOutOfRange`` when the plant refuses).

``async with OpcUaPeers(site, plant) as peers`` starts every server (stopping those already
started if one fails) and stops them all on exit; ``peers.url(endpoint)`` is the URL a client
uses (with the actual port when the site file says port 0).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Final, Self, cast
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from asyncua import ua
from asyncua.common.node import Node
from asyncua.common.utils import ServiceError
from asyncua.server import Server
from asyncua.server.address_space import NodeData
from numpy.typing import NDArray

from factory5g.model import Site
from factory5g.model.endpoints import opcua_endpoints
from factory5g.model.site import DataType, OpcUaEndpoint
from factory5g.sim.errors import SimWriteError
from factory5g.sim.models import MODELS
from factory5g.sim.plant import Plant
from factory5g.stream import Batch

__all__ = ["DEMO_NAMESPACE", "OpcUaPeers", "stop_server"]

log = logging.getLogger(__name__)

DEMO_NAMESPACE: Final = "urn:factory5g:demo"
_EU_NAMESPACE: Final = "http://www.opcfoundation.org/UA/units/un/cefact"  # OPC 10000-8 §5.6.3
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_Setter = Callable[[NodeData, ua.AttributeIds, ua.DataValue], None]
_Method = Callable[[ua.NodeId, ua.Variant], Awaitable[list[ua.Variant] | ua.StatusCode]]


@dataclass(slots=True)
class _Variable:
    signal: int
    path: str
    name: str
    equipment: str
    node: str  # as the binding spells it
    unit: str
    boolean: bool
    writable: bool
    node_id: ua.NodeId = field(default_factory=ua.NodeId)


@dataclass(slots=True)
class _Plan:
    """What one server serves."""

    key: str
    settings: OpcUaEndpoint
    variables: list[_Variable]


class _DemoServer:
    """One asyncua server for one endpoint (started and stopped by :class:`OpcUaPeers`)."""

    def __init__(self, plan: _Plan, plant: Plant) -> None:
        self.plan = plan
        self.plant = plant
        self.server = Server()
        self.port = 0
        self.ids = np.array([v.signal for v in plan.variables], np.int64)
        # The DataValue each tick writes, by node: the value setter of a writable Variable tells
        # our own writes (this very object) from a client's.
        self._own: dict[ua.NodeId, ua.DataValue] = {}
        self.started = False

    @property
    def url(self) -> str:
        parts = urlsplit(self.plan.settings.url)
        host = parts.hostname or "127.0.0.1"
        return urlunsplit(parts._replace(netloc=f"{host}:{self.port}"))

    async def start(self) -> None:
        server = self.server
        # No ServerStatus.CurrentTime ticking: its task sleeps 1 s at a time, and stopping the
        # server waits for it; clients watch the session through subscriptions and ServerState.
        server.disable_clock()
        await server.init()
        try:
            await self._build()
            await server.start()
        except BaseException:
            await server.stop()  # stops the internal server init() prepared, tasks included
            raise
        self.started = True
        assert server.bserver is not None
        self.port = int(server.bserver.port or 0)
        writable = sum(v.writable for v in self.plan.variables)
        log.info(
            "demo OPC UA server of endpoint %r listening on %s: %d variables, %d writable",
            self.plan.key,
            self.url,
            len(self.plan.variables),
            writable,
        )

    async def stop(self) -> None:
        if self.started:
            self.started = False
            await stop_server(self.server)

    async def _build(self) -> None:
        server = self.server
        s = self.plan.settings
        server.set_endpoint(s.url)
        server.set_server_name(f"factory5g demo ({self.plan.key})")
        await server.set_application_uri(f"urn:factory5g:demo:{self.plan.key}")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_identity_tokens([ua.AnonymousIdentityToken])
        ns = await server.register_namespace(DEMO_NAMESPACE)
        assert ns == 2, "the demo namespace is the first one after the server's own"
        objects: dict[str, Node] = {}
        values = self.plant.values()
        for v in self.plan.variables:
            v.node_id = await self._node_id(v.node)
            obj = objects.get(v.equipment)
            if obj is None:
                obj = await server.nodes.objects.add_object(
                    _string_id(v.equipment, ns), ua.QualifiedName(v.equipment, ns)
                )
                objects[v.equipment] = obj
            vtype = ua.VariantType.Boolean if v.boolean else ua.VariantType.Double
            initial = values.get(v.signal, 0.0)
            var = await obj.add_variable(
                v.node_id,
                ua.QualifiedName(v.name, v.node_id.NamespaceIndex),
                ua.Variant(bool(initial) if v.boolean else float(initial), vtype),
            )
            if v.unit:
                await var.add_property(
                    # A string id next to the variable's own: ns=2;s=f1.speed.EngineeringUnits
                    _string_id(
                        f"{v.node_id.to_string().split(';', 1)[-1][2:]}.EngineeringUnits",
                        v.node_id.NamespaceIndex,
                    ),
                    ua.QualifiedName("EngineeringUnits", 0),
                    ua.EUInformation(
                        NamespaceUri=_EU_NAMESPACE,
                        UnitId=-1,  # no UNECE code: the display name carries the unit
                        DisplayName=ua.LocalizedText(v.unit),
                        Description=ua.LocalizedText(v.unit),
                    ),
                    varianttype=ua.VariantType.ExtensionObject,
                    datatype=_standard_id(ua.ObjectIds.EUInformation),
                )
            if v.writable:
                await var.set_writable()
                server.set_attribute_value_setter(v.node_id, self._setter(v))
                await obj.add_method(
                    _string_id(f"{v.equipment}.Set_{v.name}", ns),
                    ua.QualifiedName(f"Set_{v.name}", ns),
                    self._method(v),
                    [
                        ua.Argument(
                            Name="value",
                            DataType=_standard_id(
                                ua.ObjectIds.Boolean if v.boolean else ua.ObjectIds.Double
                            ),
                            ValueRank=-1,
                            Description=ua.LocalizedText(f"new value of {v.path}"),
                        )
                    ],
                    [],
                )

    async def _node_id(self, text: str) -> ua.NodeId:
        """The binding's node id on this server, registering the namespace it names."""
        parsed = ua.NodeId.from_string(text)
        uri = getattr(parsed, "NamespaceUri", None)
        if uri:
            index = await self.server.register_namespace(uri)
        else:
            index = parsed.NamespaceIndex
            while len(await self.server.get_namespace_array()) <= index:
                n = len(await self.server.get_namespace_array())
                await self.server.register_namespace(f"{DEMO_NAMESPACE}:{n}")
        return ua.NodeId(parsed.Identifier, ua.Int16(index), parsed.NodeIdType)

    def _write_plant(self, v: _Variable, value: object) -> None:
        """A client's write to the plant; ServiceError(BadOutOfRange) if it is refused."""
        if isinstance(value, bool | int | float):
            try:
                self.plant.write(v.signal, float(value))
            except SimWriteError as exc:
                log.info("demo OPC UA %r: write refused: %s", self.plan.key, exc)
                raise ServiceError(ua.StatusCodes.BadOutOfRange) from exc
            return
        raise ServiceError(ua.StatusCodes.BadTypeMismatch)

    def _setter(self, v: _Variable) -> _Setter:
        def setter(node: NodeData, attr: ua.AttributeIds, value: ua.DataValue) -> None:
            if value is not self._own.get(v.node_id):
                self._write_plant(v, value.Value.Value if value.Value is not None else None)
            node.attributes[attr].value = value

        return setter

    def _method(self, v: _Variable) -> _Method:
        async def set_value(
            parent: ua.NodeId, value: ua.Variant
        ) -> list[ua.Variant] | ua.StatusCode:
            try:
                self._write_plant(v, value.Value)
            except ServiceError as exc:
                return ua.StatusCode(ua.UInt32(exc.code))
            await self._write(v, float(value.Value), datetime.now(UTC))
            return []

        return set_value

    async def _write(self, v: _Variable, value: float, ts: datetime) -> None:
        variant = (
            ua.Variant(bool(value), ua.VariantType.Boolean)
            if v.boolean
            else ua.Variant(value, ua.VariantType.Double)
        )
        stamp = cast(ua.DateTime, ts)  # asyncua encodes any aware datetime
        dv = ua.DataValue(Value=variant, SourceTimestamp=stamp, ServerTimestamp=stamp)
        self._own[v.node_id] = dv
        await self.server.write_attribute_value(v.node_id, dv)

    async def update(self, pos: NDArray[np.int64], batch: Batch, ts: datetime) -> None:
        """Write the values at ``pos`` of ``batch`` (-1: not in this batch) to the Variables."""
        values = batch.value[np.maximum(pos, 0)].tolist()
        for v, p, x in zip(self.plan.variables, pos.tolist(), values, strict=True):
            if p >= 0 and not math.isnan(x):
                await self._write(v, x, ts)


async def stop_server(server: Server) -> None:
    """Stop an asyncua server and close the sessions clients still hold on it.

    ``Server.stop`` closes the connections but keeps a session that has subscriptions (a
    client may transfer them to a new connection, OPC 10000-4 §6.7): its timeout and
    publishing tasks would outlive the server.
    """
    await server.stop()
    for session in list(server.iserver._external_sessions.values()):
        await session.close_session(delete_subs=True)


def _string_id(text: str, ns: int) -> ua.NodeId:
    return ua.NodeId(ua.String(text), ua.Int16(ns))


def _standard_id(identifier: int) -> ua.NodeId:
    return ua.NodeId(ua.Int32(identifier))


def _plans(site: Site, plant: Plant) -> list[_Plan]:
    simulated = {s.id for s in plant.signals}
    plans: list[_Plan] = []
    for key, served in opcua_endpoints(site).items():
        variables: list[_Variable] = []
        for b in served.signals:
            if not b.simulated or b.id not in simulated or b.signal.sim is None:
                continue
            info = site.signals.get(b.id)
            model = MODELS.get(b.signal.sim.model)
            output = model.outputs.get(b.signal.sim.output) if model is not None else None
            variables.append(
                _Variable(
                    signal=b.id,
                    path=b.path,
                    name=info.name,
                    equipment=info.equipment,
                    node=b.binding.node,
                    unit=b.signal.unit,
                    boolean=b.signal.type is DataType.BOOL,
                    writable=output is not None and output.writable,
                )
            )
        if variables:
            plans.append(_Plan(key, served.settings, variables))
    return plans


class OpcUaPeers:
    """The site's simulated OPC UA servers, as one async context manager and one ``SimPeer``."""

    def __init__(self, site: Site, plant: Plant) -> None:
        self.site = site
        self.plant = plant
        self._servers = [_DemoServer(p, plant) for p in _plans(site, plant)]

    @property
    def servers(self) -> dict[str, Server]:
        """The asyncua servers, by endpoint id."""
        return {s.plan.key: s.server for s in self._servers}

    @property
    def ports(self) -> dict[str, int]:
        """The port each server listens on (the actual one when the URL says port 0)."""
        return {s.plan.key: s.port for s in self._servers}

    def url(self, endpoint: str) -> str:
        """The URL a client reaches ``endpoint``'s server at (with the actual port)."""
        for s in self._servers:
            if s.plan.key == endpoint:
                return s.url
        raise KeyError(f"no demo OPC UA server for endpoint {endpoint!r}")

    async def __aenter__(self) -> Self:
        try:
            for s in self._servers:
                try:
                    await s.start()
                except OSError as exc:
                    log.error(  # noqa: TRY400 - the caller gets the traceback with the exception
                        "demo OPC UA server of endpoint %r cannot listen on %s: %s",
                        s.plan.key,
                        s.plan.settings.url,
                        exc,
                    )
                    raise
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
        for s in reversed(self._servers):
            await s.stop()

    async def update(self, batch: Batch, ts_ns: int) -> None:
        """Write this tick's values, stamped ``ts_ns`` (SourceTimestamp), to every server."""
        if not len(batch) or not self._servers:
            return
        index = np.full(int(batch.signal.max()) + 1, -1, np.int64)
        index[batch.signal] = np.arange(len(batch))
        ts = _EPOCH + timedelta(microseconds=ts_ns // 1000)
        for s in self._servers:
            if s.started:
                known = s.ids < len(index)
                pos = np.where(known, index[np.where(known, s.ids, 0)], -1)
                await s.update(pos, batch, ts)
