"""Which signals each OPC UA endpoint and Modbus device serves, resolved from a site.

A binding names its endpoint (device) either by the id of an ``[[opcua]]`` (``[[modbus]]``)
entry or inline (an ``opc.tcp://`` URL; ``host``/``port``/``unit``). Inline ones become implicit
entries with default settings, so adapters only ever see whole endpoint settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from factory5g.model.load import Site
from factory5g.model.site import (
    ModbusBinding,
    ModbusDevice,
    OpcUaBinding,
    OpcUaEndpoint,
    Signal,
)

__all__ = ["Bound", "Served", "modbus_devices", "opcua_endpoints"]

B = TypeVar("B", OpcUaBinding, ModbusBinding)
E = TypeVar("E", OpcUaEndpoint, ModbusDevice)


@dataclass(frozen=True, slots=True)
class Bound(Generic[B]):
    """One signal read through a protocol binding."""

    id: int  # dense signal id of the registry
    path: str  # "equipment.signal"
    signal: Signal
    binding: B
    simulated: bool  # the demo simulator drives its peer (the signal has a sim source)


@dataclass(frozen=True, slots=True)
class Served(Generic[E, B]):
    settings: E
    signals: tuple[Bound[B], ...]


def opcua_endpoints(site: Site) -> dict[str, Served[OpcUaEndpoint, OpcUaBinding]]:
    """Every OPC UA endpoint with a bound signal (declared ones even without), by id."""
    declared = {e.id: e for e in site.file.opcua}
    found: dict[str, list[Bound[OpcUaBinding]]] = {k: [] for k in declared}
    for eq in site.file.equipment:
        for s in eq.signal:
            b = s.binding
            if not isinstance(b, OpcUaBinding):
                continue
            path = f"{eq.id}.{s.name}"
            bound = Bound(site.signals.get(path).id, path, s, b, s.sim is not None)
            found.setdefault(b.endpoint, []).append(bound)
    out: dict[str, Served[OpcUaEndpoint, OpcUaBinding]] = {}
    for key, sigs in found.items():
        settings = declared.get(key) or OpcUaEndpoint.model_construct(id=key, url=key)
        out[key] = Served(settings, tuple(sigs))
    return out


def modbus_devices(site: Site) -> dict[str, Served[ModbusDevice, ModbusBinding]]:
    """Every Modbus device with a bound signal (declared ones even without), by id.

    An inline binding's device id is ``host:port/unit``.
    """
    declared = {d.id: d for d in site.file.modbus}
    found: dict[str, list[Bound[ModbusBinding]]] = {k: [] for k in declared}
    inline: dict[str, ModbusDevice] = {}
    for eq in site.file.equipment:
        for s in eq.signal:
            b = s.binding
            if not isinstance(b, ModbusBinding):
                continue
            path = f"{eq.id}.{s.name}"
            if b.device is not None:
                key = b.device
            else:
                key = f"{b.host}:{b.port}/{b.unit}"
                inline.setdefault(
                    key,
                    ModbusDevice.model_construct(
                        id=key, host=b.host or "", port=b.port, unit=b.unit
                    ),
                )
            bound = Bound(site.signals.get(path).id, path, s, b, s.sim is not None)
            found.setdefault(key, []).append(bound)
    return {
        key: Served(declared.get(key) or inline[key], tuple(sigs)) for key, sigs in found.items()
    }
