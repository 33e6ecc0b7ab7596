"""The runtime starts and stops its components in order and leaves no task behind."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import numpy as np
import pytest

from factory5g.model import load_site, load_text
from factory5g.runtime import Runtime
from factory5g.store import MemoryStore
from factory5g.stream import Batch

from .helpers import eventually, wait_until


async def test_runtime_with_simulator_stores_data_and_leaves_no_task(steel_site: Path) -> None:
    """The demo path: simulator → Sparkplug edge nodes → in-process broker → host → store."""
    site = load_site(steel_site)
    before = asyncio.all_tasks()
    async with Runtime(site, sim_rate_hz=50) as rt:
        assert rt.sim is not None
        assert rt.tasks  # the writer and housekeeping run
        await wait_until(lambda: rt.written_samples >= 10 * len(site.signals), what="sim data")
        ids = [s.id for s in site.signals]

        async def all_good() -> bool:
            latest = await rt.store.latest(ids)
            return sorted(latest.signal.tolist()) == ids and bool((latest.quality == 0xC0).all())

        # Every signal good once data flows (births carry no value yet: null, bad quality).
        with contextlib.suppress(AssertionError):
            await eventually(all_good, within=5, what="every signal good")
        latest = await rt.store.latest(ids)
        assert sorted(latest.signal.tolist()) == ids
        bad = [
            site.signals.get(int(s)).path
            for s, q in zip(latest.signal, latest.quality, strict=True)
            if q != 0xC0
        ]
        assert bad == []
        assert rt.sparkplug is not None
        assert all(n["alias_conflicts"] == 0 for n in rt.sparkplug.stats()["nodes"])
    assert asyncio.all_tasks() == before
    assert not rt.tasks


async def test_stop_drains_the_bus_into_the_store(tmp_path: Path, steel_site: Path) -> None:
    """Everything published before stop is in the store after stop: shutdown loses nothing."""
    site = load_site(_without_sim(steel_site))
    store = MemoryStore()
    async with Runtime(site, store=store) as rt:
        for k in range(50):
            await rt.bus.publish(Batch.of(np.arange(5), np.full(5, k), float(k)))
    assert rt.written_samples == 250
    got = await store.query(3, 0, 100)
    assert got.value.tolist() == [float(k) for k in range(50)]


@pytest.mark.parametrize("interval_ms", [0, 250])
async def test_a_light_feed_shares_store_transactions(steel_site: Path, interval_ms: int) -> None:
    """Group commit: batches trickling in within ``commit_interval_ms`` share one transaction;
    with 0, every batch that finds the writer idle is a transaction of its own."""
    text = _without_sim(steel_site).read_text(encoding="utf-8")
    text = text.replace(
        "retention_days = 365", f"retention_days = 365\ncommit_interval_ms = {interval_ms}"
    )
    site = load_text(text, path=steel_site)
    assert site.file.store.commit_interval_ms == interval_ms
    store = MemoryStore()
    async with Runtime(site, store=store) as rt:
        began = time.monotonic()
        for k in range(40):  # 40 batches, one every 10 ms
            await rt.bus.publish(Batch.of(np.arange(3), np.full(3, k), float(k)))
            await asyncio.sleep(0.01)  # the feed's own pace, not a wait for state
        await wait_until(lambda: rt.written_batches == 40, what="every batch stored")
        elapsed = time.monotonic() - began
        commits = rt.commits
    if interval_ms:
        assert commits <= elapsed / (interval_ms / 1000) + 2
    else:
        assert commits >= 20  # the writer keeps up batch by batch
    got = await store.query(1, 0, 100)
    assert got.value.tolist() == [float(k) for k in range(40)]  # none lost, in order


def _without_sim(steel_site: Path) -> Path:
    lines = [
        line
        for line in steel_site.read_text(encoding="utf-8").splitlines()
        if "binding = " not in line
    ]
    steel_site.write_text("\n".join(lines), encoding="utf-8")
    return steel_site


async def test_failing_store_write_is_retried_not_dropped(steel_site: Path) -> None:
    site = load_site(_without_sim(steel_site))

    class Flaky(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.failures = 2

        async def write(self, batch: Batch) -> None:
            if self.failures:
                self.failures -= 1
                raise OSError("disk full")
            await super().write(batch)

    store = Flaky()
    async with Runtime(site, store=store) as rt:
        await rt.bus.publish(Batch.of([1], [5], [7.0]))
        await wait_until(lambda: rt.written_samples == 1, within=10, what="retried write")
        assert rt.write_errors == 2
        assert "disk full" in (rt.last_write_error or "")
    assert (await store.latest([1])).value.tolist() == [7.0]


async def test_live_and_historical_batches_are_written_apart(steel_site: Path) -> None:
    site = load_site(_without_sim(steel_site))
    store = MemoryStore()
    async with Runtime(site, store=store) as rt:
        await rt.bus.publish(Batch.of([1], [10], [1.0]))
        await rt.bus.publish(Batch.of([1], [50], [5.0], historical=True))
        await rt.bus.publish(Batch.of([1], [20], [2.0]))
    assert (await store.latest([1])).value.tolist() == [2.0]
    assert (await store.query(1, 0, 100)).value.tolist() == [1.0, 2.0, 5.0]
