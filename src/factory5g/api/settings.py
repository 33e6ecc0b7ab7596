"""Settings of the API process (environment variables ``FACTORY5G_*`` or arguments)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACTORY5G_", frozen=True)

    site: Path = Field(Path("site.toml"), description="the site file")
    data_dir: Path | None = Field(None, description="default: the site's [store] path")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    sim_rate_hz: float = Field(10.0, gt=0, le=1000)
    sim_seed: int = 0
    live_max_rate_hz: float = Field(
        20.0, gt=0, description="WebSocket messages per second, at most"
    )
