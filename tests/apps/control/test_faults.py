"""Every transmission error class of IEC 61784-3 between the control app and real devices,
and the reaction the control app defines for it (docs/control.md):

=====================  ================================================================
delay                  confirmed within the deadline, else failed(timeout), never resent
loss (drop)            the adapter's retransmission, or failed; a command is never resent
duplicate              the device sees the same absolute write twice (idempotent); the
                       command executes once; repeated keys are answered from the store
reorder                a stale answer is never taken for the current one
corruption             the device refuses (failed) or the read-back does not confirm
link loss              failed(device); expired commands never executed
=====================  ================================================================
"""

from __future__ import annotations

import asyncio
import time

import pytest

from factory5g.apps.control import CommandState
from tests.apps.control.conftest import Rig
from tests.apps.control.faults import (
    CALL_REQUEST,
    WRITE_REQUEST,
    WRITE_RESPONSE,
    Fault,
    modbus_function,
    opcua_service,
)
from tests.helpers import wait_until

WRITE = modbus_function(16)


async def test_confirmed_write_through_a_clean_channel(rig: Rig) -> None:
    cmd = await rig.command("table.speed_setpoint", 7.5)
    assert cmd.state is CommandState.CONFIRMED, cmd.reason
    assert rig.setpoint() == 7.5
    assert rig.modbus_writes() == 1
    assert (cmd.seq, len(cmd.session)) == (1, 16)
    assert cmd.result.startswith("ok: fc 16")


async def test_delay_within_the_deadline_is_confirmed_beyond_it_fails(rig: Rig) -> None:
    assert rig.mb_proxy is not None
    rig.mb_proxy.to_client.arm(Fault("delay", WRITE, delay_s=0.05))
    cmd = await rig.command("table.speed_setpoint", 3.0, deadline_ms=500)
    assert cmd.state is CommandState.CONFIRMED
    assert cmd.latency_ms is not None
    assert cmd.latency_ms >= 50

    rig.mb_proxy.to_client.arm(Fault("delay", WRITE, delay_s=0.4))
    t = time.monotonic()
    cmd = await rig.command("table.speed_setpoint", 4.0, deadline_ms=100)
    took = time.monotonic() - t
    assert cmd.state is CommandState.FAILED
    assert cmd.reason_code == "timeout"
    assert took < 0.3  # answered at the deadline, not when the device answers
    # the write was sent once and reached the device: the outcome was unknown, not undone
    await wait_until(lambda: rig.setpoint() == 4.0, what="the delayed write")
    assert rig.modbus_writes() == 2


async def test_lost_request_is_retransmitted_by_the_protocol_once(rig: Rig) -> None:
    assert rig.mb_proxy is not None
    drop = rig.mb_proxy.to_server.arm(Fault("drop", WRITE))
    cmd = await rig.command("table.speed_setpoint", 5.0, deadline_ms=1000)
    assert cmd.state is CommandState.CONFIRMED
    assert drop.hits == 1
    assert rig.modbus_writes() == 1  # the lost one never arrived; the retry did
    assert rig.control.executed == 1


async def test_lost_link_fails_and_a_repeat_never_executes_again(rig: Rig) -> None:
    assert rig.mb_proxy is not None
    rig.mb_proxy.to_server.arm(Fault("drop", WRITE, count=10))
    cmd = await rig.command("table.speed_setpoint", 6.0, deadline_ms=1000, key="once")
    assert cmd.state is CommandState.FAILED
    assert cmd.reason_code == "device"
    assert "no answer" in (cmd.reason or "") or "timed out" in (cmd.reason or "")
    rig.mb_proxy.to_server.faults.clear()
    again = await rig.command("table.speed_setpoint", 6.0, key="once")
    assert again.replayed
    assert again.id == cmd.id
    assert again.state is CommandState.FAILED
    assert rig.modbus_writes() == 0
    assert rig.control.executed == 1


async def test_duplicated_request_and_response_execute_one_command(rig: Rig) -> None:
    assert rig.mb_proxy is not None
    rig.mb_proxy.to_server.arm(Fault("duplicate", WRITE))
    rig.mb_proxy.to_client.arm(Fault("duplicate", WRITE))
    cmd = await rig.command("table.speed_setpoint", 9.0)
    assert cmd.state is CommandState.CONFIRMED
    assert rig.setpoint() == 9.0
    # whether the device executed the duplicate too (pymodbus' server may take both frames
    # of one segment or only the first), it carried the same absolute value
    assert rig.modbus_writes() in (1, 2)
    assert rig.control.executed == 1
    # the duplicated answer is not taken for the answer to the next command
    cmd = await rig.command("table.speed_setpoint", 2.0)
    assert cmd.state is CommandState.CONFIRMED
    assert rig.setpoint() == 2.0


async def test_concurrent_repeats_of_one_key_execute_once(rig: Rig) -> None:
    results = await asyncio.gather(
        *(rig.command("table.speed_setpoint", 1.5, key="same") for _ in range(5))
    )
    assert {c.id for c in results} == {results[0].id}
    assert sum(c.replayed for c in results) == 4
    assert rig.modbus_writes() == 1


async def test_reordered_answers_are_not_mistaken(rig: Rig) -> None:
    assert rig.mb_proxy is not None
    # the first answer is held back until after the next message: the retry's answer
    hold = rig.mb_proxy.to_client.arm(Fault("hold", WRITE))
    cmd = await rig.command("table.speed_setpoint", 11.0, deadline_ms=1000)
    assert hold.hits == 1
    assert cmd.state is CommandState.CONFIRMED
    cmd = await rig.command("table.speed_setpoint", 12.0)
    assert cmd.state is CommandState.CONFIRMED
    assert rig.setpoint() == 12.0


async def test_corrupted_function_code_is_refused_by_the_device(rig: Rig) -> None:
    assert rig.mb_proxy is not None
    rig.mb_proxy.to_server.arm(Fault("corrupt", WRITE, offset=7))  # fc 16 → 0xEF
    cmd = await rig.command("table.speed_setpoint", 3.0)
    assert cmd.state is CommandState.FAILED
    assert cmd.reason_code == "device"
    assert rig.setpoint() == 0.0


@pytest.mark.parametrize("rig_options", [{"poll_ms": 50, "confirm": "readback"}])
async def test_corrupted_value_is_caught_by_the_read_back(rig: Rig) -> None:
    assert rig.mb_proxy is not None
    # the second byte of the float32 in the write request: a different value lands
    rig.mb_proxy.to_server.arm(Fault("corrupt", WRITE, offset=-3))
    cmd = await rig.command("table.speed_setpoint", 3.0, deadline_ms=400)
    assert cmd.state is CommandState.FAILED
    assert cmd.reason_code == "timeout"
    assert rig.setpoint() != 3.0
    cmd = await rig.command("table.speed_setpoint", 3.0, deadline_ms=1000)
    assert cmd.state is CommandState.CONFIRMED
    assert str(cmd.result).startswith("read back 3")


async def test_expired_commands_are_never_executed(rig: Rig) -> None:
    late = await rig.command(
        "table.speed_setpoint", 8.0, deadline_ms=50, issued_at_ms=time.time() * 1000 - 100
    )
    assert late.state is CommandState.EXPIRED
    assert late.reason_code == "deadline"
    # a command queued behind a slow one on the same target expires in the queue
    assert rig.mb_proxy is not None
    rig.mb_proxy.to_client.arm(Fault("delay", WRITE, delay_s=0.1))  # < the device timeout
    slow, queued = await asyncio.gather(
        rig.command("table.speed_setpoint", 1.0, deadline_ms=1000),
        rig.command("table.speed_setpoint", 13.0, deadline_ms=50),
    )
    assert slow.state is CommandState.CONFIRMED
    assert queued.state is CommandState.EXPIRED
    assert queued.seq == slow.seq + 1
    assert rig.modbus_writes() == 1
    assert rig.setpoint() == 1.0


async def test_interlock_rejection_names_the_interlock(rig: Rig) -> None:
    await rig.door(False)
    cmd = await rig.command("table.speed_setpoint", 5.0)
    assert cmd.state is CommandState.REJECTED
    assert cmd.reason_code == "interlock"
    assert cmd.reason == (
        "interlock 'guard.door_closed == true' does not hold: guard.door_closed is false"
    )
    assert rig.modbus_writes() == 0
    await rig.door(True)
    assert (await rig.command("table.speed_setpoint", 5.0)).state is CommandState.CONFIRMED


async def test_alarm_interlock_blocks_while_a_high_alarm_is_active(rig: Rig) -> None:
    from factory5g.stream import Batch, now_ns

    sid = rig.site.signals.get("table.motor_current").id
    await rig.bus.publish(Batch.of(sid, now_ns(), 1800.0))
    await wait_until(lambda: rig.alarms.get("table.motor_current/high").active, what="alarm")
    cmd = await rig.command("table.speed_setpoint", 5.0)
    assert cmd.state is CommandState.REJECTED
    assert cmd.reason_code == "alarm_interlock"
    assert "table.motor_current/high" in (cmd.reason or "")
    assert rig.modbus_writes() == 0


async def test_link_cut_during_a_write_fails_it(rig: Rig) -> None:
    assert rig.mb_proxy is not None
    cut = rig.mb_proxy.to_server.arm(Fault("cut", WRITE, count=10))
    cmd = await rig.command("table.speed_setpoint", 5.0)
    assert cmd.state is CommandState.FAILED
    assert cmd.reason_code == "device"
    assert cut.hits >= 1
    assert rig.modbus_writes() == 0
    cut.count = 0  # the link is back: the adapter reconnects, a new command goes through
    await wait_until(lambda: rig.control.adapters["modbus"].stats()["connected"], what="link")
    assert (await rig.command("table.speed_setpoint", 5.0)).state is CommandState.CONFIRMED


# -- OPC UA -----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocols", [("opcua",)])
async def test_opcua_write_call_delay_drop_and_corruption(rig: Rig) -> None:
    assert rig.ua_proxy is not None
    cmd = await rig.command("dev.double", 42.5)
    assert cmd.state is CommandState.CONFIRMED, cmd.reason
    assert cmd.result == "Good"
    assert await rig.ua_value() == 42.5
    call = await rig.command("dev.add", args=(2.0, 3.5))
    assert call.state is CommandState.CONFIRMED, call.reason
    assert call.result == {"status": "Good", "outputs": [5.5]}
    # delay of the answer beyond the deadline: failed(timeout); the write happened
    rig.ua_proxy.to_client.arm(Fault("delay", opcua_service(WRITE_RESPONSE), delay_s=0.3))
    cmd = await rig.command("dev.double", 1.0, deadline_ms=100)
    assert cmd.state is CommandState.FAILED
    assert cmd.reason_code == "timeout"
    await wait_until(
        lambda: rig.ua_proxy is not None and not rig.ua_proxy.to_client.faults[0].count
    )
    # loss of the request: no answer within the deadline; the device never saw it
    rig.ua_proxy.to_server.arm(Fault("drop", opcua_service(WRITE_REQUEST)))
    cmd = await rig.command("dev.double", 77.0, deadline_ms=150)
    assert cmd.state is CommandState.FAILED
    assert cmd.reason_code in ("timeout", "device")
    assert await rig.ua_value() != 77.0
    # a corrupted call request (its type id): the server refuses or drops the channel
    rig.ua_proxy.to_server.arm(Fault("corrupt", opcua_service(CALL_REQUEST), offset=26))
    call = await rig.command("dev.add", args=(1.0, 1.0), deadline_ms=500)
    assert call.state is CommandState.FAILED
    assert rig.control.executed == 5
