"""The NEF emulator: the three northbound APIs at their TS 29.122 / TS 29.522 paths, backed by the
planner's admission, plus its own admin API to move devices between cells and take them offline.

Paths (``{apiRoot}`` is wherever the app is served):

    /3gpp-as-session-with-qos/v1/{scsAsId}/subscriptions[/{subscriptionId}]   TS 29.122 §5.14
    /3gpp-monitoring-event/v1/{scsAsId}/subscriptions[/{subscriptionId}]      TS 29.122 §5.3
    /3gpp-traffic-influence/v1/{afId}/subscriptions[/{subscriptionId}]        TS 29.522 §5.4
    /nef-emulator/v1/state, /devices/{id}/move|offline|online, /cells/{id}/capacity   (ours)

A QoS request (``qosReference`` = a ``[[network.qos]]`` name of the site) is granted only if the
UE's cell still has that profile's GBR within the planner's GBR share; otherwise 403. When a device
moves, goes offline or its cell loses capacity, the emulator notifies the subscribers' callback URLs
(LOCATION_REPORTING, LOSS_OF_CONNECTIVITY, UE_REACHABILITY, QOS_NOT_GUARANTEED, QOS_GUARANTEED,
UP_PATH_CHANGE) and tells in-process listeners (the link emulator) with a :class:`NetEvent`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from fastapi import APIRouter, Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from factory5g.model.load import Site
from factory5g.net.errors import NetError
from factory5g.net.plan import Admission, Plan, PlanOptions, plan_site

__all__ = ["NefEmulator", "NetEvent", "QosSession", "create_nef_app"]

log = logging.getLogger(__name__)

QOS = "/3gpp-as-session-with-qos/v1"
MON = "/3gpp-monitoring-event/v1"
TI = "/3gpp-traffic-influence/v1"
ADMIN = "/nef-emulator/v1"
SUPPORTED_MONITORING = ("LOSS_OF_CONNECTIVITY", "LOCATION_REPORTING", "UE_REACHABILITY")


@dataclass(frozen=True, slots=True)
class NetEvent:
    """What changed in the emulated network, for in-process listeners (the link emulator)."""

    kind: Literal["moved", "offline", "online", "capacity", "qos"]
    device: str | None = None
    cell: str | None = None
    factor: float | None = None
    guaranteed: bool | None = None


@dataclass(slots=True)
class DeviceState:
    id: str
    cell: str
    online: bool = True


@dataclass(slots=True)
class QosSession:
    scs_as_id: str
    id: str
    body: dict[str, Any]
    device: str
    profile: str
    dl_mbps: float
    ul_mbps: float
    arp: int
    guaranteed: bool = True


@dataclass(slots=True)
class Subscription:
    owner: str
    id: str
    body: dict[str, Any]
    device: str | None
    reports: int = 0


class ApiProblem(Exception):
    """A ProblemDetails answer (TS 29.122 §5.2.6)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        cause: str | None = None,
        invalid: list[tuple[str, str]] | None = None,
    ) -> None:
        self.status = status
        self.detail = detail
        self.cause = cause
        self.invalid = invalid or []
        super().__init__(detail)

    def body(self) -> dict[str, Any]:
        titles = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 409: "Conflict"}
        out: dict[str, Any] = {
            "title": titles.get(self.status, "Error"),
            "status": self.status,
            "detail": self.detail,
        }
        if self.cause:
            out["cause"] = self.cause
        if self.invalid:
            out["invalidParams"] = [{"param": p, "reason": r} for p, r in self.invalid]
        return out


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7396 JSON merge patch."""
    out = dict(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_patch(out[k], v)
        else:
            out[k] = v
    return out


def json_patch(target: dict[str, Any], ops: list[Any]) -> dict[str, Any]:
    """RFC 6902 JSON patch (add, replace, remove, test) — MonitoringEvent's PATCH body."""
    import copy

    doc = copy.deepcopy(target)
    for i, op in enumerate(ops):
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ApiProblem(
                400, f"patch item {i} needs op and path", invalid=[(f"/{i}", "malformed")]
            )
        parts = [p.replace("~1", "/").replace("~0", "~") for p in str(op["path"]).split("/")[1:]]
        if not parts:
            raise ApiProblem(400, "a patch cannot replace the whole resource")
        node: Any = doc
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node.get(part)
            if node is None:
                raise ApiProblem(400, f"patch path {op['path']} does not exist")
        last = parts[-1]
        kind = op["op"]
        if kind in ("add", "replace"):
            if isinstance(node, list):
                idx = len(node) if last == "-" else int(last)
                if kind == "add":
                    node.insert(idx, op.get("value"))
                else:
                    node[idx] = op.get("value")
            else:
                node[last] = op.get("value")
        elif kind == "remove":
            if isinstance(node, list):
                node.pop(int(last))
            else:
                node.pop(last, None)
        elif kind == "test":
            current = node[int(last)] if isinstance(node, list) else node.get(last)
            if current != op.get("value"):
                raise ApiProblem(409, f"patch test failed at {op['path']}")
        else:
            raise ApiProblem(
                400, f"patch op {kind!r} is not supported", invalid=[(f"/{i}/op", "unsupported")]
            )
    return doc


class NefEmulator:
    """The emulated network's state and the notifier; an async context manager (the notifier)."""

    def __init__(
        self,
        site: Site,
        plan: Plan | None = None,
        *,
        http: httpx.AsyncClient | None = None,
        base_url: str = "",
    ) -> None:
        self.site = site
        self.plan = plan or plan_site(site, PlanOptions(with_latency=False))
        self.base_url = base_url.rstrip("/")
        self.admission = Admission(
            {c.id: (c.capacity_dl_mbps, c.capacity_ul_mbps) for c in self.plan.cells},
            self.plan.options.max_gbr_share,
        )
        # The site's own admitted GBR flows hold their reservations from the start.
        for f in self.plan.flows:
            if f.status in ("admitted", "moved"):
                self.admission.reserve(f.moved_to or f.cell, f.reserved_dl_mbps, f.reserved_ul_mbps)
        first_cell = self.plan.cells[0].id
        placed = {f.device: (f.moved_to or f.cell) for f in self.plan.flows}
        self.devices = {
            d.id: DeviceState(d.id, d.cell or placed.get(d.id, first_cell))
            for d in site.file.device
        }
        self.profiles = {q.name: q for q in site.file.network.qos}
        self.qos: dict[str, QosSession] = {}
        self.monitoring: dict[str, Subscription] = {}
        self.influence: dict[str, Subscription] = {}
        self.listeners: list[Callable[[NetEvent], None]] = []
        self.delivered = 0
        self.failed_deliveries = 0
        self._ids = itertools.count(1)
        self._http = http
        self._own_http = http is None
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    # -- lifecycle
    async def __aenter__(self) -> NefEmulator:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=5.0)
        self._worker = asyncio.create_task(self._deliver(), name="nef-notifier")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    async def drain(self) -> None:
        """Wait until every queued notification has been delivered (or failed)."""
        await self._queue.join()

    async def _deliver(self) -> None:
        while True:
            url, payload = await self._queue.get()
            try:
                assert self._http is not None
                r = await self._http.post(url, json=payload)
                if r.status_code >= 300:
                    self.failed_deliveries += 1
                    log.warning("notification to %s answered %s", url, r.status_code)
                else:
                    self.delivered += 1
            except httpx.HTTPError as exc:
                self.failed_deliveries += 1
                log.warning("notification to %s failed: %s", url, type(exc).__name__)
            finally:
                self._queue.task_done()

    def _notify(self, url: str | None, payload: dict[str, Any]) -> None:
        if url:
            self._queue.put_nowait((url, payload))

    def _emit(self, event: NetEvent) -> None:
        for listener in list(self.listeners):
            listener(event)

    def _next_id(self) -> str:
        return str(next(self._ids))

    # -- UE lookup
    def find_device(self, body: dict[str, Any]) -> str:
        """The device named by the UE selector of a request: IPv4, GPSI/MSISDN, external id."""
        devices = self.site.file.device
        ip = body.get("ueIpv4Addr") or body.get("ipv4Addr")
        if isinstance(body.get("ueIpAddr"), dict):
            ip = body["ueIpAddr"].get("ipv4Addr")
        if ip:
            for d in devices:
                if d.ipv4 == ip:
                    return d.id
            raise ApiProblem(404, f"no UE has the address {ip}", cause="UE_NOT_FOUND")
        gpsi = body.get("gpsi") or body.get("msisdn")
        if gpsi:
            digits = str(gpsi).removeprefix("msisdn-")
            for d in devices:
                if d.msisdn == digits:
                    return d.id
            raise ApiProblem(404, f"no UE has the GPSI {gpsi}", cause="UE_NOT_FOUND")
        ext = body.get("externalId")
        if ext:
            local = str(ext).split("@", 1)[0]
            if local in self.devices:
                return local
            raise ApiProblem(404, f"no UE has the external id {ext}", cause="UE_NOT_FOUND")
        raise ApiProblem(
            400,
            "the request names no UE: give ueIpv4Addr, gpsi or externalId",
            invalid=[("/ueIpv4Addr", "missing")],
        )

    # -- AsSessionWithQoS
    def qos_link(self, owner: str, sid: str) -> str:
        return f"{self.base_url}{QOS}/{owner}/subscriptions/{sid}"

    def create_qos(self, owner: str, body: dict[str, Any], sid: str | None = None) -> QosSession:
        if not body.get("notificationDestination"):
            raise ApiProblem(
                400,
                "notificationDestination is required (TS 29.122 AsSessionWithQoSSubscription)",
                invalid=[("/notificationDestination", "missing")],
            )
        device = self.find_device(body)
        ref = body.get("qosReference")
        if not ref:
            raise ApiProblem(
                400,
                "qosReference is required: the name of a QoS profile of the site",
                invalid=[("/qosReference", "missing")],
            )
        profile = self.profiles.get(str(ref))
        if profile is None:
            raise ApiProblem(
                403,
                f"QoS reference {ref!r} is not a profile of this site: " + ", ".join(self.profiles),
                cause="REQUESTED_SERVICE_NOT_AUTHORIZED",
            )
        state = self.devices[device]
        dl = profile.gbr_dl_mbps or 0.0
        ul = profile.gbr_ul_mbps or 0.0
        if not self.admission.fits(state.cell, dl, ul):
            room_dl, room_ul = self.admission.room(state.cell)
            raise ApiProblem(
                403,
                f"cell {state.cell} has {max(room_ul, 0):.3g}/{max(room_dl, 0):.3g} Mbit/s UL/DL "
                f"of guaranteed bit rate left; {ref!r} needs {ul:g}/{dl:g}",
                cause="REQUESTED_SERVICE_TEMPORARILY_NOT_AUTHORIZED",
            )
        self.admission.reserve(state.cell, dl, ul)
        sid = sid or self._next_id()
        stored = {k: v for k, v in body.items() if k != "self"}
        stored["self"] = self.qos_link(owner, sid)
        s = QosSession(owner, sid, stored, device, profile.name, dl, ul, profile.arp_priority)
        self.qos[f"{owner}/{sid}"] = s
        if body.get("requestTestNotification"):
            self._qos_notify(s, "QOS_GUARANTEED")
        return s

    def delete_qos(self, owner: str, sid: str) -> QosSession:
        s: QosSession = self._get(self.qos, owner, sid)
        if s.guaranteed:
            self.admission.release(self.devices[s.device].cell, s.dl_mbps, s.ul_mbps)
        del self.qos[f"{owner}/{sid}"]
        self._recheck(self.devices[s.device].cell)
        return s

    def _qos_notify(self, s: QosSession, event: str) -> None:
        self._notify(
            s.body.get("notificationDestination"),
            {"transaction": s.body["self"], "eventReports": [{"event": event}]},
        )

    # -- MonitoringEvent
    def mon_link(self, owner: str, sid: str) -> str:
        return f"{self.base_url}{MON}/{owner}/subscriptions/{sid}"

    def create_monitoring(
        self, owner: str, body: dict[str, Any], sid: str | None = None
    ) -> tuple[Subscription | None, dict[str, Any] | None]:
        """The subscription, or (None, report) for a one-time location request."""
        missing = [k for k in ("notificationDestination", "monitoringType") if not body.get(k)]
        if missing:
            raise ApiProblem(
                400,
                f"{', '.join(missing)} required",
                invalid=[(f"/{m}", "missing") for m in missing],
            )
        mtype = body["monitoringType"]
        if mtype not in SUPPORTED_MONITORING:
            raise ApiProblem(
                400,
                f"monitoringType {mtype} is not emulated; use " + ", ".join(SUPPORTED_MONITORING),
                invalid=[("/monitoringType", "not supported")],
            )
        if "maximumNumberOfReports" not in body and "monitorExpireTime" not in body:
            raise ApiProblem(
                400,
                "give maximumNumberOfReports or monitorExpireTime (TS 29.122 §5.3.2.1.1)",
                invalid=[("/maximumNumberOfReports", "missing")],
            )
        device = self.find_device(body)
        if mtype == "LOCATION_REPORTING" and body.get("maximumNumberOfReports") == 1:
            return None, self._report(mtype, device)  # one-time request: 200 with the report
        sid = sid or self._next_id()
        stored = {k: v for k, v in body.items() if k != "self"}
        stored["self"] = self.mon_link(owner, sid)
        sub = Subscription(owner, sid, stored, device)
        self.monitoring[f"{owner}/{sid}"] = sub
        return sub, None

    def _report(self, mtype: str, device: str) -> dict[str, Any]:
        d = next(x for x in self.site.file.device if x.id == device)
        report: dict[str, Any] = {"monitoringType": mtype, "eventTime": _now()}
        report["externalId"] = f"{device}@{self.site.file.site.prefix}"
        if d.msisdn:
            report["msisdn"] = d.msisdn
        if mtype == "LOCATION_REPORTING":
            report["locationInfo"] = {"cellId": self.devices[device].cell}
        if mtype == "UE_REACHABILITY":
            report["reachabilityType"] = "DATA"
        return report

    def _monitor(self, device: str, mtype: str) -> None:
        for key, sub in list(self.monitoring.items()):
            if sub.device != device or sub.body.get("monitoringType") != mtype:
                continue
            sub.reports += 1
            self._notify(
                sub.body.get("notificationDestination"),
                {
                    "subscription": sub.body["self"],
                    "monitoringEventReports": [self._report(mtype, device)],
                },
            )
            limit = sub.body.get("maximumNumberOfReports")
            if isinstance(limit, int) and sub.reports >= limit:
                del self.monitoring[key]  # TS 29.122 §5.3.2.1: the subscription ends

    # -- TrafficInfluence
    def ti_link(self, owner: str, sid: str) -> str:
        return f"{self.base_url}{TI}/{owner}/subscriptions/{sid}"

    def create_influence(
        self, owner: str, body: dict[str, Any], sid: str | None = None
    ) -> Subscription:
        apps = [k for k in ("afAppId", "trafficFilters", "ethTrafficFilters") if k in body]
        if len(apps) != 1:
            raise ApiProblem(
                400,
                "give exactly one of afAppId, trafficFilters, ethTrafficFilters (TS 29.522)",
                invalid=[("/afAppId", "exactly one application identification")],
            )
        selectors = [
            k
            for k in ("ipv4Addr", "ipv6Addr", "macAddr", "gpsi", "externalGroupId", "anyUeInd")
            if k in body
        ]
        if len(selectors) != 1:
            raise ApiProblem(
                400,
                "give exactly one UE selector: ipv4Addr, gpsi, anyUeInd... (TS 29.522)",
                invalid=[("/ipv4Addr", "exactly one UE selector")],
            )
        if body.get("subscribedEvents") and not body.get("notificationDestination"):
            raise ApiProblem(
                400,
                "subscribedEvents needs a notificationDestination",
                invalid=[("/notificationDestination", "missing")],
            )
        edge = self.site.file.network.edge_dnai
        for i, route in enumerate(body.get("trafficRoutes") or []):
            if not isinstance(route, dict) or not (
                route.get("routeInfo") or route.get("routeProfId")
            ):
                raise ApiProblem(
                    400,
                    "a traffic route needs a dnai and routeInfo or routeProfId (TS 29.571)",
                    invalid=[(f"/trafficRoutes/{i}", "routeInfo or routeProfId missing")],
                )
            if route.get("dnai") != edge:
                raise ApiProblem(
                    400,
                    f"DNAI {route.get('dnai')!r} is not served here; the on-site UPF is {edge!r}",
                    invalid=[(f"/trafficRoutes/{i}/dnai", "unknown DNAI")],
                )
        device = None if body.get("anyUeInd") else self.find_device(body)
        sid = sid or self._next_id()
        stored = {k: v for k, v in body.items() if k != "self"}
        stored["self"] = self.ti_link(owner, sid)
        sub = Subscription(owner, sid, stored, device)
        self.influence[f"{owner}/{sid}"] = sub
        return sub

    def _up_path(self, device: str) -> None:
        edge = self.site.file.network.edge_dnai
        for sub in self.influence.values():
            if sub.device not in (device, None):
                continue
            if "UP_PATH_CHANGE" not in (sub.body.get("subscribedEvents") or []):
                continue
            event: dict[str, Any] = {
                "subscribedEvent": "UP_PATH_CHANGE",
                "dnaiChgType": "EARLY_LATE",
                "targetDnai": edge,
            }
            d = next(x for x in self.site.file.device if x.id == device)
            if d.ipv4:
                event["ueIpv4Addr"] = d.ipv4
            self._notify(sub.body.get("notificationDestination"), event)

    # -- generic
    @staticmethod
    def _get(table: dict[str, Any], owner: str, sid: str) -> Any:
        item = table.get(f"{owner}/{sid}")
        if item is None:
            raise ApiProblem(404, f"no subscription {sid} for {owner}", cause="RESOURCE_NOT_FOUND")
        return item

    # -- the emulated network (admin API)
    def _device(self, device: str) -> DeviceState:
        state = self.devices.get(device)
        if state is None:
            raise ApiProblem(404, f"no device {device!r}; known: " + ", ".join(self.devices))
        return state

    def move(self, device: str, cell: str) -> DeviceState:
        state = self._device(device)
        if cell not in self.admission.capacity:
            raise ApiProblem(404, f"no cell {cell!r}; known: " + ", ".join(self.admission.capacity))
        old = state.cell
        if old == cell:
            return state
        sessions = [s for s in self.qos.values() if s.device == device]
        for s in sessions:
            if s.guaranteed:
                self.admission.release(old, s.dl_mbps, s.ul_mbps)
        state.cell = cell
        for s in sorted(sessions, key=lambda s: s.arp):
            fits = self.admission.fits(cell, s.dl_mbps, s.ul_mbps)
            if fits:
                self.admission.reserve(cell, s.dl_mbps, s.ul_mbps)
            if fits != s.guaranteed or not fits:
                s.guaranteed = fits
                self._qos_notify(s, "QOS_GUARANTEED" if fits else "QOS_NOT_GUARANTEED")
                self._emit(NetEvent("qos", device=device, cell=cell, guaranteed=fits))
        self._monitor(device, "LOCATION_REPORTING")
        self._emit(NetEvent("moved", device=device, cell=cell))
        self._recheck(old)
        return state

    def set_online(self, device: str, online: bool) -> DeviceState:
        state = self._device(device)
        if state.online == online:
            return state
        state.online = online
        if online:
            self._monitor(device, "UE_REACHABILITY")
            self._up_path(device)
        else:
            self._monitor(device, "LOSS_OF_CONNECTIVITY")
        self._emit(NetEvent("online" if online else "offline", device=device, cell=state.cell))
        return state

    def set_capacity(self, cell: str, factor: float) -> None:
        if cell not in self.admission.capacity:
            raise ApiProblem(404, f"no cell {cell!r}")
        if not 0 <= factor <= 1:
            raise ApiProblem(400, "factor must be between 0 and 1", invalid=[("/factor", "range")])
        self.admission.factor[cell] = factor
        self._emit(NetEvent("capacity", cell=cell, factor=factor))
        self._recheck(cell)

    def _recheck(self, cell: str) -> None:
        """After capacity changed in ``cell``: drop the guarantee of the least important sessions
        that no longer fit, give it back to those that fit again."""
        sessions = sorted(
            (s for s in self.qos.values() if self.devices[s.device].cell == cell),
            key=lambda s: s.arp,
        )
        # drop from the least important while overbooked
        for s in reversed(sessions):
            if not self.admission.overbooked(cell):
                break
            if s.guaranteed:
                self.admission.release(cell, s.dl_mbps, s.ul_mbps)
                s.guaranteed = False
                self._qos_notify(s, "QOS_NOT_GUARANTEED")
                self._emit(NetEvent("qos", device=s.device, cell=cell, guaranteed=False))
        for s in sessions:
            if not s.guaranteed and self.admission.fits(cell, s.dl_mbps, s.ul_mbps):
                self.admission.reserve(cell, s.dl_mbps, s.ul_mbps)
                s.guaranteed = True
                self._qos_notify(s, "QOS_GUARANTEED")
                self._emit(NetEvent("qos", device=s.device, cell=cell, guaranteed=True))

    def state(self) -> dict[str, Any]:
        cells = []
        for c in self.plan.cells:
            room_dl, room_ul = self.admission.room(c.id)
            cells.append(
                {
                    "id": c.id,
                    "capacity_dl_mbps": round(c.capacity_dl_mbps * self.admission.factor[c.id], 3),
                    "capacity_ul_mbps": round(c.capacity_ul_mbps * self.admission.factor[c.id], 3),
                    "factor": self.admission.factor[c.id],
                    "gbr_reserved_dl_mbps": round(self.admission.reserved[c.id][0], 3),
                    "gbr_reserved_ul_mbps": round(self.admission.reserved[c.id][1], 3),
                    "gbr_room_dl_mbps": round(room_dl, 3),
                    "gbr_room_ul_mbps": round(room_ul, 3),
                }
            )
        return {
            "cells": cells,
            "devices": [
                {"id": d.id, "cell": d.cell, "online": d.online} for d in self.devices.values()
            ],
            "qos_sessions": [
                {
                    "id": s.id,
                    "scsAsId": s.scs_as_id,
                    "device": s.device,
                    "qosReference": s.profile,
                    "guaranteed": s.guaranteed,
                }
                for s in self.qos.values()
            ],
            "monitoring_subscriptions": len(self.monitoring),
            "traffic_influence_subscriptions": len(self.influence),
            "notifications": {"delivered": self.delivered, "failed": self.failed_deliveries},
        }


# -- the HTTP app --------------------------------------------------------------------------------


def _problem(exc: ApiProblem) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, media_type="application/problem+json")


def create_nef_app(
    site: Site,
    *,
    emulator: NefEmulator | None = None,
    plan: Plan | None = None,
) -> FastAPI:
    """The NEF emulator as an ASGI app. Given an ``emulator``, its owner runs it (``async with``);
    otherwise the app's lifespan creates and runs one (``app.state.nef``)."""
    owned = emulator is None
    nef_holder: dict[str, NefEmulator] = {}
    if emulator is not None:
        nef_holder["nef"] = emulator

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if owned:
            async with NefEmulator(site, plan) as nef:
                nef_holder["nef"] = nef
                app.state.nef = nef
                yield
        else:
            app.state.nef = nef_holder["nef"]
            yield

    app = FastAPI(
        title="factory5g NEF emulator",
        summary="TS 29.122 AsSessionWithQoS and MonitoringEvent, TS 29.522 TrafficInfluence",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(ApiProblem)
    async def _on_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return _problem(exc)

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _problem(
            ApiProblem(400, "the body is not a JSON object", invalid=[("/", "invalid JSON")])
        )

    @app.exception_handler(NetError)
    async def _on_net(request: Request, exc: NetError) -> JSONResponse:
        return _problem(ApiProblem(400, str(exc)))

    def nef(request: Request) -> NefEmulator:
        n = nef_holder["nef"]
        if not n.base_url:
            n.base_url = str(request.base_url).rstrip("/")
        return n

    def body_of(raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise ApiProblem(400, "the body must be a JSON object")
        return raw

    JsonBody = Body(...)

    # -- AsSessionWithQoS
    qos = APIRouter(prefix=QOS)

    @qos.get("/{scsAsId}/subscriptions")
    async def qos_list(scsAsId: str, request: Request) -> list[dict[str, Any]]:
        return [s.body for s in nef(request).qos.values() if s.scs_as_id == scsAsId]

    @qos.post("/{scsAsId}/subscriptions", status_code=201)
    async def qos_create(scsAsId: str, request: Request, raw: Any = JsonBody) -> JSONResponse:
        s = nef(request).create_qos(scsAsId, body_of(raw))
        return JSONResponse(s.body, status_code=201, headers={"Location": s.body["self"]})

    @qos.get("/{scsAsId}/subscriptions/{subscriptionId}")
    async def qos_get(scsAsId: str, subscriptionId: str, request: Request) -> dict[str, Any]:
        s: QosSession = nef(request)._get(nef(request).qos, scsAsId, subscriptionId)
        return s.body

    @qos.put("/{scsAsId}/subscriptions/{subscriptionId}")
    async def qos_put(
        scsAsId: str,
        subscriptionId: str,
        request: Request,
        raw: Any = JsonBody,
    ) -> dict[str, Any]:
        n = nef(request)
        old = n.delete_qos(scsAsId, subscriptionId)
        try:
            return n.create_qos(scsAsId, body_of(raw), sid=subscriptionId).body
        except ApiProblem:
            n.create_qos(scsAsId, old.body, sid=subscriptionId)  # put the old one back
            raise

    @qos.patch("/{scsAsId}/subscriptions/{subscriptionId}")
    async def qos_patch(
        scsAsId: str,
        subscriptionId: str,
        request: Request,
        raw: Any = JsonBody,
    ) -> dict[str, Any]:
        n = nef(request)
        current: QosSession = n._get(n.qos, scsAsId, subscriptionId)
        merged = merge_patch(current.body, body_of(raw))
        old = n.delete_qos(scsAsId, subscriptionId)
        try:
            return n.create_qos(scsAsId, merged, sid=subscriptionId).body
        except ApiProblem:
            n.create_qos(scsAsId, old.body, sid=subscriptionId)
            raise

    @qos.delete("/{scsAsId}/subscriptions/{subscriptionId}", status_code=204)
    async def qos_delete(scsAsId: str, subscriptionId: str, request: Request) -> Response:
        nef(request).delete_qos(scsAsId, subscriptionId)
        return Response(status_code=204)

    # -- MonitoringEvent
    mon = APIRouter(prefix=MON)

    @mon.get("/{scsAsId}/subscriptions")
    async def mon_list(scsAsId: str, request: Request) -> list[dict[str, Any]]:
        return [s.body for s in nef(request).monitoring.values() if s.owner == scsAsId]

    @mon.post("/{scsAsId}/subscriptions", status_code=201)
    async def mon_create(scsAsId: str, request: Request, raw: Any = JsonBody) -> JSONResponse:
        sub, report = nef(request).create_monitoring(scsAsId, body_of(raw))
        if sub is None:
            return JSONResponse(report, status_code=200)
        return JSONResponse(sub.body, status_code=201, headers={"Location": sub.body["self"]})

    @mon.get("/{scsAsId}/subscriptions/{subscriptionId}")
    async def mon_get(scsAsId: str, subscriptionId: str, request: Request) -> dict[str, Any]:
        sub: Subscription = nef(request)._get(nef(request).monitoring, scsAsId, subscriptionId)
        return sub.body

    @mon.put("/{scsAsId}/subscriptions/{subscriptionId}")
    async def mon_put(
        scsAsId: str,
        subscriptionId: str,
        request: Request,
        raw: Any = JsonBody,
    ) -> dict[str, Any]:
        n = nef(request)
        n._get(n.monitoring, scsAsId, subscriptionId)
        sub, _ = n.create_monitoring(scsAsId, body_of(raw), sid=subscriptionId)
        if sub is None:
            raise ApiProblem(400, "a one-time report cannot replace a subscription")
        return sub.body

    @mon.patch("/{scsAsId}/subscriptions/{subscriptionId}", status_code=204)
    async def mon_patch(
        scsAsId: str,
        subscriptionId: str,
        request: Request,
        raw: Any = JsonBody,
    ) -> Response:
        n = nef(request)
        current: Subscription = n._get(n.monitoring, scsAsId, subscriptionId)
        if not isinstance(raw, list):
            raise ApiProblem(400, "MonitoringEvent PATCH takes a JSON patch (RFC 6902) array")
        sub, _ = n.create_monitoring(scsAsId, json_patch(current.body, raw), sid=subscriptionId)
        if sub is None:
            raise ApiProblem(400, "a one-time report cannot replace a subscription")
        return Response(status_code=204)  # TS 29.122: the modified resource is not returned

    @mon.delete("/{scsAsId}/subscriptions/{subscriptionId}", status_code=204)
    async def mon_delete(scsAsId: str, subscriptionId: str, request: Request) -> Response:
        n = nef(request)
        n._get(n.monitoring, scsAsId, subscriptionId)
        del n.monitoring[f"{scsAsId}/{subscriptionId}"]
        return Response(status_code=204)

    # -- TrafficInfluence
    ti = APIRouter(prefix=TI)

    @ti.get("/{afId}/subscriptions")
    async def ti_list(afId: str, request: Request) -> list[dict[str, Any]]:
        return [s.body for s in nef(request).influence.values() if s.owner == afId]

    @ti.post("/{afId}/subscriptions", status_code=201)
    async def ti_create(afId: str, request: Request, raw: Any = JsonBody) -> JSONResponse:
        sub = nef(request).create_influence(afId, body_of(raw))
        return JSONResponse(sub.body, status_code=201, headers={"Location": sub.body["self"]})

    @ti.get("/{afId}/subscriptions/{subscriptionId}")
    async def ti_get(afId: str, subscriptionId: str, request: Request) -> dict[str, Any]:
        sub: Subscription = nef(request)._get(nef(request).influence, afId, subscriptionId)
        return sub.body

    @ti.put("/{afId}/subscriptions/{subscriptionId}")
    async def ti_put(
        afId: str,
        subscriptionId: str,
        request: Request,
        raw: Any = JsonBody,
    ) -> dict[str, Any]:
        n = nef(request)
        n._get(n.influence, afId, subscriptionId)
        return n.create_influence(afId, body_of(raw), sid=subscriptionId).body

    @ti.patch("/{afId}/subscriptions/{subscriptionId}")
    async def ti_patch(
        afId: str,
        subscriptionId: str,
        request: Request,
        raw: Any = JsonBody,
    ) -> dict[str, Any]:
        n = nef(request)
        current: Subscription = n._get(n.influence, afId, subscriptionId)
        merged = merge_patch(current.body, body_of(raw))
        return n.create_influence(afId, merged, sid=subscriptionId).body

    @ti.delete("/{afId}/subscriptions/{subscriptionId}", status_code=204)
    async def ti_delete(afId: str, subscriptionId: str, request: Request) -> Response:
        n = nef(request)
        n._get(n.influence, afId, subscriptionId)
        del n.influence[f"{afId}/{subscriptionId}"]
        return Response(status_code=204)

    # -- the emulator's own API
    admin = APIRouter(prefix=ADMIN, tags=["emulator"])

    @admin.get("/state")
    async def state(request: Request) -> dict[str, Any]:
        return nef(request).state()

    @admin.post("/devices/{device}/move")
    async def move(device: str, request: Request, raw: Any = JsonBody) -> dict[str, Any]:
        cell = body_of(raw).get("cell")
        if not isinstance(cell, str):
            raise ApiProblem(400, 'give the target cell: {"cell": "cell-id"}')
        s = nef(request).move(device, cell)
        return {"id": s.id, "cell": s.cell, "online": s.online}

    @admin.post("/devices/{device}/offline")
    async def offline(device: str, request: Request) -> dict[str, Any]:
        s = nef(request).set_online(device, False)
        return {"id": s.id, "cell": s.cell, "online": s.online}

    @admin.post("/devices/{device}/online")
    async def online(device: str, request: Request) -> dict[str, Any]:
        s = nef(request).set_online(device, True)
        return {"id": s.id, "cell": s.cell, "online": s.online}

    @admin.put("/cells/{cell}/capacity")
    async def capacity(cell: str, request: Request, raw: Any = JsonBody) -> dict[str, Any]:
        factor = body_of(raw).get("factor")
        if isinstance(factor, bool) or not isinstance(factor, int | float):
            raise ApiProblem(400, 'give the capacity factor: {"factor": 0.5}')
        nef(request).set_capacity(cell, float(factor))
        return nef(request).state()

    for r in (qos, mon, ti, admin):
        app.include_router(r)
    return app
