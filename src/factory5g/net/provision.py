"""Provision the site's devices into an open-source 5G core.

* Open5GS: one subscriber document per device, in the layout of Open5GS' ``misc/db/open5gs-dbctl``
  (database ``open5gs``, collection ``subscribers``), as JSON lines for
  ``mongoimport --db open5gs --collection subscribers --mode upsert --upsertFields imsi``, or
  upserted directly with pymongo (``--mongo URL``).
* free5GC: one web console ``SubsData`` body per device (``backend/WebUI/model_subs_data.go``),
  pushed with ``POST /api/subscriber/{ueId}/{servingPlmnId}`` (``--free5gc URL``).

Keys never come from the site file. The secrets file (TOML, readable by its owner only)::

    [defaults]                      # optional
    amf = "8000"                    # authentication management field
    sqn = "000000000001"            # free5GC's initial sequence number

    [subscriber.ue-f1-plc]          # by device id, or by IMSI: [subscriber."001010000000101"]
    k = "465B5CE8B199B49FAA5F0A2EE238A6BC"
    opc = "E8ED289DEBA952E4283B54E88E6183CA"   # or op = "..."

    [free5gc]                       # web console login for --free5gc (optional)
    username = "admin"
    password = "free5gc"

Errors name the file and the entry, never a key value.
"""

from __future__ import annotations

import json
import re
import stat
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from factory5g.model.load import Site
from factory5g.model.site import Device, QosProfile, Slice
from factory5g.net.errors import ProvisionError, SecretsError

__all__ = [
    "Secrets",
    "SubscriberKeys",
    "free5gc_bodies",
    "json_lines",
    "load_secrets",
    "mongo_collection",
    "open5gs_documents",
    "push_free5gc",
    "push_free5gc_sync",
    "upsert_open5gs",
]

_HEX32 = re.compile(r"^[0-9A-Fa-f]{32}$")
_AMF = re.compile(r"^[0-9A-Fa-f]{4}$")
_SQN = re.compile(r"^[0-9A-Fa-f]{12}$")


@dataclass(frozen=True, slots=True)
class SubscriberKeys:
    k: str = field(repr=False)
    opc: str | None = field(default=None, repr=False)
    op: str | None = field(default=None, repr=False)
    amf: str = "8000"
    sqn: str = "000000000001"


@dataclass(frozen=True, slots=True)
class Secrets:
    path: str
    subscribers: Mapping[str, SubscriberKeys] = field(repr=False)
    free5gc_login: tuple[str, str] | None = field(default=None, repr=False)

    def for_device(self, d: Device) -> SubscriberKeys:
        imsi = d.imsi.removeprefix("imsi-")
        keys = self.subscribers.get(d.id) or self.subscribers.get(imsi)
        if keys is None:
            raise SecretsError(
                f"{self.path}: no keys for device {d.id!r} (IMSI {imsi}): add a "
                f"[subscriber.{d.id}] table with k and opc",
                path=self.path,
                key=d.id,
            )
        return keys


def load_secrets(path: str | Path) -> Secrets:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise SecretsError(
            f"cannot read the secrets file {p}: {exc.strerror}", path=str(p)
        ) from None
    try:
        mode = p.stat().st_mode
    except OSError:
        mode = 0
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        import logging

        logging.getLogger(__name__).warning(
            "%s is readable by others: chmod 600 it (it holds subscriber keys)", p
        )
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        # The parser's message may quote the offending line, which may hold a key: say where only.
        raise SecretsError(f"{p} is not valid UTF-8 TOML", path=str(p)) from None
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise SecretsError(f"{p}: [defaults] must be a table", path=str(p), key="defaults")
    subs = data.get("subscriber", {})
    if not isinstance(subs, dict):
        raise SecretsError(f"{p}: [subscriber.*] must be tables", path=str(p), key="subscriber")
    out: dict[str, SubscriberKeys] = {}
    for name, entry in subs.items():
        where = f"{p} [subscriber.{name}]"
        if not isinstance(entry, dict):
            raise SecretsError(f"{where} must be a table", path=str(p), key=name)
        unknown = set(entry) - {"k", "opc", "op", "amf", "sqn"}
        if unknown:
            raise SecretsError(
                f"{where}: unknown keys {', '.join(sorted(unknown))} (use k, opc or op, amf, sqn)",
                path=str(p),
                key=name,
            )
        k = entry.get("k")
        if not isinstance(k, str) or not _HEX32.match(k):
            raise SecretsError(f"{where}: k must be 32 hexadecimal digits", path=str(p), key=name)
        opc, op = entry.get("opc"), entry.get("op")
        if (opc is None) == (op is None):
            raise SecretsError(f"{where}: give exactly one of opc and op", path=str(p), key=name)
        for label, v in (("opc", opc), ("op", op)):
            if v is not None and (not isinstance(v, str) or not _HEX32.match(v)):
                raise SecretsError(
                    f"{where}: {label} must be 32 hexadecimal digits", path=str(p), key=name
                )
        amf = str(entry.get("amf", defaults.get("amf", "8000")))
        sqn = str(entry.get("sqn", defaults.get("sqn", "000000000001")))
        if not _AMF.match(amf):
            raise SecretsError(f"{where}: amf must be 4 hexadecimal digits", path=str(p), key=name)
        if not _SQN.match(sqn):
            raise SecretsError(f"{where}: sqn must be 12 hexadecimal digits", path=str(p), key=name)
        out[str(name)] = SubscriberKeys(
            k=k.upper(), opc=opc and opc.upper(), op=op and op.upper(), amf=amf, sqn=sqn
        )
    login = None
    f5 = data.get("free5gc")
    if isinstance(f5, dict) and "username" in f5:
        login = (str(f5["username"]), str(f5.get("password", "")))
    return Secrets(str(p), out, login)


# -- Open5GS ----------------------------------------------------------------------------------


def _bitrate_open5gs(mbps: float) -> dict[str, int]:
    """Open5GS {value, unit}: unit 0 bps, 1 Kbps, 2 Mbps, 3 Gbps, 4 Tbps; exact when it can be."""
    bps = round(mbps * 1_000_000)
    for unit in (4, 3, 2, 1):
        if bps and bps % (1000**unit) == 0:
            return {"value": bps // (1000**unit), "unit": unit}
    return {"value": bps, "unit": 0}


def _profiles(site: Site) -> tuple[dict[str, Slice], dict[str, QosProfile]]:
    net = site.file.network
    return {s.name: s for s in net.slice}, {q.name: q for q in net.qos}


def _device_profiles(d: Device, profiles: Mapping[str, QosProfile]) -> list[QosProfile]:
    names = [d.qos] if d.qos else []
    names += [f.qos for f in d.carries if f.qos and f.qos not in names]
    return [profiles[n] for n in names if n in profiles]


UE_AMBR_MBPS = 1000.0  # subscribed UE-AMBR when the site does not say (open5gs-dbctl's 1 Gbps)


def open5gs_documents(site: Site, secrets: Secrets) -> list[dict[str, Any]]:
    """One Open5GS subscriber document per device (``open5gs-dbctl add`` layout)."""
    slices, profiles = _profiles(site)
    docs = []
    for d in site.file.device:
        keys = secrets.for_device(d)
        s = slices[d.slice]
        profs = _device_profiles(d, profiles)
        default = profs[0] if profs and not _gbr(profs[0]) else None
        five_qi = default.five_qi if default else 9
        arp = default.arp_priority if default else 8
        session: dict[str, Any] = {
            "name": s.dnn,
            "type": 3,  # IPv4v6
            "qos": {
                "index": five_qi,
                "arp": {
                    "priority_level": arp,
                    "pre_emption_capability": 1,  # 1 = disabled
                    "pre_emption_vulnerability": 1,
                },
            },
            "ambr": {
                "downlink": _bitrate_open5gs(UE_AMBR_MBPS),
                "uplink": _bitrate_open5gs(UE_AMBR_MBPS),
            },
            "pcc_rule": [],
        }
        if d.ipv4:
            session["ue"] = {"addr": d.ipv4}
        for q in profs:
            if not _gbr(q):
                continue
            flows = [
                {"direction": 2, "description": f"permit out ip from {d.ipv4 or 'any'} to any"},
                {"direction": 1, "description": f"permit out ip from any to {d.ipv4 or 'any'}"},
            ]
            session["pcc_rule"].append(
                {
                    "flow": flows,
                    "qos": {
                        "index": q.five_qi,
                        "arp": {
                            "priority_level": q.arp_priority,
                            "pre_emption_capability": 1,
                            "pre_emption_vulnerability": 1,
                        },
                        "mbr": {
                            "downlink": _bitrate_open5gs(q.mbr_dl_mbps or q.gbr_dl_mbps or 0.0),
                            "uplink": _bitrate_open5gs(q.mbr_ul_mbps or q.gbr_ul_mbps or 0.0),
                        },
                        "gbr": {
                            "downlink": _bitrate_open5gs(q.gbr_dl_mbps or 0.0),
                            "uplink": _bitrate_open5gs(q.gbr_ul_mbps or 0.0),
                        },
                    },
                }
            )
        slice_doc: dict[str, Any] = {"sst": s.sst, "default_indicator": True, "session": [session]}
        if s.sd:
            slice_doc["sd"] = s.sd.lower()
        docs.append(
            {
                "schema_version": 1,
                "imsi": d.imsi.removeprefix("imsi-"),
                "msisdn": [d.msisdn] if d.msisdn else [],
                "imeisv": [],
                "mme_host": [],
                "mm_realm": [],
                "purge_flag": [],
                "slice": [slice_doc],
                "security": {
                    "k": keys.k,
                    "op": keys.op,
                    "opc": keys.opc,
                    "amf": keys.amf,
                },
                "ambr": {
                    "downlink": _bitrate_open5gs(UE_AMBR_MBPS),
                    "uplink": _bitrate_open5gs(UE_AMBR_MBPS),
                },
                "access_restriction_data": 32,
                "network_access_mode": 0,
                "subscribed_rau_tau_timer": 12,
                "__v": 0,
            }
        )
    return docs


def _gbr(q: QosProfile) -> bool:
    from factory5g.net.fiveqi import five_qi

    return five_qi(q.five_qi).guaranteed


class Collection(Protocol):
    def replace_one(
        self, filter: Mapping[str, Any], replacement: Mapping[str, Any], upsert: bool = ...
    ) -> Any: ...


def upsert_open5gs(docs: Sequence[Mapping[str, Any]], collection: Collection) -> int:
    """Insert or replace each document by IMSI; the count written."""
    for doc in docs:
        try:
            collection.replace_one({"imsi": doc["imsi"]}, dict(doc), upsert=True)
        except Exception as exc:  # pymongo's errors may echo the document: keep only the type
            raise ProvisionError(
                f"MongoDB refused subscriber {doc['imsi']}: {type(exc).__name__}"
            ) from None
    return len(docs)


def mongo_collection(url: str) -> Collection:
    """``subscribers`` of the database in ``url`` (default ``open5gs``)."""
    import pymongo

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        url, serverSelectionTimeoutMS=5000
    )
    db = client.get_default_database(default="open5gs")
    return db["subscribers"]


# -- free5GC ----------------------------------------------------------------------------------


def _bitrate_free5gc(mbps: float) -> str:
    """free5GC bit rate strings: "1 Gbps", "100 Mbps", "500 Kbps" (TS 29.571 BitRate)."""
    for unit, scale in (("Gbps", 1000.0), ("Mbps", 1.0), ("Kbps", 0.001)):
        v = mbps / scale
        if v >= 1 and abs(v - round(v)) < 1e-9:
            return f"{round(v)} {unit}"
    return f"{mbps:g} Mbps"


def _snssai_key(s: Slice) -> str:
    return f"{s.sst:02x}{(s.sd or '').lower()}"


def free5gc_bodies(site: Site, secrets: Secrets) -> list[dict[str, Any]]:
    """One web console ``SubsData`` body per device."""
    slices, profiles = _profiles(site)
    plmn = site.file.network.mcc + site.file.network.mnc
    out = []
    for d in site.file.device:
        keys = secrets.for_device(d)
        s = slices[d.slice]
        snssai: dict[str, Any] = {"sst": s.sst}
        if s.sd:
            snssai["sd"] = s.sd.lower()
        key = _snssai_key(s)
        profs = _device_profiles(d, profiles)
        default = next((q for q in profs if not _gbr(q)), None)
        five_qi = default.five_qi if default else 9
        arp = default.arp_priority if default else 8
        ambr = _bitrate_free5gc(UE_AMBR_MBPS)
        dnn_config: dict[str, Any] = {
            "pduSessionTypes": {"defaultSessionType": "IPV4", "allowedSessionTypes": ["IPV4"]},
            "sscModes": {"defaultSscMode": "SSC_MODE_1", "allowedSscModes": ["SSC_MODE_1"]},
            "5gQosProfile": {
                "5qi": five_qi,
                "arp": {"priorityLevel": arp, "preemptCap": "", "preemptVuln": ""},
                "priorityLevel": arp,
            },
            "sessionAmbr": {"uplink": ambr, "downlink": ambr},
        }
        if d.ipv4:
            dnn_config["staticIpAddress"] = [{"ipv4Addr": d.ipv4}]
        flow_rules, qos_flows = [], []
        qfi = 1
        for q in profs:
            if not _gbr(q):
                continue
            qfi += 1
            flow_rules.append(
                {
                    "filter": f"{d.ipv4}/32" if d.ipv4 else "permit out ip from any to any",
                    "precedence": 127 + qfi,
                    "snssai": key,
                    "dnn": s.dnn,
                    "qfi": qfi,
                }
            )
            qos_flows.append(
                {
                    "snssai": key,
                    "dnn": s.dnn,
                    "qfi": qfi,
                    "5qi": q.five_qi,
                    "mbrUL": _bitrate_free5gc(q.mbr_ul_mbps or q.gbr_ul_mbps or 0.001),
                    "mbrDL": _bitrate_free5gc(q.mbr_dl_mbps or q.gbr_dl_mbps or 0.001),
                    "gbrUL": _bitrate_free5gc(q.gbr_ul_mbps or 0.001),
                    "gbrDL": _bitrate_free5gc(q.gbr_dl_mbps or 0.001),
                }
            )
        imsi = d.imsi.removeprefix("imsi-")
        out.append(
            {
                "plmnID": plmn,
                "ueId": f"imsi-{imsi}",
                "AuthenticationSubscription": {
                    "authenticationMethod": "5G_AKA",
                    "permanentKey": {
                        "permanentKeyValue": keys.k,
                        "encryptionKey": 0,
                        "encryptionAlgorithm": 0,
                    },
                    "sequenceNumber": keys.sqn,
                    "authenticationManagementField": keys.amf,
                    "milenage": {
                        "op": {
                            "opValue": keys.op or "",
                            "encryptionKey": 0,
                            "encryptionAlgorithm": 0,
                        }
                    },
                    "opc": {
                        "opcValue": keys.opc or "",
                        "encryptionKey": 0,
                        "encryptionAlgorithm": 0,
                    },
                },
                "AccessAndMobilitySubscriptionData": {
                    "gpsis": [f"msisdn-{d.msisdn}"] if d.msisdn else [],
                    "subscribedUeAmbr": {"uplink": ambr, "downlink": ambr},
                    "nssai": {
                        "defaultSingleNssais": [snssai],
                        "singleNssais": [],
                    },
                },
                "SessionManagementSubscriptionData": [
                    {"singleNssai": snssai, "dnnConfigurations": {s.dnn: dnn_config}}
                ],
                "SmfSelectionSubscriptionData": {
                    "subscribedSnssaiInfos": {key: {"dnnInfos": [{"dnn": s.dnn}]}}
                },
                "AmPolicyData": {"subscCats": ["free5gc"]},
                "SmPolicyData": {
                    "smPolicySnssaiData": {
                        key: {"snssai": snssai, "smPolicyDnnData": {s.dnn: {"dnn": s.dnn}}}
                    }
                },
                "FlowRules": flow_rules,
                "QosFlows": qos_flows,
            }
        )
    return out


async def push_free5gc(
    bodies: Sequence[Mapping[str, Any]],
    url: str,
    login: tuple[str, str] | None = None,
    *,
    transport: Any = None,
) -> int:
    """POST each body to the web console; log in first when credentials are given."""
    import httpx

    async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=10, transport=transport) as http:
        headers: dict[str, str] = {}
        try:
            if login is not None:
                r = await http.post("/api/login", json={"username": login[0], "password": login[1]})
                if r.status_code != 200:
                    raise ProvisionError(f"free5GC login as {login[0]!r} answered {r.status_code}")
                token = r.json().get("access_token")
                if not token:
                    raise ProvisionError("free5GC login answered no access_token")
                headers["Token"] = str(token)
            for b in bodies:
                r = await http.post(
                    f"/api/subscriber/{b['ueId']}/{b['plmnID']}", json=dict(b), headers=headers
                )
                if r.status_code >= 300:
                    raise ProvisionError(
                        f"free5GC refused subscriber {b['ueId']}: HTTP {r.status_code}"
                    )
        except httpx.HTTPError as exc:
            raise ProvisionError(
                f"cannot reach the free5GC web console at {url}: {type(exc).__name__}"
            ) from None
    return len(bodies)


def push_free5gc_sync(
    bodies: Sequence[Mapping[str, Any]], url: str, login: tuple[str, str] | None = None
) -> int:
    import asyncio

    return asyncio.run(push_free5gc(bodies, url, login))


def json_lines(docs: Sequence[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(d, ensure_ascii=False, separators=(",", ":")) + "\n" for d in docs)
