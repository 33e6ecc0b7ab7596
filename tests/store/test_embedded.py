"""What only the embedded (DuckDB) store has: two query paths, a file, a worker thread."""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import duckdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factory5g.store import Agg, EmbeddedStore, StoreError, open_store
from factory5g.store.embedded import DB_FILE, rollup_source
from factory5g.stream import Batch, Quality
from tests.store.conftest import NS, T0, rows_of
from tests.store.test_contract import bases, batches, latest_rows, nan_safe, to_batch

GOOD = int(Quality.GOOD)


def store_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("f5g-store")]


async def via(
    store: EmbeddedStore, source: str, signal: int, start: int, end: int, every: int, agg: Agg
) -> Batch:
    """An aggregated query forced through one source table (white box)."""
    call = functools.partial(store._aggregate_sync, source, signal, start, end, every, agg, None)
    return await store._run(call)


def test_the_rollup_answers_whole_second_queries_only() -> None:
    assert rollup_source(T0, T0 + 60 * NS, 60 * NS) == "rollup_1s"
    assert rollup_source(-NS, 0, NS) == "rollup_1s"
    assert rollup_source(T0 + 1, T0 + 60 * NS, 60 * NS) == "samples"
    assert rollup_source(T0, T0 + 60 * NS + 1, 60 * NS) == "samples"
    assert rollup_source(T0, T0 + 60 * NS, NS // 2) == "samples"


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    async with EmbeddedStore.open(tmp_path) as store:
        yield store


# One store for all examples (see test_contract.py); each example has signal ids of its own.
_signal_blocks = itertools.count(1)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    base=bases,
    data=batches,
    every_s=st.sampled_from([1, 2, 3, 7, 60]),
    bounds=st.tuples(st.integers(-2, 8), st.integers(-2, 8)).map(sorted),
)
async def test_rollup_path_equals_samples_path(
    embedded: EmbeddedStore,
    base: int,
    data: list[list[tuple[int, int, float, int]]],
    every_s: int,
    bounds: list[int],
) -> None:
    first = 4 * next(_signal_blocks)
    start, end = base + bounds[0] * NS, base + bounds[1] * NS
    for rows in data:
        await embedded.write(to_batch(base, rows, first))
    for signal in (first, first + 1, first + 2):
        for agg in Agg:
            a = await via(embedded, "rollup_1s", signal, start, end, every_s * NS, agg)
            b = await via(embedded, "samples", signal, start, end, every_s * NS, agg)
            assert a.ts.tolist() == b.ts.tolist()
            assert a.quality.tolist() == b.quality.tolist()
            if agg is Agg.MEAN:
                np.testing.assert_allclose(a.value, b.value, rtol=1e-9, equal_nan=True)
            else:
                np.testing.assert_array_equal(a.value, b.value)


async def test_rollup_path_equals_samples_path_on_a_long_series(tmp_path: Path) -> None:
    # 2 h at 10 Hz in batches that do not line up with seconds, a few bad samples.
    rng = np.random.default_rng(7)
    n = 72_000
    ts = T0 + np.arange(n, dtype=np.int64) * 100_000_000 + rng.integers(0, 3, n)
    values = np.round(20 + np.sin(np.arange(n) / 500) + rng.normal(0, 0.05, n), 2)
    draw = rng.random(n)
    quality = np.select([draw < 0.01, draw < 0.0105], [0x18, 0x44], GOOD).astype(np.uint8)
    async with EmbeddedStore.open(tmp_path) as store:
        for lo in range(0, n, 7_777):
            hi = min(lo + 7_777, n)
            await store.write(
                Batch.of(np.full(hi - lo, 9), ts[lo:hi], values[lo:hi], quality[lo:hi])
            )
        for agg in Agg:
            a = await via(store, "rollup_1s", 9, T0, T0 + 7_200 * NS, 60 * NS, agg)
            b = await via(store, "samples", 9, T0, T0 + 7_200 * NS, 60 * NS, agg)
            # T0 is not a whole minute: the first bucket is clipped to it, hence 121 rows.
            assert len(a) == 121
            assert a.ts[0] == T0
            assert a.ts.tolist() == b.ts.tolist()
            np.testing.assert_allclose(a.value, b.value, rtol=1e-12)
            assert a.quality.tolist() == b.quality.tolist()
            assert set(a.quality.tolist()) == {GOOD, int(Quality.UNCERTAIN)}


async def test_data_and_latest_survive_a_restart(tmp_path: Path) -> None:
    batch = Batch.of(
        [1, 2, 1, 3],
        [T0, T0 + 5, T0 + 9, T0 + 2],
        [1.0, math.nan, 3.0, 4.0],
        [GOOD, GOOD, 0x44, 0x00],
    )
    async with EmbeddedStore.open(tmp_path) as store:
        await store.write(batch)
        await store.write(Batch.of([3], [T0 + 2], [7.0]))  # same ts, later write: latest
        before = (
            await store.latest([1, 2, 3]),
            await store.query(1, T0, T0 + NS),
            await store.query(1, T0, T0 + NS, every=NS, agg=Agg.LAST),
        )
    assert not store_threads()  # the worker is gone once closed
    async with EmbeddedStore.open(tmp_path) as store:
        after = (
            await store.latest([1, 2, 3]),
            await store.query(1, T0, T0 + NS),
            await store.query(1, T0, T0 + NS, every=NS, agg=Agg.LAST),
        )
        assert (await store.stats()).samples == 5
    for x, y in zip(before, after, strict=True):
        assert x.equals(y)
    assert nan_safe(latest_rows(after[0])) == nan_safe(
        [(1, T0 + 9, 3.0, 0x44), (2, T0 + 5, math.nan, GOOD), (3, T0 + 2, 7.0, GOOD)]
    )


async def test_later_write_wins_ties_across_restart_and_retention(tmp_path: Path) -> None:
    async with EmbeddedStore.open(tmp_path) as store:
        await store.write(Batch.of(np.arange(1000) % 4, T0 + np.arange(1000), 1.0))
        await store.write(Batch.of([5, 5], [T0 + 10_000, T0 + 10_000], [9.0, 2.0]))
        await store.write(Batch.of([5], [T0 + 10_000], [1.0]))
        await store.write(Batch.of([5], [T0 + 10_000], [4.0]))
        # Deleting most of the table makes DuckDB renumber rows; their order must hold.
        assert await store.apply_retention(T0 + 999) == 999
    async with EmbeddedStore.open(tmp_path) as store:
        assert (await store.latest([5])).value.tolist() == [4.0]
        raw = await store.query(5, T0, T0 + NS)
        assert raw.value.tolist() == [9.0, 2.0, 1.0, 4.0]
        for start in (T0, T0 + 1):
            last = await store.query(5, start, T0 + NS, every=NS, agg=Agg.LAST)
            assert last.value.tolist() == [4.0]


async def test_concurrent_writes_are_serialised_in_one_worker(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        assert [t.name for t in store_threads()] == ["f5g-store_0"]
        await asyncio.gather(
            *(
                store.write(Batch.of([k % 3] * 100, T0 + k * 1000 + np.arange(100), float(k)))
                for k in range(50)
            )
        )
        assert len(store_threads()) == 1
        assert (await store.stats()).samples == 5_000
        count = await store.query(0, T0, T0 + NS, every=NS, agg=Agg.COUNT)
        assert count.value.tolist() == [1_700.0]
    assert not store_threads()


async def test_a_failed_start_is_undone(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    store = EmbeddedStore.open(not_a_dir)
    with pytest.raises(StoreError, match="cannot open"):
        await store.start()
    assert not store_threads()
    with pytest.raises(StoreError, match="cannot be started again"):
        await store.start()


async def test_a_database_locked_by_another_process_is_refused(tmp_path: Path) -> None:
    # DuckDB takes an OS file lock; a second process must not corrupt the first one's data.
    async with EmbeddedStore.open(tmp_path) as store:
        await store.write(Batch.of([1], [T0], [1.0]))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import asyncio, sys\n"
            "from factory5g.store import EmbeddedStore, StoreError\n"
            "async def main():\n"
            "    try:\n"
            "        async with EmbeddedStore.open(sys.argv[1]):\n"
            "            print('opened')\n"
            "    except StoreError as exc:\n"
            "        print('refused', type(exc.__cause__).__name__)\n"
            "asyncio.run(main())\n",
            str(tmp_path),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert out.decode().split() == ["refused", "IOException"]
        assert (await store.stats()).samples == 1


async def test_nan_is_stored_as_nan_not_null(tmp_path: Path) -> None:
    async with EmbeddedStore.open(tmp_path) as store:
        await store.write(Batch.of([1, 1], [T0, T0 + 1], [math.nan, 1.0]))
    con = duckdb.connect(str(tmp_path / DB_FILE), read_only=True)
    try:
        rows = con.execute("SELECT value IS NULL, isnan(value) FROM samples ORDER BY ts").fetchall()
        sums = con.execute("SELECT sum IS NULL, isnan(sum) FROM rollup_1s").fetchall()
    finally:
        con.close()
    assert rows == [(False, True), (False, False)]
    assert sums == [(False, True)]


async def test_stats_count_the_files(tmp_path: Path) -> None:
    async with EmbeddedStore.open(tmp_path / "site") as store:
        await store.write(
            Batch.of(
                np.zeros(10_000),
                T0 + np.arange(10_000) * 10_000_000,
                np.round(np.linspace(0, 100, 10_000), 2),
            )
        )
        stats = await store.stats()
        on_disk = sum(p.stat().st_size for p in (tmp_path / "site").iterdir())
    assert stats.backend == "duckdb"
    assert stats.samples == 10_000
    assert stats.path == str(tmp_path / "site" / DB_FILE)
    assert stats.bytes_on_disk == on_disk > 0


async def test_a_new_store_is_not_usable_before_start(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    with pytest.raises(StoreError):
        await store.latest([1])
    with pytest.raises(StoreError):
        await store.query(1, T0, T0 + 1)
    assert "new" in repr(store)


async def test_small_checkpoint_threshold_keeps_everything(tmp_path: Path) -> None:
    # Many checkpoints (log moved into the main file, log recreated) along the way.
    async with EmbeddedStore.open(
        tmp_path, checkpoint_threshold_bytes=64 * 1024, threads=1
    ) as store:
        for k in range(30):
            await store.write(Batch.of([1] * 2_000, T0 + k * NS + np.arange(2_000), float(k)))
        assert (await store.stats()).samples == 60_000
    async with EmbeddedStore.open(tmp_path) as store:
        mean = await store.query(1, T0, T0 + 30 * NS, every=NS)
        assert mean.value.tolist() == [float(k) for k in range(30)]
        assert rows_of(await store.query(1, T0 + 29 * NS, T0 + 30 * NS, limit=1)) == [
            (T0 + 29 * NS, 29.0, GOOD)
        ]


async def test_raw_query_keeps_write_order_among_equal_timestamps(tmp_path: Path) -> None:
    # DuckDB's parallel sort is not stable: with 100k rows on 2 threads, ORDER BY ts alone
    # reorders equal timestamps (seen every time); the rowid key keeps write order.
    n = 25_000
    async with EmbeddedStore.open(tmp_path, threads=2) as store:
        for k in range(4):
            ts = T0 + np.arange(n, dtype=np.int64) % 7
            await store.write(Batch.of(np.full(n, 3), ts, np.arange(k * n, (k + 1) * n)))
        raw = await store.query(3, T0, T0 + 7)
    assert len(raw) == 4 * n
    assert (np.diff(raw.ts) >= 0).all()
    for t in range(7):
        written_order = raw.value[raw.ts == T0 + t]
        assert (np.diff(written_order) > 0).all(), f"ties at T0+{t} out of write order"


async def test_one_directory_is_opened_once_per_process(tmp_path: Path) -> None:
    async with EmbeddedStore.open(tmp_path) as store:
        with pytest.raises(StoreError, match="already open in this process"):
            async with EmbeddedStore.open(tmp_path / "." / ""):
                pass
        await store.write(Batch.of([1], [T0], [1.0]))
    # Released at close (and after the refused start): opening again works.
    async with EmbeddedStore.open(tmp_path) as store:
        assert (await store.stats()).samples == 1
    assert not store_threads()
