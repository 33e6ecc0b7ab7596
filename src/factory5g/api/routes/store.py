"""``/api/v1/store``: store figures (viewer) and retention on demand (engineer)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from factory5g.api.deps import Engineer, RuntimeDep, Viewer
from factory5g.stream import now_ns

router = APIRouter(tags=["store"])


@router.get("/store", summary="What the store holds")
async def store_stats(rt: RuntimeDep, _: Viewer) -> dict[str, Any]:
    stats = await rt.store.stats()
    return {**asdict(stats), "retention_days": rt.site.file.store.retention_days}


@router.post("/store/retention", summary="Apply the site's retention now")
async def retention(rt: RuntimeDep, who: Engineer) -> dict[str, Any]:
    days = rt.site.file.store.retention_days
    before = now_ns() - int(days * 86_400e9)
    removed = await rt.store.apply_retention(before)
    return {"removed_samples": removed, "before": before, "by": who.name}
