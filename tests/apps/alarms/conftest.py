"""Sites and a reference evaluator for the alarm tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from factory5g.model import Site, load_text

S = 10**9


def alarm_site(rules: Sequence[str], signals: Sequence[str] = ("temp", "door", "flow")) -> Site:
    """Equipment ``m`` with float signals (``door`` is bool) and the given [[alarm]] bodies."""
    lines = ["[site]", 'name = "alarms"', 'prefix = "88.1"', "[[equipment]]", 'id = "m"']
    lines += ['area = "a"', 'line = "l"']
    for s in signals:
        lines += ["  [[equipment.signal]]", f'  name = "{s}"']
        if s == "door":
            lines.append('  type = "bool"')
    for r in rules:
        lines += ["[[alarm]]", r]
    return load_text("\n".join(lines) + "\n")


@dataclass
class RefRule:
    kind: str
    limit: float
    deadband: float
    on_ns: int
    off_ns: int
    state: bool = True


def reference(
    rule: RefRule, samples: Sequence[tuple[int, float, int]], t0: int = 0
) -> list[tuple[int, bool]]:
    """Transitions of one rule over time-ordered samples, one sample at a time (the
    specification the vectorised engine must match)."""
    cond, since, active = False, t0, False
    prev: tuple[int, float] | None = None
    out: list[tuple[int, bool]] = []

    def due(t: int) -> None:
        nonlocal active
        delay = rule.on_ns if cond else rule.off_ns
        if cond != active and since + delay <= t:
            active = cond
            out.append((since + delay, cond))

    for t, v, q in samples:
        due(t)
        usable = q >= 0x40 and v == v
        set_ = reset = False
        if rule.kind == "high" and usable:
            set_, reset = v > rule.limit, v <= rule.limit - rule.deadband
        elif rule.kind == "low" and usable:
            set_, reset = v < rule.limit, v >= rule.limit + rule.deadband
        elif rule.kind == "state" and usable:
            set_ = (v != 0) == rule.state
            reset = not set_
        elif rule.kind == "bad_quality":
            set_, reset = not usable, usable
        elif rule.kind == "rate" and usable and prev is not None:
            pt, pv = prev
            if pv == pv and t > pt:
                rate = abs(v - pv) / (t - pt) * 1e9
                set_, reset = rate > rule.limit, rate <= rule.limit - rule.deadband
        prev = (t, v)
        new = True if set_ else False if reset else cond
        if new != cond:
            cond, since = new, t
    if samples:
        due(samples[-1][0])
    return out
