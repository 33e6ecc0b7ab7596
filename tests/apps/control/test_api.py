"""``/api/v1/commands``, ``/jog``, ``/audit``, ``/alarms`` and the WebSocket events, on the real
app (runtime, Modbus adapter) against a real Modbus device."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets

from factory5g.api import Settings, create_app
from factory5g.api.routes.commands import CommandFastPath
from factory5g.model import Role
from factory5g.runtime import Runtime
from factory5g.stream import Batch, now_ns
from tests.apps.control.conftest import control_site, regs_float32
from tests.connect.modbus.conftest import Memory, free_ports, running_device
from tests.helpers import wait_until


@dataclass
class App:
    client: httpx.AsyncClient
    runtime: Runtime
    tokens: dict[Role, str]
    memory: Memory
    ws_url: str
    asgi: Any = None

    def auth(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    async def publish(self, path: str, value: float) -> None:
        sid = self.runtime.site.signals.get(path).id
        await self.runtime.bus.publish(Batch.of(sid, now_ns(), value))

    def setpoint(self) -> float:
        return regs_float32(self.memory.holding[2], self.memory.holding[3])


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    device_port, http_port = free_ports(2)
    memory = Memory(holding={0: 0, 1: 0, 2: 0, 3: 0})
    site = tmp_path / "site.toml"
    site.write_text(control_site(device_port, None, survival_ms=400), encoding="utf-8")
    async with running_device(memory, device_port):
        fastapi_app = create_app(Settings(site=site, data_dir=tmp_path / "data", port=http_port))
        config = uvicorn.Config(fastapi_app, host="127.0.0.1", port=http_port, log_level="warning")
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        task = asyncio.create_task(server.serve())
        try:
            await wait_until(lambda: server.started, 15, "uvicorn start")
            rt: Runtime = fastapi_app.state.runtime
            assert rt.modbus is not None
            modbus = rt.modbus
            await wait_until(lambda: modbus.stats()["connected"], 15, "modbus connected")
            tokens = {r: fastapi_app.state.tokens.create(r, f"t-{r.value}").token for r in Role}
            base = f"http://127.0.0.1:{http_port}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                a = App(
                    client,
                    rt,
                    tokens,
                    memory,
                    f"ws://127.0.0.1:{http_port}/api/v1/live",
                    fastapi_app,
                )
                await a.publish("guard.door_closed", 1.0)
                assert rt.control is not None
                control = rt.control
                await wait_until(lambda: control.table.get(0) is not None, what="door value")
                yield a
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 20)


def body(value: float, key: str, **more: Any) -> dict[str, Any]:
    return {
        "target": "table.speed_setpoint",
        "value": value,
        "deadline_ms": 1000,
        "idempotency_key": key,
        **more,
    }


async def test_commands_answers_roles_and_replays(app: App) -> None:
    c = app.client
    r = await c.post("/api/v1/commands", json=body(7.0, "a"), headers=app.auth(Role.OPERATOR))
    assert r.status_code == 200, r.text
    cmd = r.json()
    assert (cmd["state"], cmd["seq"], cmd["user"]) == ("confirmed", 1, "t-operator")
    assert app.setpoint() == 7.0
    again = await c.post("/api/v1/commands", json=body(7.0, "a"), headers=app.auth(Role.OPERATOR))
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == cmd["id"]
    conflict = await c.post(
        "/api/v1/commands", json=body(8.0, "a"), headers=app.auth(Role.OPERATOR)
    )
    assert conflict.status_code == 422
    assert conflict.json()["reason_code"] == "conflict"

    viewer = await c.post("/api/v1/commands", json=body(7.0, "b"), headers=app.auth(Role.VIEWER))
    assert viewer.status_code == 403
    assert viewer.headers["content-type"] == "application/problem+json"
    assert viewer.json()["command"]["state"] == "rejected"
    assert viewer.json()["reason_code"] == "forbidden"
    anonymous = await c.post("/api/v1/commands", json=body(7.0, "c"))
    assert anonymous.status_code == 401

    out = await c.post("/api/v1/commands", json=body(99.0, "d"), headers=app.auth(Role.ADMIN))
    assert (out.status_code, out.json()["reason_code"]) == (422, "out_of_range")
    unknown = await c.post(
        "/api/v1/commands",
        json={**body(1.0, "e"), "target": "table.sped_setpoint"},
        headers=app.auth(Role.OPERATOR),
    )
    assert unknown.status_code == 404
    assert unknown.json()["suggestions"] == ["table.speed_setpoint"]

    await app.publish("guard.door_closed", 0.0)
    assert app.runtime.control is not None
    control = app.runtime.control
    await wait_until(lambda: (control.table.get(0) or (1.0,))[0] == 0.0, what="door open")
    locked = await c.post("/api/v1/commands", json=body(3.0, "f"), headers=app.auth(Role.OPERATOR))
    assert locked.status_code == 409
    assert locked.json()["reason_code"] == "interlock"
    assert "guard.door_closed is false" in locked.json()["detail"]
    assert app.setpoint() == 7.0

    listed = (await c.get("/api/v1/commands", headers=app.auth(Role.VIEWER))).json()
    assert [x["state"] for x in listed][:2] == ["rejected", "rejected"]
    one = await c.get(f"/api/v1/commands/{cmd['id']}", headers=app.auth(Role.VIEWER))
    assert one.json()["state"] == "confirmed"
    targets = (await c.get("/api/v1/control/targets", headers=app.auth(Role.VIEWER))).json()
    assert targets[0]["interlocks"] == ["guard.door_closed == true"]

    audit = (await c.get("/api/v1/audit", headers=app.auth(Role.VIEWER))).json()
    states = [(e["target"], e["state"], e["user"]) for e in audit["entries"]]
    assert states[:2] == [
        ("table.speed_setpoint", "accepted", "t-operator"),
        ("table.speed_setpoint", "confirmed", "t-operator"),
    ]
    assert audit["entries"][1]["latency_ms"] > 0
    verify = (await c.get("/api/v1/audit/verify", headers=app.auth(Role.VIEWER))).json()
    assert verify["ok"] is True
    assert verify["entries"] == audit["head"]["seq"] == len(audit["entries"])


def fast_path(app: App) -> CommandFastPath:
    layer = app.asgi.middleware_stack
    while not isinstance(layer, CommandFastPath):
        layer = layer.app
    return layer


VOLATILE = {"id", "session", "seq", "idempotency_key", "received_ns", "deadline_ns"}
VOLATILE |= {"finished_ns", "latency_ms", "result", "command_id"}


def alike(r: httpx.Response, key: str) -> tuple[Any, ...]:
    """What must be the same whichever way a command went: status, content type, replay header,
    and the body without ids, keys and times."""

    def strip(d: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in d.items() if k not in VOLATILE}
        if isinstance(out.get("command"), dict):
            out["command"] = strip(out["command"])
        if isinstance(out.get("detail"), str):
            detail = out["detail"].replace(key, "<key>")
            out["detail"] = re.sub(r"\b[0-9a-f]{32}\b", "<id>", detail)
        return out

    return (
        r.status_code,
        r.headers["content-type"],
        r.headers.get("idempotent-replayed"),
        strip(r.json()),
    )


async def test_the_fast_path_answers_as_fastapi_does(app: App) -> None:
    """Every outcome twice: through the fast path, and through FastAPI (a query string makes the
    fast path step aside)."""
    c = app.client
    fast = fast_path(app)
    op, viewer = app.auth(Role.OPERATOR), app.auth(Role.VIEWER)
    cases: list[tuple[str, dict[str, Any], dict[str, str], int]] = [
        ("ok", body(4.0, "ok"), op, 200),
        ("ok", body(4.0, "ok"), op, 200),  # a replay of the one before
        ("conflict", body(5.0, "ok"), op, 422),  # the same key, another value
        ("forbidden", body(4.0, "forbidden"), viewer, 403),
        ("range", body(99.0, "range"), op, 422),
        ("unknown", {**body(1.0, "unknown"), "target": "table.sped_setpoint"}, op, 404),
        ("anonymous", body(1.0, "anonymous"), {}, 401),  # FastAPI's both ways
        ("coerced", {**body(1.0, "coerced"), "value": "2.5"}, op, 200),  # FastAPI's both ways
        ("extra", {**body(1.0, "extra"), "colour": "red"}, op, 422),  # FastAPI's both ways
    ]
    answers: dict[str, list[tuple[Any, ...]]] = {"fast": [], "fastapi": []}
    before = fast.answered
    for way, suffix in (("fast", ""), ("fastapi", "?via=fastapi")):
        for _name, b, headers, status in cases:
            key = f"{way}-{b['idempotency_key']}"
            r = await c.post(
                f"/api/v1/commands{suffix}", json={**b, "idempotency_key": key}, headers=headers
            )
            assert r.status_code == status, (way, r.text)
            answers[way].append(alike(r, key))
    assert answers["fast"] == answers["fastapi"]
    assert answers["fast"][1][2] == "true"  # the replay says so
    assert fast.answered - before == 6  # the first six; the last three are FastAPI's
    assert app.setpoint() == 2.5


async def test_jog_over_http(app: App) -> None:
    c = app.client
    r = await c.post(
        "/api/v1/jog",
        json={"target": "table.speed_setpoint", "value": 2.5},
        headers=app.auth(Role.OPERATOR),
    )
    assert r.status_code == 201, r.text
    jog = r.json()["jog"]
    assert jog["watchdog_ms"] == 200
    hb = await c.post(f"/api/v1/jog/{jog['id']}/heartbeat", headers=app.auth(Role.OPERATOR))
    assert hb.json()["heartbeats"] == 1
    other = await c.post(f"/api/v1/jog/{jog['id']}/heartbeat", headers=app.auth(Role.ENGINEER))
    assert other.status_code == 403
    end = await c.delete(f"/api/v1/jog/{jog['id']}", headers=app.auth(Role.OPERATOR))
    assert end.json()["ended"] == "released"
    assert app.setpoint() == 0.0
    gone = await c.delete(f"/api/v1/jog/{jog['id']}", headers=app.auth(Role.OPERATOR))
    assert gone.status_code == 404


async def test_alarms_read_acknowledge_shelve_by_role(app: App) -> None:
    c = app.client
    await app.publish("table.motor_current", 1800.0)
    alarms = app.runtime.alarms
    assert alarms is not None
    await wait_until(lambda: alarms.get("table.motor_current/high").active, what="alarm")
    listed = (await c.get("/api/v1/alarms?active=true", headers=app.auth(Role.VIEWER))).json()
    assert [(a["id"], a["state"]) for a in listed["alarms"]] == [
        ("table.motor_current/high", "unacknowledged_active")
    ]
    assert listed["flood"]["alarms_per_10min"] == 1
    one = await c.get("/api/v1/alarms/table.motor_current/high", headers=app.auth(Role.VIEWER))
    assert one.json()["priority"] == "high"
    ack = {"alarms": ["table.motor_current/high"], "comment": "bearing checked"}
    assert (
        await c.post("/api/v1/alarms/acknowledge", json=ack, headers=app.auth(Role.VIEWER))
    ).status_code == 403
    r = await c.post("/api/v1/alarms/acknowledge", json=ack, headers=app.auth(Role.OPERATOR))
    assert r.status_code == 200
    assert r.json()["changes"][0]["after"] == "acknowledged_active"
    twice = await c.post("/api/v1/alarms/acknowledge", json=ack, headers=app.auth(Role.OPERATOR))
    assert twice.status_code == 409
    shelve = {"alarm": "table.motor_current/high", "duration_s": 600, "comment": "maintenance"}
    assert (
        await c.post("/api/v1/alarms/shelve", json=shelve, headers=app.auth(Role.OPERATOR))
    ).status_code == 403
    r = await c.post("/api/v1/alarms/shelve", json=shelve, headers=app.auth(Role.ENGINEER))
    assert r.json()["after"] == "shelved"
    r = await c.post(
        "/api/v1/alarms/unshelve",
        json={"alarm": "table.motor_current/high"},
        headers=app.auth(Role.ENGINEER),
    )
    assert r.json()["after"] == "unacknowledged_active"  # still active: annunciated again
    hist = (
        await c.get(
            "/api/v1/alarms/history?alarm=table.motor_current/high", headers=app.auth(Role.VIEWER)
        )
    ).json()
    assert [e["action"] for e in hist["events"]] == [
        "unshelve",
        "shelve",
        "acknowledge",
        "activate",
    ]
    assert hist["events"][2]["comment"] == "bearing checked"
    unknown = await c.get("/api/v1/alarms/table.motor/high", headers=app.auth(Role.VIEWER))
    assert unknown.status_code == 404


async def test_websocket_pushes_command_and_alarm_events_and_takes_heartbeats(app: App) -> None:
    token = app.tokens[Role.OPERATOR]
    async with websockets.connect(f"{app.ws_url}?token={token}") as ws:
        await ws.send(json.dumps({"subscribe_events": ["commands", "alarms"]}))
        assert json.loads(await ws.recv()) == {"type": "events", "topics": ["alarms", "commands"]}
        r = await app.client.post(
            "/api/v1/commands", json=body(4.0, "ws"), headers=app.auth(Role.OPERATOR)
        )
        assert r.status_code == 200
        states = []
        async with asyncio.timeout(5):
            while len(states) < 3:
                msg = json.loads(await ws.recv())
                if msg["type"] == "command":
                    states.append(msg["state"])
        assert states == ["accepted", "executing", "confirmed"]
        await app.publish("guard.door_closed", 0.0)  # the low-priority door alarm
        async with asyncio.timeout(5):
            msg = json.loads(await ws.recv())
        assert (msg["type"], msg["id"], msg["state"]) == (
            "alarm",
            "guard.door_closed/state",
            "unacknowledged_active",
        )
        await app.publish("guard.door_closed", 1.0)
        async with asyncio.timeout(5):
            msg = json.loads(await ws.recv())
        assert msg["state"] == "unacknowledged_returned"
        # hold-to-run with heartbeats over the socket
        r = await app.client.post(
            "/api/v1/jog",
            json={"target": "table.speed_setpoint", "value": 1.0},
            headers=app.auth(Role.OPERATOR),
        )
        jog = r.json()["jog"]["id"]
        await ws.send(json.dumps({"heartbeat": jog}))
        async with asyncio.timeout(5):
            while (msg := json.loads(await ws.recv()))["type"] != "heartbeat":
                pass
        assert msg == {"type": "heartbeat", "jog": jog, "heartbeats": 1}
        async with asyncio.timeout(5):  # then silence: the watchdog ends it
            while (msg := json.loads(await ws.recv()))["type"] != "jog" or (
                msg["event"] != "watchdog"
            ):
                pass
        assert msg["id"] == jog
        assert app.setpoint() == 0.0
        await ws.send(json.dumps({"heartbeat": jog}))
        async with asyncio.timeout(5):
            while (msg := json.loads(await ws.recv()))["type"] != "error":
                pass
        assert "no running hold-to-run session" in msg["detail"]


async def test_audit_verify_after_a_recorded_head(app: App) -> None:
    c, viewer = app.client, app.auth(Role.VIEWER)
    await c.post("/api/v1/commands", json=body(3.0, "h1"), headers=app.auth(Role.OPERATOR))
    head = (await c.get("/api/v1/audit/head", headers=viewer)).json()
    await c.post("/api/v1/commands", json=body(4.0, "h2"), headers=app.auth(Role.OPERATOR))
    r = await c.get(
        "/api/v1/audit/verify",
        params={"after_seq": head["seq"], "after_hash": head["hash"]},
        headers=viewer,
    )
    assert r.status_code == 200
    assert (r.json()["ok"], r.json()["entries"]) == (True, 2)  # only the entries since
    wrong = await c.get(
        "/api/v1/audit/verify",
        params={"after_seq": head["seq"], "after_hash": "0" * 64},
        headers=viewer,
    )
    assert (wrong.json()["ok"], wrong.json()["why"]) == (
        False,
        f"entry {head['seq']} no longer has the anchored hash",
    )
    half = await c.get("/api/v1/audit/verify", params={"after_seq": 1}, headers=viewer)
    assert half.status_code == 422
    assert "go together" in half.json()["detail"]
