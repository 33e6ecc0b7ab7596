"""In-memory Store: the reference every other backend is tested against, and the unit-test double.

It keeps the samples in numpy arrays in write order and answers every question by brute force, so
it is easy to read and obviously right; it is not meant for production volumes.

The module also holds the query arithmetic every backend shares (argument checks, bucket origin,
bucket quality), so that all backends answer the same question the same way.

Points of the :mod:`factory5g.store.base` semantics that need a precise reading, and how every
backend reads them:

* Buckets are ``[k*every, (k+1)*every)`` aligned to the Unix epoch and clipped to
  ``[start, end)``: the row's ``ts`` is the start of the clipped bucket, ``max(k*every, start)``,
  so every returned ts lies in the queried range.
* A bucket is returned when it holds at least one sample that is not bad; a bucket with only
  bad samples is empty for aggregation.
* Samples that share a timestamp keep their write order (within a batch, their position): the
  raw query lists them in that order, ``last`` and ``latest`` take the one written last.
* Values are ordered as SQL and numpy sort floats, NaN above +inf: ``max`` is NaN when a NaN is
  in the bucket, ``min`` ignores NaN unless every value is NaN, ``mean`` of a bucket holding a NaN
  is NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Final, Self

import numpy as np
from numpy.typing import NDArray

from factory5g.store.base import Agg, StoreClosedError, StoreError, StoreQueryError, StoreStats
from factory5g.stream.batch import Batch, Event, Quality

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_SIGNAL_ID",
    "NS_PER_S",
    "MemoryStore",
    "bucket_origin",
    "bucket_quality",
    "check_query",
    "check_signal_ids",
]

NS_PER_S: Final = 1_000_000_000
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
# Signal ids are dense, assigned from the site file (ARCHITECTURE.md); the embedded store keeps
# the latest sample in arrays indexed by id, so a stray huge id would allocate gigabytes.
MAX_SIGNAL_ID: Final = 2**24 - 1


def check_signal_ids(batch: Batch) -> None:
    """Raise StoreError unless every signal id of ``batch`` is in ``[0, MAX_SIGNAL_ID]``."""
    if len(batch) == 0:
        return
    lo, hi = int(batch.signal.min()), int(batch.signal.max())
    if lo < 0 or hi > MAX_SIGNAL_ID:
        bad = lo if lo < 0 else hi
        raise StoreError(f"signal id {bad} is outside [0, {MAX_SIGNAL_ID}]")


def check_query(start: int, end: int, every: int | None, agg: Agg | str, limit: int | None) -> Agg:
    """Validate the arguments of ``Store.query``; return ``agg`` as an :class:`Agg`."""
    for name, v in (("start", start), ("end", end)):
        if not INT64_MIN <= v <= INT64_MAX:
            raise StoreQueryError(f"{name}={v} is not an int64 timestamp in ns")
    if start > end:
        raise StoreQueryError(f"start {start} is after end {end}")
    if limit is not None and limit < 0:
        raise StoreQueryError(f"limit must be >= 0, got {limit}")
    if every is not None and not 0 < every <= INT64_MAX:
        raise StoreQueryError(f"every must be a positive number of ns, got {every}")
    try:
        return Agg(agg)
    except ValueError:
        raise StoreQueryError(
            f"unknown aggregate {agg!r}; expected one of {[a.value for a in Agg]}"
        ) from None


def bucket_origin(start: int, end: int, every: int) -> int:
    """Start of the epoch-aligned bucket holding ``start``: bucket k begins at origin + k*every.

    Backends compute bucket numbers as ``(ts - origin) // every`` with ``ts >= start >= origin``,
    so the division never sees a negative operand (SQL engines truncate toward zero, numpy
    floors; on non-negative operands they agree).
    """
    origin = start - start % every  # Python's % floors, so this also holds before 1970
    if origin < INT64_MIN or end - origin > INT64_MAX:
        raise StoreQueryError(f"range [{start}, {end}) with every={every} overflows int64")
    return origin


def bucket_quality(all_good: NDArray[np.bool_]) -> NDArray[np.uint8]:
    """Quality of aggregate rows: GOOD where every sample used was good, else UNCERTAIN."""
    return np.where(all_good, np.uint8(Quality.GOOD), np.uint8(Quality.UNCERTAIN)).astype(np.uint8)


class MemoryStore:
    """The in-memory Store. ``async with MemoryStore() as store: ...``.

    Batches are kept as written (events dropped: the store keeps numeric samples only). Every
    method costs O(samples held), which is fine for tests and small demos.
    """

    def __init__(self) -> None:
        self._parts: list[Batch] = []
        self._live: list[Batch] = []  # the non-historical samples: they alone move ``latest``
        self._events: list[Event] = []
        self._merged: Batch | None = None
        self._closed = False

    async def __aenter__(self) -> Self:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        self._parts.clear()
        self._merged = None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the memory store is closed")

    def _samples(self) -> Batch:
        """All samples in write order, as one Batch (concatenated lazily, once per write)."""
        if self._merged is None:
            self._merged = Batch.concat(self._parts)
            self._parts = [self._merged]
        return self._merged

    # -- Store --------------------------------------------------------------------------------

    async def write(self, batch: Batch) -> None:
        self._check_open()
        check_signal_ids(batch)
        self._events.extend(batch.events)
        if len(batch) == 0:
            return
        # Keep the columns only; Batches are immutable by convention, so no copy is needed.
        self._parts.append(Batch(batch.signal, batch.ts, batch.value, batch.quality))
        self._merged = None
        if not batch.historical:
            self._live.append(Batch(batch.signal, batch.ts, batch.value, batch.quality))

    async def latest(self, signals: Sequence[int]) -> Batch:
        """Per asked signal (in the order asked), its sample with the greatest ts; signals
        without samples are left out."""
        self._check_open()
        wanted = np.asarray(signals, dtype=np.int64).reshape(-1)
        data = Batch.concat(self._live)
        if len(wanted) == 0 or len(data) == 0:
            return Batch.empty()
        # last_per_signal sorts stably, so among equal timestamps the later write wins.
        last = data.last_per_signal()
        pos = np.minimum(np.searchsorted(last.signal, wanted), len(last) - 1)
        found = last.signal[pos] == wanted
        return last.take(pos[found])

    async def query(
        self,
        signal: int,
        start: int,
        end: int,
        every: int | None = None,
        agg: Agg = Agg.MEAN,
        limit: int | None = None,
    ) -> Batch:
        self._check_open()
        agg = check_query(start, end, every, agg, limit)
        data = self._samples()
        inside = (data.signal == signal) & (data.ts >= start) & (data.ts < end)
        sel = data.take(np.flatnonzero(inside))
        sel = sel.take(np.argsort(sel.ts, kind="stable"))  # stable: ties stay in write order
        if every is None:
            return sel if limit is None else sel.take(np.arange(min(limit, len(sel))))
        sel = sel.take(Quality.is_usable(sel.quality))
        if len(sel) == 0:
            return Batch.empty()
        origin = bucket_origin(start, end, every)
        k = (sel.ts - np.int64(origin)) // np.int64(every)
        first = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
        last = np.concatenate((first[1:], [len(k)])) - 1
        n = last - first + 1
        v = sel.value
        if agg is Agg.MEAN:
            # inf + -inf is NaN and a huge sum overflows to inf: these are the answers, as in SQL.
            with np.errstate(invalid="ignore", over="ignore"):
                out = np.add.reduceat(v, first) / n
        elif agg is Agg.MIN:
            out = np.fmin.reduceat(v, first)  # fmin skips NaN, as SQL min does
        elif agg is Agg.MAX:
            out = np.maximum.reduceat(v, first)  # maximum keeps NaN, as SQL max does
        elif agg is Agg.LAST:
            out = v[last]
        else:
            out = n.astype(np.float64)
        all_good = np.logical_and.reduceat(sel.quality >= Quality.GOOD, first)
        ts = np.maximum(np.int64(origin) + k[first] * np.int64(every), np.int64(start))
        if limit is not None:
            ts, out, all_good = ts[:limit], out[:limit], all_good[:limit]
        return Batch(
            np.full(len(ts), signal, dtype=np.int32),
            ts.astype(np.int64),
            out.astype(np.float64),
            bucket_quality(all_good),
        )

    async def events(
        self, signal: int, start: int, end: int, limit: int | None = None
    ) -> list[Event]:
        self._check_open()
        check_query(start, end, None, Agg.MEAN, limit)
        found = [e for e in self._events if e.signal == signal and start <= e.ts < end]
        found.sort(key=lambda e: e.ts)  # stable: write order among equal timestamps
        return found[:limit] if limit is not None else found

    async def apply_retention(self, before: int) -> int:
        self._check_open()
        self._events = [e for e in self._events if e.ts >= before]
        data = self._samples()
        keep = data.ts >= before
        removed = len(data) - int(np.count_nonzero(keep))
        if removed:
            self._parts = [data.take(keep)]
            self._merged = None
            live = Batch.concat(self._live)
            self._live = [live.take(live.ts >= before)]
        return removed

    async def stats(self) -> StoreStats:
        self._check_open()
        return StoreStats(
            backend="memory", samples=len(self._samples()), bytes_on_disk=0, path=None
        )
