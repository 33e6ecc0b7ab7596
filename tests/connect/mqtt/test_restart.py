"""A Mosquitto restart in the middle of a QoS 1 stream loses nothing (persistent sessions)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from factory5g.connect.mqtt import Message, MqttClient
from tests.connect.conftest import Mosquitto
from tests.connect.mqtt.conftest import options
from tests.helpers import wait_until


async def test_no_qos1_message_lost_across_a_broker_restart(
    mosquitto: Mosquitto, record_property: Callable[[str, object], None]
) -> None:
    n, window = 600, 20
    received: list[Message] = []
    reasons: list[str] = []
    connects = 0

    async def on_connect(client: MqttClient) -> None:
        nonlocal connects
        connects += 1

    async def on_disconnect(client: MqttClient, reason: str) -> None:
        reasons.append(reason)

    sub = MqttClient(
        options(mosquitto, "sub", clean_session=False, reconnect_max_s=0.3),
        on_connect=on_connect,
        on_disconnect=on_disconnect,
    )
    pub = MqttClient(options(mosquitto, "pub", clean_session=False, reconnect_max_s=0.3))
    acked = 0

    async def publish_all() -> None:
        nonlocal acked
        slots = asyncio.Semaphore(window)

        async def one(i: int) -> None:
            nonlocal acked
            async with slots:
                await pub.publish("n", i.to_bytes(4, "big"), qos=1)  # resent after reconnect
                acked += 1

        async with asyncio.TaskGroup() as tg:
            for i in range(n):
                tg.create_task(one(i))

    def numbers() -> set[int]:
        return {int.from_bytes(m.payload, "big") for m in received}

    async def consume() -> None:
        async for batch in sub.batches():
            received.extend(batch)

    async with sub, pub:
        await sub.subscribe([("n", 1)])
        consumer = asyncio.create_task(consume())
        publisher = asyncio.create_task(publish_all())
        try:
            await wait_until(lambda: acked >= n // 3, what="a third acknowledged")
            acked_before_restart = acked
            await mosquitto.restart()  # SIGTERM: mosquitto saves the sessions and their queues
            async with asyncio.timeout(30):
                await publisher
            await wait_until(lambda: len(numbers()) == n, within=30, what="all numbers")
        finally:
            publisher.cancel()
            consumer.cancel()
            await asyncio.gather(publisher, consumer, return_exceptions=True)
        stats = sub.stats()
    duplicates = len(received) - n
    record_property("duplicates", duplicates)  # at least once: allowed, counted
    assert acked_before_restart < n  # the restart came in the middle of the stream
    assert numbers() == set(range(n))
    assert duplicates >= 0
    assert all(m.topic == "n" and m.qos == 1 for m in received)
    assert connects == 2  # on_connect again after the restart
    assert len(reasons) == 1  # on_disconnect once, with why
    assert reasons[0]
    assert stats["connects"] == 2
    assert stats["disconnects"] == 1
    assert pub.stats()["messages_out"] == n
    assert pub.stats()["publish_errors"] == 0
