"""MqttClient against a real Mosquitto and against our broker (the ``broker`` fixture runs each
test on both): publish/subscribe, retained, Will, wildcards, batches, QoS 1 acknowledged after
processing, backpressure, reconnection."""

from __future__ import annotations

import asyncio

import pytest

from factory5g.connect.mqtt import Message, MqttClient, MqttClosedError
from tests.connect.mqtt.conftest import Broker, TcpProxy, collect, options
from tests.helpers import wait_until


async def test_publish_subscribe_qos0_and_qos1(broker: Broker) -> None:
    async with (
        MqttClient(options(broker, "sub")) as sub,
        MqttClient(options(broker, "pub")) as pub,
    ):
        assert await sub.subscribe([("a/q0", 0), ("a/q1", 1)]) == [0, 1]
        await pub.publish("a/q1", b"one", qos=1)  # returns once PUBACKed
        await pub.publish("a/q0", b"zero", qos=1)  # delivered at the subscription's QoS 0
        await pub.publish("a/q1", b"two", qos=0)
        got = await collect(sub, 3)
        assert got == [
            Message("a/q1", b"one", 1),
            Message("a/q0", b"zero", 0),
            Message("a/q1", b"two", 0),
        ]
        assert pub.stats()["messages_out"] == 3
        assert sub.stats()["messages_in"] == 3
        assert sub.stats()["bytes_in"] > 0
        assert sub.connected
        assert pub.connected


async def test_retained_messages_and_their_deletion(broker: Broker) -> None:
    async with MqttClient(options(broker, "pub")) as pub:
        await pub.publish("r/a", b"A", qos=1, retain=True)
        await pub.publish("r/b", b"B", qos=1, retain=True)
        await pub.publish("r/a", b"", qos=1, retain=True)  # deletes r/a [MQTT-3.3.1-10]
        async with MqttClient(options(broker, "late")) as late:
            await late.subscribe([("r/#", 1)])
            await pub.publish("r/c", b"C", qos=1, retain=True)
            got = await collect(late, 2)
    # Retained ones come with RETAIN set [MQTT-3.3.1-8]; to an established subscription it is
    # cleared [MQTT-3.3.1-9]. r/a is gone.
    assert got == [Message("r/b", b"B", 1, True), Message("r/c", b"C", 1, False)]


async def test_will_on_abnormal_death_not_on_clean_exit(broker: Broker, proxy_to: TcpProxy) -> None:
    async with MqttClient(options(broker, "watch")) as watch:
        await watch.subscribe([("will/#", 1)])
        dying = options(proxy_to, "dying", will=Message("will/dying", b"gone", 1))
        async with MqttClient(dying):
            proxy_to.cut()  # the socket dies, no DISCONNECT reaches the broker
            assert await collect(watch, 1) == [Message("will/dying", b"gone", 1)]
        clean = options(broker, "clean", will=Message("will/clean", b"gone", 1, retain=True))
        async with MqttClient(clean) as c:
            await c.publish("alive", b"", qos=1)  # a session in its steady state…
        # …then __aexit__ sends DISCONNECT: the broker discards the Will [MQTT-3.14.4-3].
        async with MqttClient(options(broker, "marker")) as marker:
            await marker.publish("will/marker", b"", qos=1)
        assert [m.topic for m in await collect(watch, 1)] == ["will/marker"]
    async with MqttClient(options(broker, "late")) as late:  # nor was it stored as retained
        await late.subscribe([("will/#", 1)])
        await late.publish("will/end", b"", qos=1)
        assert [m.topic for m in await collect(late, 1)] == ["will/end"]


async def test_wildcards_and_dollar_topics(broker: Broker) -> None:
    async with (
        MqttClient(options(broker, "a")) as a,
        MqttClient(options(broker, "b")) as b,
        MqttClient(options(broker, "pub")) as pub,
    ):
        await a.subscribe([("plant/+/temp", 0), ("plant/line1/#", 0)])
        await b.subscribe([("#", 0), ("+/status", 0), ("$app/#", 0)])
        topics = [
            "plant/a/temp",  # a (+), b (#)
            "plant/line1",  # a ('#' matches the parent level, §4.7.1.2), b
            "plant/line1/b/c",  # a, b
            "plant/a/b/temp",  # b only: '+' is one level
            "$other/status",  # nobody: '#' and '+' skip '$' topics [MQTT-4.7.2-1]
            "$app/x",  # b through '$app/#'
            "plant/line1/end",  # a, b
        ]
        for t in topics:
            await pub.publish(t, t.encode(), qos=1)
        got_a = await collect(a, 4)
        got_b = await collect(b, 6)
    assert [m.topic for m in got_a] == [
        "plant/a/temp",
        "plant/line1",
        "plant/line1/b/c",
        "plant/line1/end",
    ]
    assert [m.topic for m in got_b] == [
        "plant/a/temp",
        "plant/line1",
        "plant/line1/b/c",
        "plant/a/b/temp",
        "$app/x",
        "plant/line1/end",
    ]
    assert all(m.payload == m.topic.encode() for m in got_a + got_b)


async def test_unsubscribe_stops_delivery_and_is_not_resent(broker: Broker) -> None:
    async with (
        MqttClient(options(broker, "sub")) as sub,
        MqttClient(options(broker, "pub")) as pub,
    ):
        await sub.subscribe([("u/a", 0), ("u/b", 0)])
        await sub.unsubscribe(["u/a"])
        await pub.publish("u/a", b"", qos=1)
        await pub.publish("u/b", b"", qos=1)
        assert [m.topic for m in await collect(sub, 1)] == ["u/b"]
        assert sub._subscriptions == {"u/b": 0}  # what a reconnect will re-send


async def test_batches_hand_over_everything_queued_in_order(broker: Broker) -> None:
    n = 3000
    async with (
        MqttClient(options(broker, "sub")) as sub,
        MqttClient(options(broker, "pub")) as pub,
    ):
        await sub.subscribe([("seq", 0)])
        for i in range(n):
            await pub.publish("seq", i.to_bytes(4, "big"))
        await wait_until(lambda: sub.stats()["messages_in"] == n, what="all messages queued")
        batch = await anext(sub.batches())
    # Everything queued, in one list, in publish order [MQTT-4.6.0-6].
    assert [int.from_bytes(m.payload, "big") for m in batch] == list(range(n))


async def test_qos1_is_acknowledged_only_after_processing(
    broker: Broker, proxy_to: TcpProxy
) -> None:
    sub_options = options(proxy_to, "acker", clean_session=False)
    async with MqttClient(options(broker, "pub")) as pub:
        async with MqttClient(sub_options) as sub:
            await sub.subscribe([("q/#", 1)])
            for i in range(5):
                await pub.publish("q/x", bytes([i]), qos=1)
            await wait_until(lambda: sub.stats()["messages_in"] == 5, what="5 received")
            # Received and queued, not taken: not acknowledged. Lose the connection now and the
            # broker sends all five again on the next one (persistent session, [MQTT-4.4.0-1]).
            proxy_to.cut()
            await wait_until(lambda: sub.stats()["messages_in"] == 10, what="5 sent again")
            async with asyncio.timeout(10):
                await sub.wait_connected()  # received before on_connect returned: held till now
            batches = sub.batches()
            first = await anext(batches)
            assert [m.payload[0] for m in first] == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
            await pub.publish("q/x", b"\x05", qos=1)
            # Coming back for more acknowledges the first batch (it has been processed).
            second = await anext(batches)
            assert [m.payload for m in second] == [b"\x05"]
            assert sub.stats()["connects"] == 2
        # Closed while holding the second batch: not known to be processed, not acknowledged.
        async with MqttClient(sub_options) as again:
            await pub.publish("q/x", b"\x06", qos=1)
            got = await collect(again, 2)
    assert [m.payload for m in got] == [b"\x05", b"\x06"]


async def test_full_queue_stops_reading_and_loses_nothing(broker: Broker) -> None:
    n, size, limit = 1500, 8192, 20
    per_read = 65536 // size + 1  # a socket read may hold this many beyond the limit
    produced = 0
    async with (
        MqttClient(options(broker, "slow", max_queued_messages=limit)) as slow,
        MqttClient(options(broker, "fast")) as pub,
    ):
        await slow.subscribe([("bp", 0)])

        async def produce() -> None:
            nonlocal produced
            for i in range(n):
                await pub.publish("bp", i.to_bytes(4, "big") + bytes(size - 4))
                produced += 1

        producer = asyncio.create_task(produce())
        try:
            # Nobody consumes: the client stops reading once the queue is full…
            await wait_until(lambda: slow.stats()["read_pauses"] >= 1, what="reading paused")
            # …and while the publisher goes on, what it sends waits in TCP and in the broker.
            await wait_until(lambda: produced >= 400, what="400 published")
            assert slow.stats()["messages_in"] <= limit + per_read
            got = []
            async with asyncio.timeout(30):
                async for batch in slow.batches():
                    assert len(batch) <= limit + per_read
                    got += batch
                    if len(got) >= n:
                        break
        finally:
            await producer
    assert [int.from_bytes(m.payload[:4], "big") for m in got] == list(range(n))
    assert slow.stats()["read_pauses"] > 1


async def test_reconnects_resubscribes_and_calls_back_after_restart(broker: Broker) -> None:
    events: list[str] = []

    async def on_connect(client: MqttClient) -> None:
        events.append("connect")

    async def on_disconnect(client: MqttClient, reason: str) -> None:
        events.append(f"disconnect: {reason}")

    host = MqttClient(options(broker, "host"), on_connect=on_connect, on_disconnect=on_disconnect)
    async with host, MqttClient(options(broker, "pub")) as pub:
        await host.subscribe([("r/#", 0)])  # clean session: only the client remembers it
        assert events == ["connect"]
        await broker.stop()
        await wait_until(lambda: not host.connected, what="the loss noticed")
        # While the broker is away every attempt fails and is retried with backoff.
        await wait_until(
            lambda: "cannot reach" in str(host.stats()["last_error"]), what="a failed attempt"
        )
        await broker.start()
        await wait_until(lambda: events.count("connect") == 2, what="on_connect again")
        await pub.publish("r/x", b"after", qos=1)  # waits for pub's own reconnection
        assert await collect(host, 1) == [Message("r/x", b"after", 0)]
        stats = host.stats()
    assert events[1].startswith("disconnect: ")
    assert events[2] == "connect"
    assert stats["connects"] == 2
    assert stats["disconnects"] == 1


async def test_messages_during_on_connect_wait_for_it(broker: Broker) -> None:
    """on_connect runs before the read loop delivers anything of the new session."""
    async with MqttClient(options(broker, "pub")) as pub:
        await pub.publish("h/state", b"retained", qos=1, retain=True)
        order: list[str] = []
        seen: list[Message] = []
        during: list[tuple[int, int]] = []

        async def on_connect(client: MqttClient) -> None:
            await client.subscribe([("h/#", 1)])  # the retained message arrives now…
            await client.publish("h/other", b"x", qos=1)  # …and our QoS 1 completes meanwhile
            stats = client.stats()
            during.append((stats["messages_in"], stats["queued"]))
            order.append("on_connect done")

        async with MqttClient(options(broker, "host"), on_connect=on_connect) as host:
            order.append("entered")
            seen = await collect(host, 2)
    assert order == ["on_connect done", "entered"]
    assert during == [(2, 0)]  # both received while on_connect ran, neither delivered yet
    assert [m.topic for m in seen] == ["h/state", "h/other"]
    assert seen[0].retain


@pytest.mark.parametrize("qos", [0, 1])
async def test_exit_ends_batches_and_refuses_further_use(broker: Broker, qos: int) -> None:
    client = MqttClient(options(broker, "c"))
    async with client:
        batches = client.batches()
        waiting = asyncio.create_task(anext(batches, None))
        await client.subscribe([("x", qos)])
    assert await waiting is None  # the iteration ended with the client
    assert not client.connected
    with pytest.raises(MqttClosedError):
        await client.publish("x", b"", qos=qos)
    with pytest.raises(MqttClosedError):
        await client.subscribe([("x", 0)])
    with pytest.raises(MqttClosedError):
        await client.wait_connected()
