"""Columnar Batches and the Bus that carries them."""

from factory5g.stream.batch import Batch, Event, Quality, now_ns
from factory5g.stream.bus import Bus, BusStats, SlowConsumerPolicy, Subscription, SubscriptionStats
from factory5g.stream.errors import BatchDecodeError, BatchError, BusClosedError, StreamError
from factory5g.stream.memory import MemoryBus, MemorySubscription

__all__ = [
    "Batch",
    "BatchDecodeError",
    "BatchError",
    "Bus",
    "BusClosedError",
    "BusStats",
    "Event",
    "MemoryBus",
    "MemorySubscription",
    "Quality",
    "SlowConsumerPolicy",
    "StreamError",
    "Subscription",
    "SubscriptionStats",
    "now_ns",
]
