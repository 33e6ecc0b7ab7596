"""The Handle.Net JSON REST API (server v8+), plus bulk minting, over HTTP.

Routes (all answer ``{"responseCode": N, "handle": "<as requested>", ...}``)::

    GET    /api/handles/{handle}   ?index= (repeatable) &type= (repeatable) &auth= &publicOnly=
    PUT    /api/handles/{handle}   ?index= (repeatable | various) &overwrite= &mintNewSuffix=
    DELETE /api/handles/{handle}   ?index= (repeatable)
    GET    /api/handles?prefix=P&page=0&pageSize=1000       (LIST_HANDLES on 0.NA/P)
    GET    /hrls/handles?URL=...&limit=1000                 reverse lookup: a JSON array
    POST   /api/handles/{prefix}/mint                       bulk minting (ours; not Handle.Net)

Handles travel raw in the path (``/`` not encoded); the path is percent-decoded here, strictly:
invalid UTF-8 is INVALID_HANDLE. Authentication is HTTP Basic with user ``index:handle``
(percent-encoded) and the secret key, checked against HS_SECKEY; HS_ADMIN decides the rest.

:func:`ids_router` returns an ``APIRouter`` to include in any FastAPI app (the service is
found with ``get_service(request)``, by default ``request.app.state.ids``). The routes are
plain Starlette routes: no pydantic model or dependency injection per request.
:class:`HandleFastPath` wraps a whole ASGI app and answers ``GET /api/handles/{handle}``
without query or credentials — the common resolution — before routing, with pre-serialised
bytes straight from the store; served by uvicorn with
:class:`factory5g.ids.protocol.ResolutionProtocol`, it answers them in the HTTP parser callback,
without an ASGI request at all. :func:`create_ids_app` builds the standalone node.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import gc
import logging
import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from factory5g.ids.admin import Identity
from factory5g.ids.errors import (
    IdsError,
    InvalidCredential,
    InvalidHandle,
    InvalidValue,
    ResponseCode,
    http_status,
)
from factory5g.ids.records import HandleValue, parse_values
from factory5g.ids.service import IdsService, Selection
from factory5g.ids.syntax import Handle, handle_from_path, parse_prefix

__all__ = ["HANDLES_PATH", "HandleFastPath", "MintRequest", "create_ids_app", "ids_router"]

log = logging.getLogger(__name__)

HANDLES_PATH = "/api/handles"
_HANDLES_RAW = b"/api/handles/"
_JSON = [(b"content-type", b"application/json")]
DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 100_000
MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_ANSWER_CACHE_BYTES = 32 * 1024 * 1024  # per process: ~40,000 typical answers

ServiceGetter = Callable[[Request], IdsService]


def _default_service(request: Request) -> IdsService:
    svc: IdsService = request.app.state.ids
    return svc


def _json(
    status: int,
    body: dict[str, Any] | list[Any],
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _error(exc: IdsError, handle: str | None, *, resolution: bool = False) -> Response:
    body: dict[str, Any] = {"responseCode": int(exc.code)}
    if handle is not None:
        body["handle"] = handle
    body["message"] = exc.message
    headers = (
        {"WWW-Authenticate": 'Basic realm="handle"'}
        if exc.code == ResponseCode.AUTHENTICATION_NEEDED
        else None
    )
    return _json(http_status(exc.code, resolution=resolution), body, headers)


def _bool(params: list[tuple[str, str]], name: str, default: bool) -> bool:
    found = [v for k, v in params if k == name]
    if not found:
        return default
    v = found[-1].lower()
    if v in ("true", "1", "yes", ""):
        return True
    if v in ("false", "0", "no"):
        return False
    raise InvalidValue(f"{name}={found[-1]!r}: true or false")


def _indexes(params: list[tuple[str, str]], *, various_ok: bool) -> Selection:
    raw = [v for k, v in params if k == "index"]
    if not raw:
        return None
    if "various" in raw:
        if not various_ok:
            raise InvalidValue("index=various is for PUT only")
        return "various"
    out: set[int] = set()
    for v in raw:
        if not v.isdigit() or not 0 < int(v) < 2**32:
            raise InvalidValue(f"index={v!r}: an integer 1..4294967295")
        out.add(int(v))
    return frozenset(out)


def _credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) of a Basic header, both percent-decoded; None without credentials."""
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "handle":
        raise InvalidCredential(
            "TLS client-certificate authentication is not available on this node; "
            "use Basic auth with index:handle and the secret key"
        )
    if scheme != "basic":
        return None  # e.g. the platform's own Bearer token: not a Handle credential
    try:
        decoded = base64.b64decode(rest.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidCredential("malformed Basic authorization header") from None
    user, colon, password = decoded.partition(":")
    if not colon:
        raise InvalidCredential("Basic credentials need user:password")
    return unquote(user), unquote(password)


async def _identity(svc: IdsService, request: Request) -> Identity | None:
    creds = _credentials(request.headers.get("authorization"))
    return None if creds is None else await svc.authenticate(*creds)


def _raw_handle(request: Request) -> bytes:
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode("utf-8")
    return raw.split(b"?", 1)[0][len(_HANDLES_RAW) :]


def _shown(raw: bytes) -> str:
    return unquote(raw.decode("latin-1"), errors="replace")


class MintRequest(BaseModel):
    """Body of ``POST /api/handles/{prefix}/mint``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: str = Field(min_length=1, description="object kind: a template of [ids.templates]")
    count: int = Field(1, ge=1, le=1_000_000)
    line: str | None = None
    area: str | None = None
    cell: str | None = None
    equipment: str | None = None
    batch: str | None = None
    date: dt.date | None = Field(None, description="for {date} in the template; default today")
    values: list[dict[str, Any]] = Field(default_factory=list, description="extra values")
    return_handles: bool = Field(True, alias="returnHandles")


def ids_router(get_service: ServiceGetter = _default_service) -> APIRouter:
    """The Handle REST API as an ``APIRouter`` (mount it without a prefix)."""
    router = APIRouter()

    async def handle_endpoint(request: Request) -> Response:
        raw = _raw_handle(request)
        method = request.method
        params = parse_qsl(request.url.query, keep_blank_values=True)
        shown = _shown(raw)
        svc = get_service(request)
        try:
            mint_new = method == "PUT" and _bool(params, "mintNewSuffix", False)
            h = handle_from_path(raw, allow_empty_suffix=mint_new)
            shown = h.text
            identity = await _identity(svc, request)
            # Starlette routes HEAD with GET: answer it as a GET (the server drops the body),
            # never as a DELETE.
            if method in ("GET", "HEAD"):
                return await _get(svc, h.text, h, params, identity)
            if method == "PUT":
                values = parse_values(_json_body(await request.body()), now=int(svc.clock()))
                result = await svc.put_values(
                    h,
                    values,
                    identity,
                    select=_indexes(params, various_ok=True),
                    overwrite=_bool(params, "overwrite", True),
                    mint_new_suffix=mint_new,
                )
                return _json(
                    201 if result.created else 200,
                    {"responseCode": 1, "handle": result.handle},
                )
            if method == "DELETE":  # never by default: the route admits no other method
                sel = _indexes(params, various_ok=False)
                await svc.delete(h, identity, sel if isinstance(sel, frozenset) else None)
                return _json(200, {"responseCode": 1, "handle": h.text})
        except IdsError as exc:
            return _error(exc, shown, resolution=method in ("GET", "HEAD"))
        except Exception as exc:
            # Still a Handle answer (responseCode 2), and the cause in the log.
            log.exception("%s %s failed", method, shown)
            return _error(IdsError(f"internal error: {type(exc).__name__}"), shown)
        return _error(IdsError(f"method {method} not allowed here"), shown)

    async def list_endpoint(request: Request) -> Response:
        params = parse_qsl(request.url.query, keep_blank_values=True)
        prefix = next((v for k, v in params if k == "prefix"), "")
        svc = get_service(request)
        try:
            if not prefix:
                raise InvalidValue("give ?prefix=P to list the handles of a prefix")
            parse_prefix(prefix)
            page = _int_param(params, "page", 0, 0, 10**9)
            size = _int_param(params, "pageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
            identity = await _identity(svc, request)
            total, handles = await svc.list_handles(prefix, identity, page=page, page_size=size)
        except IdsError as exc:
            resp = _error(exc, None)
            err = orjson.loads(resp.body)
            err["prefix"] = prefix
            return _json(resp.status_code, err, dict(resp.headers))
        body: dict[str, Any] = {
            "responseCode": 1,
            "prefix": prefix,
            "totalCount": str(total),
            "page": page,
            "pageSize": size,
            "handles": handles,
        }
        return _json(200, body)

    async def search_endpoint(request: Request) -> Response:
        params = parse_qsl(request.url.query, keep_blank_values=True)
        svc = get_service(request)
        try:
            limit = _int_param(params, "limit", 1000, 1, MAX_PAGE_SIZE)
            await _identity(svc, request)  # wrong credentials fail even where none are needed
            terms = [(k, v) for k, v in params if k not in ("limit", "prefix")]
            found = await svc.search(terms, limit=limit)
            prefix = next((v for k, v in params if k == "prefix"), None)
            if prefix is not None:
                found = [f for f in found if f.split("/", 1)[0].upper() == prefix.upper()]
        except IdsError as exc:
            return _error(exc, None)
        return _json(200, found)

    async def mint_endpoint(request: Request) -> Response:
        prefix = request.path_params["prefix"]
        svc = get_service(request)
        try:
            try:
                req = MintRequest.model_validate_json(await request.body())
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(x) for x in first["loc"])
                raise InvalidValue(f"mint request: {where}: {first['msg']}") from None
            now = int(svc.clock())
            extra = [HandleValue.from_json(v, now=now) for v in req.values]
            identity = await _identity(svc, request)
            when = (
                datetime(req.date.year, req.date.month, req.date.day, tzinfo=UTC)
                if req.date
                else None
            )
            result = await svc.mint(
                prefix,
                req.kind,
                req.count,
                identity,
                fields={
                    "line": req.line,
                    "area": req.area,
                    "cell": req.cell,
                    "equipment": req.equipment,
                    "batch": req.batch,
                },
                date=when,
                values=extra,
            )
        except IdsError as exc:
            resp = _error(exc, None)
            return resp
        body: dict[str, Any] = {
            "responseCode": 1,
            "prefix": prefix,
            "kind": req.kind,
            "count": len(result.handles),
            "first": result.handles[0] if result.handles else None,
            "last": result.handles[-1] if result.handles else None,
        }
        if req.return_handles:
            body["handles"] = result.handles
        return _json(201, body)

    router.add_route(
        f"{HANDLES_PATH}/{{prefix}}/mint", mint_endpoint, methods=["POST"], include_in_schema=False
    )
    router.add_route(
        f"{HANDLES_PATH}/{{handle:path}}",
        handle_endpoint,
        methods=["GET", "PUT", "DELETE"],
        include_in_schema=False,
    )
    router.add_route(HANDLES_PATH, list_endpoint, methods=["GET"], include_in_schema=False)
    router.add_route("/hrls/handles", search_endpoint, methods=["GET"], include_in_schema=False)
    return router


def _json_body(body: bytes) -> Any:
    if len(body) > MAX_BODY_BYTES:
        raise InvalidValue(f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidValue(f"the body is not JSON: {exc}") from None


def _int_param(params: list[tuple[str, str]], name: str, default: int, lo: int, hi: int) -> int:
    found = [v for k, v in params if k == name]
    if not found or found[-1] == "":
        return default
    v = found[-1]
    if not v.lstrip("-").isdigit() or not lo <= int(v) <= hi:
        raise InvalidValue(f"{name}={v!r}: an integer {lo}..{hi}")
    return int(v)


async def _get(
    svc: IdsService,
    shown: str,
    h: Any,
    params: list[tuple[str, str]],
    identity: Identity | None,
) -> Response:
    sel = _indexes(params, various_ok=False)
    res = await svc.resolve(
        h,
        indexes=sel if isinstance(sel, frozenset) else (),
        types=[v for k, v in params if k == "type"],
        identity=identity,
        public_only=_bool(params, "publicOnly", False),
        authoritative=_bool(params, "auth", False),
    )
    head: dict[str, Any] = {"responseCode": res.code, "handle": shown}
    if res.prefix is not None:
        head["prefix"] = res.prefix
    if res.message is not None:
        head["message"] = res.message
    if res.code in (1, ResponseCode.PREFIX_REFERRAL, ResponseCode.SERVICE_REFERRAL):
        body = orjson.dumps(head)[:-1] + b',"values":' + res.values + b"}"
    else:
        body = orjson.dumps(head)
    return Response(body, http_status(res.code, resolution=True), media_type="application/json")


def _plain_body(h: Handle, values: bytes) -> bytes:
    return b"".join(
        (b'{"responseCode":1,"handle":', orjson.dumps(h.text), b',"values":', values, b"}")
    )


class _AnswerCache:
    """Plain-resolution answers by raw path, least recently used evicted beyond ``max_bytes``;
    emptied whenever the store's change stamp moves (any committed write, any process)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.stamp: bytes | None = None
        self.answers: OrderedDict[bytes, bytes] = OrderedDict()

    def validate(self, stamp: bytes) -> None:
        if stamp != self.stamp:
            self.answers.clear()
            self.size = 0
            self.stamp = stamp

    def get(self, raw: bytes) -> bytes | None:
        body = self.answers.get(raw)
        if body is not None:
            self.answers.move_to_end(raw)
        return body

    def put(self, raw: bytes, body: bytes) -> None:
        cost = len(raw) + len(body)
        if cost > self.max_bytes // 64:
            return  # a huge record would evict too many others
        self.answers[raw] = body
        self.size += cost
        while self.size > self.max_bytes:
            k, v = self.answers.popitem(last=False)
            self.size -= len(k) + len(v)


class HandleFastPath:
    """ASGI middleware: answers plain resolutions (``GET /api/handles/{handle}``, no query
    string, no credentials, every value public) from the store without routing; everything
    else goes to ``app``. ``get_service()`` returns the running service, or None before
    startup.

    :meth:`answer_sync` gives the same answer without awaiting, for
    :class:`factory5g.ids.protocol.ResolutionProtocol`; it keeps the answers it computed
    (up to ``answer_cache_bytes``, 0 for none) for as long as the store's change stamp says
    nothing was written since (:meth:`IdsService.change_stamp_sync`: checked on every call,
    so a write by any worker process is seen by the next resolution in every worker)."""

    def __init__(
        self,
        app: ASGIApp,
        get_service: Callable[[], IdsService | None],
        *,
        answer_cache_bytes: int = DEFAULT_ANSWER_CACHE_BYTES,
    ) -> None:
        self.app = app
        self.get_service = get_service
        self._cache = _AnswerCache(answer_cache_bytes) if answer_cache_bytes > 0 else None

    def answer_sync(self, raw: bytes) -> bytes | None:
        """The body answering ``GET /api/handles/<raw>`` (``raw`` as in the URL, no query,
        no credentials), or None when the ASGI app must answer: not started, a store
        that cannot read synchronously, an invalid or unknown handle, a non-public value,
        a referral."""
        svc = self.get_service()
        if svc is None or not svc.reads_sync:
            return None
        cache = self._cache
        if cache is not None:
            stamp = svc.change_stamp_sync()
            if stamp is None:
                cache = None
            else:
                cache.validate(stamp)  # before the read: an answer is at least this new
                body = cache.get(raw)
                if body is not None:
                    return body
        try:
            h = handle_from_path(raw)
        except InvalidHandle:
            return None
        values = svc.plain_values_sync(h)
        if values is None:
            return None
        body = _plain_body(h, values)
        if cache is not None:
            cache.put(raw, body)
        return body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and not scope["query_string"]
            and scope.get("raw_path", b"").startswith(_HANDLES_RAW)
        ):
            svc = self.get_service()
            if svc is not None and not any(k == b"authorization" for k, _ in scope["headers"]):
                raw: bytes = scope["raw_path"][len(_HANDLES_RAW) :]
                try:
                    h = handle_from_path(raw)
                except InvalidHandle:
                    h = None
                values = await svc.plain_values(h) if h is not None else None
                if values is not None and h is not None:
                    body = _plain_body(h, values)
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 200,
                            "headers": [
                                *_JSON,
                                (b"content-length", str(len(body)).encode("ascii")),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)


def create_ids_app(
    open_service: Callable[[], contextlib.AbstractAsyncContextManager[IdsService]],
    *,
    on_ready: Callable[[IdsService], Awaitable[None] | None] | None = None,
) -> HandleFastPath:
    """The standalone identifier node: the Handle REST API alone, with its own lifespan
    (``open_service()`` opens the store and the service; see
    :func:`factory5g.ids.wiring.open_service`)."""
    holder: list[IdsService] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_service() as svc:
            app.state.ids = svc
            holder.append(svc)
            try:
                if on_ready is not None:
                    r = on_ready(svc)
                    if r is not None:
                        await r
                yield
            finally:
                holder.clear()

    app = FastAPI(
        title="factory5g identifier node",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # No telemetry: an air-gapped plant, and per-request spans cost resolutions.
        telemetry={
            "tracing": False,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "auto_configure": False,
        },
    )
    app.include_router(ids_router())
    return HandleFastPath(app, lambda: holder[0] if holder else None)


def app_from_env() -> HandleFastPath:
    """uvicorn factory for ``factory5g ids serve --workers N``: settings from the environment
    variable ``FACTORY5G_IDS_SETTINGS`` (JSON written by the CLI)."""
    from factory5g.ids.wiring import IdsAppSettings, open_service

    settings = IdsAppSettings.from_json(os.environ["FACTORY5G_IDS_SETTINGS"])

    def tune_gc(_: IdsService) -> None:
        # A process that only serves resolutions allocates few long-lived objects: move what
        # startup made out of the collector's way and collect young objects less often, which
        # trims the latency tail (measured with bench/resolve.py).
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)

    return create_ids_app(lambda: open_service(settings), on_ready=tune_gc)
