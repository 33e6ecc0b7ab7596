from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from factory5g.api import Settings, create_app
from factory5g.api.tokens import TokenStore
from factory5g.model import Role
from factory5g.runtime import Runtime

SITE = """
[site]
name = "Test press shop"
prefix = "88.118.8"
timezone = "Europe/Berlin"

[store]
path = "data"
retention_days = 30

[[equipment]]
id = "press"
name = "Press 1"
area = "body-shop"
line = "press-line"
kind = "press"

  [[equipment.signal]]
  name = "force"
  unit = "kN"

  [[equipment.signal]]
  name = "temp"
  unit = "°C"

[[equipment]]
id = "robot"
area = "body-shop"
line = "welding"

  [[equipment.signal]]
  name = "state"
  type = "int"
"""


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient
    runtime: Runtime
    tokens: dict[Role, str]
    store: TokenStore

    def auth(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    p = tmp_path / "site.toml"
    p.write_text(SITE, encoding="utf-8")
    return p


@pytest.fixture
async def api(site_file: Path) -> AsyncIterator[Api]:
    settings = Settings(site=site_file, live_max_rate_hz=100)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        store: TokenStore = app.state.tokens
        tokens = {r: store.create(r, f"test-{r.value}").token for r in Role}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(app, client, app.state.runtime, tokens, store)
