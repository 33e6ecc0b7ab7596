"""Resolving which signals each OPC UA endpoint and Modbus device serves."""

from __future__ import annotations

from factory5g.model import load_text
from factory5g.model.endpoints import modbus_devices, opcua_endpoints
from tests.helpers import steel_text

from .test_site_file import SIM_ACTIVE, SIM_ENERGY, STEEL, edit


def test_the_demo_endpoints_serve_their_equipment() -> None:
    site = load_text(steel_text())
    (opc,) = opcua_endpoints(site).values()
    assert opc.settings.id == "stand-f1"
    assert opc.settings.security == "none"
    assert [b.path for b in opc.signals] == [
        "f1.speed",
        "f1.roll_force",
        "f1.strip_temp",
        "f1.motor_current",
        "f1.motor_power",
        "f1.strip_present",
        "f1.speed_trim",
    ]
    assert all(b.simulated for b in opc.signals)
    assert [b.id for b in opc.signals] == [site.signals.get(b.path).id for b in opc.signals]
    (mb,) = modbus_devices(site).values()
    assert (mb.settings.id, mb.settings.port != 5020, mb.settings.timeout_ms) == (
        "table-plc",
        True,  # steel_text moved it to a free port
        500.0,
    )
    speed = next(b for b in mb.signals if b.path == "roller_table.speed_setpoint")
    assert (speed.binding.table, speed.binding.address, speed.binding.registers) == (
        "holding",
        2,
        2,
    )
    assert speed.binding.writable
    assert not next(b for b in mb.signals if b.path == "roller_table.load").binding.writable


def test_inline_endpoints_become_implicit_ones_with_defaults() -> None:
    url = "opc.tcp://10.0.0.7:4840"
    text, _ = edit(
        STEEL, SIM_ACTIVE, f'binding = {{ kind = "opcua", endpoint = "{url}", node = "i=5" }}'
    )
    text, _ = edit(
        text, SIM_ENERGY, 'binding = { kind = "modbus", host = "10.0.0.8", unit = 3, address = 9 }'
    )
    site = load_text(text)
    eps = opcua_endpoints(site)
    assert set(eps) == {"stand-f1", url}  # the declared one stays, with no signals
    assert eps["stand-f1"].signals == ()
    assert (eps[url].settings.url, eps[url].settings.publishing_ms) == (url, 100.0)
    assert [b.path for b in eps[url].signals] == ["substation.active_power"]
    assert not eps[url].signals[0].simulated  # sim-bound signals lose their source here
    devs = modbus_devices(site)
    assert set(devs) == {"table-plc", "10.0.0.8:502/3"}
    dev = devs["10.0.0.8:502/3"].settings
    assert (dev.host, dev.port, dev.unit, dev.retries, dev.max_registers) == (
        "10.0.0.8",
        502,
        3,
        2,
        125,
    )
