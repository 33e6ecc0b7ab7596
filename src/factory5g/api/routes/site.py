"""``/api/v1/site``: the asset tree."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from factory5g.api.deps import RuntimeDep, Viewer
from factory5g.model.tree import asset_tree

router = APIRouter(tags=["site"])


@router.get("/site", summary="The site's ISA-95 asset tree with its signals")
async def site(rt: RuntimeDep, _: Viewer) -> dict[str, Any]:
    return asset_tree(rt.site)
