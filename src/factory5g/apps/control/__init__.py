"""Remote equipment control: commands with deadlines and interlocks, executed at most once,
hold-to-run sessions with a heartbeat watchdog, and a tamper-evident audit log.

The platform is supervisory (ISA-95 levels 2/3). Emergency stop and every other safety
function stay in certified safety hardware (IEC 61508 / IEC 62061): nothing here is one.
"""

from factory5g.apps.control.audit import AuditEntry, ControlStore, Verification, verify
from factory5g.apps.control.commands import Command, CommandRequest, CommandState, Principal
from factory5g.apps.control.errors import (
    ControlError,
    IdempotencyConflictError,
    JogError,
    JogNotAllowedError,
    JogOwnerError,
    UnknownJogError,
    UnknownTargetError,
)
from factory5g.apps.control.interlocks import ActiveAlarms
from factory5g.apps.control.service import ControlService, JogSession, Target
from factory5g.apps.control.table import LatestValues

__all__ = [
    "ActiveAlarms",
    "AuditEntry",
    "Command",
    "CommandRequest",
    "CommandState",
    "ControlError",
    "ControlService",
    "ControlStore",
    "IdempotencyConflictError",
    "JogError",
    "JogNotAllowedError",
    "JogOwnerError",
    "JogSession",
    "LatestValues",
    "Principal",
    "Target",
    "UnknownJogError",
    "UnknownTargetError",
    "Verification",
    "verify",
]
