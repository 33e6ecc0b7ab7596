"""Route a site's equipment traffic through the link emulator: which proxy each adapter uses.

The simulated equipment listens where the site file says; the adapters are handed a copy of the
site whose ``[[opcua]]`` URLs and ``[[modbus]]`` addresses point at the proxy of the 5G device
(UE) the equipment is reached through (``[[equipment]] device``). Simulated Sparkplug edge nodes
sit behind their UE too, and connect out to the broker through its proxy. Endpoints given inline
in a binding (an ``opc.tcp://`` URL, a ``host``) are not rerouted: declare them to emulate them.
"""

from __future__ import annotations

import dataclasses
import logging
from urllib.parse import urlsplit, urlunsplit

from factory5g.model import Site
from factory5g.model.endpoints import modbus_devices, opcua_endpoints
from factory5g.model.site import SparkplugBinding
from factory5g.net.linkemu import LinkEmulator

__all__ = ["front_site", "front_sparkplug_edges"]

log = logging.getLogger(__name__)


def _ue_of(site: Site, paths: list[str]) -> str | None:
    """The 5G device of the equipment these signals belong to (the first, if they differ)."""
    devices = {eq.id: eq.device for eq in site.file.equipment}
    ues = [d for d in (devices.get(p.split(".", 1)[0]) for p in paths) if d is not None]
    if len(set(ues)) > 1:
        log.warning("signals %s are reached through several 5G devices; using %s", paths, ues[0])
    return ues[0] if ues else None


async def front_site(site: Site, emulator: LinkEmulator) -> Site:
    """A copy of ``site`` whose declared OPC UA endpoints and Modbus devices are reached
    through their UE's proxy (the same signal registry: ids do not change)."""
    declared_opcua = {e.id for e in site.file.opcua}
    opcua = []
    for key, served in opcua_endpoints(site).items():
        if key not in declared_opcua:
            continue
        ue = _ue_of(site, [b.path for b in served.signals])
        settings = served.settings
        if ue is not None:
            url = urlsplit(settings.url)
            host, port = await emulator.front(ue, url.hostname or "127.0.0.1", url.port or 4840)
            settings = settings.model_copy(
                update={"url": urlunsplit(url._replace(netloc=f"{host}:{port}"))}
            )
        opcua.append(settings)
    declared_modbus = {d.id for d in site.file.modbus}
    modbus = []
    for key, mb in modbus_devices(site).items():
        if key not in declared_modbus:
            continue
        ue = _ue_of(site, [b.path for b in mb.signals])
        device = mb.settings
        if ue is not None:
            host, port = await emulator.front(ue, device.host, device.port)
            device = device.model_copy(update={"host": host, "port": port})
        modbus.append(device)
    file = site.file.model_copy(update={"opcua": tuple(opcua), "modbus": tuple(modbus)})
    return dataclasses.replace(site, file=file)


async def front_sparkplug_edges(
    site: Site, emulator: LinkEmulator, broker_host: str, broker_port: int
) -> dict[tuple[str, str], tuple[str, int]]:
    """Per Sparkplug edge node (group, edge id) of the site's bindings: the broker address it
    should connect to — its UE's proxy, the UE being the client (uplink first)."""
    paths: dict[tuple[str, str], list[str]] = {}
    for eq in site.file.equipment:
        for s in eq.signal:
            if isinstance(s.binding, SparkplugBinding):
                key = (s.binding.group, s.binding.edge)
                paths.setdefault(key, []).append(f"{eq.id}.{s.name}")
    out: dict[tuple[str, str], tuple[str, int]] = {}
    for key, ps in paths.items():
        ue = _ue_of(site, ps)
        if ue is not None:
            out[key] = await emulator.front(ue, broker_host, broker_port, ue_is_client=True)
    return out
