"""Physics of the steel plant over three simulated hours (one shared recording, see conftest)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from factory5g.model import Site, load_text
from factory5g.sim import Plant
from factory5g.sim.models import CompressedAir, RollingStand, flow_stress_mpa, radiate
from tests.sim.recording import RUN_HOURS, Run, record, steel_site_text

# -- the physics formulas on their own ----------------------------------------------------------


def test_flow_stress_falls_with_temperature_and_rises_with_strain_rate() -> None:
    hot = flow_stress_mpa(1100.0, 0.4, 20.0, 0.1)
    cold = flow_stress_mpa(950.0, 0.4, 20.0, 0.1)
    fast = flow_stress_mpa(1100.0, 0.4, 80.0, 0.1)
    assert cold > 1.15 * hot
    assert fast > hot
    assert 80.0 < hot < 200.0  # hot C-Mn steel: around a hundred MPa


def test_radiation_cools_thin_strip_faster() -> None:
    thick = radiate(1050.0, 0.036, 10.0)
    thin = radiate(1050.0, 0.012, 10.0)
    assert thin < thick < 1050.0
    assert radiate(1050.0, 0.036, 0.0) == 1050.0
    assert thick > 1030.0  # a 36 mm bar loses ~1.5 K/s


# -- the mill ------------------------------------------------------------------------------------


def test_bars_arrive_every_40_to_60_s_and_pass_f1_then_f2(run: Run) -> None:
    numbers = sorted(run.bars)
    assert len(numbers) > 0.8 * RUN_HOURS * 3600 / 60  # no bar is lost
    entries = np.array([run.bars[n].entry_s for n in numbers])
    gaps = np.diff(entries)
    # 40-60 s, longer only when a hold (door, table) delayed a bar.
    assert gaps.min() >= 40.0 - run.dt_s
    assert np.median(gaps) < 60.0
    for n in numbers[1:-1]:
        in_f1 = run.t_s[run.bar_in[0] == n]
        in_f2 = run.t_s[run.bar_in[1] == n]
        assert len(in_f1) > 0, n
        assert len(in_f2) > 0, n
        assert in_f1[0] < in_f2[0]
        assert in_f1[-1] < in_f2[-1]


def test_strip_present_is_true_exactly_while_a_bar_is_in_the_stand(run: Run) -> None:
    for j, stand in enumerate(("f1", "f2")):
        np.testing.assert_array_equal(run[f"{stand}.strip_present"] == 1.0, run.bar_in[j] > 0)
    assert 0.15 < run["f1.strip_present"].mean() < 0.6


def test_entry_temperature_and_cooling_along_the_mill(run: Run) -> None:
    for n, bar in run.bars.items():
        assert 1050.0 <= bar.entry_temp_c <= 1100.0
        in_f1 = run.bar_in[0] == n
        in_f2 = run.bar_in[1] == n
        if not (in_f1.any() and in_f2.any()):
            continue
        f1 = run["f1.strip_temp"][in_f1]
        f2 = run["f2.strip_temp"][in_f2]
        # Descaler, radiation and roll chill: F1 exit below the entry, F2 colder still.
        assert f1.max() < bar.entry_temp_c
        assert f2.mean() < f1.mean() - 5.0
        # Head-to-tail rundown: the tail waited longer on the delay table.
        assert f1[-3:].mean() < f1[:3].mean()


def test_pyrometer_holds_its_last_reading_between_bars(run: Run) -> None:
    temp = run["f1.strip_temp"]
    empty = run.bar_in[0] == 0
    held = empty[1:] & empty[:-1]
    assert held.any()
    np.testing.assert_array_equal(temp[1:][held], temp[:-1][held])


def test_f2_runs_faster_than_f1_by_mass_flow(run: Run) -> None:
    both = (run.bar_in[0] > 0) & (run.bar_in[0] == run.bar_in[1])
    assert both.sum() > 1000
    ratio = run["f2.speed"][both] / run["f1.speed"][both]
    h1 = np.array([run.bars[n].thickness_mm[1] for n in run.bar_in[0][both]])
    h2 = np.array([run.bars[n].thickness_mm[2] for n in run.bar_in[0][both]])
    assert (ratio > 1.2).all()
    # v1·h1 = v2·h2: the speed ratio is the thickness ratio, within the tachometers' noise.
    np.testing.assert_allclose(ratio, h1 / h2, rtol=0.01)


@pytest.mark.parametrize(("j", "stand"), [(0, "f1"), (1, "f2")])
def test_roll_force_rises_as_the_strip_gets_colder(run: Run, j: int, stand: str) -> None:
    correlations = []
    for n in run.bars:
        here = run.bar_in[j] == n
        if here.sum() < 10:
            continue
        correlations.append(
            np.corrcoef(run[f"{stand}.strip_temp"][here], run[f"{stand}.roll_force"][here])[0, 1]
        )
    assert len(correlations) > 100
    # Flow stress ∝ exp(k/T): within a bar (same gauge, width, grade) colder means harder.
    assert np.median(correlations) < -0.8
    assert np.mean(np.array(correlations) < -0.5) > 0.95


def test_roll_force_rises_with_reduction(steel: Site) -> None:
    mill = Plant(steel, seed=3).mill
    bar = mill.pending
    h = list(bar.thickness_mm)
    h[1] *= 0.9  # 10 % thinner out of F1: a heavier reduction
    light = mill.roll_gap(0, bar, 0.0)
    heavy = mill.roll_gap(0, replace(bar, thickness_mm=tuple(h)), 0.0)
    assert heavy.force_mn > light.force_mn
    assert heavy.torque_knm > light.torque_knm
    # Same entry temperature, so the rise comes from the longer bite and the larger strain.
    assert heavy.entry_temp_c == light.entry_temp_c


@pytest.mark.parametrize(("j", "stand"), [(0, "f1"), (1, "f2")])
def test_motor_power_is_torque_times_speed(run: Run, j: int, stand: str) -> None:
    p = run.plant.mill.stands[j]
    here = run.bar_in[j] > 0
    bars = [run.bars[n] for n in run.bar_in[j][here]]
    dh_m = np.array([(b.thickness_mm[j] - b.thickness_mm[j + 1]) / 1000.0 for b in bars])
    contact_m = np.sqrt(p.roll_radius_m * dh_m)
    force_kn = run[f"{stand}.roll_force"][here] * 1000.0
    # T = 2·F·λ·L (two work rolls) + drive-train friction; ω = v/R; P = T·ω.
    torque_knm = 2.0 * force_kn * p.lever_arm_ratio * contact_m + p.friction_torque_knm
    omega = run[f"{stand}.speed"][here] / p.roll_radius_m
    error = run[f"{stand}.motor_power"][here] / (torque_knm * omega) - 1.0
    assert abs(np.median(error)) < 0.005
    assert np.quantile(np.abs(error), 0.99) < 0.03


def test_torque_output_agrees_with_power() -> None:
    extra = """
  [[equipment.signal]]
  name = "torque"
  unit = "kN·m"
  binding = { kind = "sim", model = "rolling_stand", output = "torque" }
"""
    run = record(load_text(steel_site_text(extra)), hours=0.1, dt_s=0.5, seed=1)
    p = run.plant.mill.stands[0]
    power = run["f1.motor_power"]
    expected = run["f1.torque"] * run["f1.speed"] / p.roll_radius_m
    np.testing.assert_allclose(power, expected, rtol=0.03)
    assert run["f1.torque"].max() > 10 * p.friction_torque_knm  # it did roll


@pytest.mark.parametrize(("j", "stand"), [(0, "f1"), (1, "f2")])
def test_idle_stand_draws_magnetising_current_only(run: Run, j: int, stand: str) -> None:
    p = run.plant.mill.stands[j]
    idle = run.bar_in[j] == 0
    rolling = ~idle
    assert run[f"{stand}.roll_force"][idle].max() < 0.1
    np.testing.assert_allclose(
        run[f"{stand}.motor_current"][idle], p.magnetising_current_a, rtol=0.03
    )
    assert run[f"{stand}.motor_current"][rolling].mean() > 1.3 * p.magnetising_current_a
    power = run[f"{stand}.motor_power"]
    assert power[idle].mean() < 0.1 * power[rolling].mean()


def test_motor_current_follows_torque(run: Run) -> None:
    rolling = run.bar_in[0] > 0
    assert np.corrcoef(run["f1.roll_force"][rolling], run["f1.motor_current"][rolling])[0, 1] > 0.9


# -- run-out table -----------------------------------------------------------------------------


def test_table_carries_the_strip(run: Run) -> None:
    load = run["roller_table.load"]
    assert load.max() > 3.0
    assert load.max() <= 2 * max(b.mass_t for b in run.bars.values())
    # Nothing on the table before the first head has left F2.
    first_f2 = np.argmax(run.bar_in[1] > 0)
    assert (load[:first_f2] == 0.0).all()
    # A laden table pulls more current at the same speed (rolling friction ∝ weight).
    current = run["roller_table.motor_current"]
    assert current[load > 5.0].mean() > current[load == 0.0].mean() + 20.0
    assert (run["roller_table.running"] == 1.0).all()


# -- safety --------------------------------------------------------------------------------------


def test_fence_door_opens_now_and_then_and_holds_the_mill(run: Run) -> None:
    closed = run["guard.door_closed"]
    assert set(np.unique(closed)) == {0.0, 1.0}
    openings = np.count_nonzero(np.diff(closed) < 0)
    assert 3 <= openings <= 40  # ~12 visits in 3 h
    assert closed.mean() > 0.9
    # No bar is admitted in a step that follows a step with the door open.
    admitted_now = np.flatnonzero(np.diff(run.admitted) > 0) + 1
    assert (closed[admitted_now - 1] == 1.0).all()


# -- utilities -----------------------------------------------------------------------------------


def test_cooling_water_follows_the_sprays(run: Run) -> None:
    flow = run["cooling_water.flow"]
    pressure = run["cooling_water.pressure"]
    both = (run.bar_in[0] > 0) & (run.bar_in[1] > 0)
    none = (run.bar_in[0] == 0) & (run.bar_in[1] == 0)
    assert flow[both].mean() > flow[none].mean() + 600.0
    # Pump curve: the more it delivers, the less head it makes.
    assert np.corrcoef(flow, pressure)[0, 1] < -0.9
    assert pressure.min() > 4.5  # above the template's low-pressure alarm
    rise = run["cooling_water.return_temp"] - run["cooling_water.supply_temp"]
    assert rise.min() > 0.0
    assert rise.max() > 3.0
    # Roll heat comes with rolling: the return runs warmer when strip was in the stands in the
    # last minute or so (the water mixes in pipes and the collecting tank on the way back).
    rolled = ((run.bar_in[0] > 0) | (run.bar_in[1] > 0)).astype(float)
    keep = math.exp(-run.dt_s / 60.0)
    recently = np.empty_like(rolled)
    acc = 0.0
    for i, x in enumerate(rolled):
        acc = keep * acc + (1.0 - keep) * x
        recently[i] = acc
    assert np.corrcoef(recently, rise)[0, 1] > 0.7


def test_compressed_air_saws_between_its_set_points(run: Run) -> None:
    pressure = run["compressed_air.pressure"]
    assert pressure.min() > CompressedAir.LOAD_BAR - 0.1
    assert pressure.max() < CompressedAir.UNLOAD_BAR + 0.1
    loaded = run.values["compressed_air.flow"]  # the flow is noisy around the demand
    assert np.std(loaded) > 20.0
    # A sawtooth: rising while loaded, falling while unloaded, many cycles in three hours.
    rising = np.diff(pressure) > 0
    cycles = np.count_nonzero(np.diff(rising.astype(int)) != 0)
    assert cycles > 2 * 40
    smooth = np.convolve(pressure, np.ones(20) / 20, mode="valid")
    turns = np.count_nonzero(np.diff(np.sign(np.diff(smooth))) != 0)
    assert 2 * 40 < turns < 2 * 400


# -- power ---------------------------------------------------------------------------------------


def test_substation_supplies_every_drive(run: Run) -> None:
    total = run["substation.active_power"]
    drives = run["f1.motor_power"] + run["f2.motor_power"]
    assert (total >= drives).all()
    assert (total - drives).min() > 1000.0  # the base load is always there
    assert np.corrcoef(total, drives)[0, 1] > 0.95


def test_energy_is_monotonic_and_integrates_the_power(run: Run) -> None:
    energy = run["substation.energy"]
    assert (np.diff(energy) > 0.0).all()
    integral_kwh = run["substation.active_power"][1:].sum() * run.dt_s / 3600.0
    assert math.isclose(energy[-1] - energy[0], integral_kwh, rel_tol=0.005)


# -- ranges --------------------------------------------------------------------------------------


def test_every_value_stays_within_the_site_limits(run: Run) -> None:
    checked = 0
    for info in run.plant.signals:
        values = run[info.path]
        assert np.isfinite(values).all(), info.path
        if info.min is not None:
            assert values.min() >= info.min, info.path
            checked += 1
        if info.max is not None:
            assert values.max() <= info.max, info.path
        if info.type == "bool":
            assert set(np.unique(values)) <= {0.0, 1.0}, info.path
    assert checked >= 10  # the template gives most signals a range


def test_stand_models_are_instances_in_line_order(run: Run) -> None:
    f1 = run.plant.model("f1")
    f2 = run.plant.model("f2")
    assert isinstance(f1, RollingStand)
    assert isinstance(f2, RollingStand)
    assert (f1.index, f2.index) == (0, 1)
    assert f1 is not f2
    assert run.plant.mill.stands[1].roll_radius_m < run.plant.mill.stands[0].roll_radius_m
