"""MemoryBus: fan-out, filters, the two slow-consumer policies, closing, counters.

Blocking is proven with events and ``asyncio.timeout``: a publisher that should be suspended is
shown not to finish within a bound, then shown to finish once the consumer reads. Nothing sleeps to
wait for a state.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from factory5g.stream import (
    Batch,
    Bus,
    BusClosedError,
    Event,
    MemoryBus,
    MemorySubscription,
    SlowConsumerPolicy,
    Subscription,
    SubscriptionStats,
)

BLOCK = SlowConsumerPolicy.BLOCK
DROP_OLDEST = SlowConsumerPolicy.DROP_OLDEST
SUSPENDED_FOR = 0.05  # how long a suspended publisher is watched not to finish (seconds)
PROMPTLY = 2.0  # bound for things that must happen at once (seconds)


def batch(*signals: int, ts: int = 0, events: tuple[Event, ...] = ()) -> Batch:
    return Batch.of(list(signals), ts, [float(s) for s in signals], events=events)


async def next_of(sub: MemorySubscription) -> Batch:
    async with asyncio.timeout(PROMPTLY):
        return await anext(sub)


async def assert_suspended(done: asyncio.Event) -> None:
    """``done`` is not set within SUSPENDED_FOR: whoever would set it is suspended."""
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(SUSPENDED_FOR):
            await done.wait()


async def promptly(aw: Awaitable[Any]) -> Any:
    async with asyncio.timeout(PROMPTLY):
        return await aw


class Publisher:
    """Publishes in a task and says, through events, when it started and when it returned."""

    def __init__(self, bus: MemoryBus, *batches: Batch) -> None:
        self.started = asyncio.Event()
        self.done = asyncio.Event()
        self.published = 0
        self.task = asyncio.create_task(self._run(bus, batches))

    async def _run(self, bus: MemoryBus, batches: tuple[Batch, ...]) -> None:
        self.started.set()
        for b in batches:
            await bus.publish(b)
            self.published += 1
        self.done.set()

    async def finished(self) -> None:
        await promptly(self.task)


# -- basics -------------------------------------------------------------------------------------


async def test_memory_bus_implements_the_protocols() -> None:
    async with MemoryBus() as bus:
        sub = bus.subscribe("s")
        assert isinstance(bus, Bus)
        assert isinstance(sub, Subscription)
        assert sub.__aiter__() is sub


async def test_fan_out_to_every_subscriber_without_copies() -> None:
    async with MemoryBus() as bus:
        subs = [bus.subscribe(f"s{i}") for i in range(3)]
        sent = [batch(1, 2, ts=k) for k in range(4)]
        for b in sent:
            await promptly(bus.publish(b))
        for sub in subs:
            got = [await next_of(sub) for _ in sent]
            assert all(g is s for g, s in zip(got, sent, strict=True))  # shared, in order
            assert sub.get_nowait() is None


async def test_signal_filter() -> None:
    async with MemoryBus() as bus:
        everything = bus.subscribe("all")
        some = bus.subscribe("some", signals=[1, 3])
        ev1, ev2, ev3 = Event(1, 0, "one"), Event(2, 0, "two"), Event(3, 0, {"three": 3})

        await bus.publish(batch(0, 1, 2, 3, 1, events=(ev1, ev2)))
        await bus.publish(batch(0, 2))  # nothing for "some"
        await bus.publish(batch(2, events=(ev3,)))  # only an event for "some"
        await bus.publish(Batch.empty())  # nothing for "some"

        first = await next_of(some)
        assert first.signal.tolist() == [1, 3, 1]
        assert first.value.tolist() == [1.0, 3.0, 1.0]
        assert first.events == (ev1,)
        second = await next_of(some)
        assert len(second) == 0
        assert second.events == (ev3,)
        assert some.get_nowait() is None
        assert some.stats().delivered_batches == 2
        assert some.stats().delivered_samples == 3

        assert [len(await next_of(everything)) for _ in range(4)] == [5, 2, 1, 0]


async def test_maxsize_must_be_positive() -> None:
    async with MemoryBus() as bus:
        with pytest.raises(ValueError, match="maxsize must be >= 1"):
            bus.subscribe("s", maxsize=0)
        assert bus.stats().subscriptions == ()


# -- BLOCK ----------------------------------------------------------------------------------------


async def test_block_suspends_the_publisher_until_the_consumer_reads() -> None:
    async with MemoryBus() as bus:
        sub = bus.subscribe("store", maxsize=2, policy=BLOCK)
        b1, b2, b3, b4 = (batch(1, ts=k) for k in range(4))
        await promptly(bus.publish(b1))
        await promptly(bus.publish(b2))  # fills the queue

        pub = Publisher(bus, b3, b4)
        await promptly(pub.started.wait())
        await assert_suspended(pub.done)
        assert pub.published == 0
        assert sub.stats().queued_batches == 2

        assert await next_of(sub) is b1  # room for one: b3 goes in, b4 waits
        await assert_suspended(pub.done)
        assert pub.published == 1
        assert sub.stats().queued_batches == 2

        assert await next_of(sub) is b2
        await promptly(pub.done.wait())
        await pub.finished()
        assert [await next_of(sub) for _ in range(2)] == [b3, b4]
        stats = sub.stats()
        assert (stats.delivered_batches, stats.dropped_batches, stats.queued_batches) == (4, 0, 0)


async def test_block_is_lossless_and_ordered_with_many_publishers() -> None:
    async with MemoryBus() as bus:
        sub = bus.subscribe("audit", maxsize=2)
        n_pub, per_pub = 4, 25
        pubs = [Publisher(bus, *(batch(p, ts=k) for k in range(per_pub))) for p in range(n_pub)]
        got: list[tuple[int, int]] = []
        for _ in range(n_pub * per_pub):
            b = await next_of(sub)
            assert sub.stats().queued_batches <= 2
            got.append((int(b.signal[0]), int(b.ts[0])))
        for p in pubs:
            await p.finished()
        for p in range(n_pub):  # every batch of every publisher, each publisher's in order
            assert [ts for s, ts in got if s == p] == list(range(per_pub))
        stats = sub.stats()
        assert stats.delivered_batches == n_pub * per_pub
        assert stats.dropped_batches == 0


async def test_closing_a_subscription_releases_its_blocked_publisher() -> None:
    async with MemoryBus() as bus:
        sub = bus.subscribe("s", maxsize=1)
        other = bus.subscribe("other", maxsize=4)
        await bus.publish(batch(1, 2, ts=0))
        pub = Publisher(bus, batch(1, 2, 3, ts=1))
        await assert_suspended(pub.done)
        sub.close()
        await pub.finished()
        # the batch reached the other subscriber, and this one accounts for the batch it lost
        assert other.stats().queued_batches == 2
        stats = sub.stats()
        assert (stats.queued_batches, stats.dropped_batches, stats.dropped_samples) == (1, 1, 3)
        assert (await next_of(sub)).ts.tolist() == [0, 0]
        with pytest.raises(StopAsyncIteration):
            await next_of(sub)


async def test_closing_the_bus_releases_a_blocked_publisher() -> None:
    bus = MemoryBus()
    sub = bus.subscribe("s", maxsize=1)
    await bus.publish(batch(1))
    pub = Publisher(bus, batch(2))
    await assert_suspended(pub.done)
    bus.close()
    await pub.finished()
    assert (await next_of(sub)).signal.tolist() == [1]
    with pytest.raises(StopAsyncIteration):
        await next_of(sub)


# -- DROP_OLDEST ----------------------------------------------------------------------------------


async def test_drop_oldest_keeps_the_newest_and_counts_what_it_dropped() -> None:
    async with MemoryBus() as bus:
        live = bus.subscribe("console", maxsize=3, policy=DROP_OLDEST)
        sent = [batch(*range(k + 1), ts=k) for k in range(10)]  # batch k has k+1 samples
        for b in sent:
            await promptly(bus.publish(b))  # never waits for the consumer
        stats = live.stats()
        assert stats == SubscriptionStats(
            name="console",
            policy=DROP_OLDEST,
            maxsize=3,
            queued_batches=3,
            delivered_batches=0,
            delivered_samples=0,
            dropped_batches=7,
            dropped_samples=sum(range(1, 8)),
        )
        assert [await next_of(live) for _ in range(3)] == sent[7:]
        stats = live.stats()
        assert (stats.delivered_batches, stats.delivered_samples) == (3, 8 + 9 + 10)


async def test_drop_oldest_counts_filtered_samples() -> None:
    async with MemoryBus() as bus:
        live = bus.subscribe("console", maxsize=1, policy=DROP_OLDEST, signals=[7])
        await bus.publish(batch(7, 7, 1, 2, ts=0))
        await bus.publish(batch(7, 3, ts=1))
        stats = live.stats()
        assert (stats.dropped_batches, stats.dropped_samples, stats.queued_batches) == (1, 2, 1)


# -- closing --------------------------------------------------------------------------------------


async def test_subscription_close_ends_iteration_after_draining() -> None:
    async with MemoryBus() as bus:
        sub = bus.subscribe("s")
        sent = [batch(1, ts=k) for k in range(3)]
        for b in sent:
            await bus.publish(b)
        sub.close()
        sub.close()  # idempotent
        assert sub.closed
        await bus.publish(batch(1, ts=99))  # not for a closed subscription
        got = await promptly(_drain(sub))
        assert got == sent
        assert sub.stats().delivered_batches == 3
        assert [s.name for s in bus.stats().subscriptions] == []


async def _drain(sub: MemorySubscription) -> list[Batch]:
    return [b async for b in sub]


async def test_close_wakes_a_waiting_consumer() -> None:
    async with MemoryBus() as bus:
        sub = bus.subscribe("s")
        consumer = asyncio.create_task(_drain(sub))
        done, _ = await asyncio.wait({consumer}, timeout=SUSPENDED_FOR)
        assert not done  # waiting for a batch
        await bus.publish(batch(5))
        sub.close()
        got = await promptly(consumer)
        assert [b.signal.tolist() for b in got] == [[5]]


async def test_bus_close_ends_every_subscription() -> None:
    bus = MemoryBus()
    subs = [bus.subscribe(f"s{i}", policy=p) for i, p in enumerate([BLOCK, DROP_OLDEST, BLOCK])]
    await bus.publish(batch(1))
    consumers = [asyncio.create_task(_drain(s)) for s in subs]
    bus.close()
    bus.close()  # idempotent
    results = await promptly(asyncio.gather(*consumers))
    assert [len(r) for r in results] == [1, 1, 1]  # drained, then ended
    assert all(s.closed for s in subs)
    with pytest.raises(BusClosedError) as info:
        await bus.publish(batch(1))
    assert info.value.name == "bus"
    with pytest.raises(BusClosedError):
        bus.subscribe("late")


async def test_async_with_closes_the_bus() -> None:
    async with MemoryBus() as bus:
        sub = bus.subscribe("s")
    assert sub.closed
    with pytest.raises(BusClosedError):
        await bus.publish(batch(1))


async def test_async_with_closes_the_bus_on_error() -> None:
    subs: list[MemorySubscription] = []

    async def failing_component() -> None:
        async with MemoryBus() as bus:
            subs.append(bus.subscribe("s"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await failing_component()
    assert subs[0].closed


# -- stats ----------------------------------------------------------------------------------------


async def test_stats() -> None:
    async with MemoryBus() as bus:
        a = bus.subscribe("a", maxsize=10)
        b = bus.subscribe("b", maxsize=2, policy=DROP_OLDEST, signals=[1])
        for k in range(4):
            await bus.publish(batch(1, 2, 3, ts=k))
        await next_of(a)
        stats = bus.stats()
        assert (stats.published_batches, stats.published_samples) == (4, 12)
        assert stats.subscriptions == (
            SubscriptionStats("a", BLOCK, 10, 3, 1, 3, 0, 0),
            SubscriptionStats("b", DROP_OLDEST, 2, 2, 0, 0, 2, 2),
        )
        b.close()
        assert [s.name for s in bus.stats().subscriptions] == ["a"]
        assert b.stats().dropped_batches == 2  # its own numbers stay readable


# -- property: counters add up under any sequence of operations -----------------------------------

SIGNALS = range(4)


@dataclass
class Expect:
    """What one subscription must hold: a model of MemorySubscription."""

    sub: MemorySubscription
    policy: SlowConsumerPolicy
    maxsize: int
    signals: frozenset[int] | None
    queue: deque[tuple[int, list[int], tuple[Event, ...]]] = field(default_factory=deque)
    offered: list[int] = field(default_factory=lambda: [0, 0])  # batches, samples
    delivered: list[int] = field(default_factory=lambda: [0, 0])
    dropped: list[int] = field(default_factory=lambda: [0, 0])
    closed: bool = False

    def view(
        self, k: int, sigs: list[int], events: tuple[Event, ...]
    ) -> tuple[int, list[int], tuple[Event, ...]] | None:
        if self.signals is None:
            return k, sigs, events
        mine = [s for s in sigs if s in self.signals]
        my_events = tuple(e for e in events if e.signal in self.signals)
        return (k, mine, my_events) if mine or my_events else None

    def check(self) -> None:
        stats = self.sub.stats()
        assert stats.queued_batches == len(self.queue) <= self.maxsize
        assert [stats.delivered_batches, stats.delivered_samples] == self.delivered
        assert [stats.dropped_batches, stats.dropped_samples] == self.dropped
        queued_samples = sum(len(sigs) for _, sigs, _ in self.queue)
        # the invariant: every offered batch (and sample) is delivered, dropped or still queued
        assert (
            stats.delivered_batches + stats.dropped_batches + stats.queued_batches
            == self.offered[0]
        )
        assert stats.delivered_samples + stats.dropped_samples + queued_samples == self.offered[1]

    def take(self, got: Batch) -> None:
        k, sigs, events = self.queue.popleft()
        assert got.ts.tolist() == [k] * len(sigs)
        assert got.signal.tolist() == sigs
        assert got.events == events
        self.delivered[0] += 1
        self.delivered[1] += len(sigs)


subscriptions = st.lists(
    st.tuples(
        st.sampled_from(list(SlowConsumerPolicy)),
        st.integers(1, 3),
        st.none() | st.frozensets(st.sampled_from(SIGNALS), min_size=1),
    ),
    min_size=1,
    max_size=3,
)
publish_op = st.tuples(
    st.just("publish"),
    st.lists(st.sampled_from(SIGNALS), max_size=4),
    st.lists(st.sampled_from(SIGNALS), max_size=2),
)
consume_op = st.tuples(st.just("consume"), st.integers(0, 2), st.integers(1, 3))
close_op = st.tuples(st.just("close"), st.integers(0, 2))
# mostly publishes, so that queues fill up, publishers park and DROP_OLDEST drops
operations = st.lists(
    st.one_of(publish_op, publish_op, publish_op, consume_op, close_op), min_size=4, max_size=30
)


async def _let_the_publisher_run() -> None:
    # Zero-length yields (not a timed wait): the publisher runs until it returns or parks on a
    # full queue. A few are plenty: MemoryBus.publish has no other suspension point.
    for _ in range(5):
        await asyncio.sleep(0)


@settings(max_examples=400, deadline=None)
@given(subscriptions, operations, st.data())
async def test_counters_add_up_under_any_sequence_of_operations(
    subs: list[tuple[SlowConsumerPolicy, int, frozenset[int] | None]],
    ops: list[tuple[Any, ...]],
    data: st.DataObject,
) -> None:
    bus = MemoryBus()
    model = [
        Expect(
            bus.subscribe(f"s{i}", maxsize=m, policy=p, signals=None if f is None else sorted(f)),
            p,
            m,
            f,
        )
        for i, (p, m, f) in enumerate(subs)
    ]
    published = [0, 0]

    for k, op in enumerate(ops):
        if op[0] == "publish":
            _, sigs, event_sigs = op
            events = tuple(Event(s, k, f"e{k}") for s in event_sigs)
            task = asyncio.create_task(bus.publish(batch(*sigs, ts=k, events=events)))
            published[0] += 1
            published[1] += len(sigs)
            for e in model:  # in subscription order, as the bus offers
                view = e.view(k, sigs, events)
                if e.closed or view is None:
                    continue
                e.offered[0] += 1
                e.offered[1] += len(view[1])
                if len(e.queue) == e.maxsize and e.policy is DROP_OLDEST:
                    _, old, _ = e.queue.popleft()
                    event("DROP_OLDEST dropped a batch")
                    e.dropped[0] += 1
                    e.dropped[1] += len(old)
                elif len(e.queue) == e.maxsize:  # BLOCK: the publisher parks here
                    event("a publisher parked on a full BLOCK queue")
                    await _let_the_publisher_run()
                    assert not task.done()
                    assert e.sub.stats().queued_batches == e.maxsize
                    if data.draw(st.booleans(), label=f"consume to unblock {e.sub.name}"):
                        e.take(await next_of(e.sub))
                    else:
                        e.sub.close()
                        e.closed = True
                        e.dropped[0] += 1  # lost while waiting: counted, not vanished
                        e.dropped[1] += len(view[1])
                        continue
                e.queue.append(view)
            await promptly(task)
        elif op[0] == "consume":
            _, i, n = op
            e = model[i % len(model)]
            for _ in range(n):
                if e.queue:
                    e.take(await next_of(e.sub))
                elif e.closed:
                    with pytest.raises(StopAsyncIteration):
                        await next_of(e.sub)
                else:
                    assert e.sub.get_nowait() is None
        else:
            e = model[op[1] % len(model)]
            e.sub.close()
            e.closed = True
        for e in model:
            e.check()
        stats = bus.stats()
        assert [stats.published_batches, stats.published_samples] == published
        assert stats.subscriptions == tuple(e.sub.stats() for e in model if not e.closed)

    bus.close()
    for e in model:
        async for got in e.sub:
            e.take(got)
        e.check()
        assert e.delivered[0] + e.dropped[0] == e.offered[0]
        if e.policy is BLOCK:  # loses at most the one batch in flight when it was closed
            assert e.dropped[0] <= 1
