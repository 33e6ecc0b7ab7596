"""Commands: what an operator asked for, and what became of it.

States (pushed on the event hub at each change)::

    accepted ──▶ executing ──▶ confirmed
        │            ├──────▶ rejected(reason)   an interlock did not hold at execution time
        │            ├──────▶ failed(reason)     the device refused, the link failed, or no
        │            │                           confirmation arrived within the deadline
        │            └──────▶ expired            the deadline passed while it waited its turn
        ├──────────────────▶ rejected(reason)    unknown target, role, value out of range
        └──────────────────▶ expired             the deadline had passed on arrival

A command is never executed twice (at most once): its idempotency key is stored (durably)
before the write is sent, a repeated key answers with the stored command, and a command whose
outcome a restart interrupted is marked ``failed(interrupted)``, never executed again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from factory5g.model.site import Role

__all__ = ["Command", "CommandRequest", "CommandState", "Principal", "fingerprint"]


class CommandState(StrEnum):
    ACCEPTED = "accepted"
    EXECUTING = "executing"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    FAILED = "failed"
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        return self not in (CommandState.ACCEPTED, CommandState.EXECUTING)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who asks: an authenticated API token (its id, name and role)."""

    id: str
    name: str
    role: Role


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """``target``: a writable signal path or a method id; ``value`` for a write, ``args`` for a
    call. ``deadline_ms`` counts from ``issued_at_ms`` (client clock, ms since the epoch) when
    given, else from arrival."""

    target: str
    idempotency_key: str
    deadline_ms: float
    value: float | int | bool | None = None
    args: tuple[float | int | bool | str, ...] | None = None
    issued_at_ms: float | None = None


def fingerprint(req: CommandRequest) -> str:
    """What makes two requests the same command (target and payload, not the timing)."""
    body = json.dumps(
        [req.target, req.value, list(req.args) if req.args is not None else None],
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode()).hexdigest()[:32]


@dataclass(slots=True)
class Command:
    id: str
    session: str
    seq: int
    user_id: str
    user: str
    role: str
    target: str
    kind: str  # "write" | "call" | "jog" | "jog_release" | "watchdog"
    payload: Any  # the value written, or the call's arguments
    idempotency_key: str
    fingerprint: str
    received_ns: int
    deadline_ns: int
    state: CommandState = CommandState.ACCEPTED
    reason_code: str | None = None
    reason: str | None = None
    result: Any = None  # the protocol's status, or the method's output arguments
    finished_ns: int | None = None
    replayed: bool = False  # answered from the idempotency store

    @property
    def latency_ms(self) -> float | None:
        if self.finished_ns is None:
            return None
        return (self.finished_ns - self.received_ns) / 1e6

    def to_dict(self) -> dict[str, Any]:
        # Spelled out, not dataclasses.asdict: this is on every command's answer, and asdict
        # deep-copies. The payload and result are JSON values already.
        return {
            "id": self.id,
            "session": self.session,
            "seq": self.seq,
            "user": self.user,
            "role": self.role,
            "target": self.target,
            "kind": self.kind,
            "payload": self.payload,
            "idempotency_key": self.idempotency_key,
            "received_ns": self.received_ns,
            "deadline_ns": self.deadline_ns,
            "state": self.state.value,
            "reason_code": self.reason_code,
            "reason": self.reason,
            "result": self.result,
            "finished_ns": self.finished_ns,
            "replayed": self.replayed,
            "latency_ms": self.latency_ms,
        }
