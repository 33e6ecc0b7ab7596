"""A command through Sparkplug DCMD, end to end: the steel site with its run-out table bound
through a Sparkplug edge node instead of Modbus, run by the Runtime with its simulator; the
command goes control service → host → DCMD → simulated edge node → plant, and is confirmed by
the plant's next DDATA reading the set point back."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

from factory5g.apps.control import CommandRequest, CommandState, ControlService
from factory5g.connect.mqtt import MqttClient, MqttOptions
from factory5g.connect.sparkplug.payload import decode_payload
from factory5g.model import Site, load_text
from factory5g.runtime import Runtime
from factory5g.stream import MemorySubscription, Quality
from tests.apps.control.conftest import OPERATOR
from tests.helpers import steel_text, wait_until

TABLE = "roller_table"
SETPOINT = f"{TABLE}.speed_setpoint"
DCMD = f"spBv1.0/hot-mill/DCMD/ue-table-plc/{TABLE}"
MODBUS_LINE = re.compile(
    r'^(\s*)binding = \{ kind = "modbus", device = "table-plc", .* \}\n'
    r'(\s*sim = \{ model = "conveyor", output = "(\w+)" \})$',
    re.MULTILINE,
)


def sparkplug_table_site() -> Site:
    """The steel template, its run-out table's five signals bound through Sparkplug again."""
    text, n = MODBUS_LINE.subn(
        lambda m: (
            f'{m[1]}binding = {{ kind = "sparkplug", group = "hot-mill", edge = "ue-table-plc", '
            f'device = "{TABLE}", metric = "{m[3]}" }}\n{m[2]}'
        ),
        steel_text(),
    )
    assert n == 5, f"the template's run-out table has {n} Modbus bindings, 5 were expected"
    site = load_text(text, "steel-sparkplug-table.toml")
    assert site.signals.get(SETPOINT).binding == "sparkplug"
    return site


@contextlib.asynccontextmanager
async def dcmd_observer(port: int) -> AsyncIterator[list[float]]:
    """The values of every DCMD sent to the run-out table, as the broker delivers them."""
    seen: list[float] = []
    options = MqttOptions(host="127.0.0.1", port=port, client_id="test-dcmd-observer")
    async with MqttClient(options) as client:
        await client.subscribe([(DCMD, 0)])

        async def collect() -> None:
            async for messages in client.batches():
                for msg in messages:
                    metrics = decode_payload(msg.payload).metrics
                    seen.extend(float(m.value) for m in metrics if isinstance(m.value, float))

        task = asyncio.create_task(collect(), name="test-dcmd-observer")
        try:
            yield seen
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_command_through_sparkplug_dcmd_is_confirmed_by_read_back(tmp_path: Path) -> None:
    site = sparkplug_table_site()
    sid = site.signals.get(SETPOINT).id
    door = site.signals.get("guard.door_closed").id
    async with Runtime(site, data_dir=tmp_path, sim_rate_hz=20) as rt:
        assert rt.modbus is None  # nothing of the table goes through Modbus any more
        assert rt.broker is not None
        assert rt.sim is not None
        assert rt.control is not None
        control: ControlService = rt.control
        sub = rt.bus.subscribe("test", maxsize=100_000)
        async with dcmd_observer(rt.broker.port) as dcmds:
            # the interlock: the fence door closed, as the control table has it from DDATA
            await wait_until(
                lambda: (got := control.table.get(door)) is not None and got[0] == 1.0,
                15,
                "the door closed in the control table",
            )
            await wait_until(lambda: control.table.get(sid) is not None, 15, "a set point value")
            before = control.table.get(sid)
            assert before is not None
            assert before[0] != 7.5

            cmd = await control.submit(CommandRequest(SETPOINT, "k1", 3000, value=7.5), OPERATOR)
            assert (cmd.state, cmd.reason_code) == (CommandState.CONFIRMED, None), cmd.reason
            assert cmd.result == "read back 7.5"
            assert control.executed == 1
            # the plant took it, and its value comes back on the bus from the edge node
            assert rt.sim.plant.model(TABLE).values["speed_setpoint"] == 7.5
            await _until_on_bus(sub, sid, 7.5)
            await wait_until(lambda: dcmds == [7.5], 5, "the DCMD seen by a subscriber")

            # out of range: refused before anything is sent
            high = await control.submit(CommandRequest(SETPOINT, "k2", 3000, value=15.5), OPERATOR)
            assert (high.state, high.reason_code) == (CommandState.REJECTED, "out_of_range")
            assert high.reason == f"15.5 is outside {SETPOINT}'s range 0.0..15.0"
            assert control.executed == 1
            # A third command's DCMD arrives after any the rejected one could have caused:
            # once it is seen, the broker has delivered everything sent before it.
            again = await control.submit(CommandRequest(SETPOINT, "k3", 3000, value=3.0), OPERATOR)
            assert again.state is CommandState.CONFIRMED, again.reason
            await wait_until(lambda: len(dcmds) >= 2, 5, "the third command's DCMD")
            assert dcmds == [7.5, 3.0]
        sub.close()

        audit = [(e.target, e.state, e.payload, e.reason) for e in control.store.audit()]
        assert audit == [
            (SETPOINT, "accepted", "7.5", None),
            (SETPOINT, "confirmed", "7.5", None),
            (SETPOINT, "rejected", "15.5", f"15.5 is outside {SETPOINT}'s range 0.0..15.0"),
            (SETPOINT, "accepted", "3.0", None),
            (SETPOINT, "confirmed", "3.0", None),
        ]
        assert all(e.user == OPERATOR.name for e in control.store.audit())
        assert control.store.verify().ok


async def _until_on_bus(
    sub: MemorySubscription, sid: int, value: float, within: float = 5.0
) -> None:
    """Consume ``sub`` until a good ``value`` of ``sid`` comes by."""
    async with asyncio.timeout(within):
        async for batch in sub:
            rows = (batch.signal == sid).nonzero()[0]
            if any(
                batch.value[r] == value and batch.quality[r] == Quality.GOOD for r in rows.tolist()
            ):
                return
