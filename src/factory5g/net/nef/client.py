"""A client for the NEF northbound APIs that apps use: ask for QoS, learn that a device lost
connectivity or moved, keep traffic on the on-site UPF.

    async with NefClient("http://nef:8090", af_id="oee-app") as nef:
        sub = await nef.request_qos(ue_ipv4="10.45.0.21", qos_reference="vision-uplink",
                                    notification_destination="http://app:9000/qos")
        await nef.monitor(ue_ipv4="10.45.0.11", monitoring_type="LOSS_OF_CONNECTIVITY",
                          notification_destination="http://app:9000/events")
        await nef.influence_traffic(ue_ipv4="10.45.0.21", af_app_id="vision", dnai="mill-edge",
                                    notification_destination="http://app:9000/up")

Every method returns the resource as the NEF stored it (with its ``self`` link); problems come
back as :class:`~factory5g.net.errors.NefError` with the HTTP status and the TS 29.122 cause.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

from factory5g.net.errors import NefError

__all__ = ["NefClient"]

QOS = "3gpp-as-session-with-qos/v1"
MON = "3gpp-monitoring-event/v1"
TI = "3gpp-traffic-influence/v1"


class NefClient:
    def __init__(
        self,
        api_root: str,
        *,
        af_id: str,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.af_id = af_id
        self._http = httpx.AsyncClient(
            base_url=api_root.rstrip("/") + "/",
            timeout=timeout,
            transport=transport,
            headers=headers,
        )

    async def __aenter__(self) -> NefClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing
    async def _call(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None = None,
        *,
        merge_patch: bool = False,
    ) -> Any:
        headers = {"Content-Type": "application/merge-patch+json"} if merge_patch else None
        try:
            if body is None:
                r = await self._http.request(method, url)
            elif merge_patch:
                import json

                r = await self._http.request(method, url, content=json.dumps(body), headers=headers)
            else:
                r = await self._http.request(method, url, json=body)
        except httpx.HTTPError as exc:
            raise NefError(0, f"{type(exc).__name__} talking to the NEF at {url}") from exc
        if r.status_code >= 400:
            problem: Any = None
            try:
                problem = r.json()
            except ValueError:
                problem = None
            detail = problem.get("detail") if isinstance(problem, dict) else r.text[:200]
            cause = problem.get("cause") if isinstance(problem, dict) else None
            raise NefError(r.status_code, str(detail or r.reason_phrase), cause=cause, body=problem)
        if r.status_code == 204 or not r.content:
            return None
        return r.json()

    @staticmethod
    def _ue(
        ue_ipv4: str | None, gpsi: str | None, external_id: str | None, *, ip_key: str
    ) -> dict[str, Any]:
        given = [
            (k, v) for k, v in ((ip_key, ue_ipv4), ("gpsi", gpsi), ("externalId", external_id)) if v
        ]
        if len(given) != 1:
            raise ValueError("name the UE by exactly one of ue_ipv4, gpsi, external_id")
        return dict(given)

    def _subs(self, api: str) -> str:
        return f"{api}/{self.af_id}/subscriptions"

    # -- AsSessionWithQoS (TS 29.122 §5.14)
    async def request_qos(
        self,
        *,
        qos_reference: str,
        notification_destination: str,
        ue_ipv4: str | None = None,
        gpsi: str | None = None,
        flow_descriptions: list[str] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "notificationDestination": notification_destination,
            "qosReference": qos_reference,
            **self._ue(ue_ipv4, gpsi, None, ip_key="ueIpv4Addr"),
            **extra,
        }
        if flow_descriptions:
            body["flowInfo"] = [{"flowId": 1, "flowDescriptions": flow_descriptions}]
        result: dict[str, Any] = await self._call("POST", self._subs(QOS), body)
        return result

    async def qos_sessions(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call("GET", self._subs(QOS))
        return result

    async def get_qos(self, subscription_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", f"{self._subs(QOS)}/{subscription_id}")
        return result

    async def update_qos(self, subscription_id: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "PUT", f"{self._subs(QOS)}/{subscription_id}", body
        )
        return result

    async def modify_qos(self, subscription_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "PATCH", f"{self._subs(QOS)}/{subscription_id}", patch, merge_patch=True
        )
        return result

    async def release_qos(self, subscription_id: str) -> None:
        await self._call("DELETE", f"{self._subs(QOS)}/{subscription_id}")

    # -- MonitoringEvent (TS 29.122 §5.3)
    async def monitor(
        self,
        *,
        monitoring_type: str,
        notification_destination: str,
        ue_ipv4: str | None = None,
        gpsi: str | None = None,
        external_id: str | None = None,
        maximum_number_of_reports: int | None = None,
        monitor_expire_time: str | None = "2099-01-01T00:00:00Z",
        **extra: Any,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "notificationDestination": notification_destination,
            "monitoringType": monitoring_type,
            **extra,
        }
        if ue_ipv4:
            body["ueIpAddr"] = {"ipv4Addr": ue_ipv4}
        elif gpsi:
            body["msisdn"] = gpsi.removeprefix("msisdn-")
        elif external_id:
            body["externalId"] = external_id
        else:
            raise ValueError("name the UE by ue_ipv4, gpsi or external_id")
        if maximum_number_of_reports is not None:
            body["maximumNumberOfReports"] = maximum_number_of_reports
        if monitor_expire_time is not None:
            body["monitorExpireTime"] = monitor_expire_time
        result: dict[str, Any] = await self._call("POST", self._subs(MON), body)
        return result

    async def locate(self, *, ue_ipv4: str, notification_destination: str) -> dict[str, Any]:
        """A one-time location report (maximumNumberOfReports = 1): the NEF answers 200."""
        return await self.monitor(
            monitoring_type="LOCATION_REPORTING",
            notification_destination=notification_destination,
            ue_ipv4=ue_ipv4,
            maximum_number_of_reports=1,
            monitor_expire_time=None,
        )

    async def monitoring(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call("GET", self._subs(MON))
        return result

    async def stop_monitoring(self, subscription_id: str) -> None:
        await self._call("DELETE", f"{self._subs(MON)}/{subscription_id}")

    # -- TrafficInfluence (TS 29.522 §5.4)
    async def influence_traffic(
        self,
        *,
        dnai: str,
        af_app_id: str | None = None,
        flow_descriptions: list[str] | None = None,
        ue_ipv4: str | None = None,
        gpsi: str | None = None,
        any_ue: bool = False,
        dnn: str | None = None,
        notification_destination: str | None = None,
        route_profile: str = "local-breakout",
        **extra: Any,
    ) -> dict[str, Any]:
        # TS 29.571 RouteToLocation: a DNAI plus routeInfo or routeProfId
        body: dict[str, Any] = {
            "trafficRoutes": [{"dnai": dnai, "routeProfId": route_profile}],
            **extra,
        }
        if (af_app_id is None) == (flow_descriptions is None):
            raise ValueError("give af_app_id or flow_descriptions")
        if af_app_id is not None:
            body["afAppId"] = af_app_id
        else:
            body["trafficFilters"] = [{"flowId": 1, "flowDescriptions": flow_descriptions}]
        if any_ue:
            body["anyUeInd"] = True
        else:
            body.update(self._ue(ue_ipv4, gpsi, None, ip_key="ipv4Addr"))
        if dnn:
            body["dnn"] = dnn
        if notification_destination:
            body["notificationDestination"] = notification_destination
            body["subscribedEvents"] = ["UP_PATH_CHANGE"]
        result: dict[str, Any] = await self._call("POST", self._subs(TI), body)
        return result

    async def traffic_influences(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call("GET", self._subs(TI))
        return result

    async def modify_traffic_influence(
        self, subscription_id: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "PATCH", f"{self._subs(TI)}/{subscription_id}", patch, merge_patch=True
        )
        return result

    async def stop_traffic_influence(self, subscription_id: str) -> None:
        await self._call("DELETE", f"{self._subs(TI)}/{subscription_id}")
