"""MqttClient edge cases: no broker, refused, keep-alive expiry, a misbehaving broker, misuse."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest

from factory5g.connect.mqtt import (
    SUBACK_FAILURE,
    Message,
    MqttClient,
    MqttClosedError,
    MqttConnectError,
    MqttOptions,
)
from factory5g.connect.mqtt.packets import (
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketReader,
    Pingreq,
    Publish,
    Suback,
    Subscribe,
)
from tests.connect.conftest import running_mosquitto
from tests.connect.mqtt.conftest import OurBroker, TcpProxy, collect, options
from tests.helpers import wait_until

Respond = Callable[[Packet], list[bytes]]


class FakeBroker:
    """A scripted peer: ``respond(packet)`` says what to send back to each packet received."""

    host = "127.0.0.1"

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.port = 0
        self.received: list[Packet] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        packets = PacketReader()
        try:
            while data := await reader.read(65536):
                for p in packets.feed(data):
                    self.received.append(p)
                    if isinstance(p, Disconnect):
                        return  # a server closes the connection after DISCONNECT (§3.14.4)
                    for out in self.respond(p):
                        writer.write(out)
        except OSError:
            pass
        finally:
            writer.transport.abort()
            writer.close()


def polite(p: Packet) -> list[bytes]:
    """A minimal broker: accepts, refuses filters under refuse/, answers pings."""
    if isinstance(p, Connect):
        return [Connack(False, 0).encode()]
    if isinstance(p, Subscribe):
        codes = [SUBACK_FAILURE if f.startswith("refuse/") else q for f, q in p.topics]
        return [Suback(p.packet_id, tuple(codes)).encode()]
    if isinstance(p, Pingreq):
        return [b"\xd0\x00"]
    if isinstance(p, Publish) and p.topic == "please/misbehave":
        return [Connack(False, 0).encode()]  # a second CONNACK: a protocol violation
    return []


@pytest.fixture
async def fake() -> AsyncIterator[FakeBroker]:
    async with FakeBroker(polite) as f:
        yield f


async def test_unreachable_broker_raises_after_the_connect_timeout(free_port: int) -> None:
    client = MqttClient(
        MqttOptions(host="127.0.0.1", port=free_port, client_id="c", connect_timeout_s=0.3)
    )
    with pytest.raises(MqttConnectError, match=f"127.0.0.1:{free_port}") as e:
        await client.__aenter__()
    assert e.value.return_code is None
    assert "within 0.3 s" in str(e.value)


async def test_wait_for_broker_connects_in_the_background(free_port: int) -> None:
    ours = OurBroker(free_port)
    late = options(ours, "late", wait_for_broker=True)
    async with MqttClient(late) as client:
        assert not client.connected
        with pytest.raises(MqttClosedError, match="not connected"):
            await client.publish("t", b"now", qos=0)  # QoS 0 cannot wait
        assert client.stats()["publish_errors"] == 1
        pending = asyncio.create_task(client.publish("t", b"later", qos=1))  # QoS 1 waits
        await ours.start()
        try:
            async with asyncio.timeout(10):
                await client.wait_connected()
                await pending
            assert client.connected
            assert client.stats()["messages_out"] == 1
        finally:
            await ours.stop()


async def test_refused_credentials_raise_at_once(free_port: int) -> None:
    ours = OurBroker(free_port, users={"plant": "s3cret"})
    await ours.start()
    try:
        wrong = options(ours, "c", username="plant", password="guess", connect_timeout_s=30)
        with pytest.raises(MqttConnectError) as e:
            async with asyncio.timeout(5):  # not after connect_timeout_s: retrying cannot help
                await MqttClient(wrong).__aenter__()
        assert e.value.return_code == 4
        assert "bad user name or password" in str(e.value)
        async with MqttClient(options(ours, "c", username="plant", password="s3cret")) as ok:
            assert ok.connected
    finally:
        await ours.stop()


async def test_idle_pings_and_a_missing_pingresp_drops_the_connection(fake: FakeBroker) -> None:
    reasons: list[str] = []

    async def on_disconnect(client: MqttClient, reason: str) -> None:
        reasons.append(reason)

    def pings() -> int:
        return sum(isinstance(p, Pingreq) for p in fake.received)

    async with TcpProxy(fake.host, fake.port) as proxy:
        opts = options(proxy, "k", keepalive_s=1)
        async with MqttClient(opts, on_disconnect=on_disconnect) as client:
            # Idle for the keep alive: a PINGREQ [MQTT-3.1.2-23], answered, the session stays.
            await wait_until(lambda: pings() == 1, within=5, what="a PINGREQ")
            proxy.freeze_down()  # the next PINGREQ reaches the broker, its PINGRESP does not
            await wait_until(lambda: bool(reasons), within=5, what="the loss")
            # The frozen PINGREQ, and one more a keep alive later ([MQTT-3.1.2-23] holds even
            # while a PINGRESP is awaited); the loss comes 1.5 keep alives after the first.
            assert pings() == 3
            proxy.thaw()
            await wait_until(lambda: client.stats()["connects"] == 2, what="a new session")
    assert reasons == ["no PINGRESP within 1.5 s"]
    assert proxy.links == 2


async def test_refused_subscription_is_reported_and_forgotten(fake: FakeBroker) -> None:
    async with MqttClient(options(fake, "c")) as client:
        codes = await client.subscribe([("refuse/a", 1), ("ok", 1), ("refuse/b", 0)])
        assert codes == [SUBACK_FAILURE, 1, SUBACK_FAILURE]
        assert client._subscriptions == {"ok": 1}  # what a reconnect re-sends
        assert "refused" in str(client.stats()["last_error"])


async def test_a_protocol_violation_by_the_broker_ends_the_session(fake: FakeBroker) -> None:
    reasons: list[str] = []

    async def on_disconnect(client: MqttClient, reason: str) -> None:
        reasons.append(reason)

    async with MqttClient(options(fake, "c"), on_disconnect=on_disconnect) as client:
        await client.publish("please/misbehave", b"", qos=0)
        await wait_until(lambda: client.stats()["connects"] == 2, what="a new session")
    assert reasons == ["protocol error: a broker does not send CONNACK"]
    assert fake.connections == 2


async def test_subscriptions_and_unacked_publishes_are_resent_after_reconnect(
    fake: FakeBroker,
) -> None:
    async with TcpProxy(fake.host, fake.port) as proxy, MqttClient(options(proxy, "c")) as client:
        await client.subscribe([("s/#", 1)])
        pending = asyncio.create_task(client.publish("p", b"1", qos=1))  # never PUBACKed
        await wait_until(lambda: any(isinstance(p, Publish) for p in fake.received))
        proxy.cut()
        await wait_until(lambda: client.stats()["connects"] == 2, what="a new session")
        async with asyncio.timeout(10):
            await client.wait_connected()  # the new session is set up: SUBACK received
        await wait_until(lambda: sum(isinstance(p, Publish) for p in fake.received) == 2)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
    publishes = [p for p in fake.received if isinstance(p, Publish)]
    assert [(p.topic, p.dup, p.packet_id) for p in publishes] == [
        ("p", False, publishes[0].packet_id),
        ("p", True, publishes[0].packet_id),  # [MQTT-3.3.1-1]: DUP on the re-delivery
    ]
    subscribes = [p.topics for p in fake.received if isinstance(p, Subscribe)]
    assert subscribes == [(("s/#", 1),), (("s/#", 1),)]  # sent again on the new connection
    connects = [p for p in fake.received if isinstance(p, Connect)]
    assert len(connects) == 2


async def test_exit_sends_disconnect_last(fake: FakeBroker) -> None:
    async with MqttClient(options(fake, "c")) as client:
        await client.subscribe([("s/#", 1)])  # a session in its steady state
    assert [type(p) for p in fake.received] == [Connect, Subscribe, Disconnect]


async def test_a_failing_on_connect_fails_the_start(our_broker: OurBroker) -> None:
    async def on_connect(client: MqttClient) -> None:
        raise RuntimeError("cannot publish STATE")

    client = MqttClient(options(our_broker, "c"), on_connect=on_connect)
    with pytest.raises(RuntimeError, match="cannot publish STATE"):
        await client.__aenter__()
    assert not client.connected
    b = our_broker.broker
    assert b is not None
    await wait_until(lambda: b.stats()["clients"] == 0, what="the socket closed")


async def test_a_failing_on_connect_in_the_background_is_retried(our_broker: OurBroker) -> None:
    calls = 0

    async def on_connect(client: MqttClient) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("first time unlucky")

    opts = options(our_broker, "c", wait_for_broker=True)
    async with MqttClient(opts, on_connect=on_connect) as client:
        async with asyncio.timeout(10):
            await client.wait_connected()
    assert calls == 2
    assert client.stats()["connects"] == 2


async def test_arguments_are_checked_before_anything_is_sent(our_broker: OurBroker) -> None:
    async with MqttClient(options(our_broker, "c")) as client:
        with pytest.raises(ValueError, match="wildcard"):
            await client.publish("a/+", b"")
        with pytest.raises(ValueError, match="QoS 2 is not supported"):
            await client.publish("a", b"", qos=2)
        with pytest.raises(ValueError, match="QoS 2 is not supported"):
            await client.subscribe([("a", 2)])
        with pytest.raises(ValueError, match=r"MQTT-4\.7\.1-2"):
            await client.subscribe([("a/#/b", 0)])
        with pytest.raises(ValueError, match="at least one"):
            await client.subscribe([])
        assert client.connected  # nothing reached the broker, the session is fine


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"keepalive_s": 70_000}, "keepalive_s"),
        ({"client_id": "", "clean_session": False}, "MQTT-3.1.3-7"),
        ({"password": "p"}, "MQTT-3.1.2-22"),
        ({"reconnect_min_s": 2, "reconnect_max_s": 1}, "reconnect_min_s"),
        ({"max_queued_messages": 0}, "max_queued_messages"),
        ({"will": Message("w/+", b"")}, "wildcard"),
        ({"will": Message("w", b"", qos=2)}, "QoS 2"),
        ({"connect_timeout_s": 0}, "connect_timeout_s"),
    ],
)
def test_options_are_validated(overrides: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"host": "h", "client_id": "c", **overrides}
    with pytest.raises(ValueError, match=message):
        MqttOptions(**values)  # type: ignore[arg-type]


async def test_an_empty_client_id_gets_one_from_the_broker(our_broker: OurBroker) -> None:
    async with (
        MqttClient(options(our_broker, "")) as anonymous,
        MqttClient(options(our_broker, "pub")) as pub,
    ):
        await anonymous.subscribe([("x", 0)])
        await pub.publish("x", b"hi", qos=1)
        assert await collect(anonymous, 1) == [Message("x", b"hi")]


TLS = Path(__file__).parent / "tls"  # a self-signed test certificate for 127.0.0.1/localhost,
# valid 2000-2100 (made with `openssl ca -selfsign`); never use it for anything else


async def test_tls_to_mosquitto(tmp_path: Path, free_port: int) -> None:
    cert, key = TLS / "cert.pem", TLS / "key.pem"
    tls_listener = [f"certfile {cert}", f"keyfile {key}"]
    async with running_mosquitto(tmp_path / "mosquitto", free_port, tls_listener) as m:
        trusted = ssl.create_default_context(cafile=str(cert))
        async with MqttClient(options(m, "tls", tls=trusted)) as client:
            await client.subscribe([("t", 1)])
            await client.publish("t", b"secret", qos=1)
            assert await collect(client, 1) == [Message("t", b"secret", 1)]
        untrusted = options(m, "x", tls=ssl.create_default_context(), connect_timeout_s=30)
        with pytest.raises(MqttConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            async with asyncio.timeout(10):  # at once: retrying cannot help
                await MqttClient(untrusted).__aenter__()
        plain = options(m, "y", connect_timeout_s=0.5)  # TCP without TLS: no CONNACK comes
        with pytest.raises(MqttConnectError):
            await MqttClient(plain).__aenter__()


def test_reconnect_backoff_grows_with_jitter_between_min_and_max() -> None:
    client = MqttClient(options(OurBroker(1), "c", reconnect_min_s=0.1, reconnect_max_s=2.0))
    for attempt, ceiling in [(0, 0.2), (1, 0.4), (3, 1.6), (4, 2.0), (40, 2.0)]:
        delays = [client._backoff(attempt) for _ in range(200)]
        assert all(0.1 <= d <= ceiling for d in delays), attempt
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not one fixed value


def test_a_missing_mosquitto_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.connect.conftest as connect_conftest

    monkeypatch.setattr(connect_conftest, "MOSQUITTO", "/nonexistent/mosquitto")
    with pytest.raises(pytest.fail.Exception, match="mosquitto is not installed"):
        connect_conftest.require_mosquitto()


async def test_a_receive_only_client_keeps_its_session_on_our_broker() -> None:
    """Regression: a subscriber that only receives sent its next PINGREQ 1.5 keep alives after
    the last one, exactly when the broker gives up on it: the demo host lost its session every
    75 s. It must ping every keep alive."""
    from factory5g.connect.mqtt import MqttBroker

    async with MqttBroker(host="127.0.0.1", port=0) as broker:
        sub = MqttClient(
            MqttOptions(host="127.0.0.1", port=broker.port, client_id="only-reads", keepalive_s=1)
        )
        pub = MqttClient(MqttOptions(host="127.0.0.1", port=broker.port, client_id="writes"))
        async with sub, pub:
            await sub.subscribe([("t/#", 0)])
            got = 0

            async def consume() -> None:
                nonlocal got
                async for batch in sub.batches():
                    got += len(batch)

            task = asyncio.create_task(consume())
            loop = asyncio.get_running_loop()
            end = loop.time() + 4.5  # three times the broker's 1.5 s expiry
            sent = 0
            while loop.time() < end:
                await pub.publish("t/x", b"x" * 100)
                sent += 1
                await asyncio.sleep(0.01)  # the publisher's pace, not a wait for state
            await wait_until(lambda: got == sent, what="every message")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert sub.stats()["connects"] == 1
            assert sub.stats()["disconnects"] == 0
