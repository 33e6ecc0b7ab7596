"""A small in-process MQTT 3.1.1 broker for the demo and the tests. NOT for production.

``factory5g up --demo`` must run with no system service, so the demo plant's Sparkplug edge nodes
and our host meet on this broker inside the process::

    async with MqttBroker(host="127.0.0.1", port=0) as broker:
        print(broker.port)

What it does: CONNECT with an optional user/password table, clean and persistent sessions (in
memory), subscriptions with ``+`` and ``#`` (``$`` topics are not matched by a first-level
wildcard, [MQTT-4.7.2-1]), QoS 0 and 1 both ways (QoS 2 is refused: the connection is closed, and
a QoS 2 subscription is granted QoS 1), retained messages (an empty retained payload deletes,
[MQTT-3.3.1-10]), the Will on any end but DISCONNECT (including session takeover and keep-alive
expiry), session takeover by client id [MQTT-3.1.4-2], keep-alive expiry after 1.5 x keep alive
[MQTT-3.1.2-24], PINGREQ. Malformed or oversized input closes that one connection.

What it does not: persistence across restarts, TLS, authorisation per topic, QoS 2, MQTT 5, a
cluster. Use Mosquitto, EMQX or HiveMQ for a plant (a site-file setting).

Backpressure instead of drops. Each subscriber's socket send buffer is bounded
(``send_buffer_bytes``); QoS 1 deliveries beyond ``max_inflight`` unacknowledged ones wait in the
session's queue, bounded by ``max_queued``. After each socket read of a publisher, the broker
awaits every congested subscriber (buffer above the bound: ``drain()``; queue full: a PUBACK),
and meanwhile does not read that publisher: the publisher gets TCP backpressure in turn. So a
subscriber that stops reading stalls its publishers rather than losing their messages (a
publisher stalled longer than 1.5 x its keep alive will drop and reconnect, as its PINGREQs are
not answered). Only sessions that are offline (``clean_session=False``, disconnected) drop: the
oldest QoS 1 message when ``max_queued`` are held (counted in ``stats()["dropped"]``); QoS 0 is
not queued for them (§3.1.2.4: session state holds QoS 1 and 2 messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Final, Self, TypedDict

from factory5g.connect.mqtt._io import READ_BYTES, first_packets
from factory5g.connect.mqtt.errors import MqttProtocolError
from factory5g.connect.mqtt.packets import (
    DEFAULT_MAX_PACKET_BYTES,
    PINGRESP,
    SUBACK_FAILURE,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketReader,
    Pingreq,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    encode_publish,
    topic_filter_problem,
    topic_matches,
)

__all__ = ["MqttBroker", "MqttBrokerStats"]

log = logging.getLogger(__name__)

_ROUTE_CACHE_TOPICS: Final = 10_000


class MqttBrokerStats(TypedDict):
    clients: int  # connections with an accepted CONNECT
    sessions: int  # including offline persistent ones
    messages_in: int  # PUBLISH received
    messages_out: int  # PUBLISH sent
    retained: int
    dropped: int  # QoS 1 messages dropped from a full offline session queue
    protocol_errors: int  # connections closed for malformed or unsupported input


class _Session:
    """MQTT session state on the server (§3.1.2.4): subscriptions and QoS 1 deliveries."""

    def __init__(self, client_id: str, *, clean: bool) -> None:
        self.client_id = client_id
        self.clean = clean
        self.subscriptions: dict[str, int] = {}
        self.inflight: dict[int, Publish] = {}  # sent with QoS 1, awaiting PUBACK
        self.pending: deque[Publish] = deque()  # QoS 1 not yet sent (window full or offline)
        self.conn: _Conn | None = None
        self.space = asyncio.Event()  # set while ``pending`` is below the bound
        self.space.set()
        self._ids = itertools.cycle(range(1, 0x10000))

    def packet_id(self) -> int:
        for _ in range(0xFFFF):
            pid = next(self._ids)
            if pid not in self.inflight:
                return pid
        raise AssertionError("unreachable: max_inflight is below 65535")


class _Conn:
    """One client connection with an accepted CONNECT."""

    def __init__(
        self, writer: asyncio.StreamWriter, session: _Session, connect: Connect, client_id: str
    ) -> None:
        self.writer = writer
        self.session = session
        self.client_id = client_id
        self.will = connect.will
        self.keepalive_s = connect.keepalive_s
        self.disconnected = False  # sent DISCONNECT: the Will is discarded [MQTT-3.14.4-3]
        self.taken_over = False

    def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)


class MqttBroker:
    """An in-process MQTT 3.1.1 broker (demo and tests only); see the module docstring."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        users: Mapping[str, str] | None = None,
        max_packet_bytes: int = DEFAULT_MAX_PACKET_BYTES,
        max_inflight: int = 1_000,
        max_queued: int = 100_000,
        send_buffer_bytes: int = 1024 * 1024,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if not 1 <= max_inflight < 0xFFFF:
            raise ValueError("max_inflight must be in 1..65534")
        self.host = host
        self._port = port
        self._users = dict(users) if users is not None else None
        self._max_packet_bytes = max_packet_bytes
        self._max_inflight = max_inflight
        self._max_queued = max_queued
        self._send_buffer_bytes = send_buffer_bytes
        self._connect_timeout_s = connect_timeout_s
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._closing = False
        self._sessions: dict[str, _Session] = {}
        self._retained: dict[str, Publish] = {}
        self._routes: dict[str, list[tuple[_Session, int]]] = {}
        self._auto_ids = itertools.count(1)
        self._clients = 0
        self._messages_in = 0
        self._messages_out = 0
        self._dropped = 0
        self._protocol_errors = 0

    @property
    def port(self) -> int:
        """The TCP port listened on (the one chosen by the system when created with 0)."""
        if self._server is None:
            raise RuntimeError("the broker is not started")
        return self._port

    async def __aenter__(self) -> Self:
        if self._server is not None or self._closing:
            raise RuntimeError("an MqttBroker can be started once")
        self._server = await asyncio.start_server(self._accept, self.host, self._port)
        self._port = int(self._server.sockets[0].getsockname()[1])
        log.info("in-process MQTT broker listening on %s:%d", self.host, self._port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):  # no flushing to clients that may not read
            writer.transport.abort()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def stats(self) -> MqttBrokerStats:
        return {
            "clients": self._clients,
            "sessions": len(self._sessions),
            "messages_in": self._messages_in,
            "messages_out": self._messages_out,
            "retained": len(self._retained),
            "dropped": self._dropped,
            "protocol_errors": self._protocol_errors,
        }

    # -- connections --------------------------------------------------------------------------

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback, so that every handler task is ours to cancel at exit.
        if self._closing:
            writer.transport.abort()
            return
        peer = writer.get_extra_info("peername")
        self._writers.add(writer)
        task = asyncio.create_task(self._serve(reader, writer), name=f"mqtt-broker[{peer}]")
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.set_write_buffer_limits(high=self._send_buffer_bytes)
        packets = PacketReader(max_packet_bytes=self._max_packet_bytes)
        conn: _Conn | None = None
        why = "closed by the client"
        try:
            opened = await self._connect(reader, writer, packets)
            if opened is None:
                return
            conn, rest = opened
            await self._client_loop(conn, reader, packets, rest)
            if not conn.disconnected:
                why = "connection closed without DISCONNECT"
        except MqttProtocolError as e:
            self._protocol_errors += 1
            why = f"protocol error: {e.reason}"
            log.info("MQTT client %s: %s", _who(conn, writer), why)
        except TimeoutError:
            why = "keep alive expired" if conn is not None else "no CONNECT in time"
            log.info("MQTT client %s: %s", _who(conn, writer), why)
        except OSError as e:
            why = f"connection error: {e!r}"
        finally:
            if conn is not None:
                self._detach(conn, why)
            self._writers.discard(writer)
            await _close(writer, abort=self._closing)

    async def _connect(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, packets: PacketReader
    ) -> tuple[_Conn, list[Packet]] | None:
        """Read the CONNECT and answer it; the connection and the packets that followed it, or
        None when the CONNECT was refused (the CONNACK saying why is written)."""
        try:
            # §3.1.4: a CONNECT within a reasonable time, or the connection is closed.
            async with asyncio.timeout(self._connect_timeout_s):
                first = await first_packets(reader, packets)
        except MqttProtocolError as e:
            if e.connack_code is not None:  # e.g. [MQTT-3.1.2-2] protocol level
                writer.write(Connack(False, e.connack_code).encode())
            raise
        if not first:
            return None
        connect = first[0]
        if type(connect) is not Connect:
            raise MqttProtocolError(
                f"the first packet must be CONNECT, not {type(connect).__name__.upper()} "
                "[MQTT-3.1.0-1]"
            )
        code = self._refusal(connect)
        if code:
            writer.write(Connack(False, code).encode())  # then close [MQTT-3.2.2-5]
            return None
        conn, present = self._attach(connect, writer)
        writer.write(Connack(present, 0).encode())
        self._resume_session(conn)
        return conn, first[1:]

    def _refusal(self, connect: Connect) -> int:
        """The CONNACK return code refusing this CONNECT, or 0 (§3.2.2.3)."""
        if not connect.client_id and not connect.clean_session:
            return 2  # [MQTT-3.1.3-8]: identifier rejected
        if self._users is not None:
            password = self._users.get(connect.username or "")
            given = connect.password or b""
            if password is None or not hmac.compare_digest(password.encode(), given):
                return 4  # bad user name or password
        return 0

    def _attach(self, connect: Connect, writer: asyncio.StreamWriter) -> tuple[_Conn, bool]:
        client_id = connect.client_id or f"f5g-auto-{next(self._auto_ids)}"  # [MQTT-3.1.3-6]
        old = self._sessions.get(client_id)
        if old is not None and old.conn is not None:
            # [MQTT-3.1.4-2]: the existing client with this identifier is disconnected.
            taken = old.conn
            taken.taken_over = True
            old.conn = None
            self._clients -= 1
            taken.writer.transport.abort()
        if connect.clean_session or old is None or old.clean:
            # [MQTT-3.1.2-6]: a clean session discards any previous one.
            session = _Session(client_id, clean=connect.clean_session)
            self._sessions[client_id] = session
            self._routes.clear()
            present = False
        else:
            session, present = old, True  # [MQTT-3.2.2-2]
        conn = _Conn(writer, session, connect, client_id)
        session.conn = conn
        self._clients += 1
        return conn, present

    def _resume_session(self, conn: _Conn) -> None:
        session = conn.session
        # [MQTT-4.4.0-1]: unacknowledged deliveries are sent again, with DUP [MQTT-3.3.1-1].
        for pid, p in session.inflight.items():
            conn.write(encode_publish(p.topic.encode(), p.payload, 1, p.retain, True, pid))
            self._messages_out += 1
        self._pump(session)

    def _detach(self, conn: _Conn, why: str) -> None:
        session = conn.session
        if session.conn is conn:
            session.conn = None
            self._clients -= 1
            session.space.set()  # release publishers waiting for this subscriber
            if session.clean and self._sessions.get(session.client_id) is session:
                del self._sessions[session.client_id]
                self._routes.clear()
        if conn.will is not None and not conn.disconnected and not self._closing:
            # [MQTT-3.1.2-8]: the Will is published when the connection ends without DISCONNECT.
            log.info("MQTT client %s: %s; publishing its Will", conn.client_id, why)
            w = conn.will
            self._route(Publish(w.topic, w.payload, w.qos, w.retain), set())

    # -- packets ------------------------------------------------------------------------------

    async def _client_loop(
        self,
        conn: _Conn,
        reader: asyncio.StreamReader,
        packets: PacketReader,
        first: Sequence[Packet],
    ) -> None:
        # [MQTT-3.1.2-24]: no packet for 1.5 x keep alive closes the connection.
        expiry = 1.5 * conn.keepalive_s if conn.keepalive_s else None
        await self._handle(conn, first)
        while not conn.disconnected:
            async with asyncio.timeout(expiry):
                data = await reader.read(READ_BYTES)
            if not data:
                return
            await self._handle(conn, packets.feed(data))

    async def _handle(self, conn: _Conn, packets: Sequence[Packet]) -> None:
        congested: set[_Session] = set()
        for p in packets:
            if type(p) is Publish:
                self._messages_in += 1
                self._route(p, congested)
                if p.qos:  # [MQTT-3.3.4-1]: PUBACK once we own the message
                    conn.write(b"\x40\x02" + p.packet_id.to_bytes(2, "big"))
            elif type(p) is Puback:
                if conn.session.inflight.pop(p.packet_id, None) is not None:
                    self._pump(conn.session)
            elif type(p) is Subscribe:
                self._subscribe(conn, p)
            elif type(p) is Unsubscribe:
                for topic_filter in p.topics:
                    conn.session.subscriptions.pop(topic_filter, None)
                self._routes.clear()
                conn.write(Unsuback(p.packet_id).encode())  # [MQTT-3.10.4-4]
            elif type(p) is Pingreq:
                conn.write(PINGRESP.encode())  # [MQTT-3.12.4-1]
            elif type(p) is Disconnect:
                conn.disconnected = True  # [MQTT-3.14.4-3]: discard the Will, then close
                break
            elif type(p) is Connect:
                raise MqttProtocolError("a second CONNECT [MQTT-3.1.0-2]")
            else:
                raise MqttProtocolError(f"a client does not send {type(p).__name__.upper()}")
        for session in congested:
            await self._relieve(session)

    def _subscribe(self, conn: _Conn, p: Subscribe) -> None:
        session = conn.session
        codes = []
        granted = []
        for topic_filter, qos in p.topics:
            if topic_filter_problem(topic_filter):
                codes.append(SUBACK_FAILURE)
                continue
            g = min(qos, 1)  # §3.9.3: a lower QoS than requested may be granted; QoS 2 is not ours
            session.subscriptions[topic_filter] = g  # [MQTT-3.8.4-3]: replaces an existing one
            codes.append(g)
            granted.append((topic_filter, g))
        self._routes.clear()
        conn.write(Suback(p.packet_id, tuple(codes)).encode())  # [MQTT-3.8.4-1, -2]
        for topic_filter, g in granted:
            for topic, kept in self._retained.items():
                if topic_matches(topic_filter, topic):
                    # [MQTT-3.3.1-6, -8]: retained messages go to new subscriptions, RETAIN set.
                    self._deliver(session, kept.topic, kept.payload, min(kept.qos, g), True)

    # -- routing ------------------------------------------------------------------------------

    def _route(self, p: Publish, congested: set[_Session]) -> None:
        if p.retain:
            if p.payload:  # [MQTT-3.3.1-5]
                self._retained[p.topic] = Publish(p.topic, p.payload, p.qos, True)
            else:  # [MQTT-3.3.1-10, -11]: an empty retained message deletes, is not stored
                self._retained.pop(p.topic, None)
        routes = self._routes.get(p.topic)
        if routes is None:
            routes = self._routes_for(p.topic)
        qos0: bytes | None = None
        high = self._send_buffer_bytes
        for session, sub_qos in routes:
            conn = session.conn
            # [MQTT-3.3.1-9]: RETAIN is 0 for a message sent to an established subscription.
            if p.qos and sub_qos:
                self._deliver(session, p.topic, p.payload, 1, False)
            elif conn is not None:
                if qos0 is None:  # encoded once for every QoS 0 subscriber
                    qos0 = encode_publish(p.topic.encode(), p.payload, 0, False, False, 0)
                conn.write(qos0)
                self._messages_out += 1
            if conn is not None and (
                conn.writer.transport.get_write_buffer_size() > high
                or len(session.pending) >= self._max_queued
            ):
                congested.add(session)

    def _routes_for(self, topic: str) -> list[tuple[_Session, int]]:
        # [MQTT-3.3.5-1]: overlapping subscriptions deliver once, at their highest QoS.
        best: dict[_Session, int] = {}
        for session in self._sessions.values():
            for topic_filter, qos in session.subscriptions.items():
                if qos > best.get(session, -1) and topic_matches(topic_filter, topic):
                    best[session] = qos
        routes = list(best.items())
        if len(self._routes) >= _ROUTE_CACHE_TOPICS:
            self._routes.clear()
        self._routes[topic] = routes
        return routes

    def _deliver(
        self, session: _Session, topic: str, payload: bytes, qos: int, retain: bool
    ) -> None:
        conn = session.conn
        if not qos:
            if conn is not None:
                conn.write(encode_publish(topic.encode(), payload, 0, retain, False, 0))
                self._messages_out += 1
            return
        if conn is not None and not session.pending and len(session.inflight) < self._max_inflight:
            self._send_qos1(session, conn, Publish(topic, payload, 1, retain))
            return
        if conn is None and len(session.pending) >= self._max_queued:
            session.pending.popleft()
            self._dropped += 1
        session.pending.append(Publish(topic, payload, 1, retain))
        if len(session.pending) >= self._max_queued:
            session.space.clear()

    def _send_qos1(self, session: _Session, conn: _Conn, p: Publish) -> None:
        pid = session.packet_id()
        session.inflight[pid] = p
        conn.write(encode_publish(p.topic.encode(), p.payload, 1, p.retain, False, pid))
        self._messages_out += 1

    def _pump(self, session: _Session) -> None:
        """Send queued QoS 1 messages while the in-flight window has room."""
        conn = session.conn
        pending = session.pending
        while conn is not None and pending and len(session.inflight) < self._max_inflight:
            self._send_qos1(session, conn, pending.popleft())
        if len(pending) < self._max_queued:
            session.space.set()

    async def _relieve(self, session: _Session) -> None:
        """Wait until a congested subscriber can take more (or is gone): TCP backpressure."""
        conn = session.conn
        if conn is None:
            return
        with contextlib.suppress(ConnectionError):
            await conn.writer.drain()
        while session.conn is conn and len(session.pending) >= self._max_queued:
            await session.space.wait()


async def _close(writer: asyncio.StreamWriter, *, abort: bool) -> None:
    """Close after flushing what we wrote (a refusing CONNACK, say), or at once."""
    if abort:
        writer.transport.abort()
    writer.close()
    try:
        async with asyncio.timeout(1.0):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        writer.transport.abort()


def _who(conn: _Conn | None, writer: asyncio.StreamWriter) -> str:
    if conn is not None:
        return repr(conn.client_id)
    return str(writer.get_extra_info("peername"))
