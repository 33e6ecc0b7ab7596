"""The real-time Simulator: Batches on the bus, pacing, and a clean stop."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest

from factory5g.model import load_site, load_text
from factory5g.sim import Pacer, SimBindingError, Simulator
from factory5g.stream import BusClosedError, MemoryBus, Quality, SlowConsumerPolicy
from tests.sim.recording import steel_site_text

# -- pacing, without a clock ---------------------------------------------------------------------


def test_pacer_keeps_deadlines_on_the_grid() -> None:
    pacer = Pacer(0.1, now=100.0)
    assert pacer.deadline == pytest.approx(100.1)
    # Each tick wakes a little late; the schedule does not drift by those delays.
    for k in range(1, 50):
        assert pacer.advance(100.0 + 0.1 * k + 0.03) == 1
    assert pacer.deadline == pytest.approx(100.0 + 0.1 * 50)


def test_pacer_skips_ahead_when_behind() -> None:
    pacer = Pacer(0.1, now=0.0)
    # Due at 0.1 but served at 0.45: the ticks due at 0.2, 0.3 and 0.4 are skipped.
    assert pacer.advance(0.45) == 4
    assert pacer.deadline == pytest.approx(0.5)
    assert pacer.advance(0.5) == 1


def test_pacer_tolerates_an_early_wakeup() -> None:
    pacer = Pacer(0.1, now=0.0)
    assert pacer.advance(0.1 - 1e-9) == 1
    assert pacer.deadline == pytest.approx(0.2)


# -- the running simulator -----------------------------------------------------------------------


async def test_publishes_batches_of_every_sim_signal(steel_sim_site: Path) -> None:
    site = load_site(steel_sim_site)
    sim_ids = sorted(s.id for s in site.signals if s.binding == "sim")
    async with MemoryBus() as bus:
        sub = bus.subscribe("test")
        async with Simulator(site, bus, rate_hz=50.0, seed=3) as sim:
            assert sim.running
            (task,) = [t for t in asyncio.all_tasks() if t.get_name().startswith("factory5g.sim")]
            batches = []
            async with asyncio.timeout(10):
                async for batch in sub:
                    batches.append(batch)
                    if len(batches) == 10:
                        break
        assert not sim.running
        assert task.cancelled()  # awaited on the way out, not left to finish later
    for batch in batches:
        assert batch.signal.tolist() == sim_ids
        assert (batch.quality == Quality.GOOD).all()
        assert len(set(batch.ts.tolist())) == 1
    stamps = [int(b.ts[0]) for b in batches]
    assert stamps == sorted(stamps)
    assert stamps[-1] > stamps[0]
    # The plant moved: the noisy measurements differ from one batch to the next.
    assert not np.array_equal(batches[0].value, batches[-1].value)
    # Plant time is the periods ticked, including the skipped ones: it follows the wall clock.
    expected_s = (sim.published_batches - 1 + sim.skipped_ticks) / sim.rate_hz
    assert math.isclose(sim.plant.t_s, expected_s, rel_tol=1e-9)
    assert sim.published_batches >= 10


async def test_stops_cleanly_while_a_slow_consumer_blocks_it(steel_sim_site: Path) -> None:
    site = load_site(steel_sim_site)
    async with MemoryBus() as bus:
        sub = bus.subscribe("slow", maxsize=1, policy=SlowConsumerPolicy.BLOCK)
        async with Simulator(site, bus, rate_hz=100.0) as sim:
            async with asyncio.timeout(5):
                await anext(sub)  # the initial batch
                await anext(sub)  # a tick: the loop runs, and now backs up behind us
        assert not sim.running
        published = sim.published_batches
        assert sub.stats().queued_batches <= 1
    assert sim.published_batches == published  # nothing runs after the block


async def test_ends_quietly_when_the_bus_closes(steel_sim_site: Path) -> None:
    site = load_site(steel_sim_site)
    bus = MemoryBus()
    sub = bus.subscribe("test")
    async with Simulator(site, bus, rate_hz=100.0) as sim:
        async with asyncio.timeout(5):
            await anext(sub)
            bus.close()
            await sim.wait()
        assert not sim.running


async def test_a_closed_bus_fails_the_start_and_leaves_nothing(steel_sim_site: Path) -> None:
    bus = MemoryBus()
    bus.close()
    sim = Simulator(load_site(steel_sim_site), bus)
    with pytest.raises(BusClosedError):
        async with sim:
            pytest.fail("the block must not run")
    assert not sim.running
    await sim.stop()  # harmless


async def test_cannot_start_twice(steel_sim_site: Path) -> None:
    async with MemoryBus() as bus, Simulator(load_site(steel_sim_site), bus) as sim:
        with pytest.raises(RuntimeError, match="already started"):
            await sim.start()
        assert sim.running


@pytest.mark.parametrize("rate_hz", [0.0, -1.0, math.nan, math.inf])
async def test_rejects_a_bad_rate(steel_sim_site: Path, rate_hz: float) -> None:
    async with MemoryBus() as bus:
        with pytest.raises(ValueError, match="rate_hz"):
            Simulator(load_site(steel_sim_site), bus, rate_hz=rate_hz)


async def test_bad_bindings_fail_at_construction() -> None:
    site = load_text(steel_site_text().replace('model = "safety"', 'model = "fence"'))
    async with MemoryBus() as bus:
        with pytest.raises(SimBindingError, match=r"guard\.door_closed"):
            Simulator(site, bus)
        assert bus.stats().published_batches == 0
