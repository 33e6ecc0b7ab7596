"""Sites the simulator cannot feed: every bad binding reported at construction."""

from __future__ import annotations

import pytest

from factory5g.model import load_text
from factory5g.sim import BindingProblem, Plant, SimBindingError, SimError, SimWriteError
from tests.sim.recording import steel_site_text

HEAD = """
[site]
name = "Test"
prefix = "88.1"
"""


def test_every_bad_binding_is_listed_with_its_equipment_and_signal() -> None:
    text = steel_site_text().replace(
        'name = "roll_force"\n  unit = "MN"\n  min = 0\n  max = 40\n'
        '  binding = { kind = "sim", model = "rolling_stand", output = "roll_force" }',
        'name = "roll_force"\n  unit = "MN"\n  min = 0\n  max = 40\n'
        '  binding = { kind = "sim", model = "rolling_stnad", output = "roll_force" }',
        1,
    )
    text = text.replace(
        'binding = { kind = "sim", model = "conveyor", output = "load" }',
        'binding = { kind = "sim", model = "conveyor", output = "weight" }',
    )
    site = load_text(text)  # a valid site: the model checks syntax, the simulator the physics
    with pytest.raises(SimBindingError) as err:
        Plant(site)
    problems = err.value.problems
    assert [(p.equipment, p.signal, p.model, p.output) for p in problems] == [
        ("f1", "f1.roll_force", "rolling_stnad", "roll_force"),
        ("roller_table", "roller_table.load", "conveyor", "weight"),
    ]
    assert "did you mean 'rolling_stand'?" in problems[0].message
    assert "outputs: speed, speed_setpoint" in problems[1].message
    text = str(err.value)
    assert text.startswith("2 sim bindings cannot be simulated")
    assert "f1.roll_force" in text
    assert "roller_table.load" in text
    assert isinstance(err.value, SimError)


def test_a_string_signal_cannot_carry_a_number() -> None:
    site = load_text(
        HEAD
        + """
[[equipment]]
id = "f1"
area = "a"
line = "l"
  [[equipment.signal]]
  name = "label"
  type = "string"
  binding = { kind = "sim", model = "rolling_stand", output = "speed" }
"""
    )
    with pytest.raises(SimBindingError) as err:
        Plant(site)
    assert err.value.problems == (
        BindingProblem(
            "f1",
            "f1.label",
            "rolling_stand",
            "speed",
            "a string signal cannot carry rolling_stand.speed, a number",
        ),
    )


def test_signals_of_real_adapters_are_left_alone() -> None:
    site = load_text(
        HEAD
        + """
[[equipment]]
id = "press"
area = "a"
line = "l"
  [[equipment.signal]]
  name = "force"
  unit = "kN"
  binding = { kind = "modbus", host = "10.0.0.5", address = 100 }

  [[equipment.signal]]
  name = "note"
  type = "string"

[[equipment]]
id = "meter"
area = "a"
line = "l"
  [[equipment.signal]]
  name = "kw"
  unit = "kW"
  binding = { kind = "sim", model = "power", output = "active_power" }
"""
    )
    plant = Plant(site)
    assert [s.path for s in plant.signals] == ["meter.kw"]
    assert len(plant.batch(0)) == 1
    # Without a mill, the meter still sees its base load.
    assert plant.step(1.0)[site.signals.get("meter.kw").id] > 1000.0
    with pytest.raises(SimWriteError, match="not simulated"):
        plant.write("press.force", 1.0)


def test_a_site_without_sim_bindings_gives_empty_batches() -> None:
    site = load_text(HEAD)
    plant = Plant(site)
    assert plant.signals == ()
    assert plant.step(1.0) == {}
    assert len(plant.batch(0)) == 0
