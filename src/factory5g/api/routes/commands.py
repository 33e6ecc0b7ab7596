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
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from factory5g.api.deps import RuntimeDep, Viewer
from factory5g.api.problems import Problem
from factory5g.api.tokens import TokenInfo
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


def command_answer(cmd: Command, response: Response) -> dict[str, Any]:
    """The command as the answer: 200 when confirmed, else a problem with the command."""
    if cmd.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    body = cmd.to_dict()
    if cmd.state is CommandState.CONFIRMED:
        return body
    status = _STATUS.get(cmd.reason_code or "", 409)
    headers = {"Idempotent-Replayed": "true"} if cmd.replayed else None
    raise Problem(
        status,
        cmd.reason or cmd.state.value,
        title=f"Command {cmd.state.value}",
        headers=headers,
        state=cmd.state.value,
        reason_code=cmd.reason_code,
        command=body,
    )


@router.get("/control/targets", summary="What may be commanded, with its guards")
async def targets(rt: RuntimeDep, _: Viewer) -> list[dict[str, Any]]:
    return [t.to_dict() for t in control_of(rt).targets.values()]


@router.post(
    "/commands",
    summary="Execute a command: write a signal or call a method (at most once)",
    responses={200: {"description": "confirmed"}},
)
async def submit(body: CommandBody, rt: RuntimeDep, who: Viewer, response: Response) -> Response:
    control = control_of(rt)
    req = CommandRequest(
        body.target,
        body.idempotency_key,
        body.deadline_ms,
        value=body.value,
        args=tuple(body.args) if body.args is not None else None,
        issued_at_ms=body.issued_at_ms,
    )
    try:
        cmd = await control.submit(req, principal(who))
    except UnknownTargetError as exc:
        raise Problem(
            404, str(exc), reason_code="unknown_target", suggestions=exc.suggestions
        ) from None
    except IdempotencyConflictError as exc:
        raise Problem(422, str(exc), reason_code="conflict", command_id=exc.command) from None
    if cmd.state is CommandState.CONFIRMED:
        # The hot path: the body as bytes (orjson), no response model to validate it against.
        return Response(
            orjson.dumps(cmd.to_dict()),
            headers={"Idempotent-Replayed": "true"} if cmd.replayed else None,
            media_type="application/json",
        )
    command_answer(cmd, response)  # raises the problem
    raise AssertionError("unreachable")


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
