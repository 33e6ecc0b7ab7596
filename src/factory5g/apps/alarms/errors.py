"""Errors of the alarm app.

AlarmError
├── UnknownAlarmError(alarm_id, suggestions)     no alarm has this id
├── AlarmStateError(alarm_id, state, action)     the action does not apply in this state
│                                                (acknowledge a normal alarm, unshelve an
│                                                alarm that is not shelved)
└── ShelveError(alarm_id, why)                   a shelve request that cannot be honoured
                                                 (expiry in the past or beyond the maximum)
"""

from __future__ import annotations

__all__ = ["AlarmError", "AlarmStateError", "ShelveError", "UnknownAlarmError"]


class AlarmError(Exception):
    """Base of the alarm app's errors."""


class UnknownAlarmError(AlarmError, KeyError):
    def __init__(self, alarm_id: str, suggestions: list[str] | None = None) -> None:
        super().__init__(alarm_id)
        self.alarm_id = alarm_id
        self.suggestions = suggestions or []

    def __str__(self) -> str:
        text = f"unknown alarm {self.alarm_id!r}"
        if self.suggestions:
            text += f"; did you mean {' or '.join(repr(s) for s in self.suggestions)}?"
        return text


class AlarmStateError(AlarmError):
    def __init__(self, alarm_id: str, state: str, action: str) -> None:
        super().__init__(f"cannot {action} alarm {alarm_id!r}: it is {state}")
        self.alarm_id = alarm_id
        self.state = state
        self.action = action


class ShelveError(AlarmError):
    def __init__(self, alarm_id: str, why: str) -> None:
        super().__init__(f"cannot shelve alarm {alarm_id!r}: {why}")
        self.alarm_id = alarm_id
        self.why = why
