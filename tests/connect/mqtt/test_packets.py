"""The MQTT 3.1.1 codec: round trips of every packet type, the streaming reader under any chunk
split, malformed input (only MqttProtocolError, never a hang), limits, topic rules.

Parse rate of the reader: ``python bench/mqtt.py`` (one JSON line; goal >= 200,000 packets/s of
2 KB QoS 0 PUBLISH on one core).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factory5g.connect.mqtt import MqttProtocolError
from factory5g.connect.mqtt.packets import (
    DISCONNECT,
    MAX_REMAINING_LENGTH,
    PINGREQ,
    PINGRESP,
    Connack,
    Connect,
    Message,
    Packet,
    PacketReader,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    decode,
    encode_remaining_length,
    topic_filter_problem,
    topic_matches,
    topic_name_problem,
)

# -- strategies ---------------------------------------------------------------------------------

level_chars = st.characters(exclude_characters="+#/\x00", exclude_categories=["Cs"])
level = st.text(level_chars, max_size=8)
topic_names = (
    st.lists(level, min_size=1, max_size=5).map("/".join).filter(lambda t: t != "")
).filter(lambda t: len(t.encode()) <= 0xFFFF)


@st.composite
def topic_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(st.one_of(level, st.just("+")), min_size=1, max_size=5))
    if draw(st.booleans()):
        levels.append("#")
    f = "/".join(levels)
    return f or "#"


texts = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]))
packet_ids = st.integers(1, 0xFFFF)
payloads = st.one_of(st.binary(max_size=64), st.binary(min_size=120, max_size=20_000))


@st.composite
def publishes(draw: st.DrawFn) -> Publish:
    qos = draw(st.sampled_from([0, 1]))
    return Publish(
        draw(topic_names),
        draw(payloads),
        qos,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,
        draw(packet_ids) if qos else 0,
    )


@st.composite
def connects(draw: st.DrawFn) -> Connect:
    will = None
    if draw(st.booleans()):
        will = Message(
            draw(topic_names),
            draw(st.binary(max_size=64)),
            draw(st.sampled_from([0, 1])),
            draw(st.booleans()),
        )
    username = draw(st.none() | texts.filter(lambda s: len(s.encode()) < 100))
    password = draw(st.none() | st.binary(max_size=32)) if username is not None else None
    return Connect(
        client_id=draw(texts.filter(lambda s: len(s.encode()) < 100)),
        clean_session=draw(st.booleans()),
        keepalive_s=draw(st.integers(0, 0xFFFF)),
        will=will,
        username=username,
        password=password,
    )


@st.composite
def connacks(draw: st.DrawFn) -> Connack:
    code = draw(st.integers(0, 5))
    return Connack(draw(st.booleans()) if code == 0 else False, code)


packets: st.SearchStrategy[Packet] = st.one_of(
    publishes(),
    connects(),
    connacks(),
    packet_ids.map(Puback),
    st.builds(
        Subscribe,
        packet_ids,
        st.lists(st.tuples(topic_filters(), st.integers(0, 2)), min_size=1, max_size=5).map(tuple),
    ),
    st.builds(
        Suback,
        packet_ids,
        st.lists(st.sampled_from([0, 1, 2, 0x80]), min_size=1, max_size=5).map(tuple),
    ),
    st.builds(
        Unsubscribe, packet_ids, st.lists(topic_filters(), min_size=1, max_size=5).map(tuple)
    ),
    packet_ids.map(Unsuback),
    st.sampled_from([PINGREQ, PINGRESP, DISCONNECT]),
)


# -- round trips --------------------------------------------------------------------------------


@given(packets)
def test_every_packet_type_round_trips(packet: Packet) -> None:
    assert decode(packet.encode()) == packet


@given(st.lists(packets, max_size=12), st.data())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_the_reader_yields_the_same_packets_under_any_chunk_split(
    sent: list[Packet], data: st.DataObject
) -> None:
    stream = b"".join(p.encode() for p in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    reader = PacketReader()
    got: list[Packet] = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += reader.feed(stream[a:b])
    assert got == sent
    assert reader.buffered == 0


def test_many_publishes_from_one_chunk_in_order() -> None:
    sent = [Publish(f"spBv1.0/g/DDATA/e/{i % 7}", bytes([i % 256]) * 2000) for i in range(100)]
    stream = b"".join(p.encode() for p in sent)
    reader = PacketReader()
    got = reader.feed(stream[:65536]) + reader.feed(stream[65536:])
    assert got == sent


def test_a_large_packet_in_small_chunks() -> None:
    big = Publish("big", bytes(range(256)) * 4096, 1, packet_id=9)  # 1 MiB
    data = big.encode()
    reader = PacketReader()
    got: list[Packet] = []
    for i in range(0, len(data), 1000):
        got += reader.feed(data[i : i + 1000])
        if i + 1000 < len(data):
            assert reader.buffered == i + 1000
    assert got == [big]


# -- remaining length ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_151, b"\xff\xff\x7f"),
        (2_097_152, b"\x80\x80\x80\x01"),
        (MAX_REMAINING_LENGTH, b"\xff\xff\xff\x7f"),
    ],
)
def test_remaining_length_boundaries(n: int, encoded: bytes) -> None:
    # §2.2.3, Table 2.4 - Size of Remaining Length field.
    assert encode_remaining_length(n) == encoded
    if n >= 3 and n <= 2_097_152:  # a PUBLISH of exactly that remaining length decodes
        p = Publish("t", bytes(n - 3))
        assert p.encode()[1 : 1 + len(encoded)] == encoded
        assert decode(p.encode(), max_packet_bytes=n + 5) == p
    if n:  # the fixed header alone: the reader waits for the n bytes that follow
        reader = PacketReader(max_packet_bytes=MAX_REMAINING_LENGTH + 5)
        assert reader.feed(b"\x30" + encoded) == []
        assert reader.buffered == 1 + len(encoded)


@pytest.mark.parametrize("n", [-1, MAX_REMAINING_LENGTH + 1])
def test_remaining_length_out_of_range_is_refused(n: int) -> None:
    with pytest.raises(ValueError, match="remaining length"):
        encode_remaining_length(n)


def test_a_fifth_length_byte_is_an_error() -> None:
    with pytest.raises(MqttProtocolError, match="more than 4 bytes"):
        PacketReader(max_packet_bytes=1 << 30).feed(b"\x30\xff\xff\xff\xff")


def test_oversized_packet_is_refused_at_its_header() -> None:
    reader = PacketReader(max_packet_bytes=1000)
    header = Publish("t", bytes(2000)).encode()[:3]  # the body never needs to arrive
    with pytest.raises(MqttProtocolError, match="exceeds the limit of 1000 bytes"):
        reader.feed(header)
    with pytest.raises(MqttProtocolError, match="exceeds"):  # and stays refused
        reader.feed(b"")


# -- malformed input ----------------------------------------------------------------------------

MALFORMED = [
    ("reserved type 0", b"\x00\x00", "reserved"),
    ("reserved type 15", b"\xf0\x00", "reserved"),
    ("PUBREC", b"\x50\x02\x00\x01", "QoS 2 is not supported: PUBREC"),
    ("PUBREL", b"\x62\x02\x00\x01", "QoS 2 is not supported: PUBREL"),
    ("PUBCOMP", b"\x70\x02\x00\x01", "QoS 2 is not supported: PUBCOMP"),
    ("QoS 2 PUBLISH", b"\x34\x05\x00\x01a\x00\x01", "QoS 2 PUBLISH is not supported"),
    ("QoS 3 PUBLISH", b"\x36\x05\x00\x01a\x00\x01", "MQTT-3.3.1-4"),
    ("DUP on QoS 0", b"\x38\x03\x00\x01a", "MQTT-3.3.1-2"),
    ("packet id 0", b"\x32\x05\x00\x01a\x00\x00", "MQTT-2.3.1-1"),
    ("PUBLISH too short", b"\x30\x01\x00", "too short"),
    ("topic past the end", b"\x30\x03\x00\x05a", "past the end"),
    ("no packet id", b"\x32\x03\x00\x01a", "packet identifier"),
    ("empty topic", b"\x30\x02\x00\x00", "MQTT-4.7.3-1"),
    ("wildcard topic", b"\x30\x03\x00\x01+", "MQTT-3.3.2-2"),
    ("NUL in topic", b"\x30\x03\x00\x01\x00", "U+0000"),
    ("bad UTF-8 topic", b"\x30\x04\x00\x02\xc3\x28", "UTF-8"),
    ("surrogate in topic", b"\x30\x05\x00\x03\xed\xa0\x80", "UTF-8"),
    ("PUBACK flags", b"\x41\x02\x00\x01", "MQTT-2.2.2-2"),
    ("SUBSCRIBE flags", b"\x80\x06\x00\x01\x00\x01a\x00", "MQTT-2.2.2-2"),
    ("PUBACK long", b"\x40\x03\x00\x01\x00", "trailing"),
    ("PUBACK short", b"\x40\x01\x00", "packet identifier"),
    ("PINGREQ body", b"\xc0\x01\x00", "trailing"),
    ("empty SUBSCRIBE", b"\x82\x02\x00\x01", "MQTT-3.8.3-3"),
    ("SUBSCRIBE QoS 3", b"\x82\x06\x00\x01\x00\x01a\x03", "QoS 3"),
    ("SUBSCRIBE reserved", b"\x82\x06\x00\x01\x00\x01a\x04", "MQTT-3.8.3-4"),
    ("SUBSCRIBE no QoS", b"\x82\x05\x00\x01\x00\x01a", "requested QoS"),
    ("empty UNSUBSCRIBE", b"\xa2\x02\x00\x01", "MQTT-3.10.3-2"),
    ("SUBACK code", b"\x90\x03\x00\x01\x03", "SUBACK return codes"),
    ("empty SUBACK", b"\x90\x02\x00\x01", "SUBACK return codes"),
    ("CONNACK flags", b"\x20\x02\x02\x00", "reserved flags"),
    ("CONNACK code", b"\x20\x02\x00\x06", "reserved"),
    ("CONNECT name", b"\x10\x0c\x00\x04MQTX\x04\x02\x00\x3c\x00\x00", "MQTT-3.1.2-1"),
    ("CONNECT level", b"\x10\x0c\x00\x04MQTT\x05\x02\x00\x3c\x00\x00", "MQTT-3.1.2-2"),
    ("CONNECT reserved", b"\x10\x0c\x00\x04MQTT\x04\x03\x00\x3c\x00\x00", "MQTT-3.1.2-3"),
    ("CONNECT will QoS", b"\x10\x0c\x00\x04MQTT\x04\x0a\x00\x3c\x00\x00", "MQTT-3.1.2-11"),
    ("CONNECT will QoS 3", b"\x10\x0c\x00\x04MQTT\x04\x1e\x00\x3c\x00\x00", "MQTT-3.1.2-14"),
    ("CONNECT password", b"\x10\x0c\x00\x04MQTT\x04\x42\x00\x3c\x00\x00", "MQTT-3.1.2-22"),
    ("CONNECT truncated", b"\x10\x0a\x00\x04MQTT\x04\x02\x00\x3c", "client identifier"),
    ("CONNECT NUL id", b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01\x00", "U+0000"),
]


@pytest.mark.parametrize(("what", "data", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_packets_raise_with_a_reason(what: str, data: bytes, reason: str) -> None:
    with pytest.raises(MqttProtocolError) as e:
        PacketReader().feed(data)
    assert reason in e.value.reason


def test_mqtt_3_1_and_bad_levels_ask_for_connack_1() -> None:
    mqisdp = b"\x10\x0e\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x00"
    level5 = b"\x10\x0c\x00\x04MQTT\x05\x02\x00\x3c\x00\x00"
    for data in (mqisdp, level5):
        with pytest.raises(MqttProtocolError) as e:
            decode(data)
        assert e.value.connack_code == 1  # [MQTT-3.1.2-2]


def outcome(data: bytes) -> list[Packet] | MqttProtocolError:
    """What the reader makes of ``data``: packets, or the protocol error (nothing else)."""
    try:
        return PacketReader(max_packet_bytes=1 << 16).feed(data)
    except MqttProtocolError as e:
        return e


@given(st.binary(max_size=300))
def test_random_bytes_give_packets_or_a_protocol_error(data: bytes) -> None:
    result = outcome(data)
    assert isinstance(result, list) or result.reason


@given(packets, st.data())
def test_corrupted_packets_give_packets_or_a_protocol_error(
    packet: Packet, data: st.DataObject
) -> None:
    raw = bytearray(packet.encode())
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    result = outcome(bytes(raw))
    assert isinstance(result, list) or result.reason


def test_decode_wants_exactly_one_packet() -> None:
    with pytest.raises(MqttProtocolError, match="exactly one packet"):
        decode(PINGREQ.encode() * 2)
    with pytest.raises(MqttProtocolError, match="exactly one packet"):
        decode(PINGREQ.encode()[:1])


# -- encoding refuses bad arguments -------------------------------------------------------------


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (Publish("a/#", b""), "wildcard"),
        (Publish("", b""), "at least one character"),
        (Publish("a", b"", 2, packet_id=1), "QoS 2 is not supported"),
        (Publish("a", b"", 1), "packet identifier 0"),
        (Publish("a", b"", 0, dup=True), "neither DUP"),
        (Publish("a", b"", 0, packet_id=3), "neither DUP"),
        (Puback(0x10000), "outside 1..65535"),
        (Subscribe(1, ()), "at least one"),
        (Subscribe(1, (("a/#/b", 0),)), "whole last level"),
        (Subscribe(1, (("a", 3),)), "not 0, 1 or 2"),
        (Suback(1, (3,)), "allowed"),
        (Unsubscribe(1, ()), "at least one"),
        (Connack(False, 6), "reserved"),
        (Connect(client_id="c", password=b"p"), "MQTT-3.1.2-22"),
        (Connect(client_id="c", keepalive_s=70_000), "keep alive"),
        (Connect(client_id="c", will=Message("w", b"", 2)), "Will QoS 2"),
        (Connect(client_id="a\x00"), "U+0000"),
        (Connect(client_id="x" * 70_000), "more than 65535"),
    ],
)
def test_encoding_refuses_what_the_standard_forbids(packet: Packet, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        packet.encode()


def test_a_refused_connack_never_claims_a_session() -> None:
    assert decode(Connack(True, 5).encode()) == Connack(False, 5)  # [MQTT-3.2.2-4]


# -- topics -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("sport/tennis/player1/#", "sport/tennis/player1", True),  # §4.7.1.2 examples
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
        ("sport/#", "sport", True),
        ("#", "anything/at/all", True),
        ("sport/tennis/+", "sport/tennis/player1", True),  # §4.7.1.3 examples
        ("sport/tennis/+", "sport/tennis/player1/ranking", False),
        ("sport/+", "sport", False),
        ("sport/+", "sport/", True),
        ("+/+", "/finance", True),
        ("/+", "/finance", True),
        ("+", "/finance", False),
        ("#", "$SYS/broker", False),  # §4.7.2 [MQTT-4.7.2-1]
        ("+/monitor/Clients", "$SYS/monitor/Clients", False),
        ("$SYS/#", "$SYS/monitor/Clients", True),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
        ("a/b", "a/b", True),
        ("a/b", "a/b/", False),
        ("A/b", "a/b", False),
    ],
)
def test_topic_matching_follows_the_standard_examples(
    topic_filter: str, topic: str, matches: bool
) -> None:
    assert topic_filter_problem(topic_filter) is None
    assert topic_matches(topic_filter, topic) is matches


def reference_match(topic_filter: str, topic: str) -> bool:
    """The same rules as a regular expression, written independently."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    pattern = ""
    for i, lv in enumerate(topic_filter.split("/")):
        sep = "/" if i else ""
        if lv == "#":
            pattern = f"{pattern}(?:{sep}.*)?" if i else ".*"
            break
        pattern += sep + ("[^/]*" if lv == "+" else re.escape(lv))
    return re.fullmatch(pattern, topic, flags=re.DOTALL) is not None


@given(topic_filters(), topic_names)
def test_topic_matching_agrees_with_a_regex_reference(topic_filter: str, topic: str) -> None:
    assert topic_matches(topic_filter, topic) is reference_match(topic_filter, topic)


@given(topic_names)
def test_a_topic_matches_itself_and_hash(topic: str) -> None:
    assert topic_matches(topic, topic)
    assert topic_matches("#", topic) is not topic.startswith("$")


@pytest.mark.parametrize(
    ("topic_filter", "problem"),
    [
        ("", "MQTT-4.7.3-1"),
        ("a/#/b", "MQTT-4.7.1-2"),
        ("a#", "MQTT-4.7.1-2"),
        ("a/b+", "MQTT-4.7.1-3"),
        ("+a", "MQTT-4.7.1-3"),
        ("a\x00", "MQTT-4.7.3-2"),
        ("x" * 70_000, "MQTT-4.7.3-3"),
    ],
)
def test_invalid_topic_filters(topic_filter: str, problem: str) -> None:
    assert problem in (topic_filter_problem(topic_filter) or "")


@pytest.mark.parametrize(
    ("topic", "problem"),
    [
        ("", "MQTT-4.7.3-1"),
        ("a/+", "MQTT-3.3.2-2"),
        ("#", "MQTT-3.3.2-2"),
        ("a\x00", "MQTT-4.7.3-2"),
        ("é" * 40_000, "MQTT-4.7.3-3"),
    ],
)
def test_invalid_topic_names(topic: str, problem: str) -> None:
    assert problem in (topic_name_problem(topic) or "")
    assert topic_name_problem("spBv1.0/group/NBIRTH/edge") is None
