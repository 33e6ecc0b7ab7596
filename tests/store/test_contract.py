"""The Store contract (store/base.py), run against every implementation."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import factory5g.store
from factory5g.store import (
    Agg,
    EmbeddedStore,
    MemoryStore,
    Store,
    StoreClosedError,
    StoreError,
    StoreQueryError,
)
from factory5g.stream import Batch, Event, Quality
from tests.store.conftest import (
    KINDS,
    NS,
    T0,
    AnyStore,
    assert_rows_equal,
    expected_agg,
    expected_latest,
    expected_raw,
    open_kind,
    rows_of,
    samples_of,
)

GOOD, UNCERTAIN, BAD = int(Quality.GOOD), int(Quality.UNCERTAIN), int(Quality.BAD)
MS = 1_000_000


# -- random data --------------------------------------------------------------------------------

# Offsets from a base timestamp: whole seconds and their neighbours (bucket edges), 250 ms steps
# (duplicates are likely), and anything in between.
offsets = st.one_of(
    st.integers(0, 6).map(lambda s: s * NS),
    st.integers(0, 6).flatmap(lambda s: st.sampled_from([s * NS - 1, s * NS + 1])),
    st.integers(0, 24).map(lambda q: q * 250 * MS),
    st.integers(-NS, 7 * NS),
)
finite_values = st.integers(-100_000, 100_000).map(lambda c: c / 100)  # sensor resolution 0.01
special_values = st.sampled_from([math.nan, math.inf, -math.inf])
values = st.integers(0, 30).flatmap(lambda i: special_values if i == 0 else finite_values)
qualities = st.sampled_from([0x00, 0x18, 0x40, 0x44, 0xC0, 0xC0, 0xC0, 0xD8])
sample = st.tuples(st.integers(0, 2), offsets, values, qualities)
batches = st.lists(st.lists(sample, max_size=40), min_size=1, max_size=4)
everies = st.sampled_from([1, 7, 250 * MS, NS, 2 * NS, 3 * NS, 60 * NS, 3_600 * NS])
# Around 1970 as well: bucket numbers of negative timestamps must floor, not truncate.
bases = st.sampled_from([T0, -3 * NS])


def to_batch(base: int, rows: list[tuple[int, int, float, int]], first_signal: int = 0) -> Batch:
    if not rows:
        return Batch.empty()
    sig, off, val, q = zip(*rows, strict=True)
    return Batch.of(np.asarray(sig) + first_signal, np.asarray(off, dtype=np.int64) + base, val, q)


# One store serves every example of a test (opening a DuckDB file costs ~0.1 s, which made a
# failing example take minutes to shrink); each example gets signal ids of its own.
_signal_blocks = itertools.count(1)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    base=bases,
    data=batches,
    every=everies,
    bounds=st.tuples(offsets, offsets).map(sorted),
    limit=st.one_of(st.none(), st.integers(0, 4)),
)
async def test_matches_the_reference_on_random_data(
    store: AnyStore,
    base: int,
    data: list[list[tuple[int, int, float, int]]],
    every: int,
    bounds: list[int],
    limit: int | None,
) -> None:
    first = 4 * next(_signal_blocks)
    written = [to_batch(base, rows, first) for rows in data]
    samples = samples_of(written)
    start, end = base + bounds[0], base + bounds[1]
    held = (await store.stats()).samples
    for b in written:
        await store.write(b)
    for signal in (first, first + 1, first + 3):  # first + 3 is never written
        raw = await store.query(signal, start, end)
        assert_rows_equal(raw, expected_raw(samples, signal, start, end), signal)
        head = await store.query(signal, start, end, limit=limit)
        want = expected_raw(samples, signal, start, end)
        assert_rows_equal(head, want[:limit] if limit is not None else want, signal)
        for agg in Agg:
            got = await store.query(signal, start, end, every=every, agg=agg)
            want = expected_agg(samples, signal, start, end, every, agg)
            assert_rows_equal(got, want, signal, agg)
        got = await store.query(signal, start, end, every=every, agg=Agg.COUNT, limit=limit)
        want = expected_agg(samples, signal, start, end, every, Agg.COUNT)
        assert_rows_equal(got, want[:limit] if limit is not None else want, signal)
    asked = [first + 3, first + 2, first + 1, first]
    latest = await store.latest(asked)
    assert nan_safe(latest_rows(latest)) == nan_safe(expected_latest(samples, asked))
    assert (await store.stats()).samples == held + len(samples)


def latest_rows(b: Batch) -> list[tuple[int, int, float, int]]:
    return list(
        zip(b.signal.tolist(), b.ts.tolist(), b.value.tolist(), b.quality.tolist(), strict=True)
    )


def nan_safe(rows: list[tuple[int, int, float, int]]) -> list[tuple[object, ...]]:
    """Rows comparable with ==, NaN included (NaN != NaN otherwise)."""
    return [tuple("nan" if isinstance(x, float) and math.isnan(x) else x for x in r) for r in rows]


# -- fixed cases --------------------------------------------------------------------------------


async def test_is_a_store(store: AnyStore) -> None:
    assert isinstance(store, Store)


async def test_write_then_raw_query_in_time_order(store: AnyStore) -> None:
    await store.write(Batch.of([1, 1, 2], [T0 + 30, T0 + 10, T0 + 20], [3.0, 1.0, 2.0]))
    await store.write(Batch.of([1], [T0 + 20], [2.5], Quality.UNCERTAIN))
    got = await store.query(1, T0, T0 + 100)
    assert rows_of(got) == [(T0 + 10, 1.0, GOOD), (T0 + 20, 2.5, UNCERTAIN), (T0 + 30, 3.0, GOOD)]
    assert got.signal.dtype == np.int32
    assert (got.signal == 1).all()
    assert rows_of(await store.query(1, T0, T0 + 100, limit=2)) == rows_of(got)[:2]
    assert len(await store.query(1, T0 + 11, T0 + 30)) == 1  # [start, end): 30 excluded


async def test_equal_timestamps_keep_write_order(store: AnyStore) -> None:
    await store.write(Batch.of([1, 1], [T0, T0], [5.0, 1.0]))
    await store.write(Batch.of([1], [T0], [3.0]))
    assert [v for _, v, _ in rows_of(await store.query(1, T0, T0 + 1))] == [5.0, 1.0, 3.0]
    last = await store.query(1, T0, T0 + NS, every=NS, agg=Agg.LAST)
    assert last.value.tolist() == [3.0]  # the later write wins, not the greater value
    assert (await store.latest([1])).value.tolist() == [3.0]


@pytest.mark.parametrize(
    ("agg", "expected"),
    [
        (Agg.MEAN, [2.0, 10.0, 25.0]),
        (Agg.MIN, [1.0, 10.0, 20.0]),
        (Agg.MAX, [3.0, 10.0, 30.0]),
        (Agg.LAST, [3.0, 10.0, 30.0]),
        (Agg.COUNT, [3.0, 1.0, 2.0]),
    ],
)
async def test_bucket_edges(store: AnyStore, agg: Agg, expected: list[float]) -> None:
    # Buckets of 10 s: [T0, T0+10s) holds 1, 2, 3 (3 at the last ns), 10 opens the next one.
    ts = [T0, T0 + 5 * NS, T0 + 10 * NS - 1, T0 + 10 * NS, T0 + 30 * NS, T0 + 40 * NS - 1]
    await store.write(Batch.of([4] * 6, ts, [1.0, 2.0, 3.0, 10.0, 20.0, 30.0]))
    for start in (T0, T0 + 1):  # whole seconds (rollup) and not (samples)
        got = await store.query(4, start, T0 + 60 * NS, every=10 * NS, agg=agg)
        assert got.ts.tolist() == [max(T0, start), T0 + 10 * NS, T0 + 30 * NS]
        if start == T0:
            assert got.value.tolist() == expected
    # The bucket ts is clipped to start; buckets past end are not returned.
    got = await store.query(4, T0 + 5 * NS, T0 + 30 * NS, every=10 * NS, agg=Agg.COUNT)
    assert rows_of(got) == [(T0 + 5 * NS, 2.0, GOOD), (T0 + 10 * NS, 1.0, GOOD)]


async def test_bad_samples_are_left_out_of_aggregates_only(store: AnyStore) -> None:
    await store.write(
        Batch.of(
            [7, 7, 7, 7],
            [T0, T0 + 1, T0 + 2, T0 + NS],
            [1.0, 100.0, 3.0, -5.0],
            [GOOD, BAD, int(Quality.UNCERTAIN_LAST_USABLE), int(Quality.BAD_COMM_FAILURE)],
        )
    )
    for start in (T0, T0 - 1):
        mean = await store.query(7, start, T0 + 10 * NS, every=NS)
        # The second [T0+1s, T0+2s) holds only a bad sample: no row for it.
        assert rows_of(mean) == [(max(T0, start), 2.0, UNCERTAIN)]
        count = await store.query(7, start, T0 + 10 * NS, every=10 * NS, agg=Agg.COUNT)
        assert count.value.tolist() == [2.0]
    assert len(await store.query(7, T0, T0 + 10 * NS)) == 4  # raw keeps them all
    latest = await store.latest([7])
    assert rows_of(latest) == [(T0 + NS, -5.0, int(Quality.BAD_COMM_FAILURE))]


async def test_quality_of_aggregates(store: AnyStore) -> None:
    await store.write(Batch.of([1, 1, 1], [T0, T0 + NS, T0 + NS + 1], 1.0, [GOOD, GOOD, 0x44]))
    got = await store.query(1, T0, T0 + 2 * NS, every=NS, agg=Agg.MAX)
    assert got.quality.tolist() == [GOOD, UNCERTAIN]


async def test_empty_ranges_and_unknown_signals(store: AnyStore) -> None:
    await store.write(Batch.of([1, 1], [T0, T0 + NS], [1.0, 2.0]))
    for every in (None, NS, 3):
        assert len(await store.query(1, T0 + 5, T0 + 5, every=every)) == 0  # start == end
        assert len(await store.query(1, T0 + 2 * NS, T0 + 9 * NS, every=every)) == 0
        assert len(await store.query(99, T0, T0 + 9 * NS, every=every)) == 0
    assert len(await store.latest([99, -1, 2**40])) == 0
    assert len(await store.latest([])) == 0
    assert await store.apply_retention(T0 - 1) == 0


async def test_latest_follows_the_greatest_timestamp(store: AnyStore) -> None:
    await store.write(Batch.of([1, 2, 1], [T0 + 5, T0, T0 + 9], [1.0, 2.0, 3.0]))
    await store.write(Batch.of([1], [T0 + 7], [4.0]))  # older than what we have: no change
    await store.write(Batch.of([2], [T0], [5.0], Quality.BAD))  # same ts, later write: wins
    got = await store.latest([2, 1, 3])
    assert latest_rows(got) == [(2, T0, 5.0, BAD), (1, T0 + 9, 3.0, GOOD)]
    assert got.signal.dtype == np.int32


async def test_events_are_not_stored(store: AnyStore) -> None:
    await store.write(Batch.of([1], [T0], [1.0], events=[Event(1, T0, "text")]))
    got = await store.query(1, T0, T0 + 1)
    assert len(got) == 1
    assert got.events == ()


async def test_empty_batch_is_a_no_op(store: AnyStore) -> None:
    await store.write(Batch.empty())
    assert (await store.stats()).samples == 0


async def test_nan_and_infinities_round_trip(store: AnyStore) -> None:
    await store.write(Batch.of([1, 1, 1], [T0, T0 + 1, T0 + 2], [math.nan, math.inf, -math.inf]))
    got = await store.query(1, T0, T0 + 3)
    assert np.isnan(got.value[0])
    assert got.value[1:].tolist() == [math.inf, -math.inf]
    assert (await store.latest([1])).value.tolist() == [-math.inf]
    got = await store.query(1, T0, T0 + NS, every=NS, agg=Agg.MIN)
    assert got.value.tolist() == [-math.inf]  # min skips the NaN
    got = await store.query(1, T0, T0 + NS, every=NS, agg=Agg.MAX)
    assert np.isnan(got.value).all()  # NaN sorts above +inf


async def test_retention(store: AnyStore) -> None:
    ts = T0 + np.arange(40, dtype=np.int64) * (NS // 4)  # 10 s at 4 Hz
    await store.write(Batch.of(np.arange(40) % 2, ts, np.arange(40.0)))
    await store.write(Batch.of([5], [T0], [1.0]))  # a signal wholly before the cut
    before = T0 + 2 * NS + 300 * MS  # inside a second: its rollup must be rebuilt
    assert await store.apply_retention(before) == 10 + 1
    assert (await store.stats()).samples == 30
    raw = await store.query(0, T0 - NS, T0 + 20 * NS)
    assert raw.ts.min() >= before
    assert len(raw) == 15
    assert len(await store.latest([5])) == 0  # all of it is gone
    assert len(await store.latest([0, 1])) == 2
    for signal in (0, 1):
        for start in (T0, T0 + 1):  # rollup path and samples path
            got = await store.query(signal, start, T0 + 10 * NS, every=NS, agg=Agg.COUNT)
            # The second holding the cut keeps only samples at or after it.
            assert got.ts[0] == max(T0 + 2 * NS, start)
            assert got.value[0] == 1.0
            assert got.value.sum() == 15
    assert await store.apply_retention(before) == 0  # idempotent


async def test_retention_keeps_aggregates_consistent(store: AnyStore) -> None:
    ts = T0 + np.arange(40, dtype=np.int64) * (NS // 4)
    values = np.arange(40.0) * 1.5
    await store.write(Batch.of(np.full(40, 3), ts, values))
    before = T0 + 2 * NS + 300 * MS
    await store.apply_retention(before)
    kept = values[ts >= before]
    for agg, want in (
        (Agg.MEAN, kept.mean()),
        (Agg.MIN, kept.min()),
        (Agg.MAX, kept.max()),
        (Agg.LAST, kept[-1]),
        (Agg.COUNT, float(len(kept))),
    ):
        for start in (T0, T0 + 1):
            got = await store.query(3, start, T0 + 60 * NS, every=60 * NS, agg=agg)
            np.testing.assert_allclose(got.value, [want], rtol=1e-12)


@pytest.mark.parametrize(
    ("start", "end", "every", "agg", "limit"),
    [
        (T0 + 1, T0, None, Agg.MEAN, None),  # start after end
        (T0, T0 + 1, 0, Agg.MEAN, None),
        (T0, T0 + 1, -NS, Agg.MEAN, None),
        (T0, T0 + 1, NS, "median", None),
        (T0, T0 + 1, None, Agg.MEAN, -1),
        (T0, 2**63, None, Agg.MEAN, None),  # not an int64 timestamp
    ],
)
async def test_query_errors(
    store: AnyStore, start: int, end: int, every: int | None, agg: Agg, limit: int | None
) -> None:
    with pytest.raises(StoreQueryError) as info:
        await store.query(1, start, end, every=every, agg=agg, limit=limit)
    assert isinstance(info.value, ValueError)  # StoreQueryError is also a ValueError


async def test_agg_accepts_its_string_value(store: AnyStore) -> None:
    await store.write(Batch.of([1, 1], [T0, T0 + 1], [1.0, 3.0]))
    got = await store.query(1, T0, T0 + NS, every=NS, agg="max")  # type: ignore[arg-type]
    assert got.value.tolist() == [3.0]


async def test_signal_ids_outside_the_dense_range_are_refused(store: AnyStore) -> None:
    with pytest.raises(StoreError, match="signal id -1"):
        await store.write(Batch.of([1, -1], [T0, T0], [1.0, 2.0]))
    with pytest.raises(StoreError, match="signal id 16777216"):
        await store.write(Batch.of([2**24], [T0], [1.0]))
    assert (await store.stats()).samples == 0  # the whole batch was refused


@pytest.mark.parametrize("kind", KINDS)
async def test_closed_store_refuses_every_call(kind: str, tmp_path: Path) -> None:
    async with open_kind(kind, tmp_path) as store:
        await store.write(Batch.of([1], [T0], [1.0]))
    calls = [
        store.write(Batch.of([1], [T0], [1.0])),
        store.latest([1]),
        store.query(1, T0, T0 + 1),
        store.query(1, T0, T0 + NS, every=NS),
        store.apply_retention(T0),
        store.stats(),
    ]
    for call in calls:
        with pytest.raises(StoreClosedError):
            await call
    await store.close()  # closing again is harmless


def test_package_exports_everything_it_documents() -> None:
    exported = set(factory5g.store.__all__)
    assert {
        "Agg",
        "Store",
        "StoreError",
        "StoreClosedError",
        "StoreQueryError",
        "StoreStats",
        "MemoryStore",
        "EmbeddedStore",
        "open_store",
    } <= exported
    assert all(hasattr(factory5g.store, name) for name in exported)
    assert isinstance(factory5g.store.open_store(Path("x")), EmbeddedStore)
    assert isinstance(MemoryStore(), Store)


async def test_historical_samples_are_stored_but_do_not_move_latest(store: AnyStore) -> None:
    await store.write(Batch.of([1, 2], [100, 100], [1.0, 2.0]))
    await store.write(Batch.of([1], [500], [9.0], historical=True))
    latest = await store.latest([1, 2])
    assert latest.value.tolist() == [1.0, 2.0]
    raw = await store.query(1, 0, 1000)
    assert raw.value.tolist() == [1.0, 9.0]


async def test_events_are_stored_with_the_batch_and_read_back_in_time_order(
    store: AnyStore,
) -> None:
    table = {"kind": "DataSet", "columns": ["a", "b"], "rows": [[1, "x"], [2, None]]}
    await store.write(
        Batch.of([1], [100], [1.0], events=[Event(3, 50, "lot 7"), Event(3, 20, table)])
    )
    await store.write(Batch.of([], [], [], events=[Event(3, 70, {"nested": {"ok": True}})]))
    got = await store.events(3, 0, 1000)
    assert [(e.ts, e.data) for e in got] == [
        (20, table),
        (50, "lot 7"),
        (70, {"nested": {"ok": True}}),
    ]
    assert [e.ts for e in await store.events(3, 21, 70)] == [50]
    assert await store.events(4, 0, 1000) == []
    assert len(await store.events(3, 0, 1000, limit=2)) == 2
    await store.apply_retention(60)
    assert [e.ts for e in await store.events(3, 0, 1000)] == [70]
