"""``/api/v1/signals``: the signal list, latest values and history."""

from __future__ import annotations

import math
import zoneinfo
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query

from factory5g.api.deps import RuntimeDep, Viewer
from factory5g.api.problems import Problem
from factory5g.api.timeparse import parse_duration, parse_time
from factory5g.model.tree import signal_dict
from factory5g.store.base import Agg
from factory5g.stream import Batch, Quality, now_ns

router = APIRouter(tags=["signals"])

MAX_POINTS = 1_000_000


def quality_text(q: int) -> str:
    return "good" if q >= Quality.GOOD else "uncertain" if q >= Quality.UNCERTAIN else "bad"


def _num(v: float) -> float | None:
    return None if math.isnan(v) or math.isinf(v) else v


def iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


def columns(batch: Batch) -> dict[str, list[Any]]:
    """Batch → JSON columns; NaN and infinities become null (JSON has neither)."""
    value = batch.value
    finite = np.isfinite(value)
    values: list[Any] = value.tolist()
    if not finite.all():
        for i in np.flatnonzero(~finite).tolist():
            values[i] = None
    return {"ts": batch.ts.tolist(), "value": values, "quality": batch.quality.tolist()}


@router.get("/signals", summary="Every signal of the site")
async def list_signals(
    rt: RuntimeDep,
    _: Viewer,
    equipment: Annotated[str | None, Query(description="only this equipment's signals")] = None,
) -> list[dict[str, Any]]:
    return [signal_dict(s) for s in rt.site.signals if equipment in (None, s.equipment)]


@router.get("/signals/{ref}", summary="One signal, by id or by path (equipment.signal)")
async def get_signal(ref: str, rt: RuntimeDep, _: Viewer) -> dict[str, Any]:
    return signal_dict(rt.site.signals.get(ref))


@router.get("/signals/{ref}/latest", summary="The latest sample of a signal")
async def latest(ref: str, rt: RuntimeDep, _: Viewer) -> dict[str, Any]:
    info = rt.site.signals.get(ref)
    batch = await rt.store.latest([info.id])
    if len(batch) == 0:
        raise Problem(404, f"signal {info.path!r} has no sample yet", title="No data")
    ts = int(batch.ts[0])
    q = int(batch.quality[0])
    return {
        "signal": info.id,
        "path": info.path,
        "unit": info.unit,
        "ts": ts,
        "time": iso(ts),
        "value": _num(float(batch.value[0])),
        "quality": q,
        "quality_text": quality_text(q),
    }


@router.get("/signals/{ref}/history", summary="Samples of a signal, raw or aggregated per bucket")
async def history(
    ref: str,
    rt: RuntimeDep,
    _: Viewer,
    start: Annotated[
        str, Query(description="ISO 8601, ns since the epoch, or relative like -1h")
    ] = "-1h",
    end: Annotated[str, Query(description="same forms as start; exclusive")] = "now",
    every: Annotated[
        str | None, Query(description="bucket width, e.g. 1s, 1m, 15m; omit for raw samples")
    ] = None,
    agg: Annotated[Agg, Query(description="aggregate per bucket")] = Agg.MEAN,
    limit: Annotated[int, Query(ge=1, le=MAX_POINTS)] = 100_000,
) -> dict[str, Any]:
    info = rt.site.signals.get(ref)
    tz = zoneinfo.ZoneInfo(rt.site.file.site.timezone)
    now = now_ns()
    try:
        start_ns = parse_time(start, now, tz)
        end_ns = parse_time(end, now, tz)
        every_ns = parse_duration(every) if every is not None else None
    except ValueError as exc:
        raise Problem(400, str(exc)) from None
    if end_ns <= start_ns:
        raise Problem(400, f"end ({iso(end_ns)}) must be after start ({iso(start_ns)})")
    if every_ns is not None and (end_ns - start_ns) // every_ns > MAX_POINTS:
        raise Problem(
            400,
            f"{(end_ns - start_ns) // every_ns} buckets of {every} is more than {MAX_POINTS}; "
            "use a wider bucket or a shorter range",
        )
    batch = await rt.store.query(info.id, start_ns, end_ns, every_ns, agg, limit=limit)
    return {
        "signal": info.id,
        "path": info.path,
        "unit": info.unit,
        "start": start_ns,
        "end": end_ns,
        "every_ns": every_ns,
        "agg": agg.value if every_ns is not None else None,
        "count": len(batch),
        "truncated": every_ns is None and len(batch) >= limit,
        **columns(batch),
    }


@router.get(
    "/signals/{ref}/events",
    summary="Non-numeric values of a signal (strings, DataSets, Templates) in time order",
)
async def events(
    ref: str,
    rt: RuntimeDep,
    _: Viewer,
    start: Annotated[str, Query(description="ISO 8601, ns since the epoch, or -1h")] = "-1h",
    end: Annotated[str, Query(description="same forms as start; exclusive")] = "now",
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1_000,
) -> dict[str, Any]:
    info = rt.site.signals.get(ref)
    tz = zoneinfo.ZoneInfo(rt.site.file.site.timezone)
    now = now_ns()
    try:
        start_ns = parse_time(start, now, tz)
        end_ns = parse_time(end, now, tz)
    except ValueError as exc:
        raise Problem(400, str(exc)) from None
    if end_ns <= start_ns:
        raise Problem(400, f"end ({iso(end_ns)}) must be after start ({iso(start_ns)})")
    found = await rt.store.events(info.id, start_ns, end_ns, limit)
    return {
        "signal": info.id,
        "path": info.path,
        "count": len(found),
        "events": [{"ts": e.ts, "time": iso(e.ts), "data": e.data} for e in found],
    }
