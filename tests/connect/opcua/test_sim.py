"""The demo plant's OPC UA servers (``OpcUaPeers``), seen by a bare asyncua client."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime

import pytest
from asyncua import ua
from asyncua.client import Client
from asyncua.ua.uaerrors import BadOutOfRange, BadUserAccessDenied

from factory5g.model import Site, load_text
from factory5g.sim import Plant
from factory5g.sim.opcua import DEMO_NAMESPACE, OpcUaPeers


def demo_site(url: str, *, second: str | None = None, extra: str = "") -> Site:
    """A finishing stand behind one OPC UA endpoint (``extra``: more of its signals, TOML), and
    a run-out table behind ``second``."""
    text = f"""
[site]
name = "opcua-demo"
prefix = "88.1"

[[opcua]]
id = "mill"
url = "{url}"

[[equipment]]
id = "f1"
name = "Finishing stand F1"
area = "hot-mill"
line = "finishing"
  [[equipment.signal]]
  name = "speed"
  unit = "m/s"
  binding = {{ kind = "opcua", endpoint = "mill", node = "ns=2;s=f1.speed" }}
  sim = {{ model = "rolling_stand", output = "speed" }}
  [[equipment.signal]]
  name = "speed_trim"
  unit = "%"
  min = -5
  max = 5
  binding = {{ kind = "opcua", endpoint = "mill", node = "ns=2;s=f1.speed_trim" }}
  sim = {{ model = "rolling_stand", output = "speed_trim" }}
  [[equipment.signal]]
  name = "strip_present"
  type = "bool"
  binding = {{ kind = "opcua", endpoint = "mill", node = "ns=2;s=f1.strip_present" }}
  sim = {{ model = "rolling_stand", output = "strip_present" }}
{extra}"""
    if second is not None:
        text += f"""
[[opcua]]
id = "runout"
url = "{second}"

[[equipment]]
id = "rt1"
area = "hot-mill"
line = "runout"
  [[equipment.signal]]
  name = "speed_setpoint"
  unit = "m/s"
  binding = {{ kind = "opcua", endpoint = "runout", node = "ns=2;s=rt1.speed_setpoint" }}
  sim = {{ model = "conveyor", output = "speed_setpoint" }}
"""
    return load_text(text, "demo.toml")


async def test_the_demo_server_serves_the_plant(free_port: int) -> None:
    site = demo_site(f"opc.tcp://127.0.0.1:{free_port}/demo")
    plant = Plant(site)
    async with OpcUaPeers(site, plant) as peers:
        assert peers.ports == {"mill": free_port}
        url = peers.url("mill")
        assert url == f"opc.tcp://127.0.0.1:{free_port}/demo"
        async with Client(url) as client:
            assert (await client.get_namespace_array())[2] == DEMO_NAMESPACE
            f1 = client.get_node("ns=2;s=f1")
            assert (await f1.read_browse_name()) == ua.QualifiedName("f1", 2)
            children = {(await c.read_browse_name()).Name for c in await f1.get_children()}
            assert children == {"speed", "speed_trim", "strip_present", "Set_speed_trim"}

            speed = client.get_node("ns=2;s=f1.speed")
            trim = client.get_node("ns=2;s=f1.speed_trim")
            present = client.get_node("ns=2;s=f1.strip_present")
            assert (await speed.read_data_type_as_variant_type()) is ua.VariantType.Double
            assert (await present.read_data_type_as_variant_type()) is ua.VariantType.Boolean
            eu = await (await speed.get_child("0:EngineeringUnits")).read_value()
            assert eu.DisplayName.Text == "m/s"
            assert not [
                c
                for c in await present.get_properties()
                if (await c.read_browse_name()).Name == "EngineeringUnits"
            ]
            assert ua.AccessLevel.CurrentWrite in await trim.get_access_level()
            assert ua.AccessLevel.CurrentWrite not in await speed.get_access_level()

            # a simulator tick: the plant's values, stamped with the tick's time
            plant.step(2.0)
            ts_ns = 1_767_225_600_123_456_000
            await peers.update(plant.batch(ts_ns), ts_ns)
            dv = await speed.read_data_value()
            assert dv.Value is not None
            assert dv.Value.Value == plant.model("f1").values["speed"]
            assert dv.SourceTimestamp == datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
            assert (await present.read_value()) is bool(plant.model("f1").values["strip_present"])

            # a client's write reaches the plant; one the plant refuses is BadOutOfRange
            await trim.write_value(ua.Variant(2.5, ua.VariantType.Double))
            assert plant.model("f1").values["speed_trim"] == 2.5
            with pytest.raises(BadOutOfRange):
                await trim.write_value(ua.Variant(9.0, ua.VariantType.Double))
            assert plant.model("f1").values["speed_trim"] == 2.5
            with pytest.raises(BadUserAccessDenied):  # a measurement
                await speed.write_value(ua.Variant(1.0, ua.VariantType.Double))

            # the method does the same
            assert await f1.call_method("2:Set_speed_trim", -1.5) is None  # no outputs
            assert plant.model("f1").values["speed_trim"] == -1.5
            assert (await trim.read_value()) == -1.5
            with pytest.raises(BadOutOfRange):
                await f1.call_method("2:Set_speed_trim", 7.0)
            assert plant.model("f1").values["speed_trim"] == -1.5


async def test_port_zero_and_a_failed_start_undone() -> None:
    """The first server takes port 0 (an actual port); the second cannot listen: the first
    is stopped again, and the error reaches the caller."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        site = demo_site("opc.tcp://127.0.0.1:0/demo", second=f"opc.tcp://127.0.0.1:{taken}/x")
        peers = OpcUaPeers(site, Plant(site))
        with pytest.raises(OSError, match=str(taken)):
            async with peers:
                pytest.fail("the second server cannot listen")
    port = peers.ports["mill"]
    assert port not in (0, taken)
    with pytest.raises(ConnectionRefusedError):  # stopped: nobody listens there any more
        await asyncio.open_connection("127.0.0.1", port)
