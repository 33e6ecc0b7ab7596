"""The demo plant: the site's ``kind = "sim"`` signals, fed by the physics of ``sim.models``.

:class:`Plant` is synchronous and deterministic — plant time only, no wall clock, no asyncio — so
tests and what-if runs go through hours of production in seconds. :class:`Simulator` paces a Plant
in real time and publishes one Batch per tick to a Bus, like an adapter would.

Signals with another binding (sparkplug, opcua, modbus) or none are left to the real adapters.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Protocol, Self

import numpy as np
from numpy.typing import NDArray

from factory5g.model import SignalInfo, Site, UnknownSignalError
from factory5g.model.site import DataType, SimBinding
from factory5g.sim.errors import BindingProblem, SimBindingError, SimWriteError
from factory5g.sim.models import MODELS, Conveyor, Mill, Model, PlantState, RollingStand
from factory5g.stream import Batch, Bus, BusClosedError, Quality, now_ns

__all__ = ["MAX_SUBSTEP_S", "Feed", "Pacer", "Plant", "SimPeer", "Simulator"]

_log = logging.getLogger(__name__)

# Longest step the physics takes at once: ramps, the compressor sawtooth and the safety visits
# stay right for any dt given to Plant.step, which splits longer ones.
MAX_SUBSTEP_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class Feed:
    """A site signal and the model output that feeds it."""

    signal: SignalInfo
    model: Model
    output: str


class Plant:
    """Every sim-bound signal of ``site``, fed by one model instance per (equipment, model).

    Raises :class:`SimBindingError` listing every binding to an unknown model or output.
    Rolling stands form the mill in file order (the first is F1); run-out tables follow the last
    stand in file order too. ``seed`` fixes every random choice: equal seeds, equal runs.
    """

    def __init__(self, site: Site, *, seed: int = 0) -> None:
        bound, problems = _sim_bindings(site)
        if problems:
            raise SimBindingError(problems)
        self.site = site
        self.seed = seed
        models_of: dict[str, set[str]] = {}
        for info, binding in bound:
            models_of.setdefault(info.equipment, set()).add(binding.model)
        instances: dict[tuple[str, str], Model] = {}
        per_kind: Counter[str] = Counter()
        feeds: list[Feed] = []
        for info, binding in bound:
            key = (info.equipment, binding.model)
            if key not in instances:
                # One random stream per instance: adding equipment does not change the others.
                rng = random.Random(f"factory5g.sim/{seed}/{info.equipment}/{binding.model}")
                alone = len(models_of[info.equipment]) == 1
                name = info.equipment if alone else f"{info.equipment}:{binding.model}"
                instances[key] = MODELS[binding.model](name, rng, per_kind[binding.model])
                per_kind[binding.model] += 1
            feeds.append(Feed(info, instances[key], binding.output))
        mill = Mill(
            random.Random(f"factory5g.sim/{seed}/mill"),
            n_stands=per_kind[RollingStand.kind],
            runout_m=per_kind[Conveyor.kind] * Conveyor.LENGTH_M,
        )
        self.state = PlantState(mill)
        # Stable sort: stage order, then file order (the line order of stands and tables).
        self._models = tuple(sorted(instances.values(), key=lambda m: m.stage))
        self._by_key = instances
        self._feeds = tuple(sorted(feeds, key=lambda f: f.signal.id))
        self._by_id = {f.signal.id: f for f in self._feeds}
        ids = np.array([f.signal.id for f in self._feeds], dtype=np.int32)
        ids.flags.writeable = False  # shared by every Batch this plant makes
        self._ids: NDArray[np.int32] = ids
        self._advance(0.0)  # every output has a value before the first step

    # -- inspection ---------------------------------------------------------------------------

    @property
    def t_s(self) -> float:
        """Plant time in seconds since construction."""
        return self.state.t_s

    @property
    def mill(self) -> Mill:
        return self.state.mill

    @property
    def models(self) -> tuple[Model, ...]:
        """The model instances in step order."""
        return self._models

    @property
    def signals(self) -> tuple[SignalInfo, ...]:
        """The simulated signals, by id."""
        return tuple(f.signal for f in self._feeds)

    def model(self, equipment: str, model: str | None = None) -> Model:
        """The instance simulating ``equipment`` (``model`` picks one if it has several)."""
        found = [
            m for (eq, kind), m in self._by_key.items() if eq == equipment and model in (None, kind)
        ]
        if len(found) != 1:
            raise KeyError(f"{equipment!r}: {len(found)} simulated model(s) match {model!r}")
        return found[0]

    # -- running ------------------------------------------------------------------------------

    def step(self, dt_s: float) -> dict[int, float]:
        """Advance plant time by ``dt_s`` and return every simulated signal's value, by id."""
        if not (math.isfinite(dt_s) and dt_s >= 0.0):
            raise ValueError(f"dt_s must be a finite number >= 0, got {dt_s}")
        n = max(1, math.ceil(dt_s / MAX_SUBSTEP_S))
        for _ in range(n):
            self._advance(dt_s / n)
        return self.values()

    def _advance(self, dt_s: float) -> None:
        state = self.state
        state.t_s += dt_s
        # Holds come from the previous step, as a PLC interlock sees last cycle's inputs.
        state.mill.advance(state.t_s, state.holds)
        for m in self._models:
            m.step(dt_s, state)

    def values(self) -> dict[int, float]:
        """The current value of every simulated signal, by id (bools as 0.0 / 1.0)."""
        return {f.signal.id: f.model.values[f.output] for f in self._feeds}

    def batch(self, ts_ns: int) -> Batch:
        """The current values as one Batch stamped ``ts_ns``, quality GOOD, ids ascending."""
        value = np.fromiter(
            (f.model.values[f.output] for f in self._feeds),
            dtype=np.float64,
            count=len(self._feeds),
        )
        ts = np.full(len(self._feeds), ts_ns, dtype=np.int64)
        quality = np.full(len(self._feeds), Quality.GOOD, dtype=np.uint8)
        return Batch(self._ids, ts, value, quality)

    def write(self, signal: int | str, value: float) -> None:
        """Write a writable output (a set point), by signal id or ``equipment.signal`` path.

        Raises :class:`SimWriteError` if the signal is unknown, not simulated, a measurement, or
        ``value`` is not finite or outside the signal's min/max.
        """
        try:
            info = self.site.signals.get(signal)
        except UnknownSignalError as exc:
            raise SimWriteError(signal, str(exc)) from exc
        feed = self._by_id.get(info.id)
        if feed is None:
            raise SimWriteError(info.path, f"not simulated (binding: {info.binding or 'none'})")
        spec = feed.model.outputs[feed.output]
        if not spec.writable:
            writable = [o for o, s in feed.model.outputs.items() if s.writable]
            raise SimWriteError(
                info.path,
                f"{feed.model.kind}.{feed.output} is a measurement, not writable "
                f"(writable outputs of {feed.model.kind}: {', '.join(writable) or 'none'})",
            )
        if not math.isfinite(value):
            raise SimWriteError(info.path, f"{value} is not a finite number")
        if (info.min is not None and value < info.min) or (
            info.max is not None and value > info.max
        ):
            raise SimWriteError(info.path, f"{value} is outside [{info.min}, {info.max}]")
        feed.model.write(feed.output, value)


def _sim_bindings(site: Site) -> tuple[list[tuple[SignalInfo, SimBinding]], list[BindingProblem]]:
    """The site's sim bindings in file order, and what is wrong with them."""
    bound: list[tuple[SignalInfo, SimBinding]] = []
    problems: list[BindingProblem] = []
    for eq in site.file.equipment:
        for s in eq.signal:
            b = s.binding
            if not isinstance(b, SimBinding):
                if s.sim is None:
                    continue
                # A protocol-bound signal whose peer the simulator drives: same physics.
                b = SimBinding(kind="sim", model=s.sim.model, output=s.sim.output)
            info = site.signals.get(f"{eq.id}.{s.name}")
            message = next(_binding_problems(b, s.type), None)
            if message is None:
                bound.append((info, b))
            else:
                problems.append(BindingProblem(eq.id, info.path, b.model, b.output, message))
    return bound, problems


def _binding_problems(b: SimBinding, type_: DataType) -> Iterator[str]:
    cls = MODELS.get(b.model)
    if cls is None:
        close = difflib.get_close_matches(b.model, list(MODELS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        yield f"unknown model {b.model!r} ({hint}known models: {', '.join(MODELS)})"
    elif b.output not in cls.outputs:
        close = difflib.get_close_matches(b.output, list(cls.outputs), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        yield (
            f"model {b.model!r} has no output {b.output!r} "
            f"({hint}outputs: {', '.join(cls.outputs)})"
        )
    elif type_ is DataType.STRING:
        yield f"a string signal cannot carry {b.model}.{b.output}, a number"


# -- real time --------------------------------------------------------------------------------


class Pacer:
    """A drift-free tick schedule: deadlines at start + k·period, whatever each tick costs.

    A tick that comes late consumes every deadline already past, so a loop that fell behind
    skips ahead instead of bursting to catch up.
    """

    def __init__(self, period_s: float, now: float) -> None:
        self.period_s = period_s
        self.deadline = now + period_s

    def advance(self, now: float) -> int:
        """Take the tick due at ``now``; return the periods it covers (1 + the ones skipped)."""
        late = max(0, math.floor((now - self.deadline) / self.period_s))
        self.deadline += (late + 1) * self.period_s
        return late + 1


class SimPeer(Protocol):
    """Equipment peer the simulator drives (a Sparkplug edge node, an OPC UA server...)."""

    async def update(self, batch: Batch, ts_ns: int) -> None:
        """Take the plant's values of this tick (every simulated signal, by id)."""
        ...


class Simulator:
    """Runs a :class:`Plant` in real time: one Batch of every sim-bound signal per tick.

    ``async with Simulator(site, bus) as sim:`` publishes the plant's initial state, then every
    1/``rate_hz`` s steps the plant and publishes. Plant time follows the wall clock: a tick that
    comes late steps the plant by the periods it skipped. Leaving the block cancels the task.
    A bus that closes under it ends the task quietly (the runtime stops in that order too).
    """

    def __init__(
        self,
        site: Site,
        bus: Bus,
        *,
        rate_hz: float = 10.0,
        seed: int = 0,
        plant: Plant | None = None,
        peers: Sequence[SimPeer] = (),
    ) -> None:
        if not (math.isfinite(rate_hz) and rate_hz > 0.0):
            raise ValueError(f"rate_hz must be a finite number > 0, got {rate_hz}")
        self.plant = plant if plant is not None else Plant(site, seed=seed)
        # Signals bound with kind = "sim" go straight to the bus; the others (a protocol binding
        # plus a ``sim`` source) reach the platform through their protocol peers.
        self._direct = np.array([s.binding == "sim" for s in self.plant.signals], dtype=np.bool_)
        self._peers = tuple(peers)
        self.rate_hz = rate_hz
        self.published_batches = 0
        self.skipped_ticks = 0
        self._bus = bus
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the simulator is already started")
        # Subscribers see the plant at once, and a closed bus fails here, before any task exists.
        await self._publish()
        self._task = asyncio.create_task(self._run(), name=f"factory5g.sim[{self.plant.site.name}]")

    async def stop(self) -> None:
        """Cancel the task and wait for it; re-raise what ended it, if not the cancellation."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled ourselves: do not swallow it

    async def wait(self) -> None:
        """Return once the task has ended: stopped, or the bus closed under it."""
        task = self._task
        if task is not None:
            await asyncio.wait({task})

    async def _publish(self) -> None:
        ts = now_ns()
        batch = self.plant.batch(ts)
        if self._direct.any():
            await self._bus.publish(batch if self._direct.all() else batch.take(self._direct))
            self.published_batches += 1
        for peer in self._peers:
            await peer.update(batch, ts)

    async def _run(self) -> None:
        pacer = Pacer(1.0 / self.rate_hz, time.monotonic())
        try:
            while True:
                delay = pacer.deadline - time.monotonic()
                if delay > 0.0:
                    await asyncio.sleep(delay)
                periods = pacer.advance(time.monotonic())
                self.skipped_ticks += periods - 1
                self.plant.step(periods * pacer.period_s)
                await self._publish()
        except BusClosedError:
            _log.info("bus closed: the simulator of %r stops", self.plant.site.name)
