"""The identifier node: resolution, registration with authentication and HS_ADMIN checks,
referrals and recursive resolution, bulk minting.

``async with IdsService(store, NodeConfig(prefixes=("88.118.8",))) as ids`` — the store is
opened (and closed) by the caller; the service owns only its HTTP client for recursion.

Responsibility (RFC 3650 §3.1). A node is *authoritative* for its prefixes (``prefixes``): their
handles are answered from its store, and so are the prefix handles ``0.NA/X`` of those prefixes
and of prefixes derived from them (a parent keeps the delegation records of its children). For
any other handle it looks, longest first, for a prefix handle ``0.NA/Q`` of an ancestor ``Q``
holding HS_SITE or HS_SERV values:

* found → a **referral**: responseCode 303 (PREFIX_REFERRAL) with those values and ``prefix: Q``;
  a *recursive* node (``recursive = true``) follows it instead — and every further referral, up
  to ``max_referrals`` — and answers with the final values, cached until the smallest TTL among
  them expires; the referrals it learns are cached the same way;
* an ancestor is one of ours but not delegated → 100 HANDLE_NOT_FOUND;
* nothing known → 301 SERVER_NOT_RESP, or for a recursive node the ``upstream`` servers (the
  top node) are asked.

Writes are compare-and-set loops over the store (see :mod:`factory5g.ids.store.base`): read,
authorise, write if unchanged, else retry — concurrent writers never lose a value.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import httpx
import orjson

from factory5g.ids.admin import (
    ALL_ADMIN,
    HANDLE_ADMIN,
    AdminPerm,
    AdminRef,
    Identity,
    admin_permissions,
    hash_secret,
    is_hashed_secret,
    parse_identity,
    verify_secret,
)
from factory5g.ids.errors import (
    AuthenticationFailed,
    AuthenticationNeeded,
    HandleAlreadyExists,
    HandleNotFound,
    InsufficientPermissions,
    InvalidCredential,
    InvalidHandle,
    InvalidValue,
    NotAnAdmin,
    RecursionTooDeep,
    ResponseCode,
    ServerNotResponsible,
    ServerTooBusy,
    UpstreamUnavailable,
    ValueAlreadyExists,
    ValuesNotFound,
)
from factory5g.ids.hierarchy import TtlCache, ask_site, site_data, site_urls
from factory5g.ids.records import (
    DEFAULT_TTL,
    SECRET_PERMISSIONS,
    HandleValue,
    ValuePerm,
    decode_values,
    encode_values,
)
from factory5g.ids.store.base import HandleStore, NewRecord, StoredRecord
from factory5g.ids.syntax import (
    NA_PREFIX,
    Handle,
    canonical_prefix,
    parse_handle,
    parse_prefix,
    prefix_handle,
    prefix_parents,
)
from factory5g.ids.templates import DEFAULT_TEMPLATES, IdTemplate

__all__ = ["Credentials", "IdsService", "MintResult", "NodeConfig", "PutResult", "Resolution"]

T = TypeVar("T")
MAX_CAS_ATTEMPTS = 64
ADMIN_INDEX = 100
GROUP_INDEX = 200
SECKEY_INDEX = 300
Selection = frozenset[int] | Literal["various"] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    prefixes: tuple[str, ...] = ()
    fold_case: bool = False
    recursive: bool = False
    upstream: tuple[str, ...] = ()  # base URLs asked when nothing local knows a prefix
    max_referrals: int = 8
    referral_timeout_s: float = 2.0
    cache_entries: int = 100_000
    search_types: frozenset[str] = frozenset({"URL", "EMAIL", "F5G_BATCH"})
    templates: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_TEMPLATES))
    mint_chunk: int = 25_000
    max_mint: int = 1_000_000

    def __post_init__(self) -> None:
        for p in self.prefixes:
            parse_prefix(p)
        for kind, text in self.templates.items():
            IdTemplate(kind, text)


@dataclass(frozen=True, slots=True)
class Resolution:
    """An answer: responseCode, the values as a JSON array, and for referrals the prefix."""

    code: int
    values: bytes = b"[]"
    prefix: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class PutResult:
    handle: str
    created: bool


@dataclass(frozen=True, slots=True)
class MintResult:
    prefix: str
    kind: str
    handles: list[str]


@dataclass(frozen=True, slots=True)
class Credentials:
    user: str  # index:handle
    secret: str


class IdsService:
    def __init__(
        self,
        store: HandleStore,
        config: NodeConfig,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self._ours = frozenset(canonical_prefix(p) for p in config.prefixes)
        self._http = http
        self._own_http = False
        self._answers: TtlCache[tuple[str, str], Resolution] = TtlCache(
            config.cache_entries, monotonic
        )
        self._routes: TtlCache[str, list[str]] = TtlCache(config.cache_entries, monotonic)
        self._verified: dict[tuple[str, int, str, bytes], bool] = {}
        self._templates = {k: IdTemplate(k, t) for k, t in config.templates.items()}
        # scrypt runs here, off the event loop (not in the loop's default executor, whose
        # threads would outlive the service).
        self._hasher: ThreadPoolExecutor | None = None
        self._blob: Callable[[str], tuple[bytes, int] | None] | None = getattr(
            store, "get_blob_sync", None
        )
        self._stamp: Callable[[], bytes | None] | None = getattr(store, "change_stamp_sync", None)

    async def _off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        if self._hasher is None:
            self._hasher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="f5g-ids-hash")
        return await asyncio.get_running_loop().run_in_executor(self._hasher, fn, *args)

    async def __aenter__(self) -> Self:
        if self._http is None and (self.config.recursive or self.config.upstream):
            self._http = httpx.AsyncClient(
                timeout=self.config.referral_timeout_s,
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
                trust_env=False,
            )
            self._own_http = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._hasher is not None:
            self._hasher.shutdown(wait=True)
            self._hasher = None

    # -- names ----------------------------------------------------------------------------------

    @property
    def prefixes(self) -> tuple[str, ...]:
        return self.config.prefixes

    def key(self, h: Handle) -> str:
        if h.is_prefix_handle:  # the suffix of 0.NA/X is a prefix: it folds like one
            return f"{NA_PREFIX}/{canonical_prefix(h.suffix)}"
        return h.key(self.config.fold_case)

    def _key_of_text(self, text: str) -> str | None:
        try:
            return self.key(parse_handle(text))
        except InvalidHandle:
            return None

    def _ours_or_derived(self, prefix_key: str) -> bool:
        return any(prefix_key == p or prefix_key.startswith(p + ".") for p in self._ours)

    def is_local(self, h: Handle) -> bool:
        """Is this node authoritative for the handle?"""
        if h.is_prefix_handle:
            return self._ours_or_derived(canonical_prefix(h.suffix))
        return canonical_prefix(h.prefix) in self._ours

    def _routing_prefix(self, h: Handle) -> str:
        return canonical_prefix(h.suffix if h.is_prefix_handle else h.prefix)

    async def _load(self, key: str) -> list[HandleValue] | None:
        rec = await self.store.get(key)
        return None if rec is None else decode_values(rec.values)

    def _governing_prefix_handle(self, h: Handle) -> str:
        """The prefix handle whose HS_ADMIN governs creation under ``h`` (RFC 3651 §3.2.1)."""
        if h.is_prefix_handle:
            x = canonical_prefix(h.suffix)
            parent = x.rpartition(".")[0]
            if x not in self._ours and parent:
                return f"{NA_PREFIX}/{parent}"
            return f"{NA_PREFIX}/{x}"
        return f"{NA_PREFIX}/{canonical_prefix(h.prefix)}"

    # -- authentication and authorisation ----------------------------------------------------

    async def authenticate(self, user: str, password: str) -> Identity:
        """Check Basic-auth credentials (``index:handle`` and the secret key, both already
        percent-decoded) against the HS_SECKEY value at that index."""
        index, handle_text = parse_identity(user)
        try:
            h = parse_handle(handle_text)
        except InvalidHandle as exc:
            raise InvalidCredential(f"user {user[:80]!r}: {exc.reason}") from None
        key = self.key(h)
        values = await self._load(key) if self.is_local(h) else None
        if values is None:
            raise AuthenticationFailed(user, "no such handle on this node")
        v = next((v for v in values if v.index == index), None)
        if v is None:
            raise AuthenticationFailed(user, f"{handle_text} has no value at index {index}")
        if v.type == "HS_PUBKEY":
            raise InvalidCredential(
                f"{user}: an HS_PUBKEY needs challenge-response, which Basic auth cannot do; "
                "use an HS_SECKEY"
            )
        if v.type != "HS_SECKEY" or not isinstance(v.data, str):
            raise AuthenticationFailed(user, f"value {index} is {v.type}, not HS_SECKEY")
        digest = hashlib.sha256(password.encode("utf-8", "surrogatepass")).digest()
        memo = (key, index, v.data, digest)
        if memo not in self._verified:
            ok = await self._off_loop(verify_secret, password, v.data)
            if not ok:
                raise AuthenticationFailed(user)
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[memo] = True
        return Identity(index, handle_text, key)

    async def _permissions(
        self, identity: Identity, values: Sequence[HandleValue], h: Handle
    ) -> AdminPerm | None:
        if not any(v.type == "HS_ADMIN" for v in values):
            values = await self._load(self._governing_prefix_handle(h)) or []
        return await admin_permissions(identity, values, self._load, self._key_of_text)

    @staticmethod
    def _require(identity: Identity, perms: AdminPerm | None, need: AdminPerm, h: Handle) -> None:
        if perms is None:
            raise NotAnAdmin(str(identity), h.text)
        missing = need & ~perms
        if missing:
            raise InsufficientPermissions(str(identity), h.text, AdminPerm(missing).names)

    # -- resolution -----------------------------------------------------------------------------

    @property
    def reads_sync(self) -> bool:
        """Can :meth:`plain_values_sync` answer? True for the embedded store, whose point
        lookups run on the caller's thread in microseconds."""
        return self._blob is not None

    def change_stamp_sync(self) -> bytes | None:
        """Bytes that change whenever a write is committed to the store, by any process
        (the embedded store's WAL-index header); None when the store cannot tell cheaply.
        An answer computed after reading stamp S is current for as long as the stamp is S."""
        return None if self._stamp is None else self._stamp()

    def plain_values_sync(self, h: Handle) -> bytes | None:
        """:meth:`plain_values` without awaiting, for a caller that cannot await (an HTTP
        parser callback); None also when the store cannot read synchronously
        (:attr:`reads_sync`). Every call reads the store, so a write committed by another
        process is seen by the next call (SQLite WAL)."""
        if self._blob is None or not self.is_local(h):
            return None
        row = self._blob(self.key(h))
        if row is None or not row[1] or row[0] == b"[]":
            return None
        return row[0]

    async def plain_values(self, h: Handle) -> bytes | None:
        """The fast path: the stored values when the handle is local and every value public
        (one primary-key lookup, no decoding); None when the full path must answer."""
        if self._blob is not None:  # the embedded store: no object, no await
            return self.plain_values_sync(h)
        if not self.is_local(h):
            return None
        rec = await self.store.get(self.key(h))
        if rec is None or not rec.plain or rec.values == b"[]":
            return None
        return rec.values

    async def resolve(
        self,
        h: Handle,
        *,
        indexes: Iterable[int] = (),
        types: Iterable[str] = (),
        identity: Identity | None = None,
        public_only: bool = False,
        authoritative: bool = False,
    ) -> Resolution:
        idx, typ = frozenset(indexes), tuple(types)
        if self.is_local(h):
            rec = await self.store.get(self.key(h))
            if rec is None:
                raise HandleNotFound(h.text)
            return await self._answer(h, rec, idx, typ, identity, public_only)
        return await self._route(h, idx, typ, authoritative)

    async def _answer(
        self,
        h: Handle,
        rec: StoredRecord,
        indexes: frozenset[int],
        types: tuple[str, ...],
        identity: Identity | None,
        public_only: bool,
    ) -> Resolution:
        if not indexes and not types and rec.plain and identity is None:
            if rec.values == b"[]":
                raise ValuesNotFound(h.text, "the handle has no values")
            return Resolution(ResponseCode.SUCCESS, rec.values)
        values = decode_values(rec.values)
        if not values:
            raise ValuesNotFound(h.text, "the handle has no values")
        selected = [
            v
            for v in values
            if (not indexes or v.index in indexes)
            and (not types or any(v.type_matches(t) for t in types))
        ]
        if not selected:
            raise ValuesNotFound(h.text)
        can_read = False
        if (
            identity is not None
            and not public_only
            and not all(v.publicly_readable for v in selected)
        ):
            perms = await self._permissions(identity, values, h)
            can_read = perms is not None and bool(perms & AdminPerm.READ_VALUE)
        visible = [
            v
            for v in selected
            if v.publicly_readable or (can_read and v.permissions & ValuePerm.ADMIN_READ)
        ]
        if not visible:
            if identity is None:
                raise AuthenticationNeeded(f"{h.text}: the requested values are not public")
            raise InsufficientPermissions(str(identity), h.text, "READ_VALUE")
        return Resolution(ResponseCode.SUCCESS, encode_values(visible))

    async def _local_referral(
        self, prefix_key: str
    ) -> tuple[str, list[HandleValue]] | Literal["undelegated"] | None:
        """(delegated prefix, HS_SITE/HS_SERV values) from our prefix handles; "undelegated"
        if one of our own prefixes covers the handle without delegating it; else None."""
        for q in prefix_parents(prefix_key):
            if q in self._ours:
                return "undelegated"
            values = await self._load(f"{NA_PREFIX}/{q}")
            if not values:
                continue
            sites = [v for v in values if v.type == "HS_SITE" and v.publicly_readable]
            for serv in (v for v in values if v.type == "HS_SERV" and v.publicly_readable):
                key = self._key_of_text(serv.data) if isinstance(serv.data, str) else None
                service = await self._load(key) if key else None
                sites.extend(v for v in service or () if v.type == "HS_SITE")
                sites.append(serv)
            if sites:
                return q, sites
        return None

    async def _route(
        self, h: Handle, indexes: frozenset[int], types: tuple[str, ...], authoritative: bool
    ) -> Resolution:
        prefix_key = self._routing_prefix(h)
        referral = await self._local_referral(prefix_key)
        if referral == "undelegated":
            raise HandleNotFound(h.text)
        if not self.config.recursive:
            if referral is None:
                raise ServerNotResponsible(h.text, self.prefixes)
            q, sites = referral
            return Resolution(ResponseCode.PREFIX_REFERRAL, encode_values(sites), prefix=q)

        query = "&".join([f"index={i}" for i in sorted(indexes)] + [f"type={t}" for t in types])
        cache_key = (self.key(h), query)
        if not authoritative:
            cached = self._answers.get(cache_key)
            if cached is not None:
                return cached
        if referral is not None:
            urls = [u for v in referral[1] if v.type == "HS_SITE" for u in site_urls(v.data)]
        else:
            urls = self._learned_route(prefix_key) or list(self.config.upstream)
        if not urls:
            raise ServerNotResponsible(h.text, self.prefixes)
        answer, ttl = await self._follow(h, urls, query)
        if answer.code == ResponseCode.SUCCESS:
            self._answers.put(cache_key, answer, ttl)
        return answer

    def _learned_route(self, prefix_key: str) -> list[str] | None:
        for q in prefix_parents(prefix_key):
            urls = self._routes.get(q)
            if urls:
                return urls
        return None

    async def _follow(self, h: Handle, urls: list[str], query: str) -> tuple[Resolution, float]:
        """The final answer of a chain of referrals, and how long it may be cached."""
        assert self._http is not None, "a recursive node has an HTTP client"
        for _ in range(self.config.max_referrals):
            ans = await ask_site(
                self._http, urls, h.text, timeout_s=self.config.referral_timeout_s, query=query
            )
            if ans.code in (ResponseCode.PREFIX_REFERRAL, ResponseCode.SERVICE_REFERRAL):
                sites = [
                    v
                    for v in ans.values
                    if isinstance(v, dict)
                    and v.get("type") == "HS_SITE"
                    and isinstance(v.get("data"), dict)
                    and isinstance(v["data"].get("value"), dict)
                ]
                urls = [u for v in sites for u in site_urls(v["data"]["value"])]
                if not urls:
                    raise UpstreamUnavailable(
                        h.text, [f"{ans.server}: a referral without an HTTP interface"]
                    )
                if ans.prefix:
                    self._routes.put(
                        canonical_prefix(ans.prefix), urls, _min_ttl(sites, self.clock())
                    )
                continue
            values = orjson.dumps(ans.values)
            message = None if ans.code == ResponseCode.SUCCESS else f"answered by {ans.server}"
            ttl = _min_ttl(ans.values, self.clock())
            return Resolution(ans.code, values, message=message), ttl
        raise RecursionTooDeep(h.text, self.config.max_referrals)

    # -- registration -------------------------------------------------------------------------

    def _check_writable(self, h: Handle) -> None:
        if not self.is_local(h):
            raise ServerNotResponsible(h.text, self.prefixes)

    def _new_record(self, values: Sequence[HandleValue]) -> NewRecord:
        search = tuple(
            (v.type.upper(), v.data)
            for v in values
            if v.format == "string"
            and isinstance(v.data, str)
            and v.type.upper() in self.config.search_types
            and v.publicly_readable
        )
        return NewRecord(encode_values(values), all(v.publicly_readable for v in values), search)

    async def record_of(self, values: list[HandleValue]) -> NewRecord:
        """The stored form of a record (secrets hashed): for imports."""
        if len({v.index for v in values}) != len(values):
            raise InvalidValue("an index appears twice")
        return self._new_record(await self._hash_secrets(values))

    async def _hash_secrets(self, values: list[HandleValue]) -> list[HandleValue]:
        out = []
        for v in values:
            if v.type == "HS_SECKEY":
                if v.format != "string" or not isinstance(v.data, str) or not v.data:
                    raise InvalidValue(f"value {v.index}: HS_SECKEY data is a non-empty string")
                if not is_hashed_secret(v.data):
                    v = replace(v, data=await self._off_loop(hash_secret, v.data))
            out.append(v)
        return out

    async def put_values(
        self,
        h: Handle,
        values: list[HandleValue],
        identity: Identity | None,
        *,
        select: Selection = None,
        overwrite: bool = True,
        mint_new_suffix: bool = False,
    ) -> PutResult:
        """PUT /api/handles/{handle}: create, replace, or add/modify selected values."""
        if identity is None:
            raise AuthenticationNeeded()
        if mint_new_suffix:
            if h.suffix and not h.suffix.endswith("/"):
                raise InvalidHandle(h.text, "mintNewSuffix=true needs a handle ending in '/'")
            h = parse_handle(h.text + str(uuid.uuid4()))
            select, overwrite = None, False
        self._check_writable(h)
        values = await self._hash_secrets(values)
        if isinstance(select, frozenset):
            stray = sorted(v.index for v in values if v.index not in select)
            if stray:
                raise InvalidValue(
                    f"value(s) at index {', '.join(map(str, stray))} not named by ?index="
                )
        key = self.key(h)
        now = int(self.clock())
        for _ in range(MAX_CAS_ATTEMPTS):
            cur = await self.store.get(key)
            if cur is None:
                if select is not None:
                    raise HandleNotFound(h.text)
                perms = await admin_permissions(
                    identity,
                    await self._load(self._governing_prefix_handle(h)) or [],
                    self._load,
                    self._key_of_text,
                )
                need = AdminPerm.ADD_DERIVED_PREFIX if h.is_prefix_handle else AdminPerm.ADD_HANDLE
                self._require(identity, perms, need, h)
                new = list(values)
                if not any(v.type == "HS_ADMIN" for v in new):
                    new.append(self._default_admin(identity, new, now))
                if await self.store.put(key, self._new_record(new), expect=None):
                    return PutResult(h.text, created=True)
                continue
            old = {v.index: v for v in decode_values(cur.values)}
            if select is None:
                if not overwrite:
                    raise HandleAlreadyExists(h.text)
                chosen = {v.index: v for v in values}
                removed = [old[i] for i in old if i not in chosen]
            else:
                chosen = {v.index: v for v in values}
                clash = [i for i in chosen if i in old]
                if clash and not overwrite:
                    raise ValueAlreadyExists(h.text, clash)
                removed = []
            added = [v for i, v in chosen.items() if i not in old]
            modified = [v for i, v in chosen.items() if i in old and not v.same_content(old[i])]
            if not (added or modified or removed):
                return PutResult(h.text, created=False)
            need = AdminPerm.NONE
            for v in added:
                need |= AdminPerm.ADD_ADMIN if v.is_admin else AdminPerm.ADD_VALUE
            for v in modified:
                need |= (
                    AdminPerm.MODIFY_ADMIN
                    if v.is_admin or old[v.index].is_admin
                    else (AdminPerm.MODIFY_VALUE)
                )
            for v in removed:
                need |= AdminPerm.REMOVE_ADMIN if v.is_admin else AdminPerm.REMOVE_VALUE
            self._require(
                identity, await self._permissions(identity, list(old.values()), h), need, h
            )
            for v in (*(old[m.index] for m in modified), *removed):
                if not v.permissions & ValuePerm.ADMIN_WRITE:
                    raise InsufficientPermissions(
                        str(identity), h.text, f"admin_write on value {v.index}"
                    )
            result = dict(old)
            for v in removed:
                del result[v.index]
            for v in (*added, *modified):
                result[v.index] = v
            if await self.store.put(
                key, self._new_record(list(result.values())), expect=cur.version
            ):
                return PutResult(h.text, created=False)
        raise ServerTooBusy(f"{h.text}: too many concurrent writers, try again")

    def _default_admin(
        self, identity: Identity, values: Sequence[HandleValue], now: int
    ) -> HandleValue:
        """Handle.Net adds an HS_ADMIN naming the creator when a new handle has none."""
        taken = {v.index for v in values}
        index = next(i for i in range(ADMIN_INDEX, 2**32) if i not in taken)
        ref = AdminRef(identity.handle, identity.index, HANDLE_ADMIN)
        return HandleValue(index, "HS_ADMIN", ref.to_json(), "admin", DEFAULT_TTL, False, now)

    async def delete(
        self, h: Handle, identity: Identity | None, indexes: frozenset[int] | None = None
    ) -> None:
        """DELETE /api/handles/{handle}[?index=...]."""
        if identity is None:
            raise AuthenticationNeeded()
        self._check_writable(h)
        key = self.key(h)
        for _ in range(MAX_CAS_ATTEMPTS):
            cur = await self.store.get(key)
            if cur is None:
                raise HandleNotFound(h.text)
            values = decode_values(cur.values)
            perms = await self._permissions(identity, values, h)
            if not indexes:
                self._require(identity, perms, AdminPerm.DELETE_HANDLE, h)
                if await self.store.delete(key, expect=cur.version):
                    return
                continue
            gone = [v for v in values if v.index in indexes]
            if not gone:
                raise ValuesNotFound(h.text, f"no value at index {', '.join(map(str, indexes))}")
            need = AdminPerm.NONE
            for v in gone:
                need |= AdminPerm.REMOVE_ADMIN if v.is_admin else AdminPerm.REMOVE_VALUE
                if not v.permissions & ValuePerm.ADMIN_WRITE:
                    raise InsufficientPermissions(
                        str(identity), h.text, f"admin_write on value {v.index}"
                    )
            self._require(identity, perms, need, h)
            kept = [v for v in values if v.index not in indexes]
            if await self.store.put(key, self._new_record(kept), expect=cur.version):
                return
        raise ServerTooBusy(f"{h.text}: too many concurrent writers, try again")

    async def list_handles(
        self, prefix: str, identity: Identity | None, *, page: int, page_size: int
    ) -> tuple[int, list[str]]:
        """GET /api/handles?prefix=P: needs LIST_HANDLES on 0.NA/P."""
        parse_prefix(prefix)
        if identity is None:
            raise AuthenticationNeeded("listing handles needs authentication")
        p = canonical_prefix(prefix)
        if p not in self._ours:
            raise ServerNotResponsible(prefix_handle(prefix), self.prefixes)
        ph = parse_handle(prefix_handle(p))
        perms = await admin_permissions(
            identity, await self._load(self.key(ph)) or [], self._load, self._key_of_text
        )
        self._require(identity, perms, AdminPerm.LIST_HANDLES, ph)
        return await self.store.list_keys(p, page * page_size, page_size)

    async def search(self, terms: Sequence[tuple[str, str]], *, limit: int) -> list[str]:
        """Reverse lookup (``/hrls/handles?URL=...``): handles with public values of these
        types matching these patterns (``*`` wildcard); every term must match."""
        if not terms:
            raise InvalidValue("give at least one TYPE=value to search for")
        result: list[str] | None = None
        for type_, pattern in terms:
            t = type_.upper()
            if t not in self.config.search_types:
                raise InvalidValue(
                    f"type {type_!r} is not searchable on this node "
                    f"(searchable: {', '.join(sorted(self.config.search_types))})"
                )
            found = await self.store.search(t, pattern, limit if result is None else 10**9)
            result = found if result is None else [k for k in result if k in set(found)]
        return (result or [])[:limit]

    # -- bootstrap and minting ----------------------------------------------------------------

    async def init_prefix(
        self, prefix: str, *, urls: Sequence[str] = (), secret: str | None = None
    ) -> Credentials:
        """Create the prefix handle ``0.NA/P`` and the admin handle ``P/admin`` with a fresh
        secret key at index 300; the secret is returned once and stored hashed.

        ``0.NA/P``: HS_ADMIN (100) → the group ``200:0.NA/P`` with every permission;
        HS_VLIST (200) listing ``300:P/admin``; HS_SITE (1) of this node when ``urls`` given.
        ``P/admin``: HS_ADMIN (100) → ``200:0.NA/P``; HS_SECKEY (300)."""
        import secrets as _secrets

        parse_prefix(prefix)
        now = int(self.clock())
        ph = prefix_handle(prefix)
        admin = f"{prefix}/admin"
        secret = secret or _secrets.token_urlsafe(24)
        group = AdminRef(ph, GROUP_INDEX, ALL_ADMIN).to_json()
        na_values = [
            HandleValue(ADMIN_INDEX, "HS_ADMIN", group, "admin", DEFAULT_TTL, False, now),
            HandleValue(
                GROUP_INDEX,
                "HS_VLIST",
                [{"handle": admin, "index": SECKEY_INDEX}],
                "vlist",
                DEFAULT_TTL,
                False,
                now,
            ),
        ]
        if urls:
            na_values.append(
                HandleValue(
                    1,
                    "HS_SITE",
                    site_data(urls, description=f"node of {prefix}"),
                    "site",
                    DEFAULT_TTL,
                    False,
                    now,
                )
            )
        admin_values = [
            HandleValue(
                ADMIN_INDEX,
                "HS_ADMIN",
                AdminRef(ph, GROUP_INDEX, HANDLE_ADMIN).to_json(),
                "admin",
                DEFAULT_TTL,
                False,
                now,
            ),
            HandleValue(
                SECKEY_INDEX,
                "HS_SECKEY",
                await self._off_loop(hash_secret, secret),
                "string",
                DEFAULT_TTL,
                False,
                now,
                SECRET_PERMISSIONS,
            ),
        ]
        for text, values in ((ph, na_values), (admin, admin_values)):
            key = self.key(parse_handle(text))
            if not await self.store.put(key, self._new_record(values), expect=None):
                raise HandleAlreadyExists(text)
        return Credentials(f"{SECKEY_INDEX}:{admin}", secret)

    async def put_trusted(self, h: Handle, values: list[HandleValue]) -> None:
        """Write a record without authentication (local administration: the CLI), replacing
        what is there."""
        values = await self._hash_secrets(values)
        key = self.key(h)
        for _ in range(MAX_CAS_ATTEMPTS):
            cur = await self.store.get(key)
            if await self.store.put(
                key, self._new_record(values), expect=None if cur is None else cur.version
            ):
                return
        raise ServerTooBusy(f"{h.text}: too many concurrent writers")

    async def mint(
        self,
        prefix: str,
        kind: str,
        count: int,
        identity: Identity | None,
        *,
        trusted: bool = False,
        fields: Mapping[str, str | None] | None = None,
        date: datetime | None = None,
        values: Sequence[HandleValue] = (),
        on_progress: Callable[[int], Awaitable[None] | None] | None = None,
    ) -> MintResult:
        """Mint ``count`` new identifiers of ``kind`` from its template, each with values
        linking it to its kind, line, equipment and batch (types F5G_KIND, F5G_LINE,
        F5G_EQUIPMENT, F5G_BATCH) plus ``values``, and an HS_ADMIN naming the prefix's
        administrators (``200:0.NA/P``)."""
        parse_prefix(prefix)
        p = canonical_prefix(prefix)
        if p not in self._ours:
            raise ServerNotResponsible(f"{prefix}/...", self.prefixes)
        template = self._templates.get(kind)
        if template is None:
            raise InvalidValue(
                f"no identifier template for {kind!r} (known: {', '.join(sorted(self._templates))})"
            )
        if not 1 <= count <= self.config.max_mint:
            raise InvalidValue(f"count must be 1..{self.config.max_mint}")
        if not trusted:
            if identity is None:
                raise AuthenticationNeeded()
            ph = parse_handle(prefix_handle(p))
            perms = await admin_permissions(
                identity, await self._load(self.key(ph)) or [], self._load, self._key_of_text
            )
            self._require(identity, perms, AdminPerm.ADD_HANDLE, ph)
        fields = dict(fields or {})
        now = int(self.clock())
        when = date or datetime.fromtimestamp(now, UTC)
        rendered = template.render(prefix, fields, when)
        if not rendered.has_seq and count != 1:
            raise InvalidValue(f"the {kind} template has no {{seq}}: it names one identifier")
        probe = parse_handle(rendered.name(10**9) if rendered.has_seq else rendered.head)
        if not self.is_local(probe):
            raise InvalidValue(f"the {kind} template does not name handles under {prefix}")
        record = self._new_record(self._mint_values(prefix, kind, fields, values, now))
        minted: list[str] = []
        while len(minted) < count:
            n = min(self.config.mint_chunk, count - len(minted))
            first = await self.store.reserve(rendered.scope, n) if rendered.has_seq else 0
            names = [rendered.name(first + i) for i in range(n)]
            if self.config.fold_case:
                rows = [(self.key(parse_handle(name)), record) for name in names]
            else:
                head = canonical_prefix(prefix) + "/"
                cut = len(prefix) + 1
                rows = [(head + name[cut:], record) for name in names]
            skipped = set(await self.store.put_many(rows, overwrite=False))
            if skipped and not rendered.has_seq:
                raise HandleAlreadyExists(names[0])
            minted.extend(n_ for n_, (k, _) in zip(names, rows, strict=True) if k not in skipped)
            if on_progress is not None:
                r = on_progress(len(minted))
                if r is not None:
                    await r
        return MintResult(prefix, kind, minted)

    def _mint_values(
        self,
        prefix: str,
        kind: str,
        fields: Mapping[str, str | None],
        extra: Sequence[HandleValue],
        now: int,
    ) -> list[HandleValue]:
        def value(index: int, type_: str, data: str) -> HandleValue:
            return HandleValue(index, type_, data, "string", DEFAULT_TTL, False, now)

        out = [value(1, "F5G_KIND", kind)]
        if fields.get("line"):
            out.append(value(2, "F5G_LINE", str(fields["line"])))
        equipment = fields.get("equipment")
        if equipment:
            eq_template = self._templates.get("equipment")
            data = (
                eq_template.render(prefix, fields, datetime.fromtimestamp(now, UTC)).head
                if eq_template is not None and kind != "equipment"
                else equipment
            )
            out.append(value(3, "F5G_EQUIPMENT", data))
        batch = fields.get("batch")
        if batch:
            out.append(value(4, "F5G_BATCH", batch if "/" in batch else f"{prefix}/{batch}"))
        taken = {v.index for v in out}
        for v in extra:
            if v.index in taken or v.index == ADMIN_INDEX:
                raise InvalidValue(f"value index {v.index} is used by minting (1-4, 100)")
            out.append(replace(v, timestamp=now))
        group = AdminRef(prefix_handle(prefix), GROUP_INDEX, HANDLE_ADMIN).to_json()
        out.append(HandleValue(ADMIN_INDEX, "HS_ADMIN", group, "admin", DEFAULT_TTL, False, now))
        return out


def _min_ttl(values: Iterable[Any], now: float) -> float:
    """The smallest TTL among REST values (absolute TTLs counted from now), default 0."""
    ttls: list[float] = []
    for v in values:
        if isinstance(v, HandleValue):
            ttl, absolute = v.ttl, v.ttl_absolute
        elif isinstance(v, dict) and isinstance(v.get("ttl"), int):
            ttl, absolute = v["ttl"], v.get("ttlType") == 1
        else:
            continue
        ttls.append(ttl - now if absolute else ttl)
    return max(0.0, min(ttls)) if ttls else 0.0
