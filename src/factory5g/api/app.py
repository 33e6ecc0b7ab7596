"""``create_app(settings)``: the HTTP API, the live WebSocket and the console, one ASGI app.

The lifespan owns every resource: it loads the site, opens the token store and starts the
:class:`~factory5g.runtime.Runtime`; on shutdown it stops them in reverse order.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import AsyncIterator, Callable
from importlib import resources

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from factory5g import __version__
from factory5g.api import problems
from factory5g.api.deps import require
from factory5g.api.routes import (
    alarms,
    audit,
    commands,
    connect,
    health,
    live,
    network,
    signals,
    site,
    store,
    tokens,
)
from factory5g.api.settings import Settings
from factory5g.api.tokens import TokenStore
from factory5g.ids.api import ids_router
from factory5g.ids.wiring import open_service, settings_from_site
from factory5g.model import Role, load_site
from factory5g.net.nef.emulator import create_nef_app
from factory5g.runtime import Runtime

API_PREFIX = "/api/v1"


def create_app(settings: Settings, *, on_ready: Callable[[Runtime], None] | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        site_ = load_site(settings.site)
        data_dir = settings.data_dir or site_.store_dir()
        with TokenStore(data_dir / "auth.sqlite") as token_store:
            async with contextlib.AsyncExitStack() as stack:
                app.state.ids = None
                if site_.file.ids.enabled:
                    # The identifier node: /api/handles on the same port (Handle Basic auth).
                    app.state.ids = await stack.enter_async_context(
                        open_service(settings_from_site(site_, data_dir))
                    )
                rt = await stack.enter_async_context(
                    Runtime(
                        site_,
                        data_dir=data_dir,
                        sim_rate_hz=settings.sim_rate_hz,
                        sim_seed=settings.sim_seed,
                    )
                )
                app.state.runtime = rt
                # [network] emulate: the runtime's NEF emulator and links, served under /nef
                app.state.nef = rt.nef
                app.state.linkemu = rt.linkemu
                app.state.network_plan = rt.network_plan
                app.state.nef_app = (
                    create_nef_app(site_, emulator=rt.nef) if rt.nef is not None else None
                )
                app.state.tokens = token_store
                app.state.settings = settings
                # Everything built so far lives as long as the server: out of the collector's
                # sight, so that a full collection does not walk it (a p99 pause otherwise).
                gc.freeze()
                if on_ready is not None:
                    on_ready(rt)
                yield

    app = FastAPI(
        title="factory5g",
        version=__version__,
        summary="The 5G fully-connected factory, on premises",
        lifespan=lifespan,
        # Swagger UI and ReDoc load their assets from a CDN: not in an air-gapped plant.
        docs_url=None,
        redoc_url=None,
        # No telemetry of any kind: the plant is air-gapped, and OTEL_* variables set for some
        # other program on the machine must not make the API export anything.
        telemetry={
            "tracing": False,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "auto_configure": False,
        },
    )
    problems.install(app)
    app.include_router(health.router, prefix=API_PREFIX)
    app.include_router(live.router, prefix=API_PREFIX)
    viewer = [Depends(require(Role.VIEWER))]
    app.include_router(site.router, prefix=API_PREFIX, dependencies=viewer)
    app.include_router(signals.router, prefix=API_PREFIX, dependencies=viewer)
    app.include_router(store.router, prefix=API_PREFIX, dependencies=viewer)
    app.include_router(connect.router, prefix=API_PREFIX, dependencies=viewer)
    # Control and alarms: viewers read; each route asks for more where it acts (the role a
    # target requires is checked by the control app, per the site file).
    app.include_router(commands.router, prefix=API_PREFIX, dependencies=viewer)
    app.include_router(audit.router, prefix=API_PREFIX, dependencies=viewer)
    app.include_router(alarms.router, prefix=API_PREFIX, dependencies=viewer)
    app.include_router(network.router, prefix=API_PREFIX, dependencies=viewer)
    app.include_router(tokens.router, prefix=API_PREFIX)
    app.include_router(ids_router())  # /api/handles, /hrls/handles: Handle.Net's own auth
    app.mount("/nef", _NefMount(app), name="nef")
    static = resources.files("factory5g.web").joinpath("static")
    app.mount("/", StaticFiles(directory=str(static), html=True), name="console")
    # Commands skip FastAPI's routing and validation when plainly valid (routes/commands.py).
    app.add_middleware(commands.CommandFastPath, path=f"{API_PREFIX}/commands")
    return app


class _NefMount:
    """``/nef/3gpp-…``: the NEF emulator of a running ``[network] emulate`` site (the TS 29.122 /
    TS 29.522 paths, and its own ``/nef/nef-emulator/v1`` to move devices and take them
    offline). Like a real NEF it does not take factory5g's tokens; it exists only in an emulated
    network. Without one: 404."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        inner = getattr(self.app.state, "nef_app", None)
        if inner is None:
            if scope["type"] != "http":
                return
            body = json.dumps(
                {
                    "title": "Not Found",
                    "status": 404,
                    "detail": "no NEF here: set [network] emulate = true to run the NEF emulator",
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [(b"content-type", b"application/problem+json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await inner(scope, receive, send)
