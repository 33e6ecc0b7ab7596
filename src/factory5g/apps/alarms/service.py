"""The alarm app: the site's rules evaluated on every live Batch, with lifecycle and history.

``async with AlarmService(site, bus, data_dir=..., events=hub) as alarms`` subscribes to the bus
(BLOCK: every batch is seen), evaluates each Batch vectorised (:mod:`.engine`), drives each
alarm's ISA-18.2 state machine (:mod:`.lifecycle`), records every change in the history
(:mod:`.history`) and publishes it on the event hub (topic ``"alarms"``). A clock tick every
``tick_s`` carries on/off delays and stale-data detection forward, and ends expired shelving.

Alarm-flood metric (ISA-18.2 §16.5; EEMUA 191): annunciations (alarms entering
unacknowledged-active) in the last 10 minutes; 10 or more is a flood.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import math
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from factory5g.aio import cancel_and_wait
from factory5g.apps.alarms.engine import AlarmEngine, Transitions
from factory5g.apps.alarms.errors import ShelveError, UnknownAlarmError
from factory5g.apps.alarms.history import AlarmHistory, StoredRow
from factory5g.apps.alarms.lifecycle import Alarm, AlarmChange, AlarmState
from factory5g.apps.alarms.rules import PRIORITY_RANK, CompiledRules, compile_rules
from factory5g.apps.events import EventHub
from factory5g.model import Site
from factory5g.model.site import Priority
from factory5g.stream import Batch, MemoryBus, MemorySubscription, SlowConsumerPolicy, now_ns

__all__ = ["FLOOD_THRESHOLD", "FLOOD_WINDOW_NS", "AlarmService"]

log = logging.getLogger(__name__)

FLOOD_WINDOW_NS: Final = 600 * 10**9  # ISA-18.2: alarms per 10 minutes
FLOOD_THRESHOLD: Final = 10  # ... per operator: 10 or more in 10 minutes is a flood
SHELVE_MAX_NS: Final = 24 * 3600 * 10**9  # shelving is always time-limited (ISA-18.2 §11.6)


class AlarmService:
    """Alarms of one site. Use as an async context manager; see the module docstring."""

    def __init__(
        self,
        site: Site,
        bus: MemoryBus,
        *,
        data_dir: Path,
        events: EventHub | None = None,
        tick_s: float = 0.1,
        rules: CompiledRules | None = None,
    ) -> None:
        self.site = site
        self.bus = bus
        self.events = events
        self.tick_s = tick_s
        self.rules = rules if rules is not None else compile_rules(site)
        self.engine = AlarmEngine(self.rules, now_ns())
        self.alarms = [Alarm(info) for info in self.rules.info]
        self.by_id = {a.id: a for a in self.alarms}
        self.history = AlarmHistory(data_dir / "alarms.sqlite")
        self.annunciations: deque[int] = deque()
        self.batches = 0
        self.errors = 0
        self._sub: MemorySubscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.history.__enter__()
        try:
            self._restore()
            self._sub = self.bus.subscribe(
                "alarms", maxsize=self.site.file.bus.queue_batches, policy=SlowConsumerPolicy.BLOCK
            )
            self._spawn(self._consume(self._sub), "alarms-evaluate")
            self._spawn(self._clock(), "alarms-tick")
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        if self._sub is not None:
            self._sub.close()
        await cancel_and_wait(self._tasks, what="alarm service")
        self.history.__exit__(None, None, None)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=f"f5g-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _restore(self) -> None:
        """States of the last run: unacknowledged alarms stay so, shelving goes on."""
        for alarm_id, (
            state,
            active,
            since,
            value,
            until,
            by,
            comment,
            raised,
        ) in self.history.states().items():
            alarm = self.by_id.get(alarm_id)
            if alarm is None:
                continue  # the rule left the site file
            alarm.state, alarm.active, alarm.since, alarm.value = state, active, since, value
            alarm.shelved_until, alarm.acked_by, alarm.ack_comment = until, by, comment
            alarm.raised_at = raised
            if active:
                self.engine.restore(alarm.info.index, True, since)

    # -- loops --------------------------------------------------------------------------------

    async def _consume(self, sub: MemorySubscription) -> None:
        async for batch in sub:
            self.batches += 1
            try:
                self.evaluate(batch)
            except Exception:  # one bad batch must not end alarm evaluation
                self.errors += 1
                log.exception("alarm evaluation of %r failed", batch)

    async def _clock(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                self.tick()
            except Exception:
                self.errors += 1
                log.exception("alarm tick failed")

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate(self, batch: Batch, now: int | None = None) -> list[AlarmChange]:
        """Evaluate one Batch now (the consumer loop calls this); the changes it made."""
        return self._apply(self.engine.evaluate(batch, now_ns() if now is None else now))

    def tick(self, now: int | None = None) -> list[AlarmChange]:
        """Delays, stale data and shelving expiry at ``now``; the changes it made."""
        now = now_ns() if now is None else now
        changes = self._apply(self.engine.tick(now), record=False)
        for alarm in self.alarms:
            if alarm.shelved_until is not None and alarm.shelved_until <= now:
                changes.append(alarm.unshelve(now, None, "shelving expired"))
        self._record(changes)
        return changes

    def _apply(self, t: Transitions, *, record: bool = True) -> list[AlarmChange]:
        changes: list[AlarmChange] = []
        for rule, ts, on, value in zip(
            t.rule.tolist(), t.ts.tolist(), t.active.tolist(), t.value.tolist(), strict=True
        ):
            change = self.alarms[rule].condition(
                on, ts, None if math.isnan(value) else float(value)
            )
            if change is not None:
                changes.append(change)
        if record:
            self._record(changes)
        return changes

    def _record(self, changes: list[AlarmChange]) -> None:
        if not changes:
            return
        touched = {c.alarm for c in changes}
        self.history.record(changes, [self._row(self.by_id[a]) for a in sorted(touched)])
        for c in changes:
            if c.annunciated:
                self.annunciations.append(c.ts)
            if self.events is not None:
                self.events.publish(self._event(c))

    @staticmethod
    def _row(a: Alarm) -> StoredRow:
        value = None if a.value is None or not math.isfinite(a.value) else a.value
        return (
            a.id,
            a.state.value,
            int(a.active),
            a.since,
            value,
            a.shelved_until,
            a.acked_by,
            a.ack_comment,
            a.raised_at,
        )

    def _event(self, c: AlarmChange) -> dict[str, Any]:
        alarm = self.by_id[c.alarm]
        return {
            "topic": "alarms",
            "type": "alarm",
            "action": c.action.value,
            "before": c.before.value,
            "user": c.user,
            "comment": c.comment,
            "ts": c.ts,
            **alarm.to_dict(),
        }

    # -- operators ----------------------------------------------------------------------------

    def get(self, alarm_id: str) -> Alarm:
        alarm = self.by_id.get(alarm_id)
        if alarm is None:
            raise UnknownAlarmError(
                alarm_id, difflib.get_close_matches(alarm_id, list(self.by_id), n=3, cutoff=0.6)
            )
        return alarm

    def acknowledge(self, alarm_ids: list[str], user: str, comment: str = "") -> list[AlarmChange]:
        """Acknowledge every alarm of ``alarm_ids`` (all known and acknowledgeable, or none)."""
        alarms = [self.get(a) for a in alarm_ids]
        now = now_ns()
        # check them all first: a request acknowledges all of its alarms or none
        for a in alarms:
            if a.state not in (AlarmState.UNACK_ACTIVE, AlarmState.UNACK_RETURNED):
                a.acknowledge(now, user, comment)  # raises AlarmStateError
        changes = [a.acknowledge(now, user, comment) for a in alarms]
        self._record(changes)
        return changes

    def shelve(self, alarm_id: str, duration_s: float, user: str, comment: str = "") -> AlarmChange:
        alarm = self.get(alarm_id)
        if not duration_s > 0:
            raise ShelveError(alarm_id, f"duration {duration_s} s is not positive")
        if duration_s * 1e9 > SHELVE_MAX_NS:
            raise ShelveError(
                alarm_id, f"{duration_s} s is beyond the maximum of {SHELVE_MAX_NS // 10**9} s"
            )
        now = now_ns()
        change = alarm.shelve(now, now + round(duration_s * 1e9), user, comment)
        self._record([change])
        return change

    def unshelve(self, alarm_id: str, user: str, comment: str = "") -> AlarmChange:
        change = self.get(alarm_id).unshelve(now_ns(), user, comment)
        self._record([change])
        return change

    # -- queries ------------------------------------------------------------------------------

    def flood(self, now: int | None = None) -> dict[str, Any]:
        now = now_ns() if now is None else now
        while self.annunciations and self.annunciations[0] <= now - FLOOD_WINDOW_NS:
            self.annunciations.popleft()
        n = len(self.annunciations)
        return {
            "alarms_per_10min": n,
            "threshold": FLOOD_THRESHOLD,
            "flood": n >= FLOOD_THRESHOLD,
        }

    def active_on(self, equipment: str, at_least: Priority) -> list[Alarm]:
        """Alarms of ``equipment`` whose condition is active (shelved or not) with a priority
        of ``at_least`` or higher: what an alarm interlock asks."""
        rank = PRIORITY_RANK[at_least]
        return [
            a
            for a in self.alarms
            if a.active
            and a.info.equipment == equipment
            and PRIORITY_RANK[a.info.rule.priority] >= rank
        ]

    def active_ids(self, equipment: str, at_least: Priority) -> list[str]:
        """Ids of :meth:`active_on` (the control app's alarm interlock)."""
        return [a.id for a in self.active_on(equipment, at_least)]

    def stats(self) -> dict[str, Any]:
        states: dict[str, int] = {s.value: 0 for s in AlarmState}
        for a in self.alarms:
            states[a.state.value] += 1
        return {
            "rules": len(self.alarms),
            "batches": self.batches,
            "samples": self.engine.samples,
            "errors": self.errors,
            "states": states,
            "flood": self.flood(),
            "time": time.time(),
        }
