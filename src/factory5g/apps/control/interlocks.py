"""Interlocks of a writable or a method, checked on live values at execution time.

``equipment.signal OP value`` (OP one of == != < <= > >=; ``true``/``false`` for booleans) is a
permissive: it must hold on the signal's latest value, and that value must be of good quality
(a permissive on an uncertain or bad value is not a permissive). An alarm interlock requires
the named equipment to have no active alarm of the given priority or above.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from factory5g.apps.control.table import LatestValues
from factory5g.model import Site
from factory5g.model.site import INTERLOCK_RE, Priority
from factory5g.stream import Quality

__all__ = ["ActiveAlarms", "Interlock", "Interlocks", "compile_interlocks"]

_OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class ActiveAlarms(Protocol):
    """What the control app needs of the alarm app (injected: apps do not import each other)."""

    def active_ids(self, equipment: str, at_least: Priority) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Interlock:
    text: str
    signal: int
    path: str
    op: str
    value: float
    boolean: bool

    def check(self, table: LatestValues) -> str | None:
        """None if it holds, else why not."""
        got = table.get(self.signal)
        if got is None:
            return f"interlock {self.text!r}: {self.path} has no value yet"
        value, _, quality, _ = got
        if quality < Quality.GOOD:
            return f"interlock {self.text!r}: {self.path} is not of good quality (0x{quality:02x})"
        lhs = float(value != 0.0) if self.boolean else value
        if not _OPS[self.op](lhs, self.value):
            shown = ("true" if value != 0.0 else "false") if self.boolean else f"{value:g}"
            return f"interlock {self.text!r} does not hold: {self.path} is {shown}"
        return None


@dataclass(frozen=True, slots=True)
class Interlocks:
    signals: tuple[Interlock, ...]
    alarm_equipment: tuple[str, ...]
    alarm_priority: Priority

    def check(self, table: LatestValues, alarms: ActiveAlarms | None) -> tuple[str, str] | None:
        """None if every interlock holds, else (reason code, why) of the first that does not."""
        for lock in self.signals:
            why = lock.check(table)
            if why is not None:
                return "interlock", why
        if self.alarm_equipment and alarms is not None:
            for eq in self.alarm_equipment:
                active = alarms.active_ids(eq, self.alarm_priority)
                if active:
                    return (
                        "alarm_interlock",
                        f"{eq} has {len(active)} active alarm(s) of priority "
                        f"{self.alarm_priority.value} or higher: {', '.join(active)}",
                    )
        return None


def compile_interlocks(
    site: Site,
    texts: Sequence[str],
    alarm_equipment: Sequence[str] = (),
    alarm_priority: Priority = Priority.HIGH,
) -> Interlocks:
    locks: list[Interlock] = []
    for text in texts:
        m = INTERLOCK_RE.match(text)
        if m is None:  # the schema checked it already
            raise ValueError(f"bad interlock {text!r}")
        info = site.signals.get(m.group("signal"))
        raw = m.group("value")
        boolean = raw in ("true", "false")
        value = float(raw == "true") if boolean else float(raw)
        locks.append(Interlock(text, info.id, info.path, m.group("op"), value, boolean))
    return Interlocks(tuple(locks), tuple(alarm_equipment), alarm_priority)
