"""MqttBroker spoken to with raw packets: what it must refuse, and session rules."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Self

import pytest

from factory5g.connect.mqtt import Message, MqttBroker, MqttClient
from factory5g.connect.mqtt.packets import (
    Connack,
    Connect,
    Packet,
    PacketReader,
    Pingresp,
    Puback,
    Publish,
    Suback,
    Subscribe,
    encode_remaining_length,
)
from tests.connect.mqtt.conftest import OurBroker, collect, options
from tests.helpers import wait_until

HOST = "127.0.0.1"


class Raw:
    """A bare TCP connection speaking packets, to send what no proper client would."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.packets = PacketReader()
        self.pending: deque[Packet] = deque()

    @classmethod
    async def open(cls, port: int) -> Self:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    @classmethod
    async def connected(cls, port: int, connect: Connect, present: bool = False) -> Self:
        raw = await cls.open(port)
        raw.send(connect.encode())
        assert await raw.next() == Connack(present, 0)
        return raw

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def next(self, within: float = 5.0) -> Packet:
        async with asyncio.timeout(within):
            while not self.pending:
                data = await self.reader.read(65536)
                assert data, "the broker closed the connection"
                self.pending.extend(self.packets.feed(data))
        return self.pending.popleft()

    async def until_closed(self, within: float = 5.0) -> list[Packet]:
        """Everything received until the broker closes the connection (it must, in time)."""
        async with asyncio.timeout(within):
            while data := await self.reader.read(65536):
                self.pending.extend(self.packets.feed(data))
        return list(self.pending)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
async def mqtt_broker() -> AsyncIterator[MqttBroker]:
    async with MqttBroker(max_packet_bytes=4096, max_queued=3) as b:
        yield b


def publish_packet(topic: str, payload: bytes = b"", qos: int = 0, packet_id: int = 0) -> bytes:
    return Publish(topic, payload, qos, packet_id=packet_id).encode()


def garbage_cases() -> list[tuple[str, bytes, bool]]:
    """(what, bytes sent after a good CONNECT or instead of it, sent before CONNECT?)."""
    return [
        ("garbage", b"\xff\xfe\xfd\xfc\xfb\xfa", True),
        ("5-byte remaining length", b"\x30\xff\xff\xff\xff\x01", False),
        ("oversized", publish_packet("big", bytes(8000)), False),
        ("not CONNECT first", publish_packet("a", b"x"), True),
        ("second CONNECT", Connect(client_id="again").encode(), False),
        ("QoS 2 publish", b"\x34" + encode_remaining_length(5) + b"\x00\x01a\x00\x01", False),
        ("wildcard topic", publish_packet("a", b"").replace(b"\x00\x01a", b"\x00\x01#"), False),
        ("reserved type", b"\xf0\x00", False),
        ("bad UTF-8", b"\x30\x04\x00\x02\xc3\x28", False),
        ("PUBREL", b"\x62\x02\x00\x01", False),
    ]


@pytest.mark.parametrize(
    ("what", "data", "before_connect"), garbage_cases(), ids=[c[0] for c in garbage_cases()]
)
async def test_bad_input_closes_that_client_only(
    mqtt_broker: MqttBroker, what: str, data: bytes, before_connect: bool
) -> None:
    port = mqtt_broker.port
    will = Message("will/bad", b"gone")
    async with (
        MqttClient(options(mqtt_broker, "sub")) as sub,
        MqttClient(options(mqtt_broker, "pub")) as pub,
    ):
        await sub.subscribe([("#", 0)])
        if before_connect:
            bad = await Raw.open(port)
        else:
            bad = await Raw.connected(port, Connect(client_id="bad", will=will))
        bad.send(data)
        assert await bad.until_closed() == []
        await bad.close()
        await pub.publish("still/here", b"ok", qos=1)
        got = await collect(sub, 1 if before_connect else 2)
    expected = [Message("still/here", b"ok")]
    if not before_connect:  # a connection closed for a protocol error publishes its Will
        expected.insert(0, Message("will/bad", b"gone"))
    assert got == expected
    assert mqtt_broker.stats()["protocol_errors"] == 1


async def test_unsupported_protocol_level_gets_connack_1(mqtt_broker: MqttBroker) -> None:
    level5 = bytearray(Connect(client_id="x").encode())
    assert level5[2:8] == b"\x00\x04MQTT"
    level5[8] = 5  # MQTT 5
    raw = await Raw.open(mqtt_broker.port)
    raw.send(bytes(level5))
    # [MQTT-3.1.2-2]: CONNACK 0x01 "unacceptable protocol version", then the connection closes.
    assert await raw.until_closed() == [Connack(False, 1)]
    await raw.close()


@pytest.mark.parametrize(
    ("connect", "code"),
    [
        (Connect(client_id="", clean_session=False), 2),  # [MQTT-3.1.3-8]
        (Connect(client_id="c", username="plant", password=b"guess"), 4),
        (Connect(client_id="c"), 4),
        (Connect(client_id="c", username="nobody", password=b"s3cret"), 4),
    ],
)
async def test_refused_connects_get_their_return_code(connect: Connect, code: int) -> None:
    async with MqttBroker(users={"plant": "s3cret"}) as b:
        raw = await Raw.open(b.port)
        raw.send(connect.encode())
        assert await raw.until_closed() == [Connack(False, code)]
        await raw.close()
        ok = await Raw.connected(
            b.port, Connect(client_id="c", username="plant", password=b"s3cret")
        )
        await ok.close()


async def test_session_takeover_closes_the_older_connection(mqtt_broker: MqttBroker) -> None:
    port = mqtt_broker.port
    watch = await Raw.connected(port, Connect(client_id="watch"))
    watch.send(Subscribe(1, (("will/#", 0),)).encode())
    assert await watch.next() == Suback(1, (0,))
    first = await Raw.connected(port, Connect(client_id="x", will=Message("will/x", b"1")))
    second = await Raw.connected(port, Connect(client_id="x"))
    assert await first.until_closed() == []  # [MQTT-3.1.4-2]
    # The older connection ended without DISCONNECT: its Will is published.
    assert await watch.next() == Publish("will/x", b"1")
    second.send(b"\xc0\x00")
    assert await second.next() == Pingresp()
    assert mqtt_broker.stats()["clients"] == 2
    for raw in (first, second, watch):
        await raw.close()


async def test_keepalive_expiry_closes_and_publishes_the_will(mqtt_broker: MqttBroker) -> None:
    port = mqtt_broker.port
    watch = await Raw.connected(port, Connect(client_id="watch"))
    watch.send(Subscribe(1, (("will/#", 0),)).encode())
    assert await watch.next() == Suback(1, (0,))
    silent = await Raw.connected(
        port, Connect(client_id="silent", keepalive_s=1, will=Message("will/s", b""))
    )
    # [MQTT-3.1.2-24]: nothing for 1.5 x keep alive closes the connection.
    assert await silent.until_closed(within=3) == []
    assert await watch.next() == Publish("will/s", b"")
    for raw in (silent, watch):
        await raw.close()


async def test_qos1_delivery_is_resent_to_a_returning_persistent_session(
    mqtt_broker: MqttBroker,
) -> None:
    port = mqtt_broker.port
    persistent = Connect(client_id="sub", clean_session=False)
    sub = await Raw.connected(port, persistent)
    sub.send(Subscribe(1, (("q", 2),)).encode())
    assert await sub.next() == Suback(1, (1,))  # QoS 2 asked, QoS 1 granted
    pub = await Raw.connected(port, Connect(client_id="pub"))
    pub.send(publish_packet("q", b"m", qos=1, packet_id=7))
    assert await pub.next() == Puback(7)
    first = await sub.next()
    assert isinstance(first, Publish)
    assert (first.qos, first.dup, first.payload) == (1, False, b"m")
    await sub.close()  # no PUBACK, no DISCONNECT
    sub = await Raw.connected(port, persistent, present=True)  # [MQTT-3.2.2-2]
    again = await sub.next()
    # [MQTT-4.4.0-1]: sent again, same packet identifier, DUP set [MQTT-3.3.1-1].
    assert again == Publish("q", b"m", 1, dup=True, packet_id=first.packet_id)
    sub.send(Puback(first.packet_id).encode())
    sub.send(b"\xe0\x00")  # DISCONNECT
    assert await sub.until_closed() == []
    await sub.close()
    sub = await Raw.connected(port, persistent, present=True)
    sub.send(b"\xc0\x00")
    assert await sub.next() == Pingresp()  # acknowledged: nothing is sent again
    for raw in (sub, pub):
        await raw.close()


async def test_offline_session_queue_drops_its_oldest_when_full(mqtt_broker: MqttBroker) -> None:
    port = mqtt_broker.port  # max_queued=3
    persistent = Connect(client_id="sub", clean_session=False)
    sub = await Raw.connected(port, persistent)
    sub.send(Subscribe(1, (("q", 1), ("q0", 0))).encode())
    assert await sub.next() == Suback(1, (1, 0))
    sub.send(b"\xe0\x00")
    assert await sub.until_closed() == []
    await sub.close()
    pub = await Raw.connected(port, Connect(client_id="pub"))
    for i in range(1, 6):
        pub.send(publish_packet("q", bytes([i]), qos=1, packet_id=i))
        assert await pub.next() == Puback(i)
    pub.send(publish_packet("q0", b"not kept", qos=0))  # §3.1.2.4: QoS 0 is not session state
    pub.send(b"\xc0\x00")
    assert await pub.next() == Pingresp()
    sub = await Raw.connected(port, persistent, present=True)
    got = [await sub.next() for _ in range(3)]
    assert [p.payload for p in got if isinstance(p, Publish)] == [b"\x03", b"\x04", b"\x05"]
    assert mqtt_broker.stats()["dropped"] == 2
    sub.send(b"\xc0\x00")
    assert await sub.next() == Pingresp()
    for raw in (sub, pub):
        await raw.close()


async def test_subscribe_refuses_bad_filters_with_0x80(mqtt_broker: MqttBroker) -> None:
    raw = await Raw.connected(mqtt_broker.port, Connect(client_id="c"))
    bad = Subscribe(3, (("ok/#", 0), ("x", 1), ("x", 0)))
    data = bytearray(bad.encode())
    data[data.index(b"ok/#") : data.index(b"ok/#") + 4] = b"o#/k"  # invalid, same length
    raw.send(bytes(data))
    assert await raw.next() == Suback(3, (0x80, 1, 0))  # [MQTT-3.9.3-1]: in order
    await raw.close()


async def test_stats_count_clients_sessions_and_messages(our_broker: OurBroker) -> None:
    b = our_broker.broker
    assert b is not None
    async with (
        MqttClient(options(our_broker, "sub", clean_session=False)) as sub,
        MqttClient(options(our_broker, "pub")) as pub,
    ):
        await sub.subscribe([("s/#", 1)])
        await pub.publish("s/1", b"", qos=1, retain=True)
        await pub.publish("s/2", b"x", qos=0)
        assert len(await collect(sub, 2)) == 2
        stats = b.stats()
        assert (stats["clients"], stats["sessions"]) == (2, 2)
        assert (stats["messages_in"], stats["messages_out"]) == (2, 2)
        assert stats["retained"] == 0  # an empty retained payload stores nothing
    await wait_until(lambda: b.stats()["clients"] == 0, what="both gone")
    assert b.stats()["sessions"] == 1  # the persistent one stays


async def test_port_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = MqttBroker().port
