"""Store test helpers: open either implementation, and a brute-force reference in plain Python."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest

from factory5g.store import Agg, EmbeddedStore, MemoryStore
from factory5g.stream import Batch, Quality

NS = 1_000_000_000
T0 = 1_700_000_000 * NS  # a whole second, so that offsets in whole seconds stay aligned

AnyStore = MemoryStore | EmbeddedStore
KINDS = ("memory", "embedded")


@asynccontextmanager
async def open_kind(kind: str, directory: Path) -> AsyncIterator[AnyStore]:
    store: AnyStore = MemoryStore() if kind == "memory" else EmbeddedStore.open(directory)
    async with store:
        yield store


@pytest.fixture(params=KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AnyStore]:
    async with open_kind(request.param, tmp_path / "store") as s:
        yield s


def samples_of(batches: Sequence[Batch]) -> list[tuple[int, int, float, int, int]]:
    """(signal, ts, value, quality, write order) for every sample written, in write order."""
    out = []
    for b in batches:
        for s, t, v, q in zip(
            b.signal.tolist(), b.ts.tolist(), b.value.tolist(), b.quality.tolist(), strict=True
        ):
            out.append((s, t, v, q, len(out)))
    return out


def expected_raw(samples, signal: int, start: int, end: int) -> list[tuple[int, float, int]]:
    rows = [r for r in samples if r[0] == signal and start <= r[1] < end]
    rows.sort(key=lambda r: (r[1], r[4]))  # ties: write order
    return [(t, v, q) for _, t, v, q, _ in rows]


def expected_agg(
    samples, signal: int, start: int, end: int, every: int, agg: Agg
) -> list[tuple[int, float, int]]:
    """(ts, value, quality) per bucket holding a usable sample; rules in store/memory.py."""
    buckets: dict[int, list[tuple[int, float, int, int]]] = {}
    for s, t, v, q, i in samples:
        if s == signal and start <= t < end and q >= Quality.UNCERTAIN:
            buckets.setdefault(t // every, []).append((t, v, q, i))  # // floors like the epoch grid
    out = []
    for k in sorted(buckets):
        rows = sorted(buckets[k], key=lambda r: (r[0], r[3]))
        vals = [r[1] for r in rows]
        finite = [x for x in vals if not math.isnan(x)]
        if agg is Agg.MEAN:
            if all(map(math.isfinite, vals)):
                value = math.fsum(vals) / len(vals)
            else:
                value = sum(vals) / len(vals)  # NaN or ±inf: the result does not depend on order
        elif agg is Agg.MIN:
            value = min(finite) if finite else math.nan
        elif agg is Agg.MAX:
            value = math.nan if len(finite) < len(vals) else max(vals)
        elif agg is Agg.LAST:
            value = rows[-1][1]
        else:
            value = float(len(rows))
        quality = Quality.GOOD if all(r[2] >= Quality.GOOD for r in rows) else Quality.UNCERTAIN
        out.append((max(k * every, start), value, int(quality)))
    return out


def expected_latest(samples, signals: Sequence[int]) -> list[tuple[int, int, float, int]]:
    best: dict[int, tuple[int, float, int, int]] = {}
    for s, t, v, q, i in samples:
        if s not in best or (t, i) > (best[s][0], best[s][3]):
            best[s] = (t, v, q, i)
    return [(s, *best[s][:3]) for s in signals if s in best]


def rows_of(batch: Batch) -> list[tuple[int, float, int]]:
    return list(zip(batch.ts.tolist(), batch.value.tolist(), batch.quality.tolist(), strict=True))


def assert_rows_equal(
    got: Batch, want: list[tuple[int, float, int]], signal: int, agg=None
) -> None:
    """Exact on ts and quality; values exact too, except means (float sums depend on order)."""
    assert len(got) == len(want), (rows_of(got), want)
    assert (got.signal == signal).all()
    assert got.ts.tolist() == [w[0] for w in want]
    assert got.quality.tolist() == [w[2] for w in want]
    wanted = np.array([w[1] for w in want], dtype=np.float64)
    if agg is Agg.MEAN:
        np.testing.assert_allclose(got.value, wanted, rtol=1e-9, atol=1e-9, equal_nan=True)
    else:
        np.testing.assert_array_equal(got.value, wanted)  # NaN equals NaN here
