"""Commands without faults: roles, values, idempotency across restarts, the audit chain."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from factory5g.apps.control import (
    CommandRequest,
    CommandState,
    ControlService,
    ControlStore,
    IdempotencyConflictError,
    UnknownTargetError,
)
from factory5g.apps.control.audit import GENESIS, chain_hash
from factory5g.model import load_text
from factory5g.stream import MemoryBus
from tests.apps.control.conftest import OPERATOR, VIEWER, Rig, control_site


async def test_role_type_and_range_are_checked_before_anything_is_sent(rig: Rig) -> None:
    denied = await rig.command("table.speed_setpoint", 5.0, who=VIEWER)
    assert (denied.state, denied.reason_code) == (CommandState.REJECTED, "forbidden")
    high = await rig.command("table.speed_setpoint", 15.5)
    assert (high.state, high.reason_code) == (CommandState.REJECTED, "out_of_range")
    assert high.reason == "15.5 is outside table.speed_setpoint's range 0.0..15.0"
    nan = await rig.command("table.speed_setpoint", float("nan"))
    assert nan.reason_code == "bad_value"
    none = await rig.command("table.speed_setpoint", None)
    assert none.reason_code == "bad_value"
    with pytest.raises(UnknownTargetError, match=r"did you mean 'table\.speed_setpoint'"):
        await rig.command("table.speed_setpiont", 5.0)
    assert rig.modbus_writes() == 0
    assert rig.control.executed == 0
    # every attempt is audited, the unknown target too
    states = [(e.target, e.state) for e in rig.control.store.audit()]
    assert ("table.speed_setpiont", "rejected") in states
    assert len(states) == 5


async def test_key_reused_for_another_command_is_refused(rig: Rig) -> None:
    await rig.command("table.speed_setpoint", 5.0, key="k")
    with pytest.raises(IdempotencyConflictError, match="'k' was used for another command"):
        await rig.command("table.speed_setpoint", 6.0, key="k")
    assert rig.setpoint() == 5.0
    assert rig.control.store.audit()[-1].reason == "idempotency key reused"


async def test_keys_persist_across_restarts_and_interrupted_commands_fail(
    tmp_path: Path,
) -> None:
    site = load_text(control_site(5020, None))  # no adapter runs: nothing is sent
    req = CommandRequest("table.speed_setpoint", "k1", 500, value=1)
    async with MemoryBus() as bus, ControlService(site, bus, {}, data_dir=tmp_path) as c:
        first = await c.submit(req, OPERATOR)
        assert first.reason_code == "interlock"  # the door was never seen: no permissive
    # a command the process could not finish (the process died after accepting it)
    with ControlStore(tmp_path / "control.sqlite") as store:
        pending = store.by_key(OPERATOR.id, "k1")
        assert pending is not None
        pending.id, pending.idempotency_key, pending.state = "x" * 32, "k2", CommandState.ACCEPTED
        pending.finished_ns = None
        store.insert(pending, pending.received_ns)
    async with MemoryBus() as bus, ControlService(site, bus, {}, data_dir=tmp_path) as c:
        again = await c.submit(req, OPERATOR)
        assert again.replayed
        assert again.id == first.id
        recovered = c.store.get("x" * 32)
        assert recovered is not None
        assert (recovered.state, recovered.reason_code) == (CommandState.FAILED, "interrupted")
        assert c.store.verify().ok


async def test_the_audit_chain_detects_tampering(rig: Rig) -> None:
    for v in (1.0, 2.0, 3.0):
        await rig.command("table.speed_setpoint", v)
    store = rig.control.store
    v = store.verify()
    assert v.ok
    assert v.entries == 6  # accepted + confirmed per command
    assert v.head == store.head
    entries = store.audit()
    assert entries[0].prev == GENESIS
    assert entries[1].prev == entries[0].hash
    assert chain_hash(entries[0].prev, entries[0].content()) == entries[0].hash
    db: sqlite3.Connection = store.db
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE audit SET user = 'mallory' WHERE seq = 3")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM audit WHERE seq = 3")
    # whoever drops the triggers is caught by the chain
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("UPDATE audit SET payload = '9.0' WHERE seq = 3")
    bad = store.verify()
    assert (bad.ok, bad.first_bad, bad.why) == (False, 3, "content does not match its hash")
    db.execute("UPDATE audit SET payload = '2.0' WHERE seq = 3")
    db.execute("DROP TRIGGER audit_no_delete")
    db.execute("DELETE FROM audit WHERE seq = 4")
    bad = store.verify()
    assert (bad.ok, bad.first_bad) == (False, 5)
    assert bad.why == "entry 4 is missing (found 5)"


async def test_the_chain_is_verified_after_a_recorded_head(rig: Rig) -> None:
    for v in (1.0, 2.0, 3.0):
        await rig.command("table.speed_setpoint", v)
    store = rig.control.store
    anchor = store.head_entry  # recorded elsewhere (a printout, a log server)
    assert anchor[0] == 6
    for v in (4.0, 5.0):
        await rig.command("table.speed_setpoint", v)
    since = store.verify(anchor)
    assert (since.ok, since.entries, since.head) == (True, 4, store.head)  # only the new ones
    whole = store.verify((0, GENESIS))
    assert (whole.ok, whole.entries) == (True, 10)
    assert store.verify((0, "f" * 64)).ok is False

    db: sqlite3.Connection = store.db
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("UPDATE audit SET payload = '9.0' WHERE seq = 8")
    bad = store.verify(anchor)
    assert (bad.ok, bad.first_bad, bad.why) == (False, 8, "content does not match its hash")
    db.execute("UPDATE audit SET payload = '4.0' WHERE seq = 8")
    assert store.verify(anchor).ok
    # the anchored entry itself rewritten, its hash recomputed to look consistent
    e = store.audit(after_seq=5, limit=1)[0]
    forged = chain_hash(e.prev, [*e.content()[:2], "mallory", *e.content()[3:]])
    db.execute("UPDATE audit SET user = 'mallory', hash = ? WHERE seq = 6", [forged])
    bad = store.verify(anchor)
    assert (bad.ok, bad.first_bad, bad.why) == (
        False,
        6,
        "entry 6 no longer has the anchored hash",
    )
    # the log cut below the recorded head: a whole walk cannot tell, the anchor can
    db.execute("DROP TRIGGER audit_no_delete")
    db.execute("DELETE FROM audit WHERE seq >= 5")
    whole = store.verify()
    assert (whole.ok, whole.entries) == (True, 4)  # a valid, shorter chain
    bad = store.verify(anchor)
    assert (bad.ok, bad.first_bad) == (False, 6)
    assert bad.why == "the anchor, entry 6, is gone: the log was cut"
