"""The alarm app on a bus: lifecycle through the consumer, history, restart, flood, shelving."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory5g.apps.alarms import (
    FLOOD_THRESHOLD,
    AlarmService,
    AlarmState,
    AlarmStateError,
    ShelveError,
    UnknownAlarmError,
)
from factory5g.apps.events import EventHub
from factory5g.model.site import Priority
from factory5g.stream import Batch, MemoryBus, now_ns
from tests.apps.alarms.conftest import alarm_site
from tests.helpers import wait_until

RULES = [
    'signal = "m.temp"\nkind = "high"\nlimit = 100\npriority = "high"\nmessage = "too hot"',
    'signal = "m.flow"\nkind = "low"\nlimit = 5\npriority = "low"',
]


async def test_lifecycle_history_and_events_through_the_bus(tmp_path: Path) -> None:
    site = alarm_site(RULES)
    hub = EventHub()
    heard = hub.listen(["alarms"])
    async with MemoryBus() as bus, AlarmService(site, bus, data_dir=tmp_path, events=hub) as svc:
        hot = svc.get("m.temp/high")
        await bus.publish(Batch.of(0, now_ns(), 120.0))
        await wait_until(lambda: hot.state is AlarmState.UNACK_ACTIVE, what="annunciation")
        assert svc.active_ids("m", Priority.HIGH) == ["m.temp/high"]
        assert svc.active_ids("m", Priority.CRITICAL) == []
        await bus.publish(Batch.of(0, now_ns(), 20.0))
        await wait_until(lambda: hot.state is AlarmState.UNACK_RETURNED, what="return")
        svc.acknowledge(["m.temp/high"], "olga", "checked the pyrometer")
        assert hot.state is AlarmState.NORMAL
        with pytest.raises(AlarmStateError, match="it is normal"):
            svc.acknowledge(["m.temp/high"], "olga")
        with pytest.raises(UnknownAlarmError, match=r"did you mean 'm\.temp/high'"):
            svc.get("m.temp/hihg")
    seen = []
    while (e := heard.get_nowait()) is not None:
        seen.append((e["action"], e["state"]))
    assert seen == [
        ("activate", "unacknowledged_active"),
        ("clear", "unacknowledged_returned"),
        ("acknowledge", "normal"),
    ]


async def test_unacknowledged_alarm_survives_a_restart(tmp_path: Path) -> None:
    site = alarm_site(RULES)
    async with MemoryBus() as bus, AlarmService(site, bus, data_dir=tmp_path) as svc:
        svc.evaluate(Batch.of(0, now_ns(), 150.0))
        svc.shelve("m.flow/low", 60, "erik", "sensor being replaced")
    async with MemoryBus() as bus, AlarmService(site, bus, data_dir=tmp_path) as svc:
        hot = svc.get("m.temp/high")
        assert (hot.state, hot.active, hot.value) == (AlarmState.UNACK_ACTIVE, True, 150.0)
        assert svc.get("m.flow/low").state is AlarmState.SHELVED
        # the condition is restored too: a return to normal is a change
        changes = svc.evaluate(Batch.of(0, now_ns(), 10.0))
        assert [c.after for c in changes] == [AlarmState.UNACK_RETURNED]
        history = svc.history.events(alarm="m.temp/high")
        assert [h["action"] for h in history] == ["clear", "activate"]  # newest first
        assert history[1]["value"] == 150.0


async def test_shelving_expires_and_reannunciates_an_active_alarm(tmp_path: Path) -> None:
    site = alarm_site(RULES)
    async with MemoryBus() as bus, AlarmService(site, bus, data_dir=tmp_path) as svc:
        t = now_ns()
        svc.shelve("m.temp/high", 1, "erik")
        svc.evaluate(Batch.of(0, t, 150.0), t)
        assert svc.get("m.temp/high").state is AlarmState.SHELVED
        assert svc.flood()["alarms_per_10min"] == 0  # shelved: not annunciated
        changes = svc.tick(t + 2 * 10**9)
        assert [(c.action.value, c.after) for c in changes] == [
            ("unshelve", AlarmState.UNACK_ACTIVE)
        ]
        assert changes[0].comment == "shelving expired"
        with pytest.raises(ShelveError, match="beyond the maximum"):
            svc.shelve("m.temp/high", 2 * 86400, "erik")
        with pytest.raises(ShelveError, match="not positive"):
            svc.shelve("m.temp/high", 0, "erik")


async def test_flood_metric_counts_annunciations_in_ten_minutes(tmp_path: Path) -> None:
    site = alarm_site(RULES)
    async with MemoryBus() as bus, AlarmService(site, bus, data_dir=tmp_path) as svc:
        t0 = now_ns()
        for i in range(FLOOD_THRESHOLD):
            t = t0 + i * 10**9
            svc.evaluate(Batch.of([0, 0], [t, t + 1], [150.0, 10.0]), t)
        assert svc.flood(t0 + 10 * 10**9) == {
            "alarms_per_10min": FLOOD_THRESHOLD,
            "threshold": FLOOD_THRESHOLD,
            "flood": True,
        }
        assert svc.flood(t0 + 600 * 10**9 + 5 * 10**8)["alarms_per_10min"] == FLOOD_THRESHOLD - 1
        assert svc.flood(t0 + 700 * 10**9)["flood"] is False


async def test_acknowledging_several_is_all_or_nothing(tmp_path: Path) -> None:
    site = alarm_site(RULES)
    async with MemoryBus() as bus, AlarmService(site, bus, data_dir=tmp_path) as svc:
        svc.evaluate(Batch.of(0, now_ns(), 150.0))
        with pytest.raises(AlarmStateError):
            svc.acknowledge(["m.temp/high", "m.flow/low"], "olga")
        assert svc.get("m.temp/high").state is AlarmState.UNACK_ACTIVE


async def test_raised_at_stays_when_acknowledged_and_survives_a_restart(tmp_path: Path) -> None:
    site = alarm_site(RULES)
    t0 = now_ns()
    async with MemoryBus() as bus, AlarmService(site, bus, data_dir=tmp_path) as svc:
        svc.evaluate(Batch.of(0, t0, 150.0))
        hot = svc.get("m.temp/high")
        assert hot.raised_at == hot.since == t0
        svc.acknowledge(["m.temp/high"], "olga")
        assert hot.since > t0  # the last change moved...
        assert hot.raised_at == t0  # ...when it was raised did not
        d = hot.to_dict()
        assert (d["raised_at"], d["limit"], d["deadband"], d["after_s"]) == (t0, 100, 0.0, None)
        assert svc.get("m.flow/low").to_dict()["raised_at"] is None  # never raised
    async with MemoryBus() as bus, AlarmService(site, bus, data_dir=tmp_path) as svc:
        assert svc.get("m.temp/high").raised_at == t0


async def test_a_history_file_without_raised_at_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    site = alarm_site(RULES)
    async with MemoryBus() as bus, AlarmService(site, bus, data_dir=tmp_path) as svc:
        svc.evaluate(Batch.of(0, now_ns(), 150.0))
        path = svc.history.path
    db = sqlite3.connect(path)  # as the version before raised_at wrote it
    db.execute("ALTER TABLE alarm_state DROP COLUMN raised_at")
    db.commit()
    db.close()
    async with MemoryBus() as bus, AlarmService(site, bus, data_dir=tmp_path) as svc:
        hot = svc.get("m.temp/high")
        assert (hot.state, hot.raised_at) == (AlarmState.UNACK_ACTIVE, None)  # not known then
        svc.evaluate(Batch.of(0, now_ns(), 10.0))
        t1 = now_ns()
        svc.evaluate(Batch.of(0, t1, 150.0))
        assert hot.raised_at == t1
