"""The site file: the steel template loads, and every class of mistake is reported where it is.

Each bad variant is the steel template with one targeted text edit, so the expected line is found
by looking at the edited text, never hard-coded.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from factory5g.model import (
    TEMPLATES,
    Problem,
    SiteError,
    check_site,
    check_text,
    load_site,
    load_text,
    template_text,
    write_template,
)
from factory5g.model.site import DataType
from tests.helpers import steel_sim_text

TEMPLATE = template_text("steel")
# Edits below aim at kind = "sim" bindings: the template with its signals simulated directly.
STEEL = steel_sim_text()


def edit(text: str, old: str, new: str, occurrence: int = 1) -> tuple[str, int]:
    """Replace the ``occurrence``-th ``old`` by ``new``; return the text and the edit's line."""
    start = -1
    for _ in range(occurrence):
        start = text.find(old, start + 1)
        assert start >= 0, f"{old!r} occurs fewer than {occurrence} times"
    return text[:start] + new + text[start + len(old) :], text.count("\n", 0, start) + 1


def line_with(text: str, snippet: str, occurrence: int = 1) -> int:
    """Line (1-based) of the ``occurrence``-th line containing ``snippet``."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if snippet in line]
    assert len(hits) >= occurrence, f"{snippet!r} found on {len(hits)} lines"
    return hits[occurrence - 1]


# -- the template -----------------------------------------------------------------------------


def test_templates_list_steel() -> None:
    assert "steel" in TEMPLATES
    with pytest.raises(KeyError):
        template_text("no-such-template")


def test_steel_template_loads(steel_site: Path) -> None:
    site = load_site(steel_site)
    assert site.path == steel_site
    assert site.base_dir == steel_site.parent
    assert site.store_dir() == steel_site.parent / "data"
    assert site.name == "Demo Steel — Hot Strip Mill"
    assert site.summary() == (
        "site 'Demo Steel — Hot Strip Mill' (88.118.8): 2 cells, 3 slices, 5 devices, "
        "7 equipment, 27 signals, 6 alarm rules"
    )
    assert check_site(steel_site) == []
    assert [e.id for e in site.file.opcua] == ["stand-f1"]
    assert [d.id for d in site.file.modbus] == ["table-plc"]
    assert site.file.site.timezone == "Asia/Shanghai"
    assert [c.id for c in site.file.network.cell] == ["cell-mill", "cell-runout"]
    assert len(site.file.control.writable) == 2
    assert site.file.apps["oee"]["ideal_rate_t_per_h"] == 600


def test_steel_signal_ids_are_dense_and_in_file_order(steel_site: Path) -> None:
    site = load_site(steel_site)
    data = tomllib.loads(steel_site.read_text("utf-8"))
    in_file_order = [f"{eq['id']}.{s['name']}" for eq in data["equipment"] for s in eq["signal"]]
    infos = list(site.signals)
    assert [s.id for s in infos] == list(range(len(in_file_order)))
    assert [s.path for s in infos] == in_file_order
    assert site.signals.get("f1.speed").id == 0
    assert site.signals.get("substation.energy").id == len(in_file_order) - 1
    temp = site.signals.get("f1.strip_temp")
    assert (temp.unit, temp.type, temp.min, temp.max, temp.binding) == (
        "°C",
        DataType.FLOAT,
        600.0,
        1200.0,
        "opcua",
    )
    assert site.signals.get("roller_table.speed").binding == "modbus"
    assert site.signals.get("f2.speed").binding == "sparkplug"
    assert site.signals.get("guard.door_closed").type is DataType.BOOL
    assert [s.name for s in site.signals.for_equipment("compressed_air")] == ["pressure", "flow"]


def test_write_template_refuses_to_overwrite(tmp_path: Path) -> None:
    target = write_template("steel", tmp_path / "plant")
    assert target == tmp_path / "plant" / "site.toml"
    assert target.read_text("utf-8") == TEMPLATE
    target.write_text("# mine\n", encoding="utf-8")
    with pytest.raises(FileExistsError):
        write_template("steel", tmp_path / "plant")
    assert target.read_text("utf-8") == "# mine\n"
    write_template("steel", tmp_path / "plant", overwrite=True)
    assert target.read_text("utf-8") == TEMPLATE


def test_load_text_without_path_uses_cwd() -> None:
    site = load_text(STEEL)
    assert site.path is None
    assert site.base_dir == Path.cwd()


# -- one mistake at a time --------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """A targeted edit of the template and the one problem it must cause."""

    edits: tuple[tuple[str, str], ...]  # (old, new), each applied to its first occurrence
    path: str
    line: str  # a snippet of the line the problem must point at (in the edited text)
    message: str  # must occur in the problem's message
    hint: str | None = None  # must occur in the hint; None: no hint is required
    line_occurrence: int = 1
    also: tuple[str, ...] = field(default=())  # paths of expected knock-on problems


SIM_SPEED = 'binding = { kind = "sim", model = "rolling_stand", output = "speed" }'
SIM_FLOW = 'binding = { kind = "sim", model = "cooling_water", output = "flow" }'
SIM_PRESSURE = 'binding = { kind = "sim", model = "cooling_water", output = "pressure" }'
SIM_ACTIVE = 'binding = { kind = "sim", model = "power", output = "active_power" }'
SIM_ENERGY = 'binding = { kind = "sim", model = "power", output = "energy" }'

BAD = {
    "toml-syntax": Bad(
        (("queue_batches = 256", "queue_batches = = 256"),),
        "",
        "queue_batches = = 256",
        "not valid TOML",
    ),
    "toml-unterminated-string": Bad(
        (('name = "Finishing stand F2"', 'name = "Finishing stand F2'),),
        "",
        'name = "Finishing stand F2',
        "not valid TOML",
    ),
    "unknown-key": Bad(
        (('timezone = "Asia/Shanghai"', 'timezon = "Asia/Shanghai"'),),
        "site.timezon",
        "timezon =",
        "unknown key 'timezon'",
        "did you mean 'timezone'?",
    ),
    "unknown-table": Bad(
        (("[bus]", "[buss]"),),
        "buss",
        "[buss]",
        "unknown key 'buss'",
        "did you mean 'bus'?",
    ),
    "unknown-key-in-inline-flow": Bad(
        (("period_ms = 10", "perod_ms = 10"),),
        "device[2].carries[0].perod_ms",
        "perod_ms = 10",
        "unknown key 'perod_ms'",
        "did you mean 'period_ms'?",
    ),
    "unknown-key-in-binding": Bad(
        ((SIM_SPEED, SIM_SPEED.replace(" }", ", period = 5 }")),),
        "equipment[0].signal[0].binding.period",
        "period = 5",
        "unknown key 'period'",
        "known keys: kind, model, output",
    ),
    "unknown-key-no-close-match": Bad(
        (('kind = "rolling_stand"', 'colour = "blue"'),),
        "equipment[0].colour",
        'colour = "blue"',
        "unknown key 'colour'",
        "known keys: area, cell, device, id, kind, line, name, signal",
    ),
    "missing-required-key": Bad(
        (('prefix = "88.118.8"\n', ""),),
        "site.prefix",
        "[site]",
        "required key 'prefix' is missing",
    ),
    "missing-required-key-in-aot": Bad(
        (
            (
                'area = "hot-rolling"\nline = "finishing-mill"\ncell = "stand-f2"',
                'line = "finishing-mill"\ncell = "stand-f2"',
            ),
        ),
        "equipment[1].area",
        "[[equipment]]",
        "required key 'area' is missing",
        line_occurrence=2,
    ),
    "unknown-binding-kind": Bad(
        ((SIM_FLOW, 'binding = { kind = "modbsu", host = "10.0.0.9", address = 7 }'),),
        "equipment[4].signal[0].binding.kind",
        '"modbsu"',
        "unknown binding kind 'modbsu'",
        "did you mean 'modbus'? known kinds: sim, sparkplug, opcua, modbus",
    ),
    "binding-without-kind": Bad(
        ((SIM_FLOW, 'binding = { model = "cooling_water", output = "flow" }'),),
        "equipment[4].signal[0].binding.kind",
        'binding = { model = "cooling_water"',
        "a binding needs a 'kind'",
        "one of: sim, sparkplug, opcua, modbus",
    ),
    "duplicate-signal": Bad(
        (('name = "motor_power"', 'name = "motor_current"'),),
        "equipment[0].signal[4].name",
        'name = "motor_current"',
        "duplicate signal 'motor_current'",
        "first defined at equipment[0].signal[3]",
        line_occurrence=2,
    ),
    "duplicate-equipment": Bad(
        (('id = "f2"', 'id = "f1"'),),
        "equipment[1].id",
        'id = "f1"',
        "duplicate equipment 'f1'",
        "first defined at equipment[0]",
        line_occurrence=2,
    ),
    "duplicate-equipment-with-blank": Bad(
        # The schema strips whitespace, so "f1 " is f1: it must not silently merge with it.
        (('id = "f2"', 'id = "f1 "'),),
        "equipment[1].id",
        'id = "f1 "',
        "duplicate equipment 'f1",
        "first defined at equipment[0]",
    ),
    "duplicate-device": Bad(
        (('id = "ue-surface-cam"', 'id = "ue-f1-plc"'),),
        "device[3].id",
        'id = "ue-f1-plc"',
        "duplicate device 'ue-f1-plc'",
        "first defined at device[0]",
        line_occurrence=2,
    ),
    "duplicate-imsi": Bad(
        (('imsi = "001010000000102"', 'imsi = "001010000000101"'),),
        "device[1].imsi",
        'imsi = "001010000000101"',
        "duplicate IMSI '001010000000101'",
        "first defined at device[0]",
        line_occurrence=2,
    ),
    "duplicate-imsi-other-spelling": Bad(
        # "imsi-" is an optional prefix of the same SUPI (TS 23.003 §2.2A).
        (('imsi = "001010000000102"', 'imsi = "imsi-001010000000101"'),),
        "device[1].imsi",
        'imsi = "imsi-001010000000101"',
        "duplicate IMSI",
        "first defined at device[0]",
    ),
    "unknown-slice": Bad(
        (('slice = "embb-video"', 'slice = "embb-vide"'),),
        "device[3].slice",
        'slice = "embb-vide"',
        "slice 'embb-vide' does not exist",
        "did you mean 'embb-video'?",
    ),
    "unknown-slice-no-close-name": Bad(
        (('slice = "embb-video"', 'slice = "zzz"'),),
        "device[3].slice",
        'slice = "zzz"',
        "slice 'zzz' does not exist",
        "defined slices: urllc-control, embb-video, miot-sensors",
    ),
    "unknown-qos": Bad(
        (('qos = "vision-uplink"', 'qos = "vision-uplnk"'),),
        "device[3].qos",
        'qos = "vision-uplnk"',
        "QoS profile 'vision-uplnk' does not exist",
        "did you mean 'vision-uplink'?",
    ),
    "unknown-flow-qos": Bad(
        (
            (
                '{ kind = "vision", name = "surface", ul_mbps = 120 }',
                '{ kind = "vision", name = "surface", ul_mbps = 120, qos = "telemtry" }',
            ),
        ),
        "device[3].carries[0].qos",
        'qos = "telemtry"',
        "QoS profile 'telemtry' does not exist",
        "did you mean 'telemetry'?",
    ),
    "unknown-cell": Bad(
        (
            (
                'cell = "cell-runout"\nipv4 = "10.45.0.21"',
                'cell = "cell-run"\nipv4 = "10.45.0.21"',
            ),
        ),
        "device[3].cell",
        'cell = "cell-run"',
        "cell 'cell-run' does not exist",
        "did you mean 'cell-runout'?",
    ),
    "unknown-device-of-equipment": Bad(
        (('device = "ue-table-plc"', 'device = "ue-tabel-plc"'),),
        "equipment[2].device",
        'device = "ue-tabel-plc"',
        "device 'ue-tabel-plc' does not exist",
        "did you mean 'ue-table-plc'?",
    ),
    "unit-degc": Bad(
        (('unit = "°C"', 'unit = "degc"'),),
        "equipment[0].signal[2].unit",
        'unit = "degc"',
        "unknown unit 'degc'",
        "did you mean 'degC'?",
    ),
    "unit-Mn": Bad(
        (('unit = "MN"', 'unit = "Mn"'),),
        "equipment[0].signal[1].unit",
        'unit = "Mn"',
        "unknown unit 'Mn'",
        "did you mean 'MN'?",
    ),
    "unit-m/sec": Bad(
        (('unit = "m/s"', 'unit = "m/sec"'),),
        "equipment[0].signal[0].unit",
        'unit = "m/sec"',
        "unknown unit 'm/sec'",
        "did you mean 'm/s'",
    ),
    "unit-unknown-far": Bad(
        (('unit = "kWh"', 'unit = "furlong"'),),
        "equipment[6].signal[1].unit",
        'unit = "furlong"',
        "unknown unit 'furlong'",
        "a site can declare more units in [site] extra_units",
    ),
    "bad-imsi-short": Bad(
        (('imsi = "001010000000102"', 'imsi = "12345"'),),
        "device[1].imsi",
        'imsi = "12345"',
        "'12345' is not a valid imsi",
        "14 or 15 digits",
    ),
    "bad-imsi-letters": Bad(
        (('imsi = "001010000000102"', 'imsi = "00101000000010x"'),),
        "device[1].imsi",
        'imsi = "00101000000010x"',
        "is not a valid imsi",
        "14 or 15 digits",
    ),
    "bad-time-zone": Bad(
        (('timezone = "Asia/Shanghai"', 'timezone = "Asia/Shangai"'),),
        "site.timezone",
        'timezone = "Asia/Shangai"',
        "unknown time zone 'Asia/Shangai'",
    ),
    "bad-tdd-pattern": Bad(
        (('tdd_pattern = "DSUUU"', 'tdd_pattern = "DSXUU"'),),
        "network.cell[1].tdd_pattern",
        'tdd_pattern = "DSXUU"',
        "TDD pattern 'DSXUU' may only contain D, S and U slots",
    ),
    "special-slot-not-14-symbols": Bad(
        (('special_slot = "10:2:2"', 'special_slot = "10:2:3"'),),
        "network.cell[0].special_slot",
        'special_slot = "10:2:3"',
        "special slot 10:2:3 has 15 symbols; a slot has 14",
    ),
    "special-slot-syntax": Bad(
        (('special_slot = "10:2:2"', 'special_slot = "10-2-2"'),),
        "network.cell[0].special_slot",
        'special_slot = "10-2-2"',
        "'10-2-2' is not a valid special_slot",
    ),
    "bad-band": Bad(
        (('band = "n79"', 'band = "79"'),),
        "network.cell[0].band",
        'band = "79"',
        "'79' is not a valid band",
        "an NR band such as n78",
    ),
    "alarm-unknown-signal": Bad(
        (('signal = "f1.roll_force"', 'signal = "f1.rol_force"'),),
        "alarm[1].signal",
        'signal = "f1.rol_force"',
        "signal 'f1.rol_force' does not exist",
        "did you mean 'f1.roll_force'?",
    ),
    "alarm-missing-limit": Bad(
        (("limit = 850\n", ""),),
        "alarm[0]",
        "[[alarm]]",
        "an alarm of kind 'low' needs 'limit'",
    ),
    "alarm-stale-missing-after": Bad(
        (("after_s = 5\n", ""),),
        "alarm[4]",
        "[[alarm]]",
        "an alarm of kind 'stale' needs 'after_s'",
        line_occurrence=5,
    ),
    "alarm-high-on-string-signal": Bad(
        (
            ('type = "bool"', 'type = "string"'),  # f1.strip_present becomes a string
            ('signal = "f1.roll_force"', 'signal = "f1.strip_present"'),
        ),
        "alarm[1].kind",
        'kind = "high"',
        "a high limit needs a numeric signal",
        "f1.strip_present is a string signal",
    ),
    "alarm-unknown-kind": Bad(
        (('kind = "stale"', 'kind = "stall"'),),
        "alarm[4].kind",
        'kind = "stall"',
        "Input should be",
    ),
    "writable-unknown-signal": Bad(
        (('signal = "roller_table.speed_setpoint"', 'signal = "roller_table.speed_setpont"'),),
        "control.writable[0].signal",
        'signal = "roller_table.speed_setpont"',
        "signal 'roller_table.speed_setpont' does not exist",
        "did you mean 'roller_table.speed_setpoint'?",
    ),
    "writable-unknown-role": Bad(
        (('role = "operator"', 'role = "operater"'),),
        "control.writable[0].role",
        'role = "operater"',
        "Input should be",
    ),
    "interlock-syntax": Bad(
        (('"guard.door_closed == true"', '"guard.door_closed = true"'),),
        "control.writable[0].interlocks",
        "interlocks = [",
        "interlock 'guard.door_closed = true' is not 'equipment.signal OP value'",
    ),
    "interlock-unknown-signal": Bad(
        (('"guard.door_closed == true"', '"guard.door_open == true"'),),
        "control.writable[0].interlocks[0]",
        '"guard.door_open == true"',
        "signal 'guard.door_open' does not exist",
        "did you mean 'guard.door_closed'?",
    ),
    "same-modbus-register": Bad(
        (
            (SIM_FLOW, 'binding = { kind = "modbus", host = "10.0.0.9", address = 7 }'),
            # explicit defaults: still the same register
            (
                SIM_PRESSURE,
                'binding = { kind = "modbus", host = "10.0.0.9", port = 502, unit = 1, '
                'table = "holding", address = 7, type = "int16" }',
            ),
        ),
        "equipment[4].signal[1].binding",
        'port = 502, unit = 1, table = "holding", address = 7',
        "two signals are bound to the same source",
        "the other one is equipment[4].signal[0]",
    ),
    "same-opcua-node": Bad(
        (
            (
                SIM_ACTIVE,
                'binding = { kind = "opcua", endpoint = "opc.tcp://sub:4840", node = "ns=2;s=P" }',
            ),
            (
                SIM_ENERGY,
                'binding = { kind = "opcua", endpoint = "opc.tcp://sub:4840", node = "ns=2;s=P" }',
            ),
        ),
        "equipment[6].signal[1].binding",
        'node = "ns=2;s=P"',
        "two signals are bound to the same source",
        "the other one is equipment[6].signal[0]",
        line_occurrence=2,
    ),
    "bad-opcua-node": Bad(
        (
            (
                SIM_ACTIVE,
                'binding = { kind = "opcua", endpoint = "opc.tcp://sub:4840", node = "P" }',
            ),
        ),
        "equipment[6].signal[0].binding.node",
        'node = "P"',
        "'P' is not a valid node",
        "an OPC UA node id such as ns=2;s=Stand1.Speed",
    ),
    "unknown-opcua-endpoint": Bad(
        (
            (
                SIM_ACTIVE,
                'binding = { kind = "opcua", endpoint = "stand-f3", node = "ns=2;s=P" }',
            ),
        ),
        "equipment[6].signal[0].binding",
        'endpoint = "stand-f3"',
        "OPC UA endpoint 'stand-f3' does not exist",
        "did you mean 'stand-f1'?",
    ),
    "unknown-modbus-device": Bad(
        (
            (
                SIM_ACTIVE,
                'binding = { kind = "modbus", device = "table-plx", address = 3 }',
            ),
        ),
        "equipment[6].signal[0].binding",
        'device = "table-plx"',
        "Modbus device 'table-plx' does not exist",
        "did you mean 'table-plc'?",
    ),
    "modbus-device-and-host": Bad(
        (
            (
                SIM_ACTIVE,
                'binding = { kind = "modbus", device = "table-plc", host = "h", address = 3 }',
            ),
        ),
        "equipment[6].signal[0].binding",
        'device = "table-plc", host = "h"',
        "a modbus binding names either a device or a host, not both",
    ),
    "modbus-coil-not-bool": Bad(
        (
            (
                SIM_ACTIVE,
                'binding = { kind = "modbus", host = "h", table = "coil", address = 3, '
                'type = "int16" }',
            ),
        ),
        "equipment[6].signal[0].binding",
        'table = "coil", address = 3',
        "coil entries are single bits: type must be 'bool'",
    ),
    "modbus-bool-register-without-bit": Bad(
        (
            (
                SIM_ACTIVE,
                'binding = { kind = "modbus", host = "h", address = 3, type = "bool" }',
            ),
        ),
        "equipment[6].signal[0].binding",
        'address = 3, type = "bool"',
        "a bool in a register needs bit = 0..15",
    ),
    "secure-opcua-without-trust": Bad(
        (
            (
                "publishing_ms = 100\n",
                'publishing_ms = 100\nsecurity = "sign_encrypt"\n'
                'cert_file = "client.der"\nkey_file = "client.pem"\n',
            ),
        ),
        "opcua[0]",
        "[[opcua]]",
        "security 'sign_encrypt' needs the server certificate in trust",
        line_occurrence=1,
    ),
    "duplicate-modbus-device": Bad(
        (
            (
                '[[modbus]]\nid = "table-plc"',
                '[[modbus]]\nid = "table-plc"\nhost = "a"\n\n[[modbus]]\nid = "table-plc"',
            ),
        ),
        "modbus[1].id",
        'id = "table-plc"',
        "duplicate Modbus device 'table-plc'",
        "first defined at modbus[0]",
        line_occurrence=2,
    ),
    "min-not-below-max": Bad(
        (("max = 12\n", "max = -1\n"),),
        "equipment[0].signal[0]",
        "[[equipment.signal]]",
        "min (0.0) must be below max (-1.0)",
    ),
}


@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_one_mistake_is_reported_where_it_is(case: Bad) -> None:
    text = STEEL
    for old, new in case.edits:
        text, _ = edit(text, old, new)
    problems = check_text(text, "site.toml")

    assert [p.path for p in problems] == [case.path, *case.also], "\n".join(map(str, problems))
    p = problems[0]
    assert p.file == "site.toml"
    assert p.line == line_with(text, case.line, case.line_occurrence), str(p)
    assert case.message in p.message
    if case.hint is not None:
        assert p.hint is not None, str(p)
        assert case.hint in p.hint
    with pytest.raises(SiteError) as info:
        load_text(text, "site.toml")
    assert info.value.problems == tuple(problems)


def test_unknown_key_then_missing_key_in_a_binding() -> None:
    """A misspelt required key is both unknown and missing: both are reported on its line."""
    text, line = edit(STEEL, SIM_SPEED, SIM_SPEED.replace("model =", "modle ="))
    problems = check_text(text)
    assert {(p.path, p.line) for p in problems} == {
        ("equipment[0].signal[0].binding.model", line),
        ("equipment[0].signal[0].binding.modle", line),
    }
    unknown = next(p for p in problems if p.path.endswith("modle"))
    assert unknown.hint == "did you mean 'model'?"


def test_toml_syntax_error_line_on_a_multi_line_document() -> None:
    text, line = edit(STEEL, "[[alarm]]", "[[alarm]", occurrence=3)
    (problem,) = check_text(text)
    assert problem.line == line
    assert problem.path == ""
    assert str(problem).startswith(f"<site>:{line}: not valid TOML")


def test_toml_error_at_the_end_of_the_document_points_at_its_last_line() -> None:
    text = STEEL + 'notes = """never closed\n\n'
    (problem,) = check_text(text)
    assert "Unterminated string" in problem.message
    assert problem.line == line_with(text, 'notes = """never closed')


def test_same_signal_name_in_two_equipment_is_fine() -> None:
    # f1.speed and f2.speed both exist in the template; only duplicates within one equipment count.
    assert check_text(STEEL) == []


def test_same_modbus_address_on_another_unit_is_not_a_clash() -> None:
    text, _ = edit(STEEL, SIM_FLOW, 'binding = { kind = "modbus", host = "h", address = 7 }')
    text, _ = edit(
        text, SIM_PRESSURE, 'binding = { kind = "modbus", host = "h", address = 7, unit = 2 }'
    )
    text, _ = edit(
        text, SIM_ACTIVE, 'binding = { kind = "modbus", host = "h", address = 7, table = "input" }'
    )
    assert check_text(text) == []


def test_sim_outputs_may_be_shared() -> None:
    text, _ = edit(STEEL, SIM_PRESSURE, SIM_FLOW)
    assert check_text(text) == []


def test_custom_unit_via_extra_units() -> None:
    text, _ = edit(STEEL, 'unit = "kWh"', 'unit = "furlong/fortnight"')
    assert [p.message for p in check_text(text)] == ["unknown unit 'furlong/fortnight'"]
    text, _ = edit(text, "[site]\n", '[site]\nextra_units = ["furlong/fortnight"]\n')
    assert check_text(text) == []
    site = load_text(text)
    assert site.signals.get("substation.energy").unit == "furlong/fortnight"
    assert site.file.site.extra_units == ("furlong/fortnight",)


def test_string_signal_cannot_be_written() -> None:
    text, _ = edit(STEEL, 'name = "speed_setpoint"', 'name = "speed_setpoint"\n  type = "string"')
    problems = check_text(text)
    assert [(p.path, p.message) for p in problems] == [
        ("control.writable[0].signal", "string signals cannot be written")
    ]
    assert problems[0].line == line_with(text, 'signal = "roller_table.speed_setpoint"')


def test_state_alarm_on_string_signal_is_allowed() -> None:
    text, _ = edit(
        STEEL,
        'name = "strip_present"\n  type = "bool"',
        'name = "strip_present"\n  type = "string"',
    )
    text, _ = edit(
        text,
        'signal = "guard.door_closed"\nkind = "state"',
        'signal = "f1.strip_present"\nkind = "state"',
    )
    assert check_text(text) == []


def test_missing_site_table() -> None:
    text, _ = edit(
        STEEL,
        '[site]\nname = "Demo Steel — Hot Strip Mill"\nprefix = "88.118.8"\n'
        'timezone = "Asia/Shanghai"\n',
        "",
    )
    (problem,) = check_text(text)
    assert problem.path == "site"
    assert problem.message == "required key 'site' is missing"
    assert problem.line is None
    assert str(problem) == "<site> [site]: required key 'site' is missing"


# -- many mistakes at once --------------------------------------------------------------------


def test_independent_mistakes_are_all_reported_at_once_sorted_by_line() -> None:
    # (old, new, occurrence of old), expected path, snippet of the expected line
    mistakes = [
        (
            ('timezone = "Asia/Shanghai"', 'timezone = "Mars/Olympus_Mons"', 1),
            "site.timezone",
            "Mars/",
        ),
        (
            ('special_slot = "10:2:2"', 'special_slot = "12:2:2"', 2),
            "network.cell[1].special_slot",
            "12:2:2",
        ),
        (('slice = "urllc-control"', 'slice = "urllc-ctrl"', 1), "device[0].slice", "urllc-ctrl"),
        (
            ('imsi = "001010000000301"', 'imsi = "0010100000003"', 1),
            "device[4].imsi",
            "0010100000003",
        ),
        (
            ('name = "roll_force"', 'name = "Roll-Force"', 2),
            "equipment[1].signal[1].name",
            "Roll-Force",
        ),
        (('unit = "bar"', 'unit = "Bar"', 1), "equipment[4].signal[1].unit", '"Bar"'),
        (
            ('signal = "cooling_water.pressure"', 'signal = "cooling_water.presure"', 1),
            "alarm[3].signal",
            "presure",
        ),
        (
            ('"guard.door_closed == true"', '"guard.door_closed = true"', 1),
            "control.writable[0].interlocks",
            "interlocks = [",
        ),
    ]
    text = STEEL
    for (old, new, occurrence), _, _ in reversed(mistakes):
        text, _ = edit(text, old, new, occurrence)
    problems = check_text(text, "plant.toml")

    expected = [(path, line_with(text, snippet)) for _, path, snippet in mistakes]
    assert [(p.path, p.line) for p in problems] == expected, "\n".join(map(str, problems))
    assert [line for _, line in expected] == sorted(line for _, line in expected)
    assert all(p.file == "plant.toml" for p in problems)

    with pytest.raises(SiteError) as info:
        load_text(text, "plant.toml")
    err = info.value
    assert err.problems == tuple(problems)
    assert str(err) == f"{problems[0]} (and {len(problems) - 1} more)"
    assert err.file == Path("plant.toml")


# -- files ------------------------------------------------------------------------------------


def test_non_utf8_file(tmp_path: Path) -> None:
    p = tmp_path / "site.toml"
    raw = STEEL.encode("utf-8")
    raw = raw.replace("°C".encode(), "°C".encode("latin-1"), 1)
    p.write_bytes(raw)
    (problem,) = check_site(p)
    assert problem.file == str(p)
    assert "not UTF-8" in problem.message
    assert problem.hint == "save the file as UTF-8"
    with pytest.raises(SiteError) as info:
        load_site(p)
    assert info.value.problems == (problem,)


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nowhere" / "site.toml"
    (problem,) = check_site(p)
    assert problem == Problem(
        str(p), "", "cannot read the site file: No such file or directory", None, None
    )
    with pytest.raises(SiteError, match="cannot read the site file"):
        load_site(str(p))


def test_site_file_problems_carry_the_file_name(steel_site: Path) -> None:
    text, line = edit(STEEL, 'unit = "kW"', 'unit = "KW"')
    steel_site.write_text(text, encoding="utf-8")
    (problem,) = check_site(steel_site)
    assert problem.file == str(steel_site)
    assert problem.line == line
    assert str(problem) == (
        f"{steel_site}:{line} [equipment[0].signal[4].unit]: unknown unit 'KW' "
        "(hint: did you mean 'kW'? a site can declare more units in [site] extra_units)"
    )


def test_site_error_without_problems() -> None:
    err = SiteError([])
    assert str(err) == "invalid site"
    assert err.file is None
