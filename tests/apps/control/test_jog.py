"""Hold-to-run: heartbeats keep the value; a lost heartbeat (the operator's 5G link drops)
drives the target to its safe value within the survival time."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from factory5g.apps.control import (
    CommandState,
    ControlService,
    JogNotAllowedError,
    JogOwnerError,
    Principal,
    UnknownJogError,
    UnknownTargetError,
)
from factory5g.model import Role, load_text
from factory5g.stream import MemoryBus
from tests.apps.control.conftest import OPERATOR, Rig, control_site
from tests.helpers import wait_until

SURVIVAL_S = 0.3


async def test_lost_heartbeat_writes_the_safe_value_within_the_survival_time(rig: Rig) -> None:
    jog, cmd = await rig.control.jog("table.speed_setpoint", 4.0, OPERATOR)
    assert jog is not None
    assert cmd.state is CommandState.CONFIRMED
    assert rig.setpoint() == 4.0
    # heartbeats every 50 ms for 0.5 s: longer than the survival time, the value stays
    for _ in range(10):
        await asyncio.sleep(0.05)
        rig.control.heartbeat(jog.id, OPERATOR)
    assert rig.setpoint() == 4.0
    assert jog.ended is None
    last = time.monotonic()  # ... then the link drops: no more heartbeats
    await wait_until(lambda: rig.setpoint() == 0.0, 2, "the safe value at the device")
    took = time.monotonic() - last
    assert took <= SURVIVAL_S, f"safe value after {took * 1e3:.0f} ms"
    assert took >= jog.watchdog_s * 0.9  # not before the watchdog time
    assert jog.ended == "watchdog"
    with pytest.raises(UnknownJogError):
        rig.control.heartbeat(jog.id, OPERATOR)
    kinds = [(e.kind, e.state) for e in rig.control.store.audit()]
    assert ("watchdog", "confirmed") in kinds


async def test_release_writes_the_safe_value_and_only_the_owner_may(rig: Rig) -> None:
    jog, _ = await rig.control.jog("table.speed_setpoint", 6.0, OPERATOR)
    assert jog is not None
    other = Principal("tok-2", "otto", Role.OPERATOR)
    with pytest.raises(JogOwnerError):
        rig.control.heartbeat(jog.id, other)
    await rig.control.release(jog.id, OPERATOR)
    assert jog.ended == "released"
    assert rig.setpoint() == 0.0


async def test_jog_is_refused_when_its_write_is(rig: Rig) -> None:
    await rig.door(False)
    jog, cmd = await rig.control.jog("table.speed_setpoint", 6.0, OPERATOR)
    assert jog is None
    assert cmd.state is CommandState.REJECTED
    assert not rig.control.jogs
    with pytest.raises(UnknownTargetError):
        await rig.control.jog("guard.door_closed", 1.0, OPERATOR)


async def test_jog_needs_a_safe_value_and_a_survival_time(tmp_path: Path) -> None:
    text = control_site(None, None) + '[[control.writable]]\nsignal = "guard.door_closed"\n'
    site = load_text(text)
    async with MemoryBus() as bus, ControlService(site, bus, {}, data_dir=tmp_path) as c:
        with pytest.raises(JogNotAllowedError, match="needs a writable with safe_value"):
            await c.jog("guard.door_closed", 1.0, OPERATOR)


async def test_stopping_the_app_drives_running_jogs_safe(rig: Rig) -> None:
    jog, _ = await rig.control.jog("table.speed_setpoint", 3.0, OPERATOR)
    assert jog is not None
    await rig.control._stop()  # what the runtime's stop does (the fixture's exit is a no-op)
    assert jog.ended == "stopped"
    assert rig.setpoint() == 0.0
