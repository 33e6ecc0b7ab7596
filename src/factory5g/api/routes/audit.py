"""``/api/v1/audit``: the append-only, hash-chained log of every command and outcome."""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Any

from fastapi import APIRouter, Query

from factory5g.api.deps import RuntimeDep, Viewer
from factory5g.api.problems import Problem
from factory5g.api.routes.commands import control_of
from factory5g.api.timeparse import parse_time
from factory5g.stream import now_ns

router = APIRouter(tags=["control"])


@router.get("/audit", summary="Audit entries in order (who, what, when, result, latency)")
async def audit(
    rt: RuntimeDep,
    _: Viewer,
    start: Annotated[str | None, Query(description="ISO 8601, ns, or relative like -1h")] = None,
    end: Annotated[str | None, Query(description="same forms as start; exclusive")] = None,
    user: Annotated[str | None, Query(description="token name")] = None,
    target: Annotated[str | None, Query()] = None,
    after_seq: Annotated[int, Query(ge=0, description="entries after this one (paging)")] = 0,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> dict[str, Any]:
    tz = zoneinfo.ZoneInfo(rt.site.file.site.timezone)
    now = now_ns()
    try:
        start_ns = parse_time(start, now, tz) if start is not None else None
        end_ns = parse_time(end, now, tz) if end is not None else None
    except ValueError as exc:
        raise Problem(400, str(exc)) from None
    store = control_of(rt).store
    seq, digest = store.head_entry
    entries = store.audit(
        start=start_ns, end=end_ns, user=user, target=target, after_seq=after_seq, limit=limit
    )
    return {
        "count": len(entries),
        "head": {"seq": seq, "hash": digest},
        "entries": [e.to_dict() for e in entries],
    }


@router.get("/audit/head", summary="The newest entry's sequence number and hash (to anchor)")
async def head(rt: RuntimeDep, _: Viewer) -> dict[str, Any]:
    seq, digest = control_of(rt).store.head_entry
    return {"seq": seq, "hash": digest}


@router.get("/audit/verify", summary="Walk the hash chain: has the log been tampered with?")
async def verify(
    rt: RuntimeDep,
    _: Viewer,
    after_seq: Annotated[
        int | None, Query(ge=0, description="a head recorded earlier: walk only what follows")
    ] = None,
    after_hash: Annotated[
        str | None, Query(pattern="^[0-9a-f]{64}$", description="that head's hash")
    ] = None,
) -> dict[str, Any]:
    if (after_seq is None) != (after_hash is None):
        raise Problem(422, "after_seq and after_hash go together: the head recorded earlier")
    anchor = (after_seq, after_hash) if after_seq is not None and after_hash is not None else None
    v = control_of(rt).store.verify(anchor)
    return {
        "ok": v.ok,
        "entries": v.entries,  # walked: after the anchor when one is given
        "head": v.head,
        "first_bad": v.first_bad,
        "why": v.why,
    }
