"""Open the identifier node a site file (or the command line) describes.

The one module of ``ids/`` that knows the site model (lazily): the CLI, ``factory5g up`` and
the standalone server use it; the rest of the package takes plain settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from factory5g.ids.service import IdsService, NodeConfig
from factory5g.ids.store.base import HandleStore
from factory5g.ids.store.embedded import EmbeddedHandleStore
from factory5g.ids.templates import DEFAULT_TEMPLATES

if TYPE_CHECKING:
    from factory5g.model import Site

__all__ = ["IdsAppSettings", "open_service", "open_store", "settings_from_site"]


@dataclass(frozen=True, slots=True, kw_only=True)
class IdsAppSettings:
    """Where the records are and how the node behaves."""

    node: NodeConfig
    backend: Literal["embedded", "postgres"] = "embedded"
    path: Path | None = None  # embedded store file
    dsn: str | None = None  # PostgreSQL
    public_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        node = dataclasses.asdict(self.node)
        node["search_types"] = sorted(self.node.search_types)
        return json.dumps(
            {
                "node": node,
                "backend": self.backend,
                "path": str(self.path) if self.path else None,
                "dsn": self.dsn,
                "public_url": self.public_url,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> IdsAppSettings:
        raw = json.loads(text)
        node = raw["node"]
        node["prefixes"] = tuple(node["prefixes"])
        node["upstream"] = tuple(node["upstream"])
        node["search_types"] = frozenset(node["search_types"])
        return cls(
            node=NodeConfig(**node),
            backend=raw["backend"],
            path=Path(raw["path"]) if raw["path"] else None,
            dsn=raw["dsn"],
            public_url=raw["public_url"],
        )


def settings_from_site(site: Site, data_dir: Path | None = None) -> IdsAppSettings:
    """The node of a site: ``[site] prefix`` plus ``[ids]`` (``data_dir`` overrides the
    ``[store] path`` the embedded file is relative to)."""
    ids = site.file.ids
    base = data_dir or site.store_dir()
    dsn = None
    if ids.backend == "postgres":
        assert ids.dsn_env is not None  # checked by the model
        dsn = os.environ.get(ids.dsn_env)
        if not dsn:
            raise RuntimeError(
                f"[ids] backend is postgres but the environment variable {ids.dsn_env} is unset"
            )
    path = Path(ids.path)
    prefixes = (site.file.site.prefix, *(p for p in ids.prefixes if p != site.file.site.prefix))
    node = NodeConfig(
        prefixes=prefixes,
        fold_case=ids.fold_case,
        recursive=ids.recursive,
        upstream=tuple(u.rstrip("/") for u in ids.upstream),
        max_referrals=ids.max_referrals,
        referral_timeout_s=ids.referral_timeout_s,
        cache_entries=ids.cache_entries,
        search_types=frozenset(t.upper() for t in ids.search_types),
        templates={**DEFAULT_TEMPLATES, **ids.templates},
    )
    return IdsAppSettings(
        node=node,
        backend=ids.backend,
        path=path if path.is_absolute() else base / path,
        dsn=dsn,
        public_url=ids.public_url.rstrip("/") if ids.public_url else None,
    )


@contextlib.asynccontextmanager
async def open_store(settings: IdsAppSettings) -> AsyncIterator[HandleStore]:
    store: HandleStore
    if settings.backend == "postgres":
        from factory5g.ids.store.postgres import PostgresHandleStore

        if not settings.dsn:
            raise RuntimeError("the postgres backend needs a DSN")
        store = PostgresHandleStore(settings.dsn)
    else:
        if settings.path is None:
            raise RuntimeError("the embedded backend needs a file path")
        store = EmbeddedHandleStore(settings.path)
    async with store:
        yield store


@contextlib.asynccontextmanager
async def open_service(settings: IdsAppSettings) -> AsyncIterator[IdsService]:
    """Store and service, opened together and closed in reverse order."""
    async with open_store(settings) as store, IdsService(store, settings.node) as svc:
        yield svc
