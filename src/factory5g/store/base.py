"""The Store protocol: where Batches rest, and how the API and the apps read them back.

Semantics every implementation keeps (the tests of each backend check them):

* ``write(batch)`` returns once the batch is durable: after a crash (even ``kill -9``) every
  acknowledged batch is there, and a batch not yet acknowledged is either wholly there or absent.
* ``latest(signals)`` gives, per signal, the sample with the greatest timestamp, whatever its
  quality (a bad-quality latest sample is how a view learns that a device is offline).
* ``query(signal, start, end)`` gives the raw samples with ``start <= ts < end`` in time order.
  With ``every`` it gives one row per non-empty bucket ``[k*every, (k+1)*every)`` (aligned to the
  Unix epoch, clipped to the range), computed over the samples that are not bad (quality >= 0x40):
  ``ts`` is the bucket start, or ``start`` for a first bucket that begins before it (every
  returned ``ts`` lies in the range); quality GOOD if all those samples were good, else
  UNCERTAIN. A bucket holding only bad samples is not returned. ``count`` counts the samples;
  ``last`` is the value with the greatest timestamp in the bucket.
* Samples that share a timestamp keep their write order: in raw queries, for ``last`` and for
  ``latest`` the later write wins. NaN orders above +inf, as in SQL: ``max`` of a bucket holding
  a NaN is NaN; ``min`` skips NaN unless every value is NaN.
* ``apply_retention(before)`` removes every sample with ``ts < before`` and returns how many.
* A historical batch (``Batch.historical``: store-and-forward data, Sparkplug ``is_historical``)
  is stored and queried like any other, but does not move ``latest``. The embedded store rebuilds
  its latest values from all samples when it opens, so after a restart a historical sample newer
  than every live one of its signal becomes the latest (rare; a persisted latest table will fix
  it).
* The event side channel of a Batch (strings, Sparkplug DataSets and Templates, as JSON data) is
  stored in the same transaction as the samples; ``events(signal, start, end)`` reads it back in
  time order. Retention removes events too.
* Signal ids are 0 … 2**24-1: ids index dense arrays (``latest``), and a stray huge id must not
  allocate gigabytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from factory5g.stream.batch import Batch, Event

__all__ = ["Agg", "Store", "StoreError", "StoreStats"]


class StoreError(Exception):
    """Base of the store errors.

    StoreError
    ├── StoreClosedError      the store was used after close
    └── StoreQueryError       a query that cannot be answered (bad range, bad bucket width)
    """


class StoreClosedError(StoreError):
    pass


class StoreQueryError(StoreError, ValueError):
    pass


class Agg(StrEnum):
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    LAST = "last"
    COUNT = "count"


@dataclass(frozen=True, slots=True)
class StoreStats:
    backend: str
    samples: int
    bytes_on_disk: int
    path: str | None


@runtime_checkable
class Store(Protocol):
    async def write(self, batch: Batch) -> None: ...

    async def latest(self, signals: Sequence[int]) -> Batch: ...

    async def query(
        self,
        signal: int,
        start: int,
        end: int,
        every: int | None = None,
        agg: Agg = Agg.MEAN,
        limit: int | None = None,
    ) -> Batch: ...

    async def events(
        self, signal: int, start: int, end: int, limit: int | None = None
    ) -> list[Event]: ...

    async def apply_retention(self, before: int) -> int: ...

    async def stats(self) -> StoreStats: ...
