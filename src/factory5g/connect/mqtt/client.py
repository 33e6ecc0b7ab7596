"""An asyncio MQTT 3.1.1 client built for a Sparkplug host: batches in, no drops, reconnects.

::

    async with MqttClient(MqttOptions(host="broker", client_id="f5g-host"),
                          on_connect=..., on_disconnect=...) as client:
        await client.subscribe([("spBv1.0/#", 0)])
        async for messages in client.batches():   # list[Message], in order, >= 1
            ...

How it behaves, and why:

* **One connection at a time, kept up by a supervisor task.** A lost connection (EOF, socket
  error, protocol error, missing PINGRESP) ends the session; the supervisor calls
  ``on_disconnect(client, reason)`` and reconnects with exponential backoff and jitter between
  ``reconnect_min_s`` and ``reconnect_max_s``. After every CONNACK it re-sends unacknowledged QoS 1
  publishes with DUP set [MQTT-4.4.0-1] [MQTT-3.3.1-1], re-sends every subscription (the broker
  forgets them with a clean session, §3.1.2.4) and awaits their SUBACK, then awaits
  ``on_connect(client)``. Messages that arrive before ``on_connect`` returns are held back and
  delivered right after it, in order: a Sparkplug host publishes its STATE and asks for rebirths
  first.
* **Batches, not callbacks.** The read loop parses each 64 KiB socket read into packets
  (:class:`PacketReader`) and appends the messages to one queue; ``batches()`` hands the consumer
  everything queued at once, so it can decode many payloads per call.
* **No drops: TCP backpressure.** When ``max_queued_messages`` are queued the read loop stops
  reading the socket; the kernel's receive window fills and the broker has to hold or slow down.
  The bound is soft by one socket read (what a 64 KiB read holds beyond it is queued too). While
  one of our own QoS 1 publishes or SUBSCRIBEs awaits its acknowledgement the loop keeps reading,
  so a consumer that publishes cannot deadlock itself; that overshoot lasts one round trip.
  (A broker may still drop by its own rules: Mosquitto's default ``max_queued_messages 1000``
  drops QoS 0 messages for a subscriber more than 1000 behind. Configure the plant broker.)
* **QoS 1 is acknowledged after processing.** A QoS 1 message is PUBACKed when the consumer comes
  back to ``batches()`` for the next batch, i.e. after it took *and* handled the batch holding
  it. A crash, a full queue or a dropped connection never loses a message the broker considers
  delivered; with ``clean_session=False`` the broker sends the unacknowledged ones again (they
  may then arrive twice: at least once, §4.3.2). Acknowledgements belonging to a previous
  connection are never sent on a new one: packet identifiers are per connection.
* **Keep alive** (§3.1.2.10): a PINGREQ when nothing was sent or received for ``keepalive_s``
  [MQTT-3.1.2-23]; no PINGRESP within 1.5 x ``keepalive_s`` drops the connection. While the read
  loop is paused by backpressure the PINGRESP cannot be read, so it is not awaited then.
* ``__aexit__`` sends DISCONNECT, so the broker discards the Will [MQTT-3.14.4-3], waits (up to
  1 s) for the broker to close the connection - so everything sent before was processed - and
  ends every task it started. ``on_disconnect`` is for lost sessions, not for our own close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypedDict

from factory5g.connect.mqtt._io import READ_BYTES, first_packets
from factory5g.connect.mqtt.errors import (
    MqttClosedError,
    MqttConnectError,
    MqttError,
    MqttProtocolError,
)
from factory5g.connect.mqtt.packets import (
    DEFAULT_MAX_PACKET_BYTES,
    DISCONNECT,
    PINGREQ,
    SUBACK_FAILURE,
    Connack,
    Connect,
    Message,
    Packet,
    PacketReader,
    Pingresp,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    encode_publish,
    topic_filter_problem,
    topic_name_problem,
)

__all__ = [
    "Message",
    "MqttClient",
    "MqttClientStats",
    "MqttOptions",
    "OnConnect",
    "OnDisconnect",
]

log = logging.getLogger(__name__)

# A connection that lived this long resets the reconnect backoff to its minimum.
_STABLE_S = 1.0

OnConnect = Callable[["MqttClient"], Awaitable[None]]
OnDisconnect = Callable[["MqttClient", str], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class MqttOptions:
    """How to reach the broker and how to behave when it goes away."""

    host: str
    port: int = 1883
    client_id: str
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None
    keepalive_s: int = 30
    clean_session: bool = True
    will: Message | None = None
    connect_timeout_s: float = 5.0
    reconnect_min_s: float = 0.1
    reconnect_max_s: float = 30.0
    max_queued_messages: int = 50_000
    max_packet_bytes: int = DEFAULT_MAX_PACKET_BYTES
    # False: __aenter__ raises MqttConnectError when no session is up after connect_timeout_s.
    # True: __aenter__ returns at once and the client connects in the background.
    wait_for_broker: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.keepalive_s <= 0xFFFF:
            raise ValueError(f"keepalive_s {self.keepalive_s} is outside 0..65535 (§3.1.2.10)")
        if not self.client_id and not self.clean_session:
            # [MQTT-3.1.3-7]: a broker-assigned identifier needs a clean session.
            raise ValueError("an empty client_id needs clean_session=True [MQTT-3.1.3-7]")
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username [MQTT-3.1.2-22]")
        if self.connect_timeout_s <= 0:
            raise ValueError("connect_timeout_s must be > 0")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise ValueError("need 0 < reconnect_min_s <= reconnect_max_s")
        if self.max_queued_messages < 1:
            raise ValueError("max_queued_messages must be >= 1")
        if self.max_packet_bytes < 64:
            raise ValueError("max_packet_bytes must be >= 64")
        if self.will is not None:
            problem = topic_name_problem(self.will.topic)
            if problem:
                raise ValueError(f"Will: {problem}")
            _check_qos(self.will.qos)


class MqttClientStats(TypedDict):
    """Counters since the client started (JSON-ready)."""

    connects: int
    disconnects: int
    messages_in: int
    bytes_in: int
    messages_out: int
    publish_errors: int
    last_error: str | None
    queued: int
    read_pauses: int
    inflight: int


class _ConnectionLostError(Exception):
    """Internal: the connection a request was sent on is gone; retry on the next one."""


class _Outgoing:
    """A QoS 1 publish awaiting its PUBACK (kept across reconnects, §4.4)."""

    __slots__ = ("future", "packet_id", "payload", "retain", "sent", "topic")

    def __init__(
        self,
        topic: bytes,
        payload: bytes,
        retain: bool,
        packet_id: int,
        future: asyncio.Future[None],
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.retain = retain
        self.packet_id = packet_id
        self.future = future
        self.sent = False

    def encode(self) -> bytes:
        # [MQTT-3.3.1-1]: DUP is set when this is a re-delivery attempt.
        data = encode_publish(self.topic, self.payload, 1, self.retain, self.sent, self.packet_id)
        self.sent = True
        return data


class _Connection:
    """One network connection and its session state on our side."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        generation: int,
        packets: PacketReader,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.reader = reader
        self.writer = writer
        self.generation = generation
        self.packets = packets
        self.lost: asyncio.Future[str] = loop.create_future()
        self.ready = False  # on_connect done: messages go straight to the queue
        self.held: list[Publish] = []
        self.started = loop.time()
        self.last_sent = self.last_received = self.started
        self.ping_sent: float | None = None
        self.paused = False
        self.tasks: list[asyncio.Task[None]] = []
        self._loop = loop

    @property
    def alive(self) -> bool:
        return not self.lost.done()

    def send(self, data: bytes) -> None:
        if self.alive:
            self.writer.write(data)
            self.last_sent = self._loop.time()

    def lose(self, reason: str, *, abort: bool = True) -> None:
        if self.alive:
            self.lost.set_result(reason)
            if abort:
                self.writer.transport.abort()


async def _broker_closed(stream: asyncio.StreamReader, within_s: float = 1.0) -> None:
    """Wait (bounded) for the broker to close the connection after our DISCONNECT.

    A broker reads a connection's packets in order, so its close proves it has processed
    everything we sent before the DISCONNECT - the PUBACKs of the last batch in particular.
    Mosquitto, for one, reads one packet per connection per loop turn: a client that reconnects
    with the same identifier at once could otherwise take the session over (§3.1.4) before the
    old connection's last packets were read, and they would be lost with it.
    """
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(within_s):
            while await stream.read(READ_BYTES):
                pass  # sent before the broker saw our DISCONNECT; QoS 1 ones come again


def _check_qos(qos: int) -> None:
    if qos == 2:
        raise ValueError("QoS 2 is not supported: use QoS 0 or 1")
    if qos not in (0, 1):
        raise ValueError(f"QoS {qos} is not 0 or 1")


class MqttClient:
    """An MQTT 3.1.1 client; see the module docstring for its behaviour."""

    def __init__(
        self,
        options: MqttOptions,
        *,
        on_connect: OnConnect | None = None,
        on_disconnect: OnDisconnect | None = None,
    ) -> None:
        self.options = options
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._conn: _Connection | None = None
        self._conns: set[_Connection] = set()  # every connection not yet torn down
        self._ready: _Connection | None = None  # the connection whose on_connect has returned
        self._generation = 0
        self._started = False
        self._closed = False
        self._supervisor: asyncio.Task[None] | None = None
        self._state_changed = asyncio.Event()  # pulsed: set, then replaced by a fresh event
        # Inbound queue and the QoS 1 acknowledgements it owes: (sequence, generation, id).
        self._queue: deque[Message] = deque()
        self._queue_event = asyncio.Event()
        self._resume = asyncio.Event()
        self._acks: deque[tuple[int, int, int]] = deque()
        self._appended = 0
        self._taken = 0
        # Outbound: QoS 1 publishes and SUBSCRIBE/UNSUBSCRIBE awaiting acknowledgement.
        self._inflight: dict[int, _Outgoing] = {}
        self._requests: dict[int, tuple[_Connection, asyncio.Future[tuple[int, ...]]]] = {}
        self._last_packet_id = 0
        self._subscriptions: dict[str, int] = {}
        # Counters.
        self._connects = 0
        self._disconnects = 0
        self._messages_in = 0
        self._bytes_in = 0
        self._messages_out = 0
        self._publish_errors = 0
        self._read_pauses = 0
        self._last_error: str | None = None

    def __repr__(self) -> str:
        o = self.options
        state = "connected" if self.connected else "closed" if self._closed else "disconnected"
        return f"<MqttClient {o.client_id!r} {o.host}:{o.port} {state}>"

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._started:
            raise RuntimeError("an MqttClient can be started once")
        self._started = True
        conn = None
        if not self.options.wait_for_broker:
            conn = await self._first_connect()
        self._supervisor = asyncio.create_task(
            self._supervise(conn), name=f"mqtt-client[{self.options.client_id}]"
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Send DISCONNECT (no Will), wait up to 1 s for the broker to close the connection
        (then it has processed everything sent before), end every task. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for conn in list(self._conns):
            await self._teardown(conn, "closed by the client", graceful=True)
        closed = MqttClosedError("the MQTT client was closed")
        for out in self._inflight.values():
            if not out.future.done():
                out.future.set_exception(closed)
        for _, fut in self._requests.values():
            if not fut.done():
                fut.set_exception(closed)
        self._pulse()
        self._queue_event.set()

    # -- state --------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """A session is up (CONNACK accepted and the connection not lost)."""
        return self._conn is not None and self._conn.alive

    async def wait_connected(self) -> None:
        """Return once a session is up and ``on_connect`` has returned; MqttClosedError if closed.

        Wrap it in ``asyncio.timeout(...)`` to bound the wait.
        """
        while True:
            self._check_open()
            ready = self._ready
            if ready is not None and ready.alive:
                return
            await self._state_changed.wait()

    def stats(self) -> MqttClientStats:
        return {
            "connects": self._connects,
            "disconnects": self._disconnects,
            "messages_in": self._messages_in,
            "bytes_in": self._bytes_in,
            "messages_out": self._messages_out,
            "publish_errors": self._publish_errors,
            "last_error": self._last_error,
            "queued": len(self._queue),
            "read_pauses": self._read_pauses,
            "inflight": len(self._inflight),
        }

    # -- API ----------------------------------------------------------------------------------

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Publish one message.

        QoS 0 is written at once (MqttClosedError when no session is up: it cannot wait).
        QoS 1 waits for the PUBACK, across reconnects: it is (re)sent on every new connection
        until acknowledged, with DUP set after the first attempt.
        """
        problem = topic_name_problem(topic)
        if problem:
            raise ValueError(problem)
        _check_qos(qos)
        self._check_open()
        if qos == 0:
            conn = self._conn
            if conn is None or not conn.alive:
                self._publish_errors += 1
                raise MqttClosedError(f"not connected: QoS 0 message to {topic!r} not sent")
            conn.send(encode_publish(topic.encode(), payload, 0, retain, False, 0))
            self._messages_out += 1
            with contextlib.suppress(ConnectionError):  # at most once: lost with the connection
                await conn.writer.drain()
            return
        packet_id = self._new_packet_id()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        out = _Outgoing(topic.encode(), payload, retain, packet_id, fut)
        self._inflight[packet_id] = out
        conn = self._conn
        if conn is not None and conn.alive:
            conn.send(out.encode())
        self._resume.set()  # a read loop paused by backpressure must read our PUBACK
        try:
            await fut
        except BaseException:
            self._publish_errors += 1
            raise
        finally:
            self._inflight.pop(packet_id, None)
        self._messages_out += 1

    async def subscribe(self, subscriptions: Iterable[tuple[str, int]]) -> list[int]:
        """Subscribe; returns the granted QoS per filter, or 0x80 (SUBACK_FAILURE) if refused.

        Filters are remembered (refused ones forgotten) and re-sent after every reconnect. When
        no session is up, this waits for the next one.
        """
        subs = list(subscriptions)
        if not subs:
            raise ValueError("subscribe needs at least one (filter, qos) pair [MQTT-3.8.3-3]")
        for topic_filter, qos in subs:
            problem = topic_filter_problem(topic_filter)
            if problem:
                raise ValueError(problem)
            _check_qos(qos)
        self._check_open()
        self._subscriptions.update(subs)
        topics = tuple(subs)
        codes = await self._request_until_done(lambda pid: Subscribe(pid, topics))
        for (topic_filter, qos), code in zip(subs, codes, strict=False):
            if code == SUBACK_FAILURE and self._subscriptions.get(topic_filter) == qos:
                del self._subscriptions[topic_filter]
                self._last_error = f"subscription to {topic_filter!r} refused"
        return list(codes)

    async def unsubscribe(self, topic_filters: Iterable[str]) -> None:
        """Unsubscribe and forget the filters (they are no longer re-sent on reconnect)."""
        filters = tuple(topic_filters)
        if not filters:
            raise ValueError("unsubscribe needs at least one filter [MQTT-3.10.3-2]")
        for topic_filter in filters:
            problem = topic_filter_problem(topic_filter)
            if problem:
                raise ValueError(problem)
        self._check_open()
        for topic_filter in filters:
            self._subscriptions.pop(topic_filter, None)
        await self._request_until_done(lambda pid: Unsubscribe(pid, filters))

    def batches(self) -> AsyncIterator[list[Message]]:
        """Everything queued, in order, one list per iteration (at least one message).

        Ends when the client is closed. Messages still queued then are not delivered; the QoS 1
        ones among them were not acknowledged.
        """
        return _Batches(self)

    # -- connecting ---------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        """Seconds before attempt ``attempt + 1``: random in [min, min x 2^(attempt+1)], capped
        at max, so that clients dropped together by a broker restart do not return together."""
        o = self.options
        ceiling = min(o.reconnect_max_s, o.reconnect_min_s * 2 ** min(attempt + 1, 32))
        return random.uniform(o.reconnect_min_s, max(o.reconnect_min_s, ceiling))

    async def _first_connect(self) -> _Connection:
        o = self.options
        loop = asyncio.get_running_loop()
        deadline = loop.time() + o.connect_timeout_s
        attempt = 0
        while True:
            try:
                return await self._establish(deadline)
            except MqttConnectError as e:
                # A refusal other than "server unavailable", or a certificate we do not trust,
                # will not change by retrying.
                if e.return_code not in (None, 3) or isinstance(
                    e.__cause__, ssl.SSLCertVerificationError
                ):
                    raise
                last = e
            delay = self._backoff(attempt)
            attempt += 1
            if loop.time() + delay >= deadline:
                raise MqttConnectError(
                    f"no MQTT session with {o.host}:{o.port} within {o.connect_timeout_s:g} s: "
                    f"{last.reason}",
                    last.return_code,
                ) from last
            await asyncio.sleep(delay)

    async def _open(self, deadline: float) -> tuple[_Connection, list[Packet]]:
        """TCP (+TLS), CONNECT, CONNACK. Returns the connection and packets after the CONNACK."""
        o = self.options
        where = f"{o.host}:{o.port}"
        connect = Connect(
            client_id=o.client_id,
            clean_session=o.clean_session,
            keepalive_s=o.keepalive_s,
            will=o.will,
            username=o.username,
            password=None if o.password is None else o.password.encode(),
        ).encode()
        reader = PacketReader(max_packet_bytes=o.max_packet_bytes)
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout_at(deadline):
                stream, writer = await asyncio.open_connection(
                    o.host, o.port, ssl=o.tls, server_hostname=o.host if o.tls else None
                )
                writer.write(connect)
                packets = await first_packets(stream, reader)
        except BaseException as e:
            if writer is not None:
                writer.transport.abort()
                writer.close()
            if isinstance(e, TimeoutError):
                raise MqttConnectError(f"no CONNACK from {where} in time") from None
            if isinstance(e, OSError):  # the cause is kept: a certificate error is final
                raise MqttConnectError(f"cannot reach {where}: {e}") from e
            if isinstance(e, MqttProtocolError):
                raise MqttConnectError(f"{where} answered CONNECT with {e.reason}") from None
            raise
        ack = packets[0] if packets else None
        if type(ack) is not Connack or ack.return_code:
            writer.transport.abort()
            writer.close()
            if ack is None:
                raise MqttConnectError(f"{where} closed the connection before CONNACK")
            if type(ack) is not Connack:
                raise MqttConnectError(f"{where} answered CONNECT with {type(ack).__name__}")
            raise MqttConnectError(f"{where} refused the connection", ack.return_code)
        self._generation += 1
        conn = _Connection(stream, writer, self._generation, reader)
        self._conns.add(conn)
        return conn, packets[1:]

    async def _establish(self, deadline: float) -> _Connection:
        """Open a session, restore its state, run ``on_connect``; then deliver messages."""
        conn, after_connack = await self._open(deadline)
        o = self.options
        self._conn = conn
        self._connects += 1
        name = f"mqtt-client[{o.client_id}]"
        conn.tasks = [
            asyncio.create_task(self._read_loop(conn, after_connack), name=f"{name}.read"),
            asyncio.create_task(self._keepalive(conn), name=f"{name}.keepalive"),
        ]
        self._pulse()
        log.info("MQTT session %d with %s:%d is up", conn.generation, o.host, o.port)
        try:
            # [MQTT-4.4.0-1]: re-send unacknowledged publishes, in their original order.
            for out in list(self._inflight.values()):
                conn.send(out.encode())
            if self._subscriptions:
                await self._resubscribe(conn)
            if self._on_connect is not None:
                await self._run_on_connect(conn, self._on_connect)
        except BaseException as e:
            await self._teardown(conn, f"session setup failed: {e}")
            raise
        self._release_held(conn)
        self._ready = conn
        self._pulse()
        return conn

    async def _resubscribe(self, conn: _Connection) -> None:
        o = self.options
        topics = tuple(self._subscriptions.items())
        try:
            async with asyncio.timeout(o.connect_timeout_s):
                codes = await self._request(conn, lambda pid: Subscribe(pid, topics))
        except TimeoutError:
            raise MqttConnectError(f"no SUBACK within {o.connect_timeout_s:g} s") from None
        except _ConnectionLostError as e:
            raise MqttConnectError(f"connection lost while subscribing: {e}") from None
        for (topic_filter, qos), code in zip(topics, codes, strict=False):
            if code == SUBACK_FAILURE and self._subscriptions.get(topic_filter) == qos:
                del self._subscriptions[topic_filter]
                self._last_error = f"subscription to {topic_filter!r} refused"
                log.warning("the broker refused the subscription %r", topic_filter)

    async def _run_on_connect(self, conn: _Connection, on_connect: OnConnect) -> None:
        """Await ``on_connect``; cancel it if the connection is lost meanwhile (it could wait
        for an acknowledgement forever: no new connection comes while it runs)."""
        task = asyncio.ensure_future(on_connect(self))
        try:
            waiters: set[asyncio.Future[Any]] = {task, conn.lost}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled() and conn.lost.done():
            raise MqttConnectError(f"connection lost during on_connect: {conn.lost.result()}")
        task.result()  # on_connect's own exception, if any

    async def _supervise(self, conn: _Connection | None) -> None:
        o = self.options
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            if conn is None:
                try:
                    conn = await self._establish(loop.time() + o.connect_timeout_s)
                except MqttError as e:
                    self._last_error = str(e)
                    log.info("MQTT connect to %s:%d failed: %s", o.host, o.port, e)
                except Exception as e:  # on_connect raised: log it, drop, and retry
                    self._last_error = f"on_connect failed: {e!r}"
                    log.exception("MQTT on_connect failed; reconnecting")
                if conn is None:
                    await asyncio.sleep(self._backoff(attempt))
                    attempt += 1
                    continue
            reason = await asyncio.shield(conn.lost)  # cancelling us must not cancel it
            lived = loop.time() - conn.started
            await self._teardown(conn, reason)
            self._disconnects += 1
            log.warning("MQTT session with %s:%d lost: %s", o.host, o.port, reason)
            if self._on_disconnect is not None:
                try:
                    await self._on_disconnect(self, reason)
                except Exception:
                    log.exception("MQTT on_disconnect failed")
            conn = None
            attempt = 0 if lived >= _STABLE_S else attempt + 1
            await asyncio.sleep(self._backoff(attempt))

    async def _teardown(self, conn: _Connection, reason: str, *, graceful: bool = False) -> None:
        """End a connection: its tasks, its socket, its pending requests."""
        disconnect = graceful and conn.alive
        if disconnect:
            conn.send(DISCONNECT.encode())
            conn.lose(reason, abort=False)
        else:
            conn.lose(reason)
        if self._conn is conn:
            self._conn = None
        if self._ready is conn:
            self._ready = None
        current = asyncio.current_task()
        tasks = [t for t in conn.tasks if t is not current]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if disconnect:
            await _broker_closed(conn.reader)
        conn.writer.close()
        try:
            async with asyncio.timeout(1.0):
                await conn.writer.wait_closed()
        except (OSError, TimeoutError):
            conn.writer.transport.abort()
        lost = _ConnectionLostError(reason)
        for pid, (owner, fut) in list(self._requests.items()):
            if owner is conn:
                del self._requests[pid]
                if not fut.done():
                    fut.set_exception(lost)
        if conn.held:  # received before on_connect finished: still delivered, never acked
            self._release_held(conn)
        if not graceful:
            self._last_error = reason
        self._conns.discard(conn)
        self._resume.set()
        self._pulse()

    # -- requests -----------------------------------------------------------------------------

    def _new_packet_id(self) -> int:
        for _ in range(0xFFFF):
            self._last_packet_id = self._last_packet_id % 0xFFFF + 1
            pid = self._last_packet_id
            if pid not in self._inflight and pid not in self._requests:
                return pid
        raise MqttError("all 65535 packet identifiers are in use")

    async def _request(
        self, conn: _Connection, make: Callable[[int], Subscribe | Unsubscribe]
    ) -> tuple[int, ...]:
        pid = self._new_packet_id()
        fut: asyncio.Future[tuple[int, ...]] = asyncio.get_running_loop().create_future()
        self._requests[pid] = (conn, fut)
        try:
            if not conn.alive:
                raise _ConnectionLostError("not connected")
            conn.send(make(pid).encode())
            self._resume.set()
            waiters: set[asyncio.Future[Any]] = {fut, conn.lost}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if fut.done():
                return fut.result()
            raise _ConnectionLostError(conn.lost.result())
        finally:
            self._requests.pop(pid, None)

    async def _request_until_done(
        self, make: Callable[[int], Subscribe | Unsubscribe]
    ) -> tuple[int, ...]:
        while True:
            conn = await self._wait_up()
            try:
                return await self._request(conn, make)
            except _ConnectionLostError:
                continue  # sent again on the next connection

    async def _wait_up(self) -> _Connection:
        while True:
            self._check_open()
            conn = self._conn
            if conn is not None and conn.alive:
                return conn
            await self._state_changed.wait()

    def _check_open(self) -> None:
        if self._closed:
            raise MqttClosedError("the MQTT client is closed")

    def _pulse(self) -> None:
        self._state_changed.set()
        self._state_changed = asyncio.Event()

    # -- reading ------------------------------------------------------------------------------

    async def _read_loop(self, conn: _Connection, first: list[Packet]) -> None:
        loop = asyncio.get_running_loop()
        limit = self.options.max_queued_messages
        read = conn.reader.read
        feed = conn.packets.feed
        try:
            self._dispatch(conn, first)
            while True:
                data = await read(READ_BYTES)
                if not data:
                    conn.lose("the broker closed the connection")
                    return
                conn.last_received = loop.time()
                self._bytes_in += len(data)
                self._dispatch(conn, feed(data))
                if conn.ready and len(self._queue) >= limit and self._must_pause():
                    # TCP backpressure: stop reading until the consumer takes a batch.
                    conn.paused = True
                    self._read_pauses += 1
                    while len(self._queue) >= limit and self._must_pause():
                        self._resume.clear()
                        await self._resume.wait()
                    conn.paused = False
                    if conn.ping_sent is not None:  # its PINGRESP could not be read meanwhile
                        conn.ping_sent = loop.time()
        except MqttProtocolError as e:
            conn.lose(f"protocol error: {e.reason}")
        except OSError as e:
            conn.lose(f"connection error: {e!r}")

    def _must_pause(self) -> bool:
        return not self._inflight and not self._requests and not self._closed

    def _dispatch(self, conn: _Connection, packets: Sequence[Packet]) -> None:
        if not packets:
            return
        queue = self._queue
        acks = self._acks
        seq = self._appended
        gen = conn.generation
        ready = conn.ready
        n = 0
        for p in packets:
            if type(p) is Publish:
                n += 1
                if ready:
                    queue.append(Message(p.topic, p.payload, p.qos, p.retain))
                    if p.qos:
                        acks.append((seq, gen, p.packet_id))
                    seq += 1
                else:
                    conn.held.append(p)
            elif type(p) is Puback:
                out = self._inflight.get(p.packet_id)
                if out is not None and not out.future.done():
                    out.future.set_result(None)
            elif type(p) is Suback or type(p) is Unsuback:
                entry = self._requests.get(p.packet_id)
                if entry is not None and not entry[1].done():
                    entry[1].set_result(p.return_codes if type(p) is Suback else ())
            elif type(p) is Pingresp:
                conn.ping_sent = None
            else:
                raise MqttProtocolError(f"a broker does not send {type(p).__name__.upper()}")
        self._appended = seq
        self._messages_in += n
        if ready and n:
            self._queue_event.set()

    def _release_held(self, conn: _Connection) -> None:
        held, conn.held = conn.held, []
        conn.ready = True
        self._messages_in -= len(held)  # counted when they arrived
        self._dispatch(conn, held)

    async def _keepalive(self, conn: _Connection) -> None:
        k = self.options.keepalive_s
        if not k:
            return
        loop = asyncio.get_running_loop()
        while conn.alive:
            now = loop.time()
            waiting = conn.ping_sent is not None and not conn.paused
            if waiting and conn.ping_sent is not None and now - conn.ping_sent >= 1.5 * k:
                conn.lose(f"no PINGRESP within {1.5 * k:g} s")
                return
            # [MQTT-3.1.2-23]: a control packet within every keep-alive period, whether or not
            # an earlier PINGREQ is still unanswered (a receive-only client sends nothing else).
            due = conn.last_sent + k
            if conn.ping_sent is None:  # silence from the broker is worth a ping too
                due = min(due, conn.last_received + k)
            if now >= due:
                conn.send(PINGREQ.encode())
                if conn.ping_sent is None:
                    conn.ping_sent = now
                continue
            wake = due
            if waiting and conn.ping_sent is not None:
                wake = min(due, conn.ping_sent + 1.5 * k)
            await asyncio.sleep(max(wake - now, 0.005))

    # -- consuming ----------------------------------------------------------------------------

    def _take(self) -> list[Message] | None:
        """Acknowledge the batch taken before, then take everything queued (None if empty)."""
        self._send_due_acks()
        if not self._queue:
            return None
        batch = list(self._queue)
        self._queue.clear()
        self._taken += len(batch)
        self._resume.set()
        return batch

    def _send_due_acks(self) -> None:
        acks = self._acks
        taken = self._taken
        if not acks or acks[0][0] >= taken:
            return
        conn = self._conn
        gen = conn.generation if conn is not None and conn.alive else -1
        out = []
        while acks and acks[0][0] < taken:
            _, ack_gen, pid = acks.popleft()
            if ack_gen == gen:  # ids of an older connection mean nothing on this one
                out.append(b"\x40\x02" + pid.to_bytes(2, "big"))
        if out and conn is not None:
            conn.send(b"".join(out))


class _Batches:
    """The iterator ``MqttClient.batches()`` returns (a class: nothing to finalise)."""

    def __init__(self, client: MqttClient) -> None:
        self._client = client

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> list[Message]:
        c = self._client
        while True:
            if c._closed:
                raise StopAsyncIteration
            batch = c._take()
            if batch is not None:
                return batch
            c._queue_event.clear()
            await c._queue_event.wait()
