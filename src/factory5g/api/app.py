"""``create_app(settings)``: the HTTP API, the live WebSocket and the console, one ASGI app.

The lifespan owns every resource: it loads the site, opens the token store and starts the
:class:`~factory5g.runtime.Runtime`; on shutdown it stops them in reverse order.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from importlib import resources

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from factory5g import __version__
from factory5g.api import problems
from factory5g.api.deps import require
from factory5g.api.routes import connect, health, live, signals, site, store, tokens
from factory5g.api.settings import Settings
from factory5g.api.tokens import TokenStore
from factory5g.ids.api import ids_router
from factory5g.ids.wiring import open_service, settings_from_site
from factory5g.model import Role, load_site
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
                app.state.tokens = token_store
                app.state.settings = settings
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
    app.include_router(tokens.router, prefix=API_PREFIX)
    app.include_router(ids_router())  # /api/handles, /hrls/handles: Handle.Net's own auth
    static = resources.files("factory5g.web").joinpath("static")
    app.mount("/", StaticFiles(directory=str(static), html=True), name="console")
    return app
