"""Subscriber export: Open5GS documents field by field against the reference, free5GC SubsData
against its Go model, the secrets file and its errors (which never show a key)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from typer.testing import CliRunner

from factory5g.model import Site, template_text
from factory5g.net import provision
from factory5g.net.cli import app
from factory5g.net.errors import ProvisionError, SecretsError
from tests.net.servers import serve

K = "465B5CE8B199B49FAA5F0A2EE238A6BC"
OPC = "E8ED289DEBA952E4283B54E88E6183CA"
DEVICES = ("ue-f1-plc", "ue-f2-plc", "ue-table-plc", "ue-surface-cam", "ue-utilities")


def write_secrets(tmp_path: Path, skip: str | None = None) -> Path:
    text = '[defaults]\namf = "8000"\n'
    for d in DEVICES:
        if d != skip:
            text += f'\n[subscriber.{d}]\nk = "{K}"\nopc = "{OPC}"\n'
    text += '\n[free5gc]\nusername = "admin"\npassword = "free5gc"\n'
    p = tmp_path / "secrets.toml"
    p.write_text(text, encoding="utf-8")
    p.chmod(0o600)
    return p


def test_open5gs_document_field_by_field(steel: Site, tmp_path: Path) -> None:
    docs = provision.open5gs_documents(steel, provision.load_secrets(write_secrets(tmp_path)))
    assert len(docs) == 5
    doc = next(d for d in docs if d["imsi"] == "001010000000201")  # ue-surface-cam
    # ../shared/reference/5g-core-apis.md, "Open5GS subscriber document"
    assert isinstance(doc["imsi"], str)
    assert doc["msisdn"] == []
    assert doc["schema_version"] == 1
    assert doc["access_restriction_data"] == 32
    assert doc["network_access_mode"] == 0
    assert doc["subscribed_rau_tau_timer"] == 12
    assert doc["security"] == {"k": K, "op": None, "opc": OPC, "amf": "8000"}
    # {value: 1, unit: 3} is 1 Gbit/s
    assert doc["ambr"] == {"downlink": {"value": 1, "unit": 3}, "uplink": {"value": 1, "unit": 3}}
    (sl,) = doc["slice"]
    assert (sl["sst"], sl["sd"], sl["default_indicator"]) == (1, "000002", True)
    (session,) = sl["session"]
    assert session["name"] == "video"  # the DNN
    assert session["type"] == 3  # IPv4v6
    assert set(session["qos"]) == {"index", "arp"}
    assert set(session["qos"]["arp"]) == {
        "priority_level",
        "pre_emption_capability",
        "pre_emption_vulnerability",
    }
    assert session["ue"] == {"addr": "10.45.0.21"}
    assert set(session["ambr"]) == {"downlink", "uplink"}
    rules = session["pcc_rule"]
    assert [r["qos"]["index"] for r in rules] == [4, 76]  # vision-uplink, camera-uplink
    vision = rules[0]
    assert set(vision) == {"flow", "qos"}
    assert all(set(f) == {"direction", "description"} for f in vision["flow"])
    assert set(vision["qos"]) == {"index", "arp", "mbr", "gbr"}
    assert vision["qos"]["gbr"]["uplink"] == {"value": 100, "unit": 2}  # 100 Mbit/s
    assert vision["qos"]["mbr"]["uplink"] == {"value": 200, "unit": 2}
    plc = next(d for d in docs if d["imsi"] == "001010000000101")
    assert plc["slice"][0]["session"][0]["qos"]["index"] == 9  # the default bearer is non-GBR
    assert plc["slice"][0]["session"][0]["pcc_rule"][0]["qos"]["index"] == 82


def test_open5gs_bitrate_units() -> None:
    assert provision._bitrate_open5gs(1000) == {"value": 1, "unit": 3}
    assert provision._bitrate_open5gs(0.25) == {"value": 250, "unit": 1}
    assert provision._bitrate_open5gs(1.5) == {"value": 1500, "unit": 1}
    assert provision._bitrate_open5gs(0.0000015) == {"value": 2, "unit": 0}


# free5gc/webconsole backend/WebUI/model_subs_data.go, model_flow_rule.go, model_qos_flow.go
SUBS_DATA = {"plmnID", "ueId", "AuthenticationSubscription", "AccessAndMobilitySubscriptionData",
             "SessionManagementSubscriptionData", "SmfSelectionSubscriptionData", "AmPolicyData",
             "SmPolicyData", "FlowRules", "QosFlows"}  # fmt: skip
FLOW_RULE = {"filter", "precedence", "snssai", "dnn", "qfi"}
QOS_FLOW = {"snssai", "dnn", "qfi", "5qi", "mbrUL", "mbrDL", "gbrUL", "gbrDL"}


def check_subs_data(body: dict[str, Any]) -> None:
    assert set(body) == SUBS_DATA
    auth = body["AuthenticationSubscription"]
    assert auth["authenticationMethod"] == "5G_AKA"
    assert set(auth["permanentKey"]) == {
        "permanentKeyValue",
        "encryptionKey",
        "encryptionAlgorithm",
    }
    assert set(auth["opc"]) == {"opcValue", "encryptionKey", "encryptionAlgorithm"}
    assert set(auth["milenage"]["op"]) == {"opValue", "encryptionKey", "encryptionAlgorithm"}
    assert isinstance(body["SessionManagementSubscriptionData"], list)
    for r in body["FlowRules"]:
        assert set(r) == FLOW_RULE
    for q in body["QosFlows"]:
        assert set(q) == QOS_FLOW
        assert isinstance(q["qfi"], int)
        assert 1 <= q["qfi"] <= 63


def test_free5gc_bodies_follow_its_model(steel: Site, tmp_path: Path) -> None:
    bodies = provision.free5gc_bodies(steel, provision.load_secrets(write_secrets(tmp_path)))
    for b in bodies:
        check_subs_data(b)
    cam = next(b for b in bodies if b["ueId"] == "imsi-001010000000201")
    assert cam["plmnID"] == "00101"
    assert cam["AuthenticationSubscription"]["permanentKey"]["permanentKeyValue"] == K
    assert cam["AuthenticationSubscription"]["opc"]["opcValue"] == OPC
    sm = cam["SessionManagementSubscriptionData"][0]
    assert sm["singleNssai"] == {"sst": 1, "sd": "000002"}
    assert sm["dnnConfigurations"]["video"]["sessionAmbr"] == {
        "uplink": "1 Gbps",
        "downlink": "1 Gbps",
    }
    assert cam["SmfSelectionSubscriptionData"]["subscribedSnssaiInfos"]["01000002"] == {
        "dnnInfos": [{"dnn": "video"}]
    }
    assert [(q["5qi"], q["gbrUL"], q["mbrUL"]) for q in cam["QosFlows"]] == [
        (4, "100 Mbps", "200 Mbps"),
        (76, "25 Mbps", "40 Mbps"),
    ]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('k = "XYZ"\nopc = "' + OPC + '"', "k must be 32 hexadecimal digits"),
        ('k = "' + K + '"', "give exactly one of opc and op"),
        ('k = "' + K + '"\nopc = "' + OPC + '"\nkey2 = "' + K + '"', "unknown keys key2"),
        ('k = "' + K + '"\nopc = "' + OPC[:-1] + 'Z"', "opc must be 32 hexadecimal digits"),
    ],
)
def test_secrets_errors_never_show_keys(tmp_path: Path, entry: str, message: str) -> None:
    p = tmp_path / "s.toml"
    p.write_text(f"[subscriber.ue-f1-plc]\n{entry}\n", encoding="utf-8")
    with pytest.raises(SecretsError) as e:
        provision.load_secrets(p)
    assert message in str(e.value)
    assert K not in str(e.value)
    assert OPC[:20] not in str(e.value)


def test_secrets_syntax_error_does_not_quote_the_file(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text(f'[subscriber.x]\nk = "{K}\n', encoding="utf-8")  # unterminated string
    with pytest.raises(SecretsError) as e:
        provision.load_secrets(p)
    assert K not in str(e.value)
    assert "not valid UTF-8 TOML" in str(e.value)


def test_missing_keys_for_a_device(steel: Site, tmp_path: Path) -> None:
    secrets = provision.load_secrets(write_secrets(tmp_path, skip="ue-utilities"))
    with pytest.raises(SecretsError, match=r"no keys for device 'ue-utilities'"):
        provision.open5gs_documents(steel, secrets)
    assert K not in repr(secrets)


def test_upsert_into_mongodb(steel: Site, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import mongomock

        coll = mongomock.MongoClient().open5gs.subscribers
    docs = provision.open5gs_documents(steel, provision.load_secrets(write_secrets(tmp_path)))
    assert provision.upsert_open5gs(docs, coll) == 5
    assert provision.upsert_open5gs(docs, coll) == 5  # idempotent: replaced, not duplicated
    assert coll.count_documents({}) == 5
    stored = coll.find_one({"imsi": "001010000000101"})
    assert stored is not None
    assert stored["security"]["opc"] == OPC


def test_upsert_error_hides_the_document() -> None:
    class Broken:
        def replace_one(self, *a: Any, **kw: Any) -> None:
            raise RuntimeError(f"duplicate key {K}")

    with pytest.raises(ProvisionError) as e:
        provision.upsert_open5gs([{"imsi": "1", "security": {"k": K}}], Broken())
    assert K not in str(e.value)
    assert "RuntimeError" in str(e.value)


async def test_push_to_a_free5gc_web_console(steel: Site, tmp_path: Path) -> None:
    console = FastAPI()
    received: list[tuple[str, str, dict[str, Any]]] = []

    @console.post("/api/login")
    async def login(request: Request) -> dict[str, str]:
        body = await request.json()
        assert body == {"username": "admin", "password": "free5gc"}
        return {"access_token": "tok", "token_type": "Bearer"}

    @console.post("/api/subscriber/{ue_id}/{plmn}")
    async def create(ue_id: str, plmn: str, request: Request) -> dict[str, str]:
        assert request.headers["token"] == "tok"
        received.append((ue_id, plmn, await request.json()))
        return {}

    secrets = provision.load_secrets(write_secrets(tmp_path))
    bodies = provision.free5gc_bodies(steel, secrets)
    async with serve(console) as url:
        assert await provision.push_free5gc(bodies, url, secrets.free5gc_login) == 5
    assert [r[0] for r in received] == [f"imsi-{d.imsi}" for d in steel.file.device]
    assert {r[1] for r in received} == {"00101"}
    for _, _, body in received:
        check_subs_data(body)
    with pytest.raises(ProvisionError, match="cannot reach the free5GC web console"):
        await provision.push_free5gc(bodies, "http://127.0.0.1:9")


def test_cli_export(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(template_text("steel"), encoding="utf-8")
    secrets = write_secrets(tmp_path)
    runner = CliRunner()
    r = runner.invoke(app, ["export", str(site), "--format", "open5gs", "--secrets", str(secrets)])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 5
    assert json.loads(lines[0])["imsi"] == "001010000000101"
    out = tmp_path / "subs.json"
    r = runner.invoke(
        app, ["export", str(site), "-f", "free5gc", "--secrets", str(secrets), "-o", str(out)]
    )
    assert r.exit_code == 0
    assert len(out.read_text().splitlines()) == 5
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[subscriber.ue-f1-plc]\nk = "{K}"\n', encoding="utf-8")
    r = runner.invoke(app, ["export", str(site), "--secrets", str(bad)])
    assert r.exit_code == 1
    assert K not in r.output
    r = runner.invoke(app, ["export", str(site), "-f", "magma", "--secrets", str(secrets)])
    assert r.exit_code == 2
