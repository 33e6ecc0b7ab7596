"""``/api/v1/health``: open to anyone, so that load balancers and monitors need no token."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from factory5g import __version__
from factory5g.api.deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/health", summary="Is the platform up, and is data flowing?")
async def health(rt: RuntimeDep) -> dict[str, Any]:
    stats = rt.stats()
    bus = rt.bus.stats()
    return {
        "status": "degraded" if stats.write_failing else "ok",
        "version": __version__,
        "site": rt.site.name,
        "uptime_s": round(time.time() - stats.started_at, 3),
        "signals": len(rt.site.signals),
        "store": {
            "written_batches": stats.written_batches,
            "written_samples": stats.written_samples,
            "write_errors": stats.write_errors,
            "last_write_error": stats.last_write_error,
            "write_failing": stats.write_failing,
        },
        "bus": {
            "published_batches": bus.published_batches,
            "published_samples": bus.published_samples,
            "subscriptions": [asdict(s) for s in bus.subscriptions],
        },
    }
