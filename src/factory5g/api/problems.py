"""RFC 9457 problem details: every error the API returns is ``application/problem+json``."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from factory5g.model import UnknownSignalError
from factory5g.store.base import StoreError, StoreQueryError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """Raise from a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        type: str = "about:blank",
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.type = type
        self.headers = headers
        self.extra = extra


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    title: str | None = None,
    type: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = problem_body(request.url.path, status, detail, title=title, type=type, **extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def problem_body(
    instance: str,
    status: int,
    detail: str,
    *,
    title: str | None = None,
    type: str = "about:blank",
    **extra: Any,
) -> dict[str, Any]:
    """The problem document (RFC 9457) of ``instance`` (the request's path)."""
    return {
        "type": type,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
        **extra,
    }


def problem_of(exc: Problem, instance: str) -> JSONResponse:
    """``exc`` as its response, outside FastAPI's exception handlers (an ASGI fast path)."""
    body = problem_body(
        instance, exc.status, exc.detail, title=exc.title, type=exc.type, **exc.extra
    )
    return JSONResponse(body, status_code=exc.status, media_type=PROBLEM_JSON, headers=exc.headers)


def install(app: FastAPI) -> None:
    """Route every error through a problem document."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            request,
            exc.status,
            exc.detail,
            title=exc.title,
            type=exc.type,
            headers=exc.headers,
            **exc.extra,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such resource: {request.url.path}"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        headers = dict(exc.headers) if exc.headers else None
        return problem_response(request, exc.status_code, detail, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()
        ]
        parts = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in errors]
        return problem_response(request, 422, "; ".join(parts), errors=errors)

    @app.exception_handler(UnknownSignalError)
    async def _unknown_signal(request: Request, exc: UnknownSignalError) -> JSONResponse:
        return problem_response(request, 404, str(exc), suggestions=exc.suggestions)

    @app.exception_handler(StoreQueryError)
    async def _bad_query(request: Request, exc: StoreQueryError) -> JSONResponse:
        return problem_response(request, 400, str(exc))

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError) -> JSONResponse:
        log.error("store error on %s: %s", request.url.path, exc)
        return problem_response(request, 503, f"the store cannot answer: {exc}")
