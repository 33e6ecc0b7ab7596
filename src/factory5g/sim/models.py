"""Physics of the demo plant: a hot strip finishing mill, its run-out table and its utilities.

Every equipment of the site that uses a model gets its own instance; the :class:`Plant` steps them
in stage order with ``step(dt_s, plant_state)``. They are coupled only through the shared
:class:`PlantState`, in one direction per step::

    Mill          bar schedule and strip kinematics (plant level, stepped first)
    stage 0       rolling_stand ×n  strip in the stand → force, torque, temperature, motor power
                  conveyor          strip mass on the run-out table → drive current and power
                  safety            fence door → holds the next bar while open
    stage 1       cooling_water     sprays follow the stands; return temperature the roll heat
                  compressed_air    load/unload compressor; demand follows the strip
    stage 2       power             base load + every drive's electrical power; energy integrates it

Everything random comes from the ``random.Random`` each instance is given, so a seed fixes the run.

Simplifications that keep the numbers explainable: speeds are constant while a bar is rolled (no
threading acceleration, no impact speed drop), forward slip and roll flattening are neglected, and
the strip temperature is one lumped value through the thickness.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import ClassVar, Final

from factory5g.sim.errors import SimWriteError

__all__ = [
    "MODELS",
    "Bar",
    "CompressedAir",
    "Conveyor",
    "CoolingWater",
    "Mill",
    "Model",
    "Output",
    "PlantState",
    "PowerMeter",
    "RollGap",
    "RollingStand",
    "Safety",
    "StandParams",
    "flow_stress_mpa",
    "radiate",
]

# -- material and physical constants ----------------------------------------------------------

KELVIN: Final = 273.15
GRAVITY_M_S2: Final = 9.81
STEFAN_BOLTZMANN: Final = 5.670e-8  # W/(m²·K⁴)
STEEL_DENSITY_KG_M3: Final = 7850.0
STEEL_HEAT_CAPACITY_J_KG_K: Final = 650.0  # near 1000 °C
STEEL_RHO_C: Final = STEEL_DENSITY_KG_M3 * STEEL_HEAT_CAPACITY_J_KG_K  # J/(m³·K)
# Thermal effusivity √(kρc) of steel (k ≈ 30 W/(m·K) at 1000 °C): sets how much heat a roll
# draws from the strip during a short contact.
STEEL_EFFUSIVITY: Final = 12_400.0  # W·s^½/(m²·K)
STRIP_EMISSIVITY: Final = 0.8  # scaled hot steel
WATER_RHO_C: Final = 4.18e6  # J/(m³·K)
NORMAL_PRESSURE_BAR: Final = 1.01325  # reference of the normal cubic metre (Nm³)


def radiate(temp_c: float, thickness_m: float, seconds: float) -> float:
    """Temperature of a hot plate after radiating from both faces for ``seconds``.

    ρ·c·h·dT/dt = −2·ε·σ·T⁴ (ambient negligible at 1000 °C: (300/1300)⁴ < 0.3 %) integrates to
    T(t) = (T₀⁻³ + 3·a·t)^(−1/3) with a = 2·ε·σ/(ρ·c·h), T in kelvin.
    """
    if seconds <= 0.0:
        return temp_c
    a = 2.0 * STRIP_EMISSIVITY * STEFAN_BOLTZMANN / (STEEL_RHO_C * thickness_m)
    t0 = temp_c + KELVIN
    return float((t0**-3 + 3.0 * a * seconds) ** (-1.0 / 3.0) - KELVIN)


def flow_stress_mpa(temp_c: float, strain: float, strain_rate_s: float, carbon_pct: float) -> float:
    """Mean flow stress of C-Mn steel in hot rolling, Misaka & Yoshimoto (1967).

    σ = exp(0.126 − 1.75C + 0.594C² + (2851 + 2968C − 1120C²)/T) · ε^0.21 · ε̇^0.13  [kgf/mm²]

    The 1/T term is why the roll force rises as the strip gets colder.
    """
    c = carbon_pct
    t = temp_c + KELVIN
    kgf_mm2 = (
        math.exp(0.126 - 1.75 * c + 0.594 * c * c + (2851.0 + 2968.0 * c - 1120.0 * c * c) / t)
        * strain**0.21
        * strain_rate_s**0.13
    )
    return float(kgf_mm2) * 9.80665


def lag(value: float, target: float, dt_s: float, tau_s: float) -> float:
    """First-order lag towards ``target``, exact for a target constant over the step."""
    return target + (value - target) * math.exp(-dt_s / tau_s)


def measured(
    rng: random.Random, value: float, sigma: float, *, floor: float | None = None
) -> float:
    """``value`` as an instrument reports it: Gaussian noise, clipped where its range starts.

    Transmitters of force, current, speed or mass saturate at the bottom of their range (4 mA
    is zero), so a physically non-negative quantity never reads below ``floor``.
    """
    reading = value + rng.gauss(0.0, sigma)
    return reading if floor is None else max(floor, reading)


class Wander:
    """A slow random drift (Ornstein-Uhlenbeck process), exact for any step length."""

    def __init__(self, rng: random.Random, mean: float, sigma: float, tau_s: float) -> None:
        self.mean = mean
        self.sigma = sigma
        self.tau_s = tau_s
        self.value = mean + rng.gauss(0.0, sigma)
        self._rng = rng

    def step(self, dt_s: float) -> float:
        if dt_s > 0.0:
            decay = math.exp(-dt_s / self.tau_s)
            self.value = (
                self.mean
                + (self.value - self.mean) * decay
                + self.sigma * math.sqrt(1.0 - decay * decay) * self._rng.gauss(0.0, 1.0)
            )
        return self.value


# -- the mill: bars, pass schedule and roll gap -----------------------------------------------

STAND_PITCH_M: Final = 5.5  # interstand distance of a finishing mill
BAR_INTERVAL_S: Final = (40.0, 60.0)  # roughing mill rhythm: a transfer bar every 40-60 s
MIN_GAP_S: Final = 8.0  # the stands need this long between a tail and the next head
DESCALER_DROP_K: Final = 20.0  # high-pressure descaling water at the finishing mill entry
INTERSTAND_SPRAY_K: Final = 8.0  # interstand cooling sprays
ROLL_GAP_SPRAY_K: Final = 8.0  # roll coolant running onto the strip at the bite
ROLL_SURFACE_C: Final = 80.0  # mean work roll surface temperature under the cooling sprays
DEFORMATION_HEAT_FRACTION: Final = 0.9  # share of plastic work that stays in the strip as heat
# Water-cooled skids of the reheating furnace leave cold bands across the slab; after roughing
# they are a few dips along the bar.
SKID_MARKS: Final = 4
SKID_DEPTH_K: Final = 15.0
SKID_WIDTH: Final = 0.03  # fraction of the bar length


@dataclass(frozen=True, slots=True)
class Bar:
    """A transfer bar from the roughing mill and the pass schedule the finishing mill rolls it with.

    ``thickness_mm[0]`` is the bar, ``thickness_mm[j + 1]`` the strip after stand ``j``.
    """

    number: int
    entry_s: float  # plant time the head reaches the first stand (planned until admitted)
    carbon_pct: float
    width_m: float
    mass_t: float
    entry_temp_c: float  # head temperature at the finishing mill entry pyrometer
    thickness_mm: tuple[float, ...]
    entry_speed_m_s: float

    @property
    def length_m(self) -> float:
        """Length of the bar before the first stand."""
        return self.mass_t * 1000.0 / self.mass_per_m_kg(0)

    @property
    def duration_s(self) -> float:
        """How long the bar takes to pass any point of the line (the same everywhere)."""
        return self.length_m / self.entry_speed_m_s

    def speed_m_s(self, section: int) -> float:
        """Strip speed after ``section`` stands (0: entering the first).

        Mass flow constancy: the strip neither piles up nor tears between stands, so h·v is the
        same everywhere and v_j = v_0·h_0/h_j (forward slip neglected: strip speed = roll speed).
        """
        return self.entry_speed_m_s * self.thickness_mm[0] / self.thickness_mm[section]

    def mass_per_m_kg(self, section: int) -> float:
        """Mass of one metre of strip after ``section`` stands."""
        return STEEL_DENSITY_KG_M3 * self.width_m * self.thickness_mm[section] / 1000.0


@dataclass(frozen=True, slots=True)
class StandParams:
    """Design data of one finishing stand and its main drive."""

    roll_radius_m: float
    rated_torque_knm: float  # at the rolls, both work rolls together
    lever_arm_ratio: float = 0.48  # torque arm / contact length, typical of hot rolling
    magnetising_current_a: float = 1500.0
    rated_torque_current_a: float = 4800.0
    friction_fraction: float = 0.02  # gears, spindles, bearings: share of rated torque

    @classmethod
    def for_position(cls, index: int) -> StandParams:
        # Downstream stands roll thinner, faster strip with smaller work rolls and motors.
        return cls(
            roll_radius_m=max(0.28, 0.40 - 0.04 * index), rated_torque_knm=1600.0 * 0.78**index
        )

    @property
    def friction_torque_knm(self) -> float:
        return self.friction_fraction * self.rated_torque_knm


@dataclass(frozen=True, slots=True)
class RollGap:
    """What one element of strip goes through in one stand (single-pass roll-gap model)."""

    entry_temp_c: float
    exit_temp_c: float
    force_mn: float
    torque_knm: float  # rolling torque of both work rolls, drive-train friction excluded
    contact_length_m: float
    heat_to_water_kw: float  # taken away by the roll cooling water


class Mill:
    """The bar schedule and the strip kinematics of the finishing line.

    Geometry: stands ``0..n-1`` every :data:`STAND_PITCH_M`, then the run-out tables end to end,
    ``runout_m`` long in all. A bar keeps its speeds, so where its head and tail are is a closed
    form of time: the head reaches stand ``j`` after the transit times between the stands before
    it, and the tail follows :attr:`Bar.duration_s` later at every point of the line.
    """

    def __init__(self, rng: random.Random, n_stands: int, runout_m: float) -> None:
        self.stands = tuple(StandParams.for_position(j) for j in range(n_stands))
        self.runout_m = runout_m
        self.bars: list[Bar] = []  # admitted and still on the line, oldest first
        self.admitted = 0
        self._rng = rng
        self.pending = self._new_bar(rng.uniform(2.0, 8.0))

    def _new_bar(self, entry_s: float) -> Bar:
        rng = self._rng
        h = [rng.uniform(32.0, 40.0)]
        for j in range(len(self.stands)):
            # Finishing schedules take the heaviest reductions first, where the strip is hottest.
            h.append(h[-1] * (1.0 - rng.uniform(0.25, 0.35) * (1.0 - 0.08 * j)))
        return Bar(
            number=self.admitted + 1,
            entry_s=entry_s,
            carbon_pct=rng.uniform(0.04, 0.20),
            width_m=rng.uniform(1.0, 1.5),
            mass_t=rng.uniform(6.5, 9.5),
            entry_temp_c=rng.uniform(1050.0, 1100.0),
            thickness_mm=tuple(h),
            entry_speed_m_s=rng.uniform(1.2, 1.8),
        )

    def advance(self, t_s: float, holds: Mapping[str, str]) -> None:
        """Move the schedule to plant time ``t_s``: admit the next bar unless something holds it."""
        self.bars = [b for b in self.bars if t_s < self._clear_line_s(b)]
        if t_s < self.pending.entry_s:
            return
        if holds:
            # The roughing mill waits: the bar enters once every hold is gone.
            self.pending = replace(self.pending, entry_s=t_s)
            return
        bar = self.pending
        self.bars.append(bar)
        self.admitted += 1
        interval = self._rng.uniform(*BAR_INTERVAL_S)
        tail_out = bar.entry_s + self._runout_delay_s(bar) + bar.duration_s
        self.pending = self._new_bar(max(bar.entry_s + interval, tail_out + MIN_GAP_S))

    # -- kinematics ---------------------------------------------------------------------------

    def _delay_s(self, bar: Bar, stand: int) -> float:
        """Transit time of a strip element from the first stand to ``stand``."""
        return sum(STAND_PITCH_M / bar.speed_m_s(k + 1) for k in range(stand))

    def _runout_delay_s(self, bar: Bar) -> float:
        return self._delay_s(bar, len(self.stands) - 1) if self.stands else 0.0

    def _clear_line_s(self, bar: Bar) -> float:
        """When the tail leaves the end of the run-out."""
        exit_speed = bar.speed_m_s(len(self.stands))
        return bar.entry_s + self._runout_delay_s(bar) + bar.duration_s + self.runout_m / exit_speed

    def in_stand(self, stand: int, t_s: float) -> tuple[Bar, float] | None:
        """The bar in ``stand`` at ``t_s`` and how long after its head the element there entered."""
        for bar in self.bars:
            head = bar.entry_s + self._delay_s(bar, stand)
            if head <= t_s < head + bar.duration_s:
                return bar, t_s - head
        return None

    def bar_for_stand(self, stand: int, t_s: float) -> Bar:
        """The bar in ``stand``, else the next one to come: the one its drive is set up for."""
        for bar in self.bars:
            if t_s < bar.entry_s + self._delay_s(bar, stand) + bar.duration_s:
                return bar
        return self.pending

    def strip_mass_t(self, start_m: float, end_m: float, t_s: float) -> float:
        """Mass of strip lying on the run-out between ``start_m`` and ``end_m`` from its start."""
        n = len(self.stands)
        total_kg = 0.0
        for bar in self.bars:
            v = bar.speed_m_s(n)
            t_head = t_s - bar.entry_s - self._runout_delay_s(bar)
            if t_head <= 0.0:
                continue
            head_m = v * t_head
            # While the tail is still in the last stand, the strip reaches back to it.
            tail_m = max(0.0, v * (t_head - bar.duration_s))
            overlap = min(head_m, end_m) - max(tail_m, start_m)
            if overlap > 0.0:
                total_kg += overlap * bar.mass_per_m_kg(n)
        return total_kg / 1000.0

    # -- thermal and roll-gap model -----------------------------------------------------------

    def roll_gap(self, stand: int, bar: Bar, wait_s: float) -> RollGap:
        """The pass in ``stand`` of the element that entered the mill ``wait_s`` after the head.

        The temperature is followed from the entry pyrometer: the element radiated on the delay
        table while the bar ahead of it was rolled (so the tail enters colder than the head: the
        head-to-tail temperature rundown), crossed the descaler, then each stand and interstand.
        """
        where = wait_s / bar.duration_s
        skid = sum(
            SKID_DEPTH_K * math.exp(-(((where - (k + 0.5) / SKID_MARKS) / SKID_WIDTH) ** 2))
            for k in range(SKID_MARKS)
        )
        temp = radiate(bar.entry_temp_c, bar.thickness_mm[0] / 1000.0, wait_s)
        temp -= skid + DESCALER_DROP_K
        gap = self._pass(0, bar, temp)
        for k in range(1, stand + 1):
            transit_s = STAND_PITCH_M / bar.speed_m_s(k)
            temp = radiate(gap.exit_temp_c, bar.thickness_mm[k] / 1000.0, transit_s)
            gap = self._pass(k, bar, temp - INTERSTAND_SPRAY_K)
        return gap

    def _pass(self, stand: int, bar: Bar, entry_temp_c: float) -> RollGap:
        p = self.stands[stand]
        h_in = bar.thickness_mm[stand] / 1000.0
        h_out = bar.thickness_mm[stand + 1] / 1000.0
        h_mean = (h_in + h_out) / 2.0
        v = bar.speed_m_s(stand + 1)
        # Projected arc of contact L = √(R·Δh); true strain and Sims' mean strain rate.
        contact_m = math.sqrt(p.roll_radius_m * (h_in - h_out))
        strain = math.log(h_in / h_out)
        strain_rate = v / contact_m * strain
        # Plane strain (the strip hardly widens): flow resistance k = 2/√3·σ. Ford & Alexander's
        # geometry factor Q = π/4 + L/(4·h_mean) accounts for friction in the bite.
        k_pa = (
            2.0
            / math.sqrt(3.0)
            * flow_stress_mpa(entry_temp_c, strain, strain_rate, bar.carbon_pct)
            * 1e6
        )
        force_n = k_pa * bar.width_m * contact_m * (math.pi / 4.0 + contact_m / (4.0 * h_mean))
        # Two work rolls, each with the force acting at a lever arm λ·L from the roll centre line.
        torque_nm = 2.0 * force_n * p.lever_arm_ratio * contact_m
        # Heat balance of the element: plastic work heats it, the cold rolls draw heat from both
        # faces during the contact time L/v (two semi-infinite bodies of equal effusivity meet at
        # their mean temperature: q = e·ΔT·√(t/π) per face), roll coolant at the bite chills it.
        heating_k = DEFORMATION_HEAT_FRACTION * k_pa * strain / STEEL_RHO_C
        contact_j_m2 = (
            2.0
            * STEEL_EFFUSIVITY
            * (entry_temp_c - ROLL_SURFACE_C)
            * math.sqrt(contact_m / v / math.pi)
        )
        chill_k = contact_j_m2 / (STEEL_RHO_C * h_mean)
        exit_temp_c = entry_temp_c + heating_k - chill_k - ROLL_GAP_SPRAY_K
        # The roll cooling water carries away what the rolls took, plus the bite spray's share.
        area_rate_m2_s = bar.width_m * v
        heat_w = (
            contact_j_m2 * area_rate_m2_s + ROLL_GAP_SPRAY_K * STEEL_RHO_C * h_out * area_rate_m2_s
        )
        return RollGap(
            entry_temp_c=entry_temp_c,
            exit_temp_c=exit_temp_c,
            force_mn=force_n / 1e6,
            torque_knm=torque_nm / 1e3,
            contact_length_m=contact_m,
            heat_to_water_kw=heat_w / 1e3,
        )


# -- the shared state and the model interface -------------------------------------------------


@dataclass
class PlantState:
    """What the models share during a step. Each writes its own entries; later stages read them."""

    mill: Mill
    t_s: float = 0.0
    strip_present: dict[str, bool] = field(default_factory=dict)  # by stand
    roll_heat_kw: dict[str, float] = field(default_factory=dict)  # to the roll cooling water
    electrical_kw: dict[str, float] = field(default_factory=dict)  # demand of each drive
    holds: dict[str, str] = field(default_factory=dict)  # why the next bar must wait, by equipment


@dataclass(frozen=True, slots=True)
class Output:
    """One output of a model, as a site binds it: ``output = "name"``."""

    unit: str
    description: str
    writable: bool = False
    boolean: bool = False  # reported as 0.0 / 1.0


class Model(ABC):
    """One simulated equipment. ``values`` holds what its instruments report after the last step."""

    kind: ClassVar[str]
    outputs: ClassVar[Mapping[str, Output]]
    stage: ClassVar[int] = 0

    def __init__(self, name: str, rng: random.Random, index: int) -> None:
        self.name = name  # the equipment id
        self.index = index  # how many instances of the same model come before it (line order)
        self._rng = rng
        self.values: dict[str, float] = dict.fromkeys(self.outputs, 0.0)

    @abstractmethod
    def step(self, dt_s: float, plant: PlantState) -> None:
        """Advance by ``dt_s`` (0 fills ``values`` with the initial state)."""

    def write(self, output: str, value: float) -> None:
        """Set a writable output; the default has none."""
        raise SimWriteError(f"{self.name}.{output}", f"{self.kind}.{output} is not writable")


class RollingStand(Model):
    """A finishing stand: roll-gap physics of the bar in it, main drive, exit pyrometer."""

    kind = "rolling_stand"
    outputs: ClassVar[Mapping[str, Output]] = {
        "speed": Output("m/s", "work roll peripheral speed"),
        "roll_force": Output("MN", "roll separating force (load cells)"),
        "strip_temp": Output("°C", "strip temperature at the exit (pyrometer, holds while empty)"),
        "motor_current": Output("A", "main drive motor current"),
        "motor_power": Output("kW", "main drive shaft power P = T·ω"),
        "torque": Output("kN·m", "main drive torque at the rolls"),
        "exit_thickness": Output("mm", "exit gauge of the pass (set-up value while empty)"),
        "strip_present": Output("", "hot metal detector", boolean=True),
        "speed_trim": Output("%", "operator speed vernier on the set-up speed", writable=True),
    }
    SPEED_TAU_S: ClassVar[float] = 1.0  # speed loop of the main drive
    # A vernier, not a speed reference: the mill's mass-flow set-up stays in charge, the
    # operator only trims a stand to balance the loopers (a few per cent either way).
    MAX_TRIM_PCT: ClassVar[float] = 5.0
    DRIVE_EFFICIENCY: ClassVar[float] = 0.95  # converter and motor

    def __init__(self, name: str, rng: random.Random, index: int) -> None:
        super().__init__(name, rng, index)
        self._speed: float | None = None
        self._temp_reading: float | None = None
        self.values["speed_trim"] = 0.0

    def write(self, output: str, value: float) -> None:
        if output != "speed_trim":
            super().write(output, value)  # raises: the other outputs are measurements
            return
        if not abs(value) <= self.MAX_TRIM_PCT:
            raise SimWriteError(
                f"{self.name}.{output}",
                f"{value} %: the speed trim is limited to ±{self.MAX_TRIM_PCT:g} %",
            )
        self.values["speed_trim"] = value

    def step(self, dt_s: float, plant: PlantState) -> None:
        mill, j, rng = plant.mill, self.index, self._rng
        p = mill.stands[j]
        setup = mill.bar_for_stand(j, plant.t_s)
        # Between bars the drive runs up or down to the threading speed of the next one.
        target = setup.speed_m_s(j + 1) * (1.0 + self.values["speed_trim"] / 100.0)
        self._speed = (
            target if self._speed is None else lag(self._speed, target, dt_s, self.SPEED_TAU_S)
        )
        here = mill.in_stand(j, plant.t_s)
        if here is None:
            # Open gap: no force; the motor only turns the drive train, on magnetising current.
            force_mn, rolling_knm, heat_kw = 0.0, 0.0, 0.0
            if self._temp_reading is None:
                self._temp_reading = mill.roll_gap(j, setup, 0.0).exit_temp_c
        else:
            gap = mill.roll_gap(j, *here)
            force_mn, rolling_knm, heat_kw = gap.force_mn, gap.torque_knm, gap.heat_to_water_kw
            self._temp_reading = measured(rng, gap.exit_temp_c, 2.5)
        torque_knm = rolling_knm + p.friction_torque_knm
        power_kw = torque_knm * self._speed / p.roll_radius_m  # P = T·ω, ω = v/R; kN·m·rad/s = kW
        # Field-oriented drive below base speed: constant flux, torque ∝ torque current; the
        # magnetising current flows whatever the load.
        current_a = math.hypot(
            p.magnetising_current_a, p.rated_torque_current_a * torque_knm / p.rated_torque_knm
        )
        present = here is not None
        plant.strip_present[self.name] = present
        plant.roll_heat_kw[self.name] = heat_kw
        plant.electrical_kw[self.name] = power_kw / self.DRIVE_EFFICIENCY
        self.values.update(
            speed=measured(rng, self._speed, 0.001 * self._speed, floor=0.0),
            roll_force=measured(rng, force_mn, 0.004 * force_mn + 0.02, floor=0.0),
            strip_temp=self._temp_reading,
            motor_current=measured(rng, current_a, 0.005 * current_a, floor=0.0),
            motor_power=measured(rng, power_kw, 0.005 * power_kw),
            torque=measured(rng, torque_knm, 0.005 * torque_knm),
            exit_thickness=setup.thickness_mm[j + 1],  # the bar in the stand, else the next
            strip_present=float(present),
        )


class Conveyor(Model):
    """A run-out roller table: group drive with a speed ramp, carrying the strip to the coiler."""

    kind = "conveyor"
    outputs: ClassVar[Mapping[str, Output]] = {
        "speed": Output("m/s", "roller peripheral speed"),
        "speed_setpoint": Output("m/s", "speed set point", writable=True),
        "motor_current": Output("A", "group drive current"),
        "motor_power": Output("kW", "shaft power (negative while braking)"),
        "load": Output("t", "mass of strip on the table"),
        "running": Output("", "rollers turning", boolean=True),
    }
    LENGTH_M: ClassVar[float] = 120.0
    DEFAULT_SETPOINT_M_S: ClassVar[float] = 5.0  # leads the strip, so the rollers pull it straight
    SPEED_TAU_S: ClassVar[float] = 2.0
    MAX_ACCEL_M_S2: ClassVar[float] = 1.0  # the drive's current limit caps the ramp
    ROLLER_MASS_KG: ClassVar[float] = 80_000.0  # roller inertia as an equivalent moving mass
    BREAKAWAY_N: ClassVar[float] = 15_000.0  # bearing and seal friction
    VISCOUS_N_PER_M_S: ClassVar[float] = 5_000.0  # gear oil churning, windage
    ROLLING_FRICTION: ClassVar[float] = 0.15  # strip on rollers, incl. bearing load friction
    NEWTON_PER_AMP: ClassVar[float] = 120.0  # torque constant, referred to the roller surface
    MAGNETISING_A: ClassVar[float] = 250.0
    RUNNING_M_S: ClassVar[float] = 0.05
    # Slower than this, a strip threading onto the table would buckle: the mill waits.
    MIN_THREADING_M_S: ClassVar[float] = 1.0
    EFFICIENCY: ClassVar[float] = 0.92

    def __init__(self, name: str, rng: random.Random, index: int) -> None:
        super().__init__(name, rng, index)
        self.setpoint_m_s = self.DEFAULT_SETPOINT_M_S
        self._speed = self.DEFAULT_SETPOINT_M_S
        self.start_m = index * self.LENGTH_M  # tables follow each other on the run-out

    def write(self, output: str, value: float) -> None:
        if output != "speed_setpoint":
            super().write(output, value)  # raises: the other outputs are measurements
            return
        if not value >= 0.0:
            raise SimWriteError(
                f"{self.name}.{output}", f"{value} m/s: a run-out table does not reverse"
            )
        self.setpoint_m_s = value
        self.values["speed_setpoint"] = value

    def step(self, dt_s: float, plant: PlantState) -> None:
        rng = self._rng
        step_m_s = lag(self._speed, self.setpoint_m_s, dt_s, self.SPEED_TAU_S) - self._speed
        limit = self.MAX_ACCEL_M_S2 * dt_s
        step_m_s = min(limit, max(-limit, step_m_s))
        self._speed += step_m_s
        accel = step_m_s / dt_s if dt_s > 0.0 else 0.0
        load_t = plant.mill.strip_mass_t(self.start_m, self.start_m + self.LENGTH_M, plant.t_s)
        turning = min(1.0, self._speed / 0.1)  # friction builds up as the rollers break away
        force_n = (
            (self.BREAKAWAY_N + self.ROLLING_FRICTION * load_t * 1000.0 * GRAVITY_M_S2) * turning
            + self.VISCOUS_N_PER_M_S * self._speed
            + self.ROLLER_MASS_KG * accel
        )
        enabled = self.setpoint_m_s > 0.0 or self._speed > self.RUNNING_M_S
        current_a = (
            math.hypot(self.MAGNETISING_A, force_n / self.NEWTON_PER_AMP) if enabled else 0.0
        )
        power_kw = force_n * self._speed / 1000.0
        running = self._speed > self.RUNNING_M_S
        # Roller-table drives brake through resistors: braking energy never reaches the grid.
        plant.electrical_kw[self.name] = max(0.0, power_kw) / self.EFFICIENCY
        if self._speed < self.MIN_THREADING_M_S:
            plant.holds[self.name] = "run-out table stopped"
        else:
            plant.holds.pop(self.name, None)
        self.values.update(
            speed=measured(rng, self._speed, 0.002 * self._speed, floor=0.0),
            speed_setpoint=self.setpoint_m_s,
            motor_current=measured(rng, current_a, 0.01 * current_a, floor=0.0),
            motor_power=measured(rng, power_kw, 0.01 * abs(power_kw)),
            load=measured(rng, load_t, 0.05, floor=0.0) if load_t > 0.0 else 0.0,
            running=float(running),
        )


class Safety(Model):
    """The run-out safety fence: its door opens for the odd maintenance visit."""

    kind = "safety"
    outputs: ClassVar[Mapping[str, Output]] = {
        "door_closed": Output("", "door switch (safety circuit)", boolean=True),
    }
    MEAN_VISIT_INTERVAL_S: ClassVar[float] = 900.0  # a visit every ~15 min, at random
    VISIT_S: ClassVar[tuple[float, float]] = (20.0, 45.0)

    def __init__(self, name: str, rng: random.Random, index: int) -> None:
        super().__init__(name, rng, index)
        self._open_s = 0.0
        self._close_s = 0.0
        self._plan_visit(0.0)

    def _plan_visit(self, after_s: float) -> None:
        # Visits are independent of each other: exponential intervals (a Poisson process).
        self._open_s = after_s + self._rng.expovariate(1.0 / self.MEAN_VISIT_INTERVAL_S)
        self._close_s = self._open_s + self._rng.uniform(*self.VISIT_S)

    def step(self, dt_s: float, plant: PlantState) -> None:
        while plant.t_s >= self._close_s:
            self._plan_visit(self._close_s)
        closed = not self._open_s <= plant.t_s < self._close_s
        # The mill takes no bar while someone may be inside the fence.
        if closed:
            plant.holds.pop(self.name, None)
        else:
            plant.holds[self.name] = "fence door open"
        self.values["door_closed"] = float(closed)


class CoolingWater(Model):
    """Roll cooling pump station: sprays open with the strip, the water carries the roll heat."""

    kind = "cooling_water"
    stage = 1
    outputs: ClassVar[Mapping[str, Output]] = {
        "flow": Output("m³/h", "pump delivery"),
        "pressure": Output("bar", "header pressure"),
        "supply_temp": Output("°C", "supply temperature (from the cooling tower)"),
        "return_temp": Output("°C", "return temperature"),
    }
    BASE_FLOW_M3_H: ClassVar[float] = 400.0  # bearings, housings, idle roll cooling
    SPRAY_FLOW_M3_H: ClassVar[float] = 600.0  # per stand with strip in it
    VALVE_TAU_S: ClassVar[float] = 2.0
    SHUTOFF_BAR: ClassVar[float] = 6.68
    PUMP_CURVE_BAR_PER_M3_H2: ClassVar[float] = 5e-7  # head falls with the square of the flow
    BASE_HEAT_KW: ClassVar[float] = 500.0  # bearings and motors
    MIXING_TAU_S: ClassVar[float] = 45.0  # pipes and collecting tank smooth the return temperature
    PUMP_EFFICIENCY: ClassVar[float] = 0.8

    def __init__(self, name: str, rng: random.Random, index: int) -> None:
        super().__init__(name, rng, index)
        self._flow = self.BASE_FLOW_M3_H
        self._supply = Wander(rng, 32.0, 1.0, 1800.0)  # follows the weather at the cooling tower
        self._return: float | None = None

    def step(self, dt_s: float, plant: PlantState) -> None:
        rng = self._rng
        sprays = sum(plant.strip_present.values())
        target = self.BASE_FLOW_M3_H + self.SPRAY_FLOW_M3_H * sprays
        self._flow = lag(self._flow, target, dt_s, self.VALVE_TAU_S)
        pressure = self.SHUTOFF_BAR - self.PUMP_CURVE_BAR_PER_M3_H2 * self._flow**2
        supply = self._supply.step(dt_s)
        heat_kw = self.BASE_HEAT_KW + sum(plant.roll_heat_kw.values())
        # Heat balance of the water: ΔT = P / (ρ·c·Q).
        rise = heat_kw * 1000.0 / (WATER_RHO_C * self._flow / 3600.0)
        ret = supply + rise
        self._return = (
            ret if self._return is None else lag(self._return, ret, dt_s, self.MIXING_TAU_S)
        )
        # Pump shaft power = Δp·Q / η.
        plant.electrical_kw[self.name] = (
            pressure * 1e5 * self._flow / 3600.0 / self.PUMP_EFFICIENCY / 1000.0
        )
        self.values.update(
            flow=measured(rng, self._flow, 0.01 * self._flow, floor=0.0),
            pressure=measured(rng, pressure, 0.02, floor=0.0),
            supply_temp=measured(rng, supply, 0.1),
            return_temp=measured(rng, self._return, 0.1),
        )


class CompressedAir(Model):
    """Screw compressor in load/unload control on an air receiver: a pressure sawtooth."""

    kind = "compressed_air"
    stage = 1
    outputs: ClassVar[Mapping[str, Output]] = {
        "pressure": Output("bar", "receiver pressure (gauge)"),
        "flow": Output("Nm³/h", "consumption (header flow meter)"),
        "loaded": Output("", "compressor delivering", boolean=True),
    }
    LOAD_BAR: ClassVar[float] = 6.3  # compressor loads below this
    UNLOAD_BAR: ClassVar[float] = 7.2  # and unloads above this
    DELIVERY_NM3_H: ClassVar[float] = 3200.0
    RECEIVER_M3: ClassVar[float] = 30.0
    BASE_DEMAND_NM3_H: ClassVar[float] = 1900.0
    BLOW_OFF_NM3_H: ClassVar[float] = 300.0  # strip drying blow-off, per stand with strip
    LOADED_KW: ClassVar[float] = 330.0
    UNLOADED_KW: ClassVar[float] = 95.0  # an unloaded screw compressor still draws ~30 %

    def __init__(self, name: str, rng: random.Random, index: int) -> None:
        super().__init__(name, rng, index)
        self._pressure = rng.uniform(self.LOAD_BAR, self.UNLOAD_BAR)
        self._loaded = rng.random() < 0.5
        self._demand = Wander(rng, self.BASE_DEMAND_NM3_H, 120.0, 300.0)

    def step(self, dt_s: float, plant: PlantState) -> None:
        rng = self._rng
        demand = max(0.0, self._demand.step(dt_s)) + self.BLOW_OFF_NM3_H * sum(
            plant.strip_present.values()
        )
        delivery = self.DELIVERY_NM3_H if self._loaded else 0.0
        # Isothermal receiver: p·V = m·R·T, so dp/dt = (Q_in − Q_out)·p_n / V in normal volumes.
        self._pressure += (
            (delivery - demand) / 3600.0 * NORMAL_PRESSURE_BAR / self.RECEIVER_M3 * dt_s
        )
        self._pressure = max(0.0, self._pressure)
        if self._pressure <= self.LOAD_BAR:
            self._loaded = True
        elif self._pressure >= self.UNLOAD_BAR:
            self._loaded = False
        plant.electrical_kw[self.name] = self.LOADED_KW if self._loaded else self.UNLOADED_KW
        self.values.update(
            pressure=measured(rng, self._pressure, 0.01, floor=0.0),
            flow=measured(rng, demand, 0.015 * demand, floor=0.0),
            loaded=float(self._loaded),
        )


class PowerMeter(Model):
    """The mill substation meter: base load plus every drive of the plant."""

    kind = "power"
    stage = 2
    outputs: ClassVar[Mapping[str, Output]] = {
        "active_power": Output("kW", "three-phase active power"),
        "energy": Output("kWh", "active energy register"),
    }
    BASE_KW: ClassVar[float] = 2500.0  # auxiliaries: hydraulics, fans, lighting, cranes

    def __init__(self, name: str, rng: random.Random, index: int) -> None:
        super().__init__(name, rng, index)
        self._base = Wander(rng, self.BASE_KW, 150.0, 600.0)
        self.energy_kwh = round(rng.uniform(1e6, 5e6), 1)  # the register never starts at 0

    def step(self, dt_s: float, plant: PlantState) -> None:
        base = max(0.2 * self.BASE_KW, self._base.step(dt_s))
        total_kw = base + sum(kw for name, kw in plant.electrical_kw.items() if name != self.name)
        # The register integrates the true power; what it shows never decreases.
        self.energy_kwh += total_kw * dt_s / 3600.0
        self.values.update(
            active_power=measured(self._rng, total_kw, 0.003 * total_kw),
            energy=self.energy_kwh,
        )


MODELS: Final[Mapping[str, type[Model]]] = {
    cls.kind: cls
    for cls in (RollingStand, Conveyor, Safety, CoolingWater, CompressedAir, PowerMeter)
}
