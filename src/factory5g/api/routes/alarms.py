"""``/api/v1/alarms``: alarm states, history, the flood metric; acknowledge and shelve.

Viewers read; operators acknowledge (with a comment); engineers shelve and unshelve (always
with an expiry, at most 24 h). Alarm ids are ``<signal path>/<kind>`` (``f1.strip_temp/low``).
"""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from factory5g.api.deps import Engineer, Operator, RuntimeDep, Viewer
from factory5g.api.problems import Problem
from factory5g.api.timeparse import parse_time
from factory5g.apps.alarms import (
    AlarmService,
    AlarmState,
    AlarmStateError,
    ShelveError,
    UnknownAlarmError,
)
from factory5g.apps.alarms.lifecycle import AlarmChange
from factory5g.model.site import Priority
from factory5g.runtime import Runtime
from factory5g.stream import now_ns

router = APIRouter(tags=["alarms"])


class AckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alarms: list[str] = Field(min_length=1, description="alarm ids")
    comment: str = Field("", max_length=2000)


class ShelveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alarm: str
    duration_s: float = Field(gt=0, description="shelved until now + this (at most 24 h)")
    comment: str = Field("", max_length=2000)


class UnshelveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alarm: str
    comment: str = Field("", max_length=2000)


def alarms_of(rt: Runtime) -> AlarmService:
    if rt.alarms is None:
        raise Problem(503, "the alarm app is not running")
    return rt.alarms


def _change(c: AlarmChange) -> dict[str, Any]:
    return {
        "alarm": c.alarm,
        "ts": c.ts,
        "action": c.action.value,
        "before": c.before.value,
        "after": c.after.value,
        "active": c.active,
        "user": c.user,
        "comment": c.comment,
        "shelved_until": c.shelved_until,
    }


def _problem(exc: Exception) -> Problem:
    if isinstance(exc, UnknownAlarmError):
        return Problem(404, str(exc), suggestions=exc.suggestions)
    if isinstance(exc, AlarmStateError):
        return Problem(409, str(exc), state=exc.state)
    return Problem(422, str(exc))


@router.get("/alarms", summary="Every alarm with its ISA-18.2 state, and the flood metric")
async def list_alarms(
    rt: RuntimeDep,
    _: Viewer,
    state: Annotated[AlarmState | None, Query()] = None,
    priority: Annotated[Priority | None, Query(description="this priority or higher")] = None,
    equipment: Annotated[str | None, Query()] = None,
    active: Annotated[bool | None, Query(description="condition active (or not)")] = None,
) -> dict[str, Any]:
    svc = alarms_of(rt)
    order = list(Priority)
    out = [
        a.to_dict()
        for a in svc.alarms
        if (state is None or a.state is state)
        and (priority is None or order.index(a.info.rule.priority) >= order.index(priority))
        and (equipment is None or a.info.equipment == equipment)
        and (active is None or a.active == active)
    ]
    return {"count": len(out), "flood": svc.flood(), "alarms": out}


@router.get("/alarms/flood", summary="Alarms annunciated in the last 10 minutes (ISA-18.2)")
async def flood(rt: RuntimeDep, _: Viewer) -> dict[str, Any]:
    return alarms_of(rt).flood()


@router.get("/alarms/history", summary="Alarm changes, newest first")
async def history(
    rt: RuntimeDep,
    _: Viewer,
    alarm: Annotated[str | None, Query()] = None,
    start: Annotated[str | None, Query(description="ISO 8601, ns, or relative like -1h")] = None,
    end: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> dict[str, Any]:
    tz = zoneinfo.ZoneInfo(rt.site.file.site.timezone)
    now = now_ns()
    try:
        start_ns = parse_time(start, now, tz) if start is not None else None
        end_ns = parse_time(end, now, tz) if end is not None else None
    except ValueError as exc:
        raise Problem(400, str(exc)) from None
    events = alarms_of(rt).history.events(alarm=alarm, start=start_ns, end=end_ns, limit=limit)
    return {"count": len(events), "events": events}


@router.post("/alarms/acknowledge", summary="Acknowledge alarms (all of them or none)")
async def acknowledge(body: AckBody, rt: RuntimeDep, who: Operator) -> dict[str, Any]:
    try:
        changes = alarms_of(rt).acknowledge(body.alarms, who.name, body.comment)
    except (UnknownAlarmError, AlarmStateError) as exc:
        raise _problem(exc) from None
    return {"changes": [_change(c) for c in changes]}


@router.post("/alarms/shelve", summary="Shelve an alarm until an expiry")
async def shelve(body: ShelveBody, rt: RuntimeDep, who: Engineer) -> dict[str, Any]:
    try:
        change = alarms_of(rt).shelve(body.alarm, body.duration_s, who.name, body.comment)
    except (UnknownAlarmError, ShelveError) as exc:
        raise _problem(exc) from None
    return _change(change)


@router.post("/alarms/unshelve", summary="End the shelving of an alarm now")
async def unshelve(body: UnshelveBody, rt: RuntimeDep, who: Engineer) -> dict[str, Any]:
    try:
        change = alarms_of(rt).unshelve(body.alarm, who.name, body.comment)
    except (UnknownAlarmError, AlarmStateError) as exc:
        raise _problem(exc) from None
    return _change(change)


@router.get("/alarms/{alarm_id:path}", summary="One alarm")
async def get_alarm(alarm_id: str, rt: RuntimeDep, _: Viewer) -> dict[str, Any]:
    try:
        return alarms_of(rt).get(alarm_id).to_dict()
    except UnknownAlarmError as exc:
        raise _problem(exc) from None
