"""``/api/v1/network/...``: the private 5G network — cells, slices, devices, admission, KPIs.

The plan comes from the site file (computed once per app); when the runtime runs the NEF emulator
(``app.state.nef``) and the link emulator (``app.state.linkemu``), devices show their live cell
and reachability, and ``/network/kpis`` the emulated links.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from factory5g.api.deps import RuntimeDep, Viewer
from factory5g.api.problems import Problem
from factory5g.net.errors import NetError
from factory5g.net.plan import Plan, plan_site

router = APIRouter(tags=["network"])


def get_plan(request: Request, rt: RuntimeDep) -> Plan:
    plan: Plan | None = getattr(request.app.state, "network_plan", None)
    if plan is None:
        if not rt.site.file.network.cell:
            raise Problem(404, "this site has no private 5G network: add [[network.cell]]")
        try:
            plan = plan_site(rt.site)
        except NetError as exc:
            raise Problem(422, f"the network cannot be planned: {exc}") from None
        request.app.state.network_plan = plan
    return plan


PlanDep = Annotated[Plan, Depends(get_plan)]


@router.get("/network", summary="The plan in one answer: cells, slices, flows and their verdicts")
async def network(plan: PlanDep, _: Viewer) -> dict[str, Any]:
    return plan.to_dict()


@router.get("/network/cells", summary="Per cell: capacity per TDD pattern, demand, load")
async def cells(plan: PlanDep, _: Viewer) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = plan.to_dict()["cells"]
    return out


@router.get("/network/slices", summary="Per slice: demand against the capacity of its cells")
async def slices(plan: PlanDep, _: Viewer) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = plan.to_dict()["slices"]
    return out


@router.get("/network/admission", summary="Per flow: admitted, moved or rejected; latency verdict")
async def admission(request: Request, plan: PlanDep, _: Viewer) -> dict[str, Any]:
    d = plan.to_dict()
    nef = getattr(request.app.state, "nef", None)
    out: dict[str, Any] = {"summary": d["summary"], "flows": d["flows"]}
    if nef is not None:
        out["qos_sessions"] = nef.state()["qos_sessions"]  # granted through the NEF, live
    return out


@router.get(
    "/network/devices", summary="Per device: slice, cell (live when emulated), reachability"
)
async def devices(
    request: Request, plan: PlanDep, rt: RuntimeDep, _: Viewer
) -> list[dict[str, Any]]:
    nef = getattr(request.app.state, "nef", None)
    live = {d["id"]: d for d in nef.state()["devices"]} if nef is not None else {}
    flows: dict[str, list[str]] = {}
    for f in plan.flows:
        flows.setdefault(f.device, []).append(f.status)
    out = []
    for d in rt.site.file.device:
        planned = next((f.moved_to or f.cell for f in plan.flows if f.device == d.id), d.cell)
        state = live.get(d.id, {})
        out.append(
            {
                "id": d.id,
                "imsi": d.imsi,
                "slice": d.slice,
                "qos": d.qos,
                "ipv4": d.ipv4,
                "cell": state.get("cell", planned),
                "online": state.get("online", True),
                "flows": len(flows.get(d.id, [])),
                "rejected_flows": flows.get(d.id, []).count("rejected"),
            }
        )
    return out


@router.get("/network/kpis", summary="The emulated network: GBR room per cell and link KPIs")
async def kpis(request: Request, _: Viewer) -> dict[str, Any]:
    nef = getattr(request.app.state, "nef", None)
    emu = getattr(request.app.state, "linkemu", None)
    if nef is None and emu is None:
        raise Problem(404, "no emulated network runs: start with the NEF and link emulators")
    return {
        "nef": nef.state() if nef is not None else None,
        "links": emu.kpis() if emu is not None else None,
    }
