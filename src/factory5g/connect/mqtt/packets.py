"""MQTT 3.1.1 (OASIS Standard, 29 October 2014) control packets: types, encoder, streaming reader.

Wire types only, no I/O (asyncua's ``ua/`` apart from ``client/``): the client, the broker and
the tests share them. Every packet type of MQTT 3.1.1 is decoded and encoded except the QoS 2
flow (PUBREC, PUBREL, PUBCOMP and QoS 2 PUBLISH or Will), which we refuse with a clear
:class:`MqttProtocolError`: a Sparkplug host needs QoS 0 and 1 only. A SUBSCRIBE may still
*request* QoS 2; a server grants at most 1 (§3.9.3 allows a lower grant).

:class:`PacketReader` is the hot path: ``feed(chunk)`` parses every complete packet of a socket
read (64 KiB holds ~30 publishes of 2 KB, or thousands of small ones) and keeps only the tail of
an incomplete packet. PUBLISH is parsed inline with one slice per topic and one per payload
(the only copy of the payload is the ``bytes`` the consumer receives); large packets that span
many reads are gathered in a list and joined once, so a 16 MiB packet costs O(size), not
O(size²). ``bench/mqtt.py`` measures it.

Encoding validates what the caller passes (``ValueError`` for a wildcard in a topic name, QoS 2,
a packet id out of range); decoding validates what the peer sent (``MqttProtocolError``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from factory5g.connect.mqtt.errors import MqttProtocolError

__all__ = [
    "DEFAULT_MAX_PACKET_BYTES",
    "DISCONNECT",
    "MAX_REMAINING_LENGTH",
    "PINGREQ",
    "PINGRESP",
    "SUBACK_FAILURE",
    "Connack",
    "Connect",
    "Disconnect",
    "Message",
    "Packet",
    "PacketReader",
    "PacketType",
    "Pingreq",
    "Pingresp",
    "Puback",
    "Publish",
    "Suback",
    "Subscribe",
    "Unsuback",
    "Unsubscribe",
    "decode",
    "encode_publish",
    "encode_remaining_length",
    "topic_filter_problem",
    "topic_matches",
    "topic_name_problem",
]

# §2.2.3: four bytes of 7 bits each.
MAX_REMAINING_LENGTH: Final = 268_435_455
DEFAULT_MAX_PACKET_BYTES: Final = 16 * 1024 * 1024
# §3.9.3, Table 3.5 (SUBACK return codes): 0x80 is "Failure".
SUBACK_FAILURE: Final = 0x80
_PROTOCOL_NAME: Final = "MQTT"
_PROTOCOL_LEVEL: Final = 4  # §3.1.2.2: 3.1.1 is level 4


class PacketType(IntEnum):
    """§2.2.1, Table 2.1 - Control packet types (the high nibble of the first byte)."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


# -- packets ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """An application message: what is published, delivered, or left as a Will."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Connect:
    """§3.1 CONNECT. ``keepalive_s`` 0 turns keep-alive off (§3.1.2.10)."""

    client_id: str
    clean_session: bool = True
    keepalive_s: int = 60
    will: Message | None = None
    username: str | None = None
    password: bytes | None = None

    def encode(self) -> bytes:
        flags = 0x02 if self.clean_session else 0
        payload = [_str(self.client_id, "client identifier")]
        if self.will is not None:
            w = self.will
            _check_qos(w.qos, "Will QoS")
            _check_topic_name(w.topic)
            flags |= 0x04 | (w.qos << 3) | (0x20 if w.retain else 0)
            payload += [_str(w.topic, "Will topic"), _bin(w.payload, "Will message")]
        if self.username is not None:
            flags |= 0x80
            payload.append(_str(self.username, "user name"))
        if self.password is not None:
            if self.username is None:
                raise ValueError("a password needs a user name [MQTT-3.1.2-22]")
            flags |= 0x40
            payload.append(_bin(self.password, "password"))
        if not 0 <= self.keepalive_s <= 0xFFFF:
            raise ValueError(f"keep alive {self.keepalive_s} s is outside 0..65535")
        head = _str(_PROTOCOL_NAME, "") + bytes([_PROTOCOL_LEVEL, flags])
        return _packet(0x10, head + self.keepalive_s.to_bytes(2, "big") + b"".join(payload))


@dataclass(frozen=True, slots=True)
class Connack:
    """§3.2 CONNACK: ``return_code`` 0 accepts, 1-5 refuse (see ``errors.CONNACK_REASONS``)."""

    session_present: bool = False
    return_code: int = 0

    def encode(self) -> bytes:
        if not 0 <= self.return_code <= 5:
            raise ValueError(f"CONNACK return code {self.return_code} is reserved")
        # [MQTT-3.2.2-4]: a refused CONNECT has session present 0.
        present = self.session_present and self.return_code == 0
        return bytes([0x20, 2, 1 if present else 0, self.return_code])


@dataclass(frozen=True, slots=True)
class Publish:
    """§3.3 PUBLISH. ``packet_id`` is 0 for QoS 0 (the packet carries none, §2.3.1)."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int = 0

    def encode(self) -> bytes:
        _check_topic_name(self.topic)
        _check_qos(self.qos, "PUBLISH QoS")
        if self.qos:
            _check_packet_id(self.packet_id)
        elif self.dup or self.packet_id:
            # [MQTT-3.3.1-2]: DUP is 0 for QoS 0, which has no packet identifier.
            raise ValueError("a QoS 0 PUBLISH has neither DUP nor a packet identifier")
        return encode_publish(
            self.topic.encode(), self.payload, self.qos, self.retain, self.dup, self.packet_id
        )


@dataclass(frozen=True, slots=True)
class Puback:
    """§3.4 PUBACK."""

    packet_id: int

    def encode(self) -> bytes:
        _check_packet_id(self.packet_id)
        return b"\x40\x02" + self.packet_id.to_bytes(2, "big")


@dataclass(frozen=True, slots=True)
class Subscribe:
    """§3.8 SUBSCRIBE: (topic filter, requested QoS 0-2) pairs, at least one."""

    packet_id: int
    topics: tuple[tuple[str, int], ...]

    def encode(self) -> bytes:
        _check_packet_id(self.packet_id)
        if not self.topics:
            raise ValueError("SUBSCRIBE needs at least one topic filter [MQTT-3.8.3-3]")
        body = [self.packet_id.to_bytes(2, "big")]
        for topic_filter, qos in self.topics:
            _check_topic_filter(topic_filter)
            if qos not in (0, 1, 2):
                raise ValueError(f"requested QoS {qos} is not 0, 1 or 2")
            body += [_str(topic_filter, "topic filter"), bytes([qos])]
        # [MQTT-3.8.1-1]: the fixed header flags of SUBSCRIBE are 0010.
        return _packet(0x82, b"".join(body))


@dataclass(frozen=True, slots=True)
class Suback:
    """§3.9 SUBACK: granted QoS per filter, in order, or 0x80 (failure)."""

    packet_id: int
    return_codes: tuple[int, ...]

    def encode(self) -> bytes:
        _check_packet_id(self.packet_id)
        if not self.return_codes or any(c not in (0, 1, 2, 0x80) for c in self.return_codes):
            raise ValueError(f"SUBACK return codes {self.return_codes} (allowed: 0, 1, 2, 0x80)")
        return _packet(0x90, self.packet_id.to_bytes(2, "big") + bytes(self.return_codes))


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """§3.10 UNSUBSCRIBE: topic filters, at least one."""

    packet_id: int
    topics: tuple[str, ...]

    def encode(self) -> bytes:
        _check_packet_id(self.packet_id)
        if not self.topics:
            raise ValueError("UNSUBSCRIBE needs at least one topic filter [MQTT-3.10.3-2]")
        for topic_filter in self.topics:
            _check_topic_filter(topic_filter)
        body = b"".join(_str(t, "topic filter") for t in self.topics)
        # [MQTT-3.10.1-1]: the fixed header flags of UNSUBSCRIBE are 0010.
        return _packet(0xA2, self.packet_id.to_bytes(2, "big") + body)


@dataclass(frozen=True, slots=True)
class Unsuback:
    """§3.11 UNSUBACK."""

    packet_id: int

    def encode(self) -> bytes:
        _check_packet_id(self.packet_id)
        return b"\xb0\x02" + self.packet_id.to_bytes(2, "big")


@dataclass(frozen=True, slots=True)
class Pingreq:
    """§3.12 PINGREQ."""

    def encode(self) -> bytes:
        return b"\xc0\x00"


@dataclass(frozen=True, slots=True)
class Pingresp:
    """§3.13 PINGRESP."""

    def encode(self) -> bytes:
        return b"\xd0\x00"


@dataclass(frozen=True, slots=True)
class Disconnect:
    """§3.14 DISCONNECT: the client leaves cleanly, so its Will is not published."""

    def encode(self) -> bytes:
        return b"\xe0\x00"


PINGREQ: Final = Pingreq()
PINGRESP: Final = Pingresp()
DISCONNECT: Final = Disconnect()

Packet = (
    Connect
    | Connack
    | Publish
    | Puback
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
)


# -- encoding -----------------------------------------------------------------------------------


def encode_remaining_length(n: int) -> bytes:
    """§2.2.3 variable length encoding: 7 bits a byte, least significant first, 1-4 bytes."""
    if not 0 <= n <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {n} is outside 0..{MAX_REMAINING_LENGTH} (§2.2.3)")
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while True:
        digit, n = n & 0x7F, n >> 7
        if n:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


def encode_publish(
    topic: bytes, payload: bytes, qos: int, retain: bool, dup: bool, packet_id: int
) -> bytes:
    """A PUBLISH from parts already validated (the broker's forwarding path): no checks."""
    first = 0x30 | (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    tl = len(topic)
    n = 2 + tl + (2 if qos else 0) + len(payload)
    head = bytes((first,)) + encode_remaining_length(n) + bytes((tl >> 8, tl & 0xFF)) + topic
    if qos:
        head += bytes((packet_id >> 8, packet_id & 0xFF))
    return head + payload


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_remaining_length(len(body)) + body


def _str(s: str, what: str) -> bytes:
    """§1.5.3 UTF-8 encoded string: two-byte length, then at most 65535 bytes."""
    b = s.encode()
    if len(b) > 0xFFFF:
        raise ValueError(f"{what} is {len(b)} bytes of UTF-8, more than 65535 (§1.5.3)")
    if "\x00" in s:
        raise ValueError(f"{what} contains U+0000 [MQTT-1.5.3-2]")
    return len(b).to_bytes(2, "big") + b


def _bin(b: bytes, what: str) -> bytes:
    if len(b) > 0xFFFF:
        raise ValueError(f"{what} is {len(b)} bytes, more than 65535 (§3.1.3)")
    return len(b).to_bytes(2, "big") + b


def _check_qos(qos: int, what: str) -> None:
    if qos == 2:
        raise ValueError(f"{what} 2 is not supported: use QoS 0 or 1")
    if qos not in (0, 1):
        raise ValueError(f"{what} {qos} is not 0 or 1")


def _check_packet_id(packet_id: int) -> None:
    # [MQTT-2.3.1-1]: a packet identifier is non-zero, two bytes.
    if not 1 <= packet_id <= 0xFFFF:
        raise ValueError(f"packet identifier {packet_id} is outside 1..65535 [MQTT-2.3.1-1]")


def _check_topic_name(topic: str) -> None:
    problem = topic_name_problem(topic)
    if problem:
        raise ValueError(problem)


def _check_topic_filter(topic_filter: str) -> None:
    problem = topic_filter_problem(topic_filter)
    if problem:
        raise ValueError(problem)


# -- topics -------------------------------------------------------------------------------------


def topic_name_problem(topic: str) -> str | None:
    """Why ``topic`` cannot be a PUBLISH topic name, or ``None`` when it can."""
    if not topic:
        return "a topic name has at least one character [MQTT-4.7.3-1]"
    if "+" in topic or "#" in topic:
        return f"topic name {topic!r} contains a wildcard [MQTT-3.3.2-2]"
    if "\x00" in topic:
        return f"topic name {topic!r} contains U+0000 [MQTT-4.7.3-2]"
    if len(topic.encode()) > 0xFFFF:
        return "a topic name is at most 65535 bytes of UTF-8 [MQTT-4.7.3-3]"
    return None


def topic_filter_problem(topic_filter: str) -> str | None:
    """Why ``topic_filter`` cannot be a SUBSCRIBE topic filter, or ``None`` when it can."""
    if not topic_filter:
        return "a topic filter has at least one character [MQTT-4.7.3-1]"
    if "\x00" in topic_filter:
        return f"topic filter {topic_filter!r} contains U+0000 [MQTT-4.7.3-2]"
    if len(topic_filter.encode()) > 0xFFFF:
        return "a topic filter is at most 65535 bytes of UTF-8 [MQTT-4.7.3-3]"
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return f"'#' must be a whole last level in {topic_filter!r} [MQTT-4.7.1-2]"
        if "+" in level and level != "+":
            return f"'+' must be a whole level in {topic_filter!r} [MQTT-4.7.1-3]"
    return None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether a valid ``topic_filter`` matches the topic name ``topic`` (§4.7)."""
    # [MQTT-4.7.2-1]: wildcards at the first level do not match topics starting with '$'.
    if topic[:1] == "$" and topic_filter[:1] in ("+", "#"):
        return False
    if "+" not in topic_filter and "#" not in topic_filter:
        return topic_filter == topic
    f = topic_filter.split("/")
    t = topic.split("/")
    for i, level in enumerate(f):
        if level == "#":  # §4.7.1.2: also matches the parent level ("a/#" matches "a")
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)


# -- decoding -----------------------------------------------------------------------------------


def decode(data: bytes, *, max_packet_bytes: int = DEFAULT_MAX_PACKET_BYTES) -> Packet:
    """Exactly one complete packet from ``data``; anything else is an MqttProtocolError."""
    reader = PacketReader(max_packet_bytes=max_packet_bytes)
    packets = reader.feed(data)
    if len(packets) != 1 or reader.buffered:
        raise MqttProtocolError(
            f"expected exactly one packet, got {len(packets)} and {reader.buffered} extra bytes"
        )
    return packets[0]


class PacketReader:
    """Streaming parser: ``feed(chunk)`` returns every packet the bytes so far complete.

    A malformed packet raises :class:`MqttProtocolError` (and every later ``feed`` raises it
    again: the connection must be closed, §4.8). So does a packet whose fixed header announces
    more than ``max_packet_bytes`` in total, as soon as the header is read — before buffering.
    """

    __slots__ = ("_error", "_have", "_max", "_need", "_parts")

    def __init__(self, *, max_packet_bytes: int = DEFAULT_MAX_PACKET_BYTES) -> None:
        if max_packet_bytes < 2:
            raise ValueError("max_packet_bytes must allow at least a 2-byte packet")
        self._max = max_packet_bytes
        self._parts: list[bytes] = []  # the incomplete tail, gathered until _need bytes
        self._have = 0
        self._need = 0
        self._error: MqttProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for a packet not yet complete."""
        return self._have

    def feed(self, chunk: bytes) -> list[Packet]:
        if self._error is not None:
            raise self._error
        if type(chunk) is not bytes:
            chunk = bytes(chunk)
        if self._parts:
            self._parts.append(chunk)
            self._have += len(chunk)
            if self._have < self._need:
                return []
            data = b"".join(self._parts)
            self._parts = []
        else:
            data = chunk
        try:
            return self._parse(data)
        except MqttProtocolError as e:
            self._error = e
            self._parts, self._have = [], 0
            raise
        except UnicodeDecodeError as e:
            # [MQTT-1.5.3-1]: ill-formed UTF-8 closes the connection.
            self._error = MqttProtocolError(f"a string is not well-formed UTF-8: {e.reason}")
            self._parts, self._have = [], 0
            raise self._error from None

    def _parse(self, data: bytes) -> list[Packet]:
        out: list[Packet] = []
        append = out.append
        n = len(data)
        pos = 0
        limit = self._max
        while n - pos >= 2:
            first = data[pos]
            length = data[pos + 1]
            start = pos + 2
            if length & 0x80:  # §2.2.3: a continuation bit, up to 4 bytes
                length &= 0x7F
                shift = 7
                complete = False
                while start < n:
                    b = data[start]
                    start += 1
                    length |= (b & 0x7F) << shift
                    if not b & 0x80:
                        complete = True
                        break
                    if shift == 21:
                        raise MqttProtocolError(
                            "remaining length has more than 4 bytes (§2.2.3: at most 268,435,455)"
                        )
                    shift += 7
                if not complete:
                    break  # the remaining length itself is incomplete
            end = start + length
            if end - pos > limit:
                raise MqttProtocolError(
                    f"packet of {end - pos} bytes exceeds the limit of {limit} bytes"
                )
            if end > n:
                break
            if first & 0xF0 == 0x30:
                # PUBLISH, the hot path (§3.3): inline, with no function call but the slices.
                if length < 2:
                    raise MqttProtocolError("PUBLISH too short for its topic length")
                p = start + 2 + ((data[start] << 8) | data[start + 1])
                if p > end:
                    raise MqttProtocolError("PUBLISH topic runs past the end of the packet")
                topic = data[start + 2 : p].decode()
                if not topic or "+" in topic or "#" in topic or "\x00" in topic:
                    raise MqttProtocolError(f"PUBLISH topic name {topic!r}: {_bad_topic(topic)}")
                qos = (first >> 1) & 3
                if qos:
                    if qos != 1:
                        raise MqttProtocolError(
                            "QoS 3 PUBLISH is malformed [MQTT-3.3.1-4]"
                            if qos == 3
                            else "QoS 2 PUBLISH is not supported: publish with QoS 0 or 1"
                        )
                    if p + 2 > end:
                        raise MqttProtocolError("PUBLISH too short for its packet identifier")
                    pid = (data[p] << 8) | data[p + 1]
                    if not pid:
                        raise MqttProtocolError("PUBLISH packet identifier 0 [MQTT-2.3.1-1]")
                    p += 2
                else:
                    if first & 0x08:
                        raise MqttProtocolError("QoS 0 PUBLISH with DUP set [MQTT-3.3.1-2]")
                    pid = 0
                append(
                    Publish(topic, data[p:end], qos, bool(first & 0x01), bool(first & 0x08), pid)
                )
            else:
                append(_decode_other(first, memoryview(data)[start:end]))
            pos = end
        if pos < n:
            self._parts = [data[pos:]]
            self._have = n - pos
            self._need = self._tail_need(data, pos, n)
        else:
            self._have = 0
        return out

    @staticmethod
    def _tail_need(data: bytes, pos: int, n: int) -> int:
        """Bytes needed before the incomplete packet at ``pos`` can be parsed."""
        if n - pos < 2:
            return 2
        length, shift, i = 0, 0, pos + 1
        while i < n:
            b = data[i]
            length |= (b & 0x7F) << shift
            i += 1
            if not b & 0x80:
                return i - pos + length
            shift += 7
        return i - pos + 1  # the length is incomplete: one more byte at least


def _bad_topic(topic: str) -> str:
    return topic_name_problem(topic) or "invalid"


class _Body:
    """A cursor over the variable header and payload of a non-PUBLISH packet."""

    __slots__ = ("buf", "kind", "pos")

    def __init__(self, buf: memoryview, kind: str) -> None:
        self.buf = buf
        self.pos = 0
        self.kind = kind

    def left(self) -> int:
        return len(self.buf) - self.pos

    def u8(self, what: str) -> int:
        if self.pos + 1 > len(self.buf):
            raise MqttProtocolError(f"{self.kind} ends before its {what}")
        self.pos += 1
        return self.buf[self.pos - 1]

    def u16(self, what: str) -> int:
        if self.pos + 2 > len(self.buf):
            raise MqttProtocolError(f"{self.kind} ends before its {what}")
        self.pos += 2
        return (self.buf[self.pos - 2] << 8) | self.buf[self.pos - 1]

    def packet_id(self) -> int:
        pid = self.u16("packet identifier")
        if not pid:
            raise MqttProtocolError(f"{self.kind} packet identifier 0 [MQTT-2.3.1-1]")
        return pid

    def binary(self, what: str) -> bytes:
        size = self.u16(f"{what} length")
        if self.pos + size > len(self.buf):
            raise MqttProtocolError(f"{self.kind} {what} runs past the end of the packet")
        self.pos += size
        return bytes(self.buf[self.pos - size : self.pos])

    def string(self, what: str) -> str:
        s = self.binary(what).decode()  # UnicodeDecodeError becomes MqttProtocolError in feed
        if "\x00" in s:
            raise MqttProtocolError(f"{self.kind} {what} contains U+0000 [MQTT-1.5.3-2]")
        return s

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise MqttProtocolError(f"{self.kind} has {self.left()} unexpected trailing bytes")


# §2.2.2, Table 2.2: the flags of every packet but PUBLISH are fixed [MQTT-2.2.2-1].
_FLAGS: Final = {1: 0, 2: 0, 4: 0, 8: 2, 9: 0, 10: 2, 11: 0, 12: 0, 13: 0, 14: 0}


def _decode_other(first: int, buf: memoryview) -> Packet:
    kind = first >> 4
    if kind in (5, 6, 7):
        name = PacketType(kind).name
        raise MqttProtocolError(f"QoS 2 is not supported: {name} received")
    if kind not in _FLAGS:
        raise MqttProtocolError(f"packet type {kind} is reserved (§2.2.1)")
    name = PacketType(kind).name
    if first & 0x0F != _FLAGS[kind]:
        raise MqttProtocolError(
            f"{name} fixed header flags {first & 0x0F:04b} must be {_FLAGS[kind]:04b} "
            "[MQTT-2.2.2-2]"
        )
    body = _Body(buf, name)
    packet: Packet
    if kind == PacketType.CONNECT:
        return _decode_connect(body)
    if kind == PacketType.CONNACK:
        flags = body.u8("acknowledge flags")
        if flags & 0xFE:
            raise MqttProtocolError("CONNACK reserved flags are not 0 (§3.2.2.1)")
        code = body.u8("return code")
        if code > 5:
            raise MqttProtocolError(f"CONNACK return code {code} is reserved (§3.2.2.3)")
        packet = Connack(bool(flags), code)
    elif kind == PacketType.PUBACK:
        packet = Puback(body.packet_id())
    elif kind == PacketType.SUBSCRIBE:
        pid = body.packet_id()
        topics = []
        while body.left():
            topic_filter = body.string("topic filter")
            qos = body.u8("requested QoS")
            if qos & 0xFC:
                raise MqttProtocolError(
                    "SUBSCRIBE requested QoS byte has reserved bits set [MQTT-3.8.3-4]"
                )
            if qos == 3:
                raise MqttProtocolError("SUBSCRIBE requested QoS 3 [MQTT-3.8.3-4]")
            topics.append((topic_filter, qos))
        if not topics:
            raise MqttProtocolError("SUBSCRIBE without a topic filter [MQTT-3.8.3-3]")
        packet = Subscribe(pid, tuple(topics))
    elif kind == PacketType.SUBACK:
        pid = body.packet_id()
        codes = tuple(buf[body.pos :])
        body.pos = len(buf)
        if not codes or any(c not in (0, 1, 2, 0x80) for c in codes):
            raise MqttProtocolError(f"SUBACK return codes {codes} (allowed: 0, 1, 2, 0x80)")
        packet = Suback(pid, codes)
    elif kind == PacketType.UNSUBSCRIBE:
        pid = body.packet_id()
        filters = []
        while body.left():
            filters.append(body.string("topic filter"))
        if not filters:
            raise MqttProtocolError("UNSUBSCRIBE without a topic filter [MQTT-3.10.3-2]")
        packet = Unsubscribe(pid, tuple(filters))
    elif kind == PacketType.UNSUBACK:
        packet = Unsuback(body.packet_id())
    elif kind == PacketType.PINGREQ:
        packet = PINGREQ
    elif kind == PacketType.PINGRESP:
        packet = PINGRESP
    else:
        packet = DISCONNECT
    body.end()
    return packet


def _decode_connect(body: _Body) -> Connect:
    name = body.string("protocol name")
    if name != _PROTOCOL_NAME:
        if name == "MQIsdp":  # MQTT 3.1: answer "unacceptable protocol version"
            raise MqttProtocolError("MQTT 3.1 (MQIsdp) is not supported", connack_code=1)
        raise MqttProtocolError(f"protocol name {name!r} is not 'MQTT' [MQTT-3.1.2-1]")
    level = body.u8("protocol level")
    if level != _PROTOCOL_LEVEL:
        raise MqttProtocolError(
            f"protocol level {level} is not supported: MQTT 3.1.1 is level 4 [MQTT-3.1.2-2]",
            connack_code=1,
        )
    flags = body.u8("connect flags")
    if flags & 0x01:
        raise MqttProtocolError("CONNECT reserved flag is not 0 [MQTT-3.1.2-3]")
    will_flag = bool(flags & 0x04)
    will_qos = (flags >> 3) & 3
    will_retain = bool(flags & 0x20)
    if not will_flag and (will_qos or will_retain):
        raise MqttProtocolError("Will QoS or retain set without a Will [MQTT-3.1.2-11, -13]")
    if will_qos == 3:
        raise MqttProtocolError("Will QoS 3 [MQTT-3.1.2-14]")
    if will_qos == 2:
        raise MqttProtocolError("Will QoS 2 is not supported: use QoS 0 or 1")
    if flags & 0x40 and not flags & 0x80:
        raise MqttProtocolError("password without a user name [MQTT-3.1.2-22]")
    keepalive = body.u16("keep alive")
    client_id = body.string("client identifier")
    will = None
    if will_flag:
        topic = body.string("Will topic")
        problem = topic_name_problem(topic)
        if problem:
            raise MqttProtocolError(f"Will topic: {problem}")
        will = Message(topic, body.binary("Will message"), will_qos, will_retain)
    username = body.string("user name") if flags & 0x80 else None
    password = body.binary("password") if flags & 0x40 else None
    body.end()
    return Connect(
        client_id=client_id,
        clean_session=bool(flags & 0x02),
        keepalive_s=keepalive,
        will=will,
        username=username,
        password=password,
    )
