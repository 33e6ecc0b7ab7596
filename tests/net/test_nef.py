"""The NEF emulator over HTTP: every operation's requests and responses, success and error,
validated against the official TS 29.122 / TS 29.522 OpenAPI documents; notifications too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from factory5g.model import Site
from factory5g.net.errors import NefError
from factory5g.net.nef import NefClient, NefEmulator, NetEvent, create_nef_app
from tests.net import openapi
from tests.net.servers import Sink, serve

CAM = "10.45.0.21"  # ue-surface-cam on cell-runout
PLC = "10.45.0.11"  # ue-f1-plc on cell-mill


@dataclass
class Env:
    nef: NefEmulator
    base: str
    http: httpx.AsyncClient
    sink: Sink
    sink_url: str
    events: list[NetEvent]

    async def call(
        self,
        api: openapi.Api,
        template: str,
        method: str,
        path: str,
        body: Any = None,
        *,
        merge: bool = False,
        json_patch: bool = False,
    ) -> httpx.Response:
        """Validate the request, send it, validate the response, return it."""
        ctype = "application/merge-patch+json" if merge else "application/json"
        if json_patch:
            ctype = "application/json-patch+json"
        if body is not None:
            api.request(template, method, body, ctype)
        if body is None:
            r = await self.http.request(method, api.prefix + path)
        else:
            import json

            r = await self.http.request(
                method, api.prefix + path, content=json.dumps(body), headers={"Content-Type": ctype}
            )
        rtype = r.headers.get("content-type", "").split(";")[0]
        api.response(template, method, r.status_code, r.json() if r.content else None, rtype)
        return r


@pytest.fixture
async def env(steel: Site) -> AsyncIterator[Env]:
    sink = Sink()
    async with serve(sink.app) as sink_url, NefEmulator(steel) as nef:
        events: list[NetEvent] = []
        nef.listeners.append(events.append)
        async with (
            serve(create_nef_app(steel, emulator=nef)) as base,
            httpx.AsyncClient(base_url=base) as http,
        ):
            yield Env(nef, base, http, sink, sink_url, events)


SUBS = "/{scsAsId}/subscriptions"
SUB = "/{scsAsId}/subscriptions/{subscriptionId}"
TSUBS = "/{afId}/subscriptions"
TSUB = "/{afId}/subscriptions/{subscriptionId}"


def qos_body(env: Env, ip: str = CAM, ref: str = "vision-uplink") -> dict[str, Any]:
    return {
        "notificationDestination": f"{env.sink_url}/qos",
        "ueIpv4Addr": ip,
        "qosReference": ref,
        "flowInfo": [{"flowId": 1, "flowDescriptions": [f"permit out ip from {ip} to any"]}],
    }


async def test_qos_session_lifecycle(env: Env) -> None:
    r = await env.call(openapi.QOS, SUBS, "post", "/app1/subscriptions", qos_body(env))
    assert r.status_code == 201
    sid = r.json()["self"].rsplit("/", 1)[1]
    assert r.headers["location"] == r.json()["self"]
    assert r.json()["self"].startswith(env.base + "/3gpp-as-session-with-qos/v1/app1/")

    r = await env.call(openapi.QOS, SUB, "get", f"/app1/subscriptions/{sid}")
    assert r.status_code == 200
    assert r.json()["qosReference"] == "vision-uplink"
    r = await env.call(openapi.QOS, SUBS, "get", "/app1/subscriptions")
    assert [s["qosReference"] for s in r.json()] == ["vision-uplink"]
    r = await env.call(openapi.QOS, SUBS, "get", "/other/subscriptions")
    assert r.json() == []

    r = await env.call(
        openapi.QOS,
        SUB,
        "patch",
        f"/app1/subscriptions/{sid}",
        {"qosReference": "camera-uplink"},
        merge=True,
    )
    assert r.status_code == 200
    assert r.json()["qosReference"] == "camera-uplink"
    assert r.json()["ueIpv4Addr"] == CAM  # merge patch keeps the rest

    put = qos_body(env, ref="vision-uplink")
    r = await env.call(openapi.QOS, SUB, "put", f"/app1/subscriptions/{sid}", put)
    assert r.status_code == 200
    runout = next(c for c in env.nef.state()["cells"] if c["id"] == "cell-runout")
    before = runout["gbr_reserved_ul_mbps"]

    r = await env.call(openapi.QOS, SUB, "delete", f"/app1/subscriptions/{sid}")
    assert r.status_code == 204
    runout = next(c for c in env.nef.state()["cells"] if c["id"] == "cell-runout")
    assert runout["gbr_reserved_ul_mbps"] == pytest.approx(before - 100)
    r = await env.call(openapi.QOS, SUB, "get", f"/app1/subscriptions/{sid}")
    assert r.status_code == 404


async def test_qos_granted_only_while_admission_says_it_fits(env: Env) -> None:
    # cell-runout: 785.7 x 0.8 = 628.6 Mbit/s of GBR; the site's own flows hold 146.
    granted = 0
    for _ in range(10):
        r = await env.call(openapi.QOS, SUBS, "post", "/app1/subscriptions", qos_body(env))
        if r.status_code != 201:
            break
        granted += 1
    assert granted == 4  # 146 + 4 x 100 = 546 <= 628.6 < 646
    assert r.status_code == 403
    problem = r.json()
    assert problem["cause"] == "REQUESTED_SERVICE_TEMPORARILY_NOT_AUTHORIZED"
    assert "cell-runout" in problem["detail"]
    assert r.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("change", "status", "text"),
    [
        ({"notificationDestination": None}, 400, "notificationDestination"),
        ({"qosReference": None}, 400, "qosReference"),
        ({"qosReference": "gold"}, 403, "not a profile of this site"),
        ({"ueIpv4Addr": "10.9.9.9"}, 404, "no UE has the address"),
    ],
)
async def test_qos_errors(env: Env, change: dict[str, Any], status: int, text: str) -> None:
    body = {k: v for k, v in {**qos_body(env), **change}.items() if v is not None}
    if "notificationDestination" not in body:
        r = await env.http.post(openapi.QOS.prefix + "/app1/subscriptions", json=body)
        openapi.QOS.response(SUBS, "post", r.status_code, r.json(), "application/problem+json")
    else:
        r = await env.call(openapi.QOS, SUBS, "post", "/app1/subscriptions", body)
    assert r.status_code == status
    assert text in r.json()["detail"]


async def test_moving_into_a_full_cell_loses_the_guarantee(env: Env) -> None:
    r = await env.call(openapi.QOS, SUBS, "post", "/app1/subscriptions", qos_body(env))
    sid = r.json()["self"]
    mon = {
        "notificationDestination": f"{env.sink_url}/where",
        "monitoringType": "LOCATION_REPORTING",
        "ueIpAddr": {"ipv4Addr": CAM},
        "monitorExpireTime": "2099-01-01T00:00:00Z",
    }
    r = await env.call(openapi.MON, SUBS, "post", "/app1/subscriptions", mon)
    assert r.status_code == 201
    # cell-mill: DDDSU 285.7 x 0.8 = 228.6 Mbit/s GBR; at 30 % only 68.6: the 100 do not fit
    r = await env.http.put("/nef-emulator/v1/cells/cell-mill/capacity", json={"factor": 0.3})
    assert r.status_code == 200
    r = await env.http.post(
        "/nef-emulator/v1/devices/ue-surface-cam/move", json={"cell": "cell-mill"}
    )
    assert r.json() == {"id": "ue-surface-cam", "cell": "cell-mill", "online": True}
    await env.nef.drain()
    qos = env.sink.on("/qos")
    assert [n["eventReports"][0]["event"] for n in qos] == ["QOS_NOT_GUARANTEED"]
    assert qos[0]["transaction"] == sid
    openapi.QOS.callback(SUBS, "post", "notificationDestination", qos[0])
    where = env.sink.on("/where")
    assert where[0]["monitoringEventReports"][0]["locationInfo"]["cellId"] == "cell-mill"
    openapi.MON.callback(SUBS, "post", "notificationDestination", where[0])
    # capacity comes back: the guarantee too
    await env.http.put("/nef-emulator/v1/cells/cell-mill/capacity", json={"factor": 1.0})
    await env.nef.drain()
    assert [n["eventReports"][0]["event"] for n in env.sink.on("/qos")] == [
        "QOS_NOT_GUARANTEED",
        "QOS_GUARANTEED",
    ]
    kinds = [e.kind for e in env.events]
    assert kinds.count("moved") == 1
    assert ("qos", False) in [(e.kind, e.guaranteed) for e in env.events]


async def test_capacity_loss_drops_the_least_important_first(env: Env) -> None:
    for _ in range(2):
        await env.call(openapi.QOS, SUBS, "post", "/app1/subscriptions", qos_body(env))
    # runout reserves 146 + 200 = 346 of 628.6; at 50 % the limit is 314.3: one session goes
    await env.http.put("/nef-emulator/v1/cells/cell-runout/capacity", json={"factor": 0.5})
    await env.nef.drain()
    events = [n["eventReports"][0]["event"] for n in env.sink.on("/qos")]
    assert events == ["QOS_NOT_GUARANTEED"]
    state = env.nef.state()
    assert sorted(s["guaranteed"] for s in state["qos_sessions"]) == [False, True]


async def test_loss_of_connectivity_and_reachability(env: Env) -> None:
    for mtype in ("LOSS_OF_CONNECTIVITY", "UE_REACHABILITY"):
        body = {
            "notificationDestination": f"{env.sink_url}/{mtype}",
            "monitoringType": mtype,
            "ueIpAddr": {"ipv4Addr": PLC},
            "maximumNumberOfReports": 5,
        }
        r = await env.call(openapi.MON, SUBS, "post", "/app1/subscriptions", body)
        assert r.status_code == 201
    r = await env.http.post("/nef-emulator/v1/devices/ue-f1-plc/offline")
    assert r.json()["online"] is False
    await env.http.post("/nef-emulator/v1/devices/ue-f1-plc/online")
    await env.nef.drain()
    lost = env.sink.on("/LOSS_OF_CONNECTIVITY")
    back = env.sink.on("/UE_REACHABILITY")
    assert lost[0]["monitoringEventReports"][0]["monitoringType"] == "LOSS_OF_CONNECTIVITY"
    assert back[0]["monitoringEventReports"][0]["reachabilityType"] == "DATA"
    for n in lost + back:
        openapi.MON.callback(SUBS, "post", "notificationDestination", n)
    assert [e.kind for e in env.events] == ["offline", "online"]


async def test_monitoring_operations(env: Env) -> None:
    body = {
        "notificationDestination": f"{env.sink_url}/m",
        "monitoringType": "LOSS_OF_CONNECTIVITY",
        "externalId": "ue-f1-plc@88.118.8",
        "maximumNumberOfReports": 1,
    }
    r = await env.call(openapi.MON, SUBS, "post", "/app1/subscriptions", body)
    assert r.status_code == 201
    sid = r.json()["self"].rsplit("/", 1)[1]
    r = await env.call(openapi.MON, SUB, "get", f"/app1/subscriptions/{sid}")
    assert r.json()["monitoringType"] == "LOSS_OF_CONNECTIVITY"
    r = await env.call(openapi.MON, SUBS, "get", "/app1/subscriptions")
    assert len(r.json()) == 1
    r = await env.call(
        openapi.MON, SUB, "put", f"/app1/subscriptions/{sid}", {**body, "maximumNumberOfReports": 3}
    )
    assert r.json()["maximumNumberOfReports"] == 3
    patch = [{"op": "replace", "path": "/maximumNumberOfReports", "value": 2}]
    r = await env.call(
        openapi.MON, SUB, "patch", f"/app1/subscriptions/{sid}", patch, json_patch=True
    )
    assert r.status_code == 204
    r = await env.call(openapi.MON, SUB, "get", f"/app1/subscriptions/{sid}")
    assert r.json()["maximumNumberOfReports"] == 2
    r = await env.call(openapi.MON, SUB, "delete", f"/app1/subscriptions/{sid}")
    assert r.status_code == 204
    r = await env.call(openapi.MON, SUB, "delete", f"/app1/subscriptions/{sid}")
    assert r.status_code == 404
    # one-time location request: 200 with the report itself
    once = {
        "notificationDestination": f"{env.sink_url}/m",
        "monitoringType": "LOCATION_REPORTING",
        "ueIpAddr": {"ipv4Addr": CAM},
        "maximumNumberOfReports": 1,
    }
    r = await env.call(openapi.MON, SUBS, "post", "/app1/subscriptions", once)
    assert r.status_code == 200
    assert r.json()["locationInfo"]["cellId"] == "cell-runout"


@pytest.mark.parametrize(
    ("change", "text"),
    [
        ({"monitoringType": "ROAMING_STATUS"}, "not emulated"),
        ({"maximumNumberOfReports": None}, "maximumNumberOfReports or monitorExpireTime"),
    ],
)
async def test_monitoring_errors(env: Env, change: dict[str, Any], text: str) -> None:
    body = {
        "notificationDestination": f"{env.sink_url}/m",
        "monitoringType": "LOSS_OF_CONNECTIVITY",
        "ueIpAddr": {"ipv4Addr": PLC},
        "maximumNumberOfReports": 2,
    }
    body = {k: v for k, v in {**body, **change}.items() if v is not None}
    r = await env.http.post(openapi.MON.prefix + "/app1/subscriptions", json=body)
    openapi.MON.response(SUBS, "post", r.status_code, r.json(), "application/problem+json")
    assert r.status_code == 400
    assert text in r.json()["detail"]


async def test_traffic_influence_operations(env: Env) -> None:
    body = {
        "afAppId": "surface-inspection",
        "ipv4Addr": CAM,
        "dnn": "video",
        "trafficRoutes": [{"dnai": "mill-edge", "routeProfId": "local-breakout"}],
        "subscribedEvents": ["UP_PATH_CHANGE"],
        "notificationDestination": f"{env.sink_url}/up",
    }
    r = await env.call(openapi.TI, TSUBS, "post", "/af1/subscriptions", body)
    assert r.status_code == 201
    sid = r.json()["self"].rsplit("/", 1)[1]
    r = await env.call(openapi.TI, TSUB, "get", f"/af1/subscriptions/{sid}")
    assert r.json()["trafficRoutes"] == [{"dnai": "mill-edge", "routeProfId": "local-breakout"}]
    r = await env.call(openapi.TI, TSUBS, "get", "/af1/subscriptions")
    assert len(r.json()) == 1
    r = await env.call(
        openapi.TI,
        TSUB,
        "patch",
        f"/af1/subscriptions/{sid}",
        {"trafficRoutes": [{"dnai": "mill-edge", "routeProfId": "low-latency"}]},
        merge=True,
    )
    assert r.json()["trafficRoutes"][0]["routeProfId"] == "low-latency"
    r = await env.call(openapi.TI, TSUB, "put", f"/af1/subscriptions/{sid}", body)
    assert r.status_code == 200
    # the UE's session comes back: its user plane is (re)anchored on the edge UPF
    await env.http.post("/nef-emulator/v1/devices/ue-surface-cam/offline")
    await env.http.post("/nef-emulator/v1/devices/ue-surface-cam/online")
    await env.nef.drain()
    up = env.sink.on("/up")
    assert up[0]["subscribedEvent"] == "UP_PATH_CHANGE"
    assert up[0]["targetDnai"] == "mill-edge"
    openapi.TI.callback(TSUBS, "post", "notificationDestination", up[0])
    r = await env.call(openapi.TI, TSUB, "delete", f"/af1/subscriptions/{sid}")
    assert r.status_code == 204
    r = await env.call(openapi.TI, TSUB, "get", f"/af1/subscriptions/{sid}")
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("change", "text"),
    [
        (
            {
                "trafficFilters": [
                    {"flowId": 1, "flowDescriptions": ["permit out ip from any to any"]}
                ]
            },
            "exactly one of afAppId",
        ),
        ({"gpsi": "msisdn-123456"}, "exactly one UE selector"),
        ({"trafficRoutes": [{"dnai": "cloud", "routeProfId": "p"}]}, "is not served here"),
        ({"trafficRoutes": [{"dnai": "mill-edge"}]}, "routeInfo or routeProfId"),
    ],
)
async def test_traffic_influence_errors(env: Env, change: dict[str, Any], text: str) -> None:
    route = [{"dnai": "mill-edge", "routeProfId": "p"}]
    body = {"afAppId": "a", "ipv4Addr": CAM, "trafficRoutes": route, **change}
    r = await env.http.post(openapi.TI.prefix + "/af1/subscriptions", json=body)
    openapi.TI.response(TSUBS, "post", r.status_code, r.json(), "application/problem+json")
    assert r.status_code == 400
    assert text in r.json()["detail"]


async def test_the_client(env: Env) -> None:
    async with NefClient(env.base, af_id="oee") as client:
        sub = await client.request_qos(
            ue_ipv4=CAM, qos_reference="camera-uplink", notification_destination=f"{env.sink_url}/c"
        )
        sid = sub["self"].rsplit("/", 1)[1]
        assert (await client.get_qos(sid))["qosReference"] == "camera-uplink"
        assert len(await client.qos_sessions()) == 1
        modified = await client.modify_qos(sid, {"qosReference": "vision-uplink"})
        assert modified["qosReference"] == "vision-uplink"
        await client.release_qos(sid)
        with pytest.raises(NefError) as e:
            await client.get_qos(sid)
        assert e.value.status == 404
        with pytest.raises(NefError) as e:
            await client.request_qos(
                ue_ipv4=CAM, qos_reference="gold", notification_destination=f"{env.sink_url}/c"
            )
        assert e.value.cause == "REQUESTED_SERVICE_NOT_AUTHORIZED"
        m = await client.monitor(
            ue_ipv4=PLC,
            monitoring_type="LOSS_OF_CONNECTIVITY",
            notification_destination=f"{env.sink_url}/lost",
        )
        located = await client.locate(ue_ipv4=PLC, notification_destination=f"{env.sink_url}/x")
        assert located["locationInfo"]["cellId"] == "cell-mill"
        assert len(await client.monitoring()) == 1
        await client.stop_monitoring(m["self"].rsplit("/", 1)[1])
        t = await client.influence_traffic(ue_ipv4=CAM, af_app_id="vision", dnai="mill-edge")
        assert (await client.traffic_influences())[0]["afAppId"] == "vision"
        await client.stop_traffic_influence(t["self"].rsplit("/", 1)[1])
        with pytest.raises(ValueError, match="exactly one"):
            await client.request_qos(qos_reference="x", notification_destination="http://x")
    async with NefClient("http://127.0.0.1:9", af_id="x", timeout=1) as dead:
        with pytest.raises(NefError, match="talking to the NEF"):
            await dead.qos_sessions()


async def test_admin_errors(env: Env) -> None:
    r = await env.http.post("/nef-emulator/v1/devices/nope/offline")
    assert r.status_code == 404
    r = await env.http.post("/nef-emulator/v1/devices/ue-f1-plc/move", json={"cell": "nope"})
    assert r.status_code == 404
    assert "known: cell-mill, cell-runout" in r.json()["detail"]
    r = await env.http.put("/nef-emulator/v1/cells/cell-mill/capacity", json={"factor": 2})
    assert r.status_code == 400
