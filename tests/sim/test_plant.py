"""The synchronous Plant: determinism, Batches, writes and the run-out table's drive."""

from __future__ import annotations

import math

import numpy as np
import pytest

from factory5g.model import Site
from factory5g.sim import Plant, SimError, SimWriteError
from factory5g.sim.models import Conveyor
from factory5g.stream import Quality


def run_values(site: Site, seed: int, steps: int, dt_s: float = 0.5) -> np.ndarray:
    plant = Plant(site, seed=seed)
    ids = sorted(plant.values())
    return np.array([[v[i] for i in ids] for v in (plant.step(dt_s) for _ in range(steps))])


def test_equal_seeds_give_equal_runs(steel: Site) -> None:
    a = run_values(steel, seed=11, steps=2000)
    b = run_values(steel, seed=11, steps=2000)
    np.testing.assert_array_equal(a, b)


def test_different_seeds_give_different_runs(steel: Site) -> None:
    a = run_values(steel, seed=11, steps=2000)
    b = run_values(steel, seed=12, steps=2000)
    assert a.shape == b.shape
    # Every signal that moves at all moves differently: each model's randomness is seeded.
    moving = [c for c in range(a.shape[1]) if np.ptp(a[:, c]) > 0]
    assert len(moving) >= 20
    for c in moving:
        assert not np.array_equal(a[:, c], b[:, c]), c


def test_a_long_step_is_split_into_the_same_substeps(steel: Site) -> None:
    coarse = Plant(steel, seed=5)
    fine = Plant(steel, seed=5)
    for _ in range(30):
        after_coarse = coarse.step(10.0)
        for _ in range(10):
            after_fine = fine.step(1.0)
    assert after_coarse == after_fine
    assert math.isclose(coarse.t_s, 300.0)


@pytest.mark.parametrize("dt_s", [-0.1, math.nan, math.inf])
def test_step_rejects_impossible_time_steps(steel: Site, dt_s: float) -> None:
    plant = Plant(steel)
    with pytest.raises(ValueError, match="dt_s"):
        plant.step(dt_s)
    assert plant.t_s == 0.0


def test_plant_feeds_exactly_the_sim_bound_signals(steel: Site) -> None:
    plant = Plant(steel)
    sim_paths = {s.path for s in steel.signals if s.binding == "sim"}
    assert {s.path for s in plant.signals} == sim_paths
    assert len(sim_paths) == 27
    values = plant.values()  # available before the first step
    assert set(values) == {steel.signals.get(p).id for p in sim_paths}
    assert all(math.isfinite(v) for v in values.values())


def test_batch_carries_every_signal_once_with_one_timestamp(steel: Site) -> None:
    plant = Plant(steel, seed=2)
    values = plant.step(1.0)
    batch = plant.batch(1_700_000_000_000_000_000)
    assert len(batch) == len(values)
    assert (np.diff(batch.signal) > 0).all()
    assert (batch.ts == 1_700_000_000_000_000_000).all()
    assert (batch.quality == Quality.GOOD).all()
    assert dict(zip(batch.signal.tolist(), batch.value.tolist(), strict=True)) == values
    # Later batches are new arrays: the first one does not change under our feet.
    before = batch.value.copy()
    plant.step(1.0)
    later = plant.batch(1_700_000_000_100_000_000)
    np.testing.assert_array_equal(batch.value, before)
    assert not np.array_equal(later.value, before)


def test_bools_are_zero_or_one(steel: Site) -> None:
    plant = Plant(steel, seed=4)
    bools = [steel.signals.get(p).id for p in ("f1.strip_present", "guard.door_closed")]
    seen = {plant.step(1.0)[i] for _ in range(600) for i in bools}
    assert seen == {0.0, 1.0}


# -- the run-out table's speed set point ---------------------------------------------------------


def test_table_speed_converges_to_a_written_setpoint(steel: Site) -> None:
    plant = Plant(steel, seed=1)
    speed_id = steel.signals.get("roller_table.speed").id
    plant.write("roller_table.speed_setpoint", 12.0)
    assert plant.values()[steel.signals.get("roller_table.speed_setpoint").id] == 12.0
    speeds = [plant.step(0.1)[speed_id] for _ in range(300)]
    # The drive ramps at most MAX_ACCEL (its current limit), then settles on the set point.
    steps = np.diff(speeds)
    assert steps.max() < Conveyor.MAX_ACCEL_M_S2 * 0.1 + 0.1
    assert speeds[10] < 7.0
    assert abs(np.mean(speeds[-20:]) - 12.0) < 0.05


def test_table_current_rises_while_it_accelerates(steel: Site) -> None:
    plant = Plant(steel, seed=1)
    current_id = steel.signals.get("roller_table.motor_current").id
    steady = np.mean([plant.step(0.1)[current_id] for _ in range(20)])
    plant.write(steel.signals.get("roller_table.speed_setpoint").id, 14.0)
    accelerating = np.mean([plant.step(0.1)[current_id] for _ in range(20)])
    assert accelerating > steady + 200.0


def test_a_stopped_table_holds_the_mill(steel: Site) -> None:
    plant = Plant(steel, seed=1)
    plant.write("roller_table.speed_setpoint", 0.0)
    running_id = steel.signals.get("roller_table.running").id
    current_id = steel.signals.get("roller_table.motor_current").id
    for _ in range(60):
        values = plant.step(1.0)
    assert values[running_id] == 0.0
    assert values[current_id] == 0.0  # drive disabled
    admitted = plant.mill.admitted
    for _ in range(600):
        plant.step(1.0)
    assert plant.mill.admitted == admitted  # no bar in ten minutes: nowhere to put the strip
    assert "run-out table stopped" in plant.state.holds.values()
    plant.write("roller_table.speed_setpoint", 5.0)
    for _ in range(30):
        plant.step(1.0)
    assert plant.mill.admitted == admitted + 1  # the waiting bar goes as soon as it may


def test_measurements_are_not_writable(steel: Site) -> None:
    plant = Plant(steel)
    with pytest.raises(SimWriteError, match=r"f1\.speed.*not writable") as err:
        plant.write("f1.speed", 3.0)
    assert isinstance(err.value, SimError)
    assert err.value.signal == "f1.speed"
    assert "speed_setpoint" not in err.value.reason  # rolling stands have no set point
    with pytest.raises(SimWriteError, match="writable outputs of conveyor: speed_setpoint"):
        plant.write("roller_table.speed", 3.0)


@pytest.mark.parametrize(
    ("ref", "value", "match"),
    [
        ("roller_table.sped_setpoint", 3.0, "unknown signal.*did you mean"),
        (10_000, 3.0, "unknown signal"),
        ("roller_table.speed_setpoint", 16.0, r"outside \[0.0, 15.0\]"),
        ("roller_table.speed_setpoint", -1.0, "outside"),
        ("roller_table.speed_setpoint", math.nan, "not a finite number"),
    ],
)
def test_bad_writes_are_refused(steel: Site, ref: str | int, value: float, match: str) -> None:
    plant = Plant(steel)
    setpoint = steel.signals.get("roller_table.speed_setpoint").id
    before = plant.values()[setpoint]
    with pytest.raises(SimWriteError, match=match):
        plant.write(ref, value)
    assert plant.values()[setpoint] == before


def test_model_lookup(steel: Site) -> None:
    plant = Plant(steel)
    assert plant.model("roller_table").kind == "conveyor"
    assert plant.model("substation", "power").kind == "power"
    with pytest.raises(KeyError):
        plant.model("f3")
    # Stages: the line first, utilities next, the meter that sums them last.
    assert [m.stage for m in plant.models] == sorted(m.stage for m in plant.models)
    assert plant.models[-1].kind == "power"


# -- the stands' speed trim -----------------------------------------------------------------------


def test_speed_trim_trims_the_stand_speed_and_is_limited(steel: Site) -> None:
    def settled_speed(trim: float) -> float:
        plant = Plant(steel, seed=3)
        plant.write("f1.speed_trim", trim)
        speed_id = steel.signals.get("f1.speed").id
        return float(np.mean([plant.step(0.1)[speed_id] for _ in range(100)][-20:]))

    base, trimmed = settled_speed(0.0), settled_speed(4.0)
    assert trimmed / base == pytest.approx(1.04, rel=0.01)
    plant = Plant(steel)
    trim_id = steel.signals.get("f1.speed_trim").id
    with pytest.raises(SimWriteError, match=r"5\.5 is outside \[-5\.0, 5\.0\]"):
        plant.write("f1.speed_trim", 5.5)  # the site file's range
    with pytest.raises(SimWriteError, match="limited to ±5 %"):  # the stand's own limit
        plant.model("f1").write("speed_trim", -6.0)
    assert plant.values()[trim_id] == 0.0  # a refused write changes nothing
    plant.write(trim_id, -2.5)
    assert plant.step(0.1)[trim_id] == -2.5
