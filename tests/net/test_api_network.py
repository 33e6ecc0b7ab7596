"""``/api/v1/network``: the router on its own, the runtime and the auth replaced by stand-ins."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
from fastapi import FastAPI

from factory5g.api import problems
from factory5g.api.deps import require
from factory5g.api.routes import network
from factory5g.model import Role, Site
from factory5g.net.nef import NefEmulator


def make_app(site: Site) -> FastAPI:
    app = FastAPI()
    problems.install(app)
    app.include_router(network.router, prefix="/api/v1")
    app.state.runtime = SimpleNamespace(site=site)
    app.dependency_overrides[require(Role.VIEWER)] = lambda: None
    return app


async def test_network_routes(steel: Site) -> None:
    app = make_app(steel)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/api/v1/network/cells")
        assert r.status_code == 200
        runout = next(x for x in r.json() if x["id"] == "cell-runout")
        assert abs(runout["capacity_ul_mbps"] - 785.7) < 0.05
        r = await c.get("/api/v1/network/slices")
        assert {s["name"] for s in r.json()} == {"urllc-control", "embb-video", "miot-sensors"}
        r = await c.get("/api/v1/network/admission")
        assert r.json()["summary"]["admitted"] == 5
        r = await c.get("/api/v1/network/devices")
        cam = next(d for d in r.json() if d["id"] == "ue-surface-cam")
        assert (cam["cell"], cam["online"], cam["flows"]) == ("cell-runout", True, 2)
        r = await c.get("/api/v1/network/kpis")
        assert r.status_code == 404
        async with NefEmulator(steel) as nef:
            app.state.nef = nef
            nef.set_online("ue-surface-cam", False)
            nef.move("ue-surface-cam", "cell-mill")
            r = await c.get("/api/v1/network/devices")
            cam = next(d for d in r.json() if d["id"] == "ue-surface-cam")
            assert (cam["cell"], cam["online"]) == ("cell-mill", False)
            r = await c.get("/api/v1/network/kpis")
            assert r.json()["nef"]["cells"][0]["id"] == "cell-mill"
        r = await c.get("/api/v1/network")
        assert r.json()["recommended_cells"] == 2


async def test_no_network(steel: Site) -> None:
    from factory5g.model import load_text

    app = make_app(load_text('[site]\nname = "x"\nprefix = "88.1"\n'))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/api/v1/network")
        assert r.status_code == 404
        assert "no private 5G network" in r.text
