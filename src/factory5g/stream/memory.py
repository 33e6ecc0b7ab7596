"""In-process Bus: the default on one machine. Zero copies: subscribers share the Batch objects."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import Self

import numpy as np

from factory5g.stream.batch import Batch
from factory5g.stream.bus import BusStats, SlowConsumerPolicy, SubscriptionStats
from factory5g.stream.errors import BusClosedError

__all__ = ["MemoryBus", "MemorySubscription"]


class MemorySubscription:
    """A bounded queue of Batches for one consumer. Single consumer; any number of publishers."""

    def __init__(
        self,
        bus: MemoryBus,
        name: str,
        maxsize: int,
        policy: SlowConsumerPolicy,
        signals: Sequence[int] | None,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.name = name
        self.policy = policy
        self.maxsize = maxsize
        self._bus = bus
        self._signals = None if signals is None else np.asarray(signals, dtype=np.int32)
        self._items: deque[Batch] = deque()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._closed = False
        self.delivered_batches = 0
        self.delivered_samples = 0
        self.dropped_batches = 0
        self.dropped_samples = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def _filter(self, batch: Batch) -> Batch | None:
        if self._signals is None:
            return batch
        out = batch.for_signals(self._signals)
        return out if len(out) or out.events else None

    async def _offer(self, batch: Batch) -> None:
        if self._closed:
            return
        mine = self._filter(batch)
        if mine is None:
            return
        if self.policy is SlowConsumerPolicy.DROP_OLDEST:
            if len(self._items) >= self.maxsize:
                old = self._items.popleft()
                self.dropped_batches += 1
                self.dropped_samples += len(old)
        else:
            while len(self._items) >= self.maxsize and not self._closed:
                self._writable.clear()
                await self._writable.wait()
            if self._closed:
                # Closed while this batch waited for room: it is lost to this subscriber, and
                # counted so, or it would vanish from delivered + dropped + queued.
                self.dropped_batches += 1
                self.dropped_samples += len(mine)
                return
        self._items.append(mine)
        self._readable.set()

    def __aiter__(self) -> MemorySubscription:
        return self

    async def __anext__(self) -> Batch:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._readable.clear()
            await self._readable.wait()
        batch = self._items.popleft()
        self._writable.set()
        self.delivered_batches += 1
        self.delivered_samples += len(batch)
        return batch

    def get_nowait(self) -> Batch | None:
        """The next queued batch, or None when none is queued."""
        if not self._items:
            return None
        batch = self._items.popleft()
        self._writable.set()
        self.delivered_batches += 1
        self.delivered_samples += len(batch)
        return batch

    def close(self) -> None:
        """Stop receiving; already queued batches can still be read, then iteration ends."""
        if self._closed:
            return
        self._closed = True
        self._readable.set()
        self._writable.set()
        self._bus._forget(self)

    def stats(self) -> SubscriptionStats:
        return SubscriptionStats(
            name=self.name,
            policy=self.policy,
            maxsize=self.maxsize,
            queued_batches=len(self._items),
            delivered_batches=self.delivered_batches,
            delivered_samples=self.delivered_samples,
            dropped_batches=self.dropped_batches,
            dropped_samples=self.dropped_samples,
        )


class MemoryBus:
    """The in-process Bus. Use as ``async with MemoryBus() as bus``; closing ends subscriptions."""

    def __init__(self) -> None:
        self._subs: list[MemorySubscription] = []
        self._closed = False
        self.published_batches = 0
        self.published_samples = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        for sub in list(self._subs):
            sub.close()

    async def publish(self, batch: Batch) -> None:
        if self._closed:
            raise BusClosedError("bus")
        self.published_batches += 1
        self.published_samples += len(batch)
        for sub in tuple(self._subs):
            await sub._offer(batch)

    def subscribe(
        self,
        name: str,
        *,
        maxsize: int = 256,
        policy: SlowConsumerPolicy = SlowConsumerPolicy.BLOCK,
        signals: Sequence[int] | None = None,
    ) -> MemorySubscription:
        if self._closed:
            raise BusClosedError("bus")
        sub = MemorySubscription(self, name, maxsize, policy, signals)
        self._subs.append(sub)
        return sub

    def _forget(self, sub: MemorySubscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def stats(self) -> BusStats:
        return BusStats(
            published_batches=self.published_batches,
            published_samples=self.published_samples,
            subscriptions=tuple(s.stats() for s in self._subs),
        )
