"""The Bus protocol: how Batches fan out from the adapters to the store, the apps and live views.

Slow-consumer policy — chosen per subscription, because consumers differ in what they can lose:

* ``BLOCK`` (lossless, the default): when the subscriber's queue is full, ``publish`` waits for it.
  The backpressure travels up to the adapters and from there to the wire (TCP windows, MQTT
  in-flight limits, OPC UA publish requests), where the equipment or broker buffers. Used by the
  store writer and every app whose result must not silently miss samples (alarms, OEE, audit).
* ``DROP_OLDEST``: when the queue is full, the oldest queued batch is discarded and counted.
  Used by live views (WebSocket clients, the console): an operator wants the newest values, and a
  browser on a congested link must never slow down ingestion for everyone else.

Every subscription counts what it delivered and what it dropped; the bus counts what was
published. ``/api/v1/health`` reports them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from factory5g.stream.batch import Batch

__all__ = ["Bus", "BusStats", "SlowConsumerPolicy", "Subscription", "SubscriptionStats"]


class SlowConsumerPolicy(StrEnum):
    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"


@dataclass(frozen=True, slots=True)
class SubscriptionStats:
    name: str
    policy: SlowConsumerPolicy
    maxsize: int
    queued_batches: int
    delivered_batches: int
    delivered_samples: int
    dropped_batches: int
    dropped_samples: int


@dataclass(frozen=True, slots=True)
class BusStats:
    published_batches: int
    published_samples: int
    subscriptions: tuple[SubscriptionStats, ...]


@runtime_checkable
class Subscription(Protocol):
    """An async iterator of Batches; iteration ends when the subscription or the bus closes."""

    name: str

    def __aiter__(self) -> AsyncIterator[Batch]: ...

    async def __anext__(self) -> Batch: ...

    def close(self) -> None: ...

    def stats(self) -> SubscriptionStats: ...


@runtime_checkable
class Bus(Protocol):
    async def publish(self, batch: Batch) -> None:
        """Hand ``batch`` to every subscriber according to its slow-consumer policy."""
        ...

    def subscribe(
        self,
        name: str,
        *,
        maxsize: int = 256,
        policy: SlowConsumerPolicy = SlowConsumerPolicy.BLOCK,
        signals: Sequence[int] | None = None,
    ) -> Subscription:
        """A new subscription; ``signals`` limits it to those signal ids."""
        ...

    def stats(self) -> BusStats: ...
