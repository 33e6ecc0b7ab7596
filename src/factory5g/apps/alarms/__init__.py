"""Alarms: the site file's ``[[alarm]]`` rules evaluated on every live Batch.

* :mod:`.rules` compiles the rules into numpy arrays (CSR-indexed by signal);
* :mod:`.engine` evaluates a Batch vectorised: high/low limits with deadband, rate of change,
  boolean state, bad quality, stale data, on/off delays;
* :mod:`.lifecycle` is the ISA-18.2 state machine (acknowledge, shelve);
* :mod:`.history` persists changes and states (SQLite);
* :mod:`.service` wires them to the bus, the clock and the event hub.
"""

from factory5g.apps.alarms.engine import AlarmEngine, Transitions
from factory5g.apps.alarms.errors import (
    AlarmError,
    AlarmStateError,
    ShelveError,
    UnknownAlarmError,
)
from factory5g.apps.alarms.lifecycle import Action, Alarm, AlarmChange, AlarmState, next_state
from factory5g.apps.alarms.rules import CompiledRules, compile_rules
from factory5g.apps.alarms.service import FLOOD_THRESHOLD, AlarmService

__all__ = [
    "FLOOD_THRESHOLD",
    "Action",
    "Alarm",
    "AlarmChange",
    "AlarmEngine",
    "AlarmError",
    "AlarmService",
    "AlarmState",
    "AlarmStateError",
    "CompiledRules",
    "ShelveError",
    "Transitions",
    "UnknownAlarmError",
    "compile_rules",
    "next_state",
]
