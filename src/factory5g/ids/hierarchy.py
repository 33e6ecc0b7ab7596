"""The resolution hierarchy: site information, referrals, and a TTL-bound cache.

Nodes form a tree by prefix (RFC 3650 §3.1; the industrial identification system's top node →
secondary node → enterprise node). A parent delegates a derived prefix by holding its prefix
handle ``0.NA/<derived>`` with an HS_SITE value (RFC 3651 §3.2.2) describing the child's service,
or an HS_SERV value naming a handle that holds it (§3.2.3).

HS_SITE data, in the REST API's JSON (``format: "site"``)::

    {"version": 1, "protocolVersion": "2.10", "serialNumber": 1,
     "primaryMask": {"primary": true, "multiPrimary": false}, "hashOption": "BY_HANDLE",
     "attributes": [{"name": "desc", "value": "enterprise node of 88.118.8"}],
     "servers": [{"serverId": 1, "address": "127.0.0.1",
                  "interfaces": [{"query": true, "admin": true, "protocol": "HTTP",
                                  "port": 8080}]}]}

This node speaks the REST API only, so it follows interfaces of protocol HTTP or HTTPS; a site
lists its servers in order of preference (mirrors), and a server that does not answer within
``timeout_s`` is skipped.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import orjson

from factory5g.ids.errors import InvalidValue, UpstreamUnavailable

__all__ = ["SiteAnswer", "TtlCache", "ask_site", "site_data", "site_urls"]

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A bounded LRU whose entries expire; ``clock`` is injectable for tests."""

    def __init__(self, max_entries: int, clock: Any = time.monotonic) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._d: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        item = self._d.get(key)
        if item is None:
            self.misses += 1
            return None
        expires, value = item
        if expires <= self.clock():
            del self._d[key]
            self.misses += 1
            return None
        self._d.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: K, value: V, ttl_s: float) -> None:
        if ttl_s <= 0 or self.max_entries <= 0:
            return
        self._d[key] = (self.clock() + ttl_s, value)
        self._d.move_to_end(key)
        while len(self._d) > self.max_entries:
            self._d.popitem(last=False)

    def pop(self, key: K) -> None:
        self._d.pop(key, None)

    def clear(self) -> None:
        self._d.clear()

    def __len__(self) -> int:
        return len(self._d)


def site_data(urls: Iterable[str], *, description: str = "", serial: int = 1) -> dict[str, Any]:
    """HS_SITE data for a service reachable at these base URLs (``http://host:port``)."""
    servers = []
    for n, url in enumerate(urls, start=1):
        u = httpx.URL(url)
        if u.scheme not in ("http", "https") or not u.host:
            raise InvalidValue(f"{url!r} is not an http(s)://host:port URL")
        port = u.port or (443 if u.scheme == "https" else 80)
        servers.append(
            {
                "serverId": n,
                "address": u.host,
                "interfaces": [
                    {"query": True, "admin": True, "protocol": u.scheme.upper(), "port": port}
                ],
            }
        )
    if not servers:
        raise InvalidValue("a site needs at least one server URL")
    attributes = [{"name": "desc", "value": description}] if description else []
    return {
        "version": 1,
        "protocolVersion": "2.10",
        "serialNumber": serial,
        "primaryMask": {"primary": True, "multiPrimary": False},
        "hashOption": "BY_HANDLE",
        "attributes": attributes,
        "servers": servers,
    }


def site_urls(site: Mapping[str, Any]) -> list[str]:
    """Base URLs of the REST interfaces of a site, in the order listed."""
    out: list[str] = []
    servers = site.get("servers")
    if not isinstance(servers, list):
        return out
    for server in servers:
        if not isinstance(server, Mapping):
            continue
        address = server.get("address")
        if not isinstance(address, str) or not address:
            continue
        host = f"[{address}]" if ":" in address else address
        for itf in server.get("interfaces") or ():
            if not isinstance(itf, Mapping) or not itf.get("query", True):
                continue
            proto = str(itf.get("protocol", "")).upper()
            port = itf.get("port")
            if proto in ("HTTP", "HTTPS") and isinstance(port, int):
                out.append(f"{proto.lower()}://{host}:{port}")
    return out


@dataclass(frozen=True, slots=True)
class SiteAnswer:
    """What a remote node answered: its responseCode, values (JSON array), and for a
    referral the delegated prefix it names."""

    code: int
    values: list[Any]
    prefix: str | None
    server: str


async def ask_site(
    client: httpx.AsyncClient,
    urls: Iterable[str],
    handle: str,
    *,
    timeout_s: float,
    query: str = "",
) -> SiteAnswer:
    """GET the handle from the first server of a site that answers; raise
    UpstreamUnavailable naming every server tried if none does."""
    tried: list[str] = []
    path = "/api/handles/" + quote(handle, safe="/:@!$&'()*+,;=-._~")
    for base in urls:
        try:
            resp = await client.get(
                base + path + (f"?{query}" if query else ""),
                headers={"Accept": "application/json"},
                timeout=timeout_s,
            )
            body = orjson.loads(resp.content)
        except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
            tried.append(f"{base}: {type(exc).__name__}")
            continue
        if not isinstance(body, dict) or not isinstance(body.get("responseCode"), int):
            tried.append(f"{base}: not a Handle answer (HTTP {resp.status_code})")
            continue
        values = body.get("values") or []
        prefix = body.get("prefix") if isinstance(body.get("prefix"), str) else None
        return SiteAnswer(
            body["responseCode"], values if isinstance(values, list) else [], prefix, base
        )
    raise UpstreamUnavailable(handle, tried or ["no HTTP interface in the site information"])
