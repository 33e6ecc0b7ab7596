"""``[network] emulate``: the demo's equipment is reached through the link emulator, and the NEF
emulator's events show in the data — an outage of a device's 5G link makes its values bad,
its return makes them good again."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from factory5g.model import load_site
from factory5g.runtime import Runtime
from factory5g.stream import Quality
from tests.helpers import eventually, wait_until


async def test_demo_traffic_goes_through_the_emulated_links(steel_site: Path) -> None:
    site = load_site(steel_site)
    assert site.file.network.emulate  # the template turns it on for the demo
    async with Runtime(site, sim_rate_hz=20) as rt:
        assert rt.nef is not None
        assert rt.linkemu is not None
        assert rt.network_plan is not None
        assert rt.opcua is not None
        assert rt.modbus is not None
        opc_url = site.file.opcua[0].url
        modbus_port = site.file.modbus[0].port
        # The adapters talk to proxies, not to the equipment's own addresses.
        (endpoint,) = rt.opcua.stats()["endpoints"]
        (device,) = rt.modbus.stats()["devices"]
        assert endpoint["url"] != opc_url
        assert device["port"] != modbus_port
        kpis = rt.linkemu.kpis()
        targets = {
            ue: {p["target"] for p in k["proxies"]} for ue, k in kpis.items() if k["proxies"]
        }
        assert f"127.0.0.1:{modbus_port}" in targets["ue-table-plc"]
        assert any(
            t.endswith(f":{opc_url.split(':')[2].split('/')[0]}") for t in targets["ue-f1-plc"]
        )
        # Sparkplug edge nodes connect out through their UE (uplink first).
        assert any(p["ue_is_client"] for p in kpis["ue-f2-plc"]["proxies"])

        table = [s.id for s in site.signals.for_equipment("roller_table")]
        f2 = [s.id for s in site.signals.for_equipment("f2")]

        async def qualities(ids: list[int]) -> np.ndarray:
            latest = await rt.store.latest(ids)
            return np.asarray(latest.quality) if len(latest) == len(ids) else np.zeros(0)

        async def good(ids: list[int]) -> bool:
            q = await qualities(ids)
            return len(q) == len(ids) and bool((q == Quality.GOOD).all())

        await eventually(lambda: good(table), within=15, what="the table's values good")
        await wait_until(
            lambda: (
                sum(p["dl"]["packets"] for p in rt.linkemu.kpis()["ue-table-plc"]["proxies"]) > 0
            ),
            what="polls through the table's link",
        )

        # The table PLC's UE loses its 5G link: its values turn bad, the other devices' not.
        rt.nef.set_online("ue-table-plc", False)

        async def table_bad() -> bool:
            q = await qualities(table)
            return len(q) == len(table) and bool((q < Quality.UNCERTAIN).all())

        await eventually(table_bad, within=15, what="the table's values bad during the outage")
        assert await good(f2)
        assert (
            rt.modbus.stats()["devices"][0]["timeouts"]
            + rt.modbus.stats()["devices"][0]["reconnects"]
            > 0
        )

        # Back online: good values again, without restarting anything.
        rt.nef.set_online("ue-table-plc", True)
        await eventually(lambda: good(table), within=20, what="the table's values good again")
