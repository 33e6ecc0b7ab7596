"""The ISA-18.2 alarm state machine (ANSI/ISA-18.2-2016 §11, Figure 5), one per alarm.

::

            activate                    acknowledge
    NORMAL ───────────▶ UNACK_ACTIVE ───────────────▶ ACK_ACTIVE
      ▲  ▲                  │  ▲                          │
      │  │ acknowledge      │  │ activate                 │ clear
      │  │                  ▼  │                          │
      │  └──────────── UNACK_RETURNED                     │
      └───────────────────────────────────────────────────┘

    any state ──shelve──▶ SHELVED ──unshelve / expiry──▶ UNACK_ACTIVE if active, else NORMAL

``active`` is the process condition after deadband and delays (the engine's output); the state
is what operators see. A shelved alarm follows its condition silently and is annunciated again
when it is unshelved while still active. Each transition is returned as an :class:`AlarmChange`
for the history and the WebSocket; ``annunciated`` marks those that count for the alarm-flood
rate (entering UNACK_ACTIVE).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from factory5g.apps.alarms.errors import AlarmStateError
from factory5g.apps.alarms.rules import RuleInfo

__all__ = ["Action", "Alarm", "AlarmChange", "AlarmState", "next_state"]


class AlarmState(StrEnum):
    NORMAL = "normal"
    UNACK_ACTIVE = "unacknowledged_active"
    ACK_ACTIVE = "acknowledged_active"
    UNACK_RETURNED = "unacknowledged_returned"
    SHELVED = "shelved"


class Action(StrEnum):
    ACTIVATE = "activate"
    CLEAR = "clear"
    ACKNOWLEDGE = "acknowledge"
    SHELVE = "shelve"
    UNSHELVE = "unshelve"


S = AlarmState
_TABLE: dict[tuple[AlarmState, Action], AlarmState] = {
    (S.NORMAL, Action.ACTIVATE): S.UNACK_ACTIVE,
    (S.UNACK_RETURNED, Action.ACTIVATE): S.UNACK_ACTIVE,
    (S.UNACK_ACTIVE, Action.CLEAR): S.UNACK_RETURNED,
    (S.ACK_ACTIVE, Action.CLEAR): S.NORMAL,
    (S.UNACK_ACTIVE, Action.ACKNOWLEDGE): S.ACK_ACTIVE,
    (S.UNACK_RETURNED, Action.ACKNOWLEDGE): S.NORMAL,
    (S.SHELVED, Action.ACTIVATE): S.SHELVED,
    (S.SHELVED, Action.CLEAR): S.SHELVED,
}


def next_state(state: AlarmState, action: Action, active: bool) -> AlarmState | None:
    """The state after ``action`` (``active``: the condition after it), or None when the
    action does not apply (acknowledging a normal alarm, activating an active one...)."""
    if action is Action.SHELVE:
        return S.SHELVED
    if action is Action.UNSHELVE:
        if state is not S.SHELVED:
            return None
        return S.UNACK_ACTIVE if active else S.NORMAL
    return _TABLE.get((state, action))


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """One transition of one alarm, as the history stores it."""

    alarm: str
    ts: int
    action: Action
    before: AlarmState
    after: AlarmState
    active: bool
    value: float | None
    priority: str
    user: str | None = None
    comment: str | None = None
    shelved_until: int | None = None

    @property
    def annunciated(self) -> bool:
        return self.after is S.UNACK_ACTIVE and self.before is not S.UNACK_ACTIVE


@dataclass(slots=True)
class Alarm:
    """One alarm (one rule) and its lifecycle state."""

    info: RuleInfo
    state: AlarmState = S.NORMAL
    active: bool = False
    since: int = 0  # time of the last change
    raised_at: int | None = None  # time the condition last turned on
    value: float | None = None  # at the last activation or clearing
    shelved_until: int | None = None
    acked_by: str | None = None
    ack_comment: str | None = None
    history: list[AlarmChange] = field(default_factory=list, repr=False)

    @property
    def id(self) -> str:
        return self.info.id

    def _apply(
        self,
        action: Action,
        ts: int,
        *,
        active: bool | None = None,
        value: float | None = None,
        user: str | None = None,
        comment: str | None = None,
        shelved_until: int | None = None,
    ) -> AlarmChange | None:
        now_active = self.active if active is None else active
        after = next_state(self.state, action, now_active)
        if after is None:
            return None
        change = AlarmChange(
            self.id,
            ts,
            action,
            self.state,
            after,
            now_active,
            value if value is not None else self.value,
            self.info.rule.priority.value,
            user,
            comment,
            shelved_until,
        )
        self.state = after
        self.active = now_active
        self.since = ts
        if value is not None:
            self.value = value
        return change

    # -- the process --------------------------------------------------------------------------

    def condition(self, active: bool, ts: int, value: float | None) -> AlarmChange | None:
        """The condition turned on or off (the engine's transition)."""
        if active == self.active:
            return None
        action = Action.ACTIVATE if active else Action.CLEAR
        change = self._apply(action, ts, active=active, value=value)
        if change is None:  # an active alarm activated (restored state): track the condition
            self.active = active
        elif active:
            self.acked_by = self.ack_comment = None
        if active:
            self.raised_at = ts
        return change

    # -- operators ----------------------------------------------------------------------------

    def acknowledge(self, ts: int, user: str, comment: str = "") -> AlarmChange:
        change = self._apply(Action.ACKNOWLEDGE, ts, user=user, comment=comment)
        if change is None:
            raise AlarmStateError(self.id, self.state.value, "acknowledge")
        self.acked_by, self.ack_comment = user, comment
        return change

    def shelve(self, ts: int, until: int, user: str, comment: str = "") -> AlarmChange:
        change = self._apply(Action.SHELVE, ts, user=user, comment=comment, shelved_until=until)
        assert change is not None  # shelving applies in every state
        self.shelved_until = until
        return change

    def unshelve(self, ts: int, user: str | None, comment: str = "") -> AlarmChange:
        change = self._apply(Action.UNSHELVE, ts, user=user, comment=comment)
        if change is None:
            raise AlarmStateError(self.id, self.state.value, "unshelve")
        self.shelved_until = None
        return change

    def to_dict(self) -> dict[str, object]:
        r = self.info.rule
        return {
            "id": self.id,
            "signal": self.info.path,
            "equipment": self.info.equipment,
            "kind": r.kind.value,
            "priority": r.priority.value,
            "message": r.message,
            "limit": r.limit,
            "deadband": r.deadband,
            "on_delay_s": r.on_delay_s,
            "off_delay_s": r.off_delay_s,
            "abnormal_state": r.state,  # kind=state: the value that is abnormal
            "after_s": r.after_s,  # kind=stale: seconds without an update
            "unit": self.info.unit,
            "state": self.state.value,
            "active": self.active,
            "since": self.since,
            "raised_at": self.raised_at,
            "value": self.value,
            "shelved_until": self.shelved_until,
            "acknowledged_by": self.acked_by,
            "ack_comment": self.ack_comment,
        }
