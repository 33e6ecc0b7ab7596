"""``/api/v1/commands`` and ``/api/v1/jog``: remote equipment control (see docs/control.md).

A command answers when it has ended: ``200`` with the command when it is ``confirmed``, else a
problem document carrying the command (``command``) and its ``reason_code``:

==========================  ======  =========================================================
state (reason_code)         status  meaning
==========================  ======  =========================================================
rejected (unknown_target)   404     neither a writable signal nor a method
rejected (forbidden)        403     the token's role is below the target's
rejected (bad_value,        422     not of the signal's type, not finite, outside min..max
out_of_range)
rejected (interlock,        409     a permissive did not hold on live values at execution
alarm_interlock)
expired (deadline)          409     the deadline passed before execution: never executed
failed (device)             502     the device or the link refused or broke the write
failed (timeout, readback)  504     no confirmation within the deadline (outcome unknown)
==========================  ======  =========================================================

A repeated idempotency key answers with the stored command (same status) and the header
``Idempotent-Replayed: true``; a key reused for a different command is a 422.

:class:`CommandFastPath` answers ``POST /api/v1/commands`` in front of FastAPI when the request
is plainly valid (a bearer token, a JSON body CommandBody would take as it is): no routing,
dependency injection or model validation (docs/control.md, Benchmark). Anything
else (no or a bad token, a body to coerce or refuse, the control app not running) goes to the
route below, which gives the same answers with FastAPI's messages.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final

import orjson
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from factory5g.api.deps import RuntimeDep, Viewer
from factory5g.api.problems import Problem, problem_of
from factory5g.api.tokens import TokenInfo, TokenStore
from factory5g.apps.control import (
    Command,
    CommandRequest,
    CommandState,
    ControlService,
    IdempotencyConflictError,
    JogNotAllowedError,
    JogOwnerError,
    Principal,
    UnknownJogError,
    UnknownTargetError,
)
from factory5g.model import Role
from factory5g.runtime import Runtime

router = APIRouter(tags=["control"])

_STATUS = {
    "unknown_target": 404,
    "forbidden": 403,
    "bad_value": 422,
    "out_of_range": 422,
    "conflict": 422,
    "interlock": 409,
    "alarm_interlock": 409,
    "deadline": 409,
    "device": 502,
    "timeout": 504,
    "readback": 504,
    "interrupted": 502,
}


class CommandBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str = Field(description="a writable signal path or a method id of [control]")
    value: float | int | bool | None = Field(None, description="the value to write")
    args: list[float | int | bool | str] | None = Field(None, description="method arguments")
    deadline_ms: float = Field(gt=0, le=60_000, description="from issued_at_ms, or arrival")
    idempotency_key: str = Field(min_length=1, max_length=200)
    issued_at_ms: float | None = Field(None, description="client clock, ms since the epoch")


class JogBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str
    value: float | int | bool
    deadline_ms: float = Field(1000.0, gt=0, le=60_000)


def control_of(rt: Runtime) -> ControlService:
    if rt.control is None:
        raise Problem(503, "the control app is not running")
    return rt.control


def principal(who: TokenInfo) -> Principal:
    return Principal(who.id, who.name, who.role)


def command_problem(cmd: Command) -> Problem:
    """The problem answering a command that did not end ``confirmed``."""
    return Problem(
        _STATUS.get(cmd.reason_code or "", 409),
        cmd.reason or cmd.state.value,
        title=f"Command {cmd.state.value}",
        headers={"Idempotent-Replayed": "true"} if cmd.replayed else None,
        state=cmd.state.value,
        reason_code=cmd.reason_code,
        command=cmd.to_dict(),
    )


def command_answer(cmd: Command, response: Response) -> dict[str, Any]:
    """The command as the answer: 200 when confirmed, else a problem with the command."""
    if cmd.state is not CommandState.CONFIRMED:
        raise command_problem(cmd)
    if cmd.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return cmd.to_dict()


async def run_command(control: ControlService, req: CommandRequest, who: Principal) -> Command:
    """``control.submit``; the refusals that are not a stored command as problems."""
    try:
        return await control.submit(req, who)
    except UnknownTargetError as exc:
        raise Problem(
            404, str(exc), reason_code="unknown_target", suggestions=exc.suggestions
        ) from None
    except IdempotencyConflictError as exc:
        raise Problem(422, str(exc), reason_code="conflict", command_id=exc.command) from None


def confirmed_headers(cmd: Command, length: int) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % length)]
    if cmd.replayed:
        headers.append((b"idempotent-replayed", b"true"))
    return headers


@router.get("/control/targets", summary="What may be commanded, with its guards")
async def targets(rt: RuntimeDep, _: Viewer) -> list[dict[str, Any]]:
    return [t.to_dict() for t in control_of(rt).targets.values()]


@router.post(
    "/commands",
    summary="Execute a command: write a signal or call a method (at most once)",
    responses={200: {"description": "confirmed"}},
)
async def submit(body: CommandBody, rt: RuntimeDep, who: Viewer) -> Response:
    req = CommandRequest(
        body.target,
        body.idempotency_key,
        body.deadline_ms,
        value=body.value,
        args=tuple(body.args) if body.args is not None else None,
        issued_at_ms=body.issued_at_ms,
    )
    cmd = await run_command(control_of(rt), req, principal(who))
    if cmd.state is not CommandState.CONFIRMED:
        raise command_problem(cmd)
    content = orjson.dumps(cmd.to_dict())  # bytes, no response model to validate it against
    response = Response(content, media_type="application/json")
    if cmd.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@router.get("/commands", summary="Recent commands, newest first")
async def list_commands(
    rt: RuntimeDep,
    _: Viewer,
    target: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[dict[str, Any]]:
    return [c.to_dict() for c in control_of(rt).store.commands(limit=limit, target=target)]


@router.get("/commands/{command_id}", summary="One command")
async def get_command(command_id: str, rt: RuntimeDep, _: Viewer) -> dict[str, Any]:
    cmd = control_of(rt).store.get(command_id)
    if cmd is None:
        raise Problem(404, f"no command {command_id!r}")
    return cmd.to_dict()


# -- hold-to-run ------------------------------------------------------------------------------


@router.post("/jog", status_code=201, summary="Start hold-to-run: write, then send heartbeats")
async def start_jog(
    body: JogBody, rt: RuntimeDep, who: Viewer, response: Response
) -> dict[str, Any]:
    control = control_of(rt)
    try:
        jog, cmd = await control.jog(
            body.target, body.value, principal(who), deadline_ms=body.deadline_ms
        )
    except UnknownTargetError as exc:
        raise Problem(404, str(exc), suggestions=exc.suggestions) from None
    except JogNotAllowedError as exc:
        raise Problem(422, str(exc)) from None
    if jog is None:
        command_answer(cmd, response)  # raises: the write was not confirmed
        raise AssertionError("unreachable")
    return {"jog": jog.to_dict(), "command": cmd.to_dict()}


@router.get("/jog", summary="Running hold-to-run sessions")
async def list_jogs(rt: RuntimeDep, _: Viewer) -> list[dict[str, Any]]:
    return [j.to_dict() for j in control_of(rt).jogs.values()]


@router.post("/jog/{jog_id}/heartbeat", summary="Keep a hold-to-run session alive")
async def heartbeat(jog_id: str, rt: RuntimeDep, who: Viewer) -> dict[str, Any]:
    try:
        return control_of(rt).heartbeat(jog_id, principal(who)).to_dict()
    except UnknownJogError as exc:
        raise Problem(404, str(exc)) from None
    except JogOwnerError as exc:
        raise Problem(403, str(exc)) from None


@router.delete("/jog/{jog_id}", summary="Release: write the safe value and end the session")
async def release(jog_id: str, rt: RuntimeDep, who: Viewer) -> dict[str, Any]:
    try:
        return (await control_of(rt).release(jog_id, principal(who))).to_dict()
    except UnknownJogError as exc:
        raise Problem(404, str(exc)) from None
    except JogOwnerError as exc:
        raise Problem(403, str(exc)) from None


# -- the fast path ----------------------------------------------------------------------------

_FIELDS: Final = frozenset(CommandBody.model_fields)
MAX_FAST_BODY: Final = 65_536  # bytes; a larger body goes to FastAPI


def _number(v: object) -> bool:
    """A JSON number or boolean CommandBody keeps as it is (finite)."""
    return type(v) is bool or _real(v) is not None


def _real(v: object) -> float | None:
    """``v`` as a float when it is a finite JSON number (not a boolean), else None."""
    if type(v) is int:
        return float(v)
    if type(v) is float and math.isfinite(v):
        return v
    return None


def fast_request(raw: bytes) -> CommandRequest | None:
    """The request the JSON ``raw`` makes when CommandBody would take it unchanged; None for
    anything it would coerce (a number in a string...) or refuse (FastAPI answers those)."""
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(d) is not dict or not d.keys() <= _FIELDS:
        return None
    target, key = d.get("target"), d.get("idempotency_key")
    if type(target) is not str or type(key) is not str or not 1 <= len(key) <= 200:
        return None
    deadline = _real(d.get("deadline_ms"))
    if deadline is None or not 0 < deadline <= 60_000:
        return None
    value, args, issued = d.get("value"), d.get("args"), d.get("issued_at_ms")
    if value is not None and not _number(value):
        return None
    if args is not None and (
        type(args) is not list or not all(type(a) is str or _number(a) for a in args)
    ):
        return None
    issued_ms = _real(issued)
    if issued is not None and issued_ms is None:
        return None
    return CommandRequest(
        target,
        key,
        deadline,
        value=value,
        args=tuple(args) if args is not None else None,
        issued_at_ms=issued_ms,
    )


def _bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The one ``Authorization: Bearer`` token and a JSON content type (or none), else None."""
    token = None
    for k, v in headers:
        if k == b"authorization":
            scheme, _, param = v.decode("latin-1").partition(" ")
            if token is not None or scheme.lower() != "bearer" or not param:
                return None
            token = param
        elif k == b"content-type" and v.split(b";", 1)[0].strip().lower() != b"application/json":
            return None
    return token


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """(the body, complete): incomplete when over MAX_FAST_BODY or the client went away."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > MAX_FAST_BODY:
            return b"".join(chunks), False


def _replay(body: bytes, complete: bool, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """``receive`` with ``body`` (read already) given again first, and the rest after it."""
    given = False

    async def again() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": not complete}

    return again


class CommandFastPath:
    """ASGI middleware: ``POST <path>`` answered without FastAPI when plainly valid (see the
    module docstring); ``app.add_middleware(CommandFastPath, path=...)``."""

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self.path = path
        self.answered = 0  # requests the fast path answered (the rest went to FastAPI)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != self.path
            or scope["method"] != "POST"
            or scope["query_string"]
        ):
            await self.app(scope, receive, send)
            return
        body, complete = await _read_body(receive)
        if complete and await self._answer(scope, body, receive, send):
            self.answered += 1
            return
        await self.app(scope, _replay(body, complete, receive), send)

    async def _answer(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> bool:
        state = scope["app"].state
        rt: Runtime | None = getattr(state, "runtime", None)
        tokens: TokenStore | None = getattr(state, "tokens", None)
        if rt is None or tokens is None or rt.control is None:
            return False
        token = _bearer(scope["headers"])
        info = tokens.verify(token) if token is not None else None
        if info is None or not info.role.allows(Role.VIEWER):
            return False
        req = fast_request(body)
        if req is None:
            return False
        try:
            cmd = await run_command(rt.control, req, principal(info))
            if cmd.state is not CommandState.CONFIRMED:
                raise command_problem(cmd)
        except Problem as exc:
            await problem_of(exc, scope["path"])(scope, receive, send)
            return True
        content = orjson.dumps(cmd.to_dict())
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": confirmed_headers(cmd, len(content)),
            }
        )
        await send({"type": "http.response.body", "body": content})
        return True
