"""Errors of the control app. A command that was *recorded* (accepted, then rejected, failed or
expired) is not an error: it is a :class:`~factory5g.apps.control.commands.Command` with its
state and reason. These are for requests that never became one, and for jog sessions.

ControlError
├── UnknownTargetError(target, suggestions)      neither a writable signal nor a method
├── IdempotencyConflictError(key, command)       the key was used for a different command
└── JogError(jog)                                a hold-to-run session problem
    ├── JogNotAllowedError(target, why)          the writable has no safe value or survival time
    ├── UnknownJogError(jog)                     no such session (or it has ended)
    └── JogOwnerError(jog, user)                 the session belongs to someone else
"""

from __future__ import annotations

__all__ = [
    "ControlError",
    "IdempotencyConflictError",
    "JogError",
    "JogNotAllowedError",
    "JogOwnerError",
    "UnknownJogError",
    "UnknownTargetError",
]


class ControlError(Exception):
    """Base of the control app's errors."""


class UnknownTargetError(ControlError, KeyError):
    def __init__(self, target: str, suggestions: list[str] | None = None) -> None:
        super().__init__(target)
        self.target = target
        self.suggestions = suggestions or []

    def __str__(self) -> str:
        text = f"{self.target!r} is neither a writable signal nor a method of [control]"
        if self.suggestions:
            text += f"; did you mean {' or '.join(repr(s) for s in self.suggestions)}?"
        return text


class IdempotencyConflictError(ControlError):
    def __init__(self, key: str, command: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was used for another command ({command}): "
            "a new command needs a new key"
        )
        self.key = key
        self.command = command


class JogError(ControlError):
    def __init__(self, jog: str, message: str) -> None:
        super().__init__(message)
        self.jog = jog


class JogNotAllowedError(JogError):
    def __init__(self, target: str, why: str) -> None:
        super().__init__("", f"{target!r} cannot be jogged: {why}")
        self.target = target
        self.why = why


class UnknownJogError(JogError):
    def __init__(self, jog: str) -> None:
        super().__init__(jog, f"no running hold-to-run session {jog!r} (it may have ended)")


class JogOwnerError(JogError):
    def __init__(self, jog: str, user: str) -> None:
        super().__init__(jog, f"hold-to-run session {jog!r} belongs to {user!r}")
        self.user = user
