"""``/api/v1/connect/...``: the adapters' health — per edge node, device or endpoint."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from factory5g.api.deps import RuntimeDep, Viewer
from factory5g.api.problems import Problem

router = APIRouter(tags=["connect"])


@router.get("/connect", summary="Which adapters run, and whether they are connected")
async def adapters(rt: RuntimeDep, _: Viewer) -> dict[str, Any]:
    return {
        name: {"connected": bool(a.stats().get("connected", False))}
        for name, a in rt.adapters.items()
    }


@router.get(
    "/connect/sparkplug",
    summary="Sparkplug B host: broker, STATE, and counters per edge node (unmapped ones too)",
)
async def sparkplug(rt: RuntimeDep, _: Viewer) -> dict[str, Any]:
    if rt.sparkplug is None:
        raise Problem(
            404,
            "this site runs no Sparkplug host: add a [sparkplug] section or sparkplug bindings",
        )
    stats = rt.sparkplug.stats()
    if rt.broker is not None:
        stats["demo_broker"] = {"host": "127.0.0.1", "port": rt.broker.port}
    stats["unmapped"] = [n for n in stats["nodes"] if not n["mapped"]]
    return stats


@router.get(
    "/connect/opcua",
    summary="OPC UA client: per endpoint, session state, monitored items and counters",
)
async def opcua(rt: RuntimeDep, _: Viewer) -> dict[str, Any]:
    if rt.opcua is None:
        raise Problem(404, "this site reads no OPC UA server: add opcua bindings to its signals")
    return rt.opcua.stats()


@router.get(
    "/connect/modbus",
    summary="Modbus TCP client: per device, connection, poll groups and request counters",
)
async def modbus(rt: RuntimeDep, _: Viewer) -> dict[str, Any]:
    if rt.modbus is None:
        raise Problem(404, "this site polls no Modbus device: add modbus bindings to its signals")
    return rt.modbus.stats()
