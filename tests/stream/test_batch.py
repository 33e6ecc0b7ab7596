"""Batch: construction, selection, last value per signal and the self-checking wire format."""

from __future__ import annotations

import contextlib
import json
import struct
import time
import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from factory5g.stream import (
    Batch,
    BatchDecodeError,
    BatchError,
    Event,
    Quality,
    StreamError,
    now_ns,
)

HEADER = struct.Struct("<4sBBxxIII")  # magic, version, samples, events, crc32
SAMPLE_BYTES = 4 + 8 + 8 + 1

DTYPES = {"signal": np.int32, "ts": np.int64, "value": np.float64, "quality": np.uint8}


def columns(n: int = 3) -> dict[str, np.ndarray[Any, Any]]:
    return {
        "signal": np.arange(n, dtype=np.int32),
        "ts": np.arange(n, dtype=np.int64) * 1_000,
        "value": np.linspace(0.0, 1.0, n),
        "quality": np.full(n, Quality.GOOD, dtype=np.uint8),
    }


# -- construction -------------------------------------------------------------------------------


def test_direct_construction_with_the_right_dtypes() -> None:
    cols = columns()
    b = Batch(**cols)
    assert len(b) == 3
    assert b.events == ()
    assert b.nbytes == 3 * SAMPLE_BYTES
    assert repr(b) == "Batch(samples=3, events=0)"


@pytest.mark.parametrize("name", list(DTYPES))
def test_wrong_dtype_is_refused(name: str) -> None:
    cols = columns()
    cols[name] = cols[name].astype(np.float32 if name != "value" else np.int64)
    with pytest.raises(BatchError, match=rf"column '{name}' has dtype"):
        Batch(**cols)


def test_big_endian_column_is_a_wrong_dtype() -> None:
    cols = columns()
    cols["ts"] = cols["ts"].astype(">i8")
    with pytest.raises(BatchError, match="column 'ts' has dtype"):
        Batch(**cols)


@pytest.mark.parametrize("name", list(DTYPES))
def test_two_dimensional_column_is_refused(name: str) -> None:
    cols = columns(4)
    cols[name] = cols[name].reshape(2, 2)
    with pytest.raises(BatchError, match=rf"column '{name}' must be one-dimensional"):
        Batch(**cols)


@pytest.mark.parametrize("name", ["ts", "value", "quality"])
def test_columns_of_different_lengths_are_refused(name: str) -> None:
    cols = columns(3)
    cols[name] = cols[name][:2]
    with pytest.raises(BatchError, match=rf"signal has 3, {name} has 2"):
        Batch(**cols)


def test_error_tree() -> None:
    assert issubclass(BatchDecodeError, BatchError)
    assert issubclass(BatchError, StreamError)
    assert issubclass(BatchError, ValueError)
    err = BatchError("why")
    assert err.reason == "why"


def test_of_converts_and_broadcasts() -> None:
    b = Batch.of([1, 2, 3], 1_000, [0.5, 1.5, 2.5])
    assert b.signal.dtype == np.int32
    assert b.signal.tolist() == [1, 2, 3]
    assert b.ts.dtype == np.int64
    assert b.ts.tolist() == [1_000] * 3
    assert b.value.dtype == np.float64
    assert b.quality.dtype == np.uint8
    assert b.quality.tolist() == [Quality.GOOD] * 3
    for col in (b.signal, b.ts, b.value, b.quality):
        assert col.flags.c_contiguous


def test_of_scalar_signal_makes_one_sample() -> None:
    b = Batch.of(7, 5, 2.0, Quality.UNCERTAIN)
    assert (b.signal.tolist(), b.ts.tolist(), b.value.tolist(), b.quality.tolist()) == (
        [7],
        [5],
        [2.0],
        [Quality.UNCERTAIN],
    )


def test_of_per_sample_quality_and_events() -> None:
    events = [Event(1, 5, "coil 4711"), Event(2, 6, {"a": [1, 2]})]
    b = Batch.of([1, 2], [5, 6], 0.0, [Quality.GOOD, Quality.BAD], iter(events))
    assert b.quality.tolist() == [Quality.GOOD, Quality.BAD]
    assert b.events == tuple(events)


@pytest.mark.parametrize(
    "args",
    [
        ([1, 2, 3], [1, 2], 0.0),  # ts too short
        ([1, 2], 0, [1.0, 2.0, 3.0]),  # value too long
        ([1, 2], 0, 0.0, [Quality.GOOD] * 3),  # quality too long
        ([[1, 2]], 0, 0.0),  # two-dimensional signal
        ([1, 2], 0, 0.0, 300),  # quality is one byte
        ([2**40], 0, 0.0),  # signal ids are int32
    ],
)
def test_of_refuses_columns_that_do_not_fit(args: tuple[Any, ...]) -> None:
    with pytest.raises(BatchError):
        Batch.of(*args)


def test_empty_and_equals() -> None:
    e = Batch.empty()
    assert len(e) == 0
    assert e.events == ()
    for name, dtype in DTYPES.items():
        assert getattr(e, name).dtype == dtype
    a = Batch.of([1, 2], [3, 4], [np.nan, 1.0])
    assert a.equals(Batch.of([1, 2], [3, 4], [np.nan, 1.0]))  # NaN equals NaN here
    assert not a.equals(Batch.of([1, 2], [3, 4], [np.nan, 2.0]))
    assert not a.equals(Batch.of([1, 2], [3, 5], [np.nan, 1.0]))
    assert not a.equals(Batch.of([1, 2], [3, 4], [np.nan, 1.0], Quality.BAD))
    assert not a.equals(Batch.of([1, 2], [3, 4], [np.nan, 1.0], events=[Event(1, 3, "x")]))
    assert not a.equals(e)


def test_quality_is_usable() -> None:
    q = np.array([q.value for q in Quality], dtype=np.uint8)
    usable = dict(zip([q.name for q in Quality], Quality.is_usable(q).tolist(), strict=True))
    assert usable == {
        "BAD": False,
        "BAD_NOT_CONNECTED": False,
        "BAD_STALE": False,
        "BAD_COMM_FAILURE": False,
        "UNCERTAIN": True,
        "UNCERTAIN_LAST_USABLE": True,
        "GOOD": True,
    }


def test_now_ns_is_wall_clock_nanoseconds() -> None:
    before = time.time_ns()
    t = now_ns()
    assert before <= t <= time.time_ns()


# -- concat, take, for_signals ------------------------------------------------------------------


def test_concat() -> None:
    a = Batch.of([1, 2], [10, 20], [1.0, 2.0], events=[Event(1, 10, "a")])
    b = Batch.of([3], [30], [3.0], Quality.BAD, events=[Event(3, 30, "b")])
    c = Batch.concat([a, Batch.empty(), b])
    assert c.signal.tolist() == [1, 2, 3]
    assert c.ts.tolist() == [10, 20, 30]
    assert c.value.tolist() == [1.0, 2.0, 3.0]
    assert c.quality.tolist() == [Quality.GOOD, Quality.GOOD, Quality.BAD]
    assert c.events == (Event(1, 10, "a"), Event(3, 30, "b"))
    assert Batch.concat([a]) is a
    assert Batch.concat([]).equals(Batch.empty())


def test_take_by_mask_and_by_index() -> None:
    b = Batch.of([1, 2, 3, 4], [10, 20, 30, 40], [1.0, 2.0, 3.0, 4.0], events=[Event(9, 1, "kept")])
    m = b.take(b.value > 2.5)
    assert m.signal.tolist() == [3, 4]
    assert m.ts.tolist() == [30, 40]
    assert m.events == b.events  # events are kept whole
    i = b.take(np.array([3, 0, 0], dtype=np.intp))
    assert i.signal.tolist() == [4, 1, 1]
    assert i.value.tolist() == [4.0, 1.0, 1.0]


@pytest.mark.parametrize("wanted", [[2, 4], np.array([4, 2], dtype=np.int32), (2, 4, 99)])
def test_for_signals(wanted: Any) -> None:
    events = [Event(2, 1, "two"), Event(3, 1, "three"), Event(4, 2, {"x": 1})]
    b = Batch.of([1, 2, 3, 4, 2], [1, 2, 3, 4, 5], [1.0, 2.0, 3.0, 4.0, 5.0], events=events)
    f = b.for_signals(wanted)
    assert f.signal.tolist() == [2, 4, 2]
    assert f.ts.tolist() == [2, 4, 5]
    assert f.events == (events[0], events[2])


def test_for_no_signals() -> None:
    b = Batch.of([1, 2], 0, 0.0, events=[Event(1, 0, "x")])
    f = b.for_signals([])
    assert len(f) == 0
    assert f.events == ()


# -- last value per signal vs a brute-force reference --------------------------------------------


@st.composite
def small_batches(draw: st.DrawFn) -> Batch:
    n = draw(st.integers(0, 40))
    sig = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    ts = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))  # many ties
    q = draw(st.lists(st.sampled_from(list(Quality)), min_size=n, max_size=n))
    # the value is the row number: it tells which row was picked
    return Batch.of(np.array(sig, dtype=np.int32), ts, np.arange(n, dtype=np.float64), q)


@settings(max_examples=200)
@given(small_batches())
def test_last_per_signal_matches_brute_force(b: Batch) -> None:
    best: dict[int, int] = {}  # signal -> row
    for row in range(len(b)):
        s, t = int(b.signal[row]), int(b.ts[row])
        if s not in best or t >= int(b.ts[best[s]]):  # greatest ts, the later row wins ties
            best[s] = row
    rows = [best[s] for s in sorted(best)]
    last = b.last_per_signal()
    assert last.signal.tolist() == sorted(best)
    assert last.value.tolist() == [float(r) for r in rows]
    assert last.ts.tolist() == [int(b.ts[r]) for r in rows]
    assert last.quality.tolist() == [int(b.quality[r]) for r in rows]


def test_last_per_signal_of_empty_batch() -> None:
    assert len(Batch.empty().last_per_signal()) == 0


# -- wire format --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=10,
)
event_data = st.one_of(
    st.text(),  # any unicode, including "\n", "\u2028" and lone surrogates are excluded by st.text
    st.dictionaries(st.text(), json_values, max_size=4),
    st.lists(json_values, max_size=4),
)
events = st.builds(
    Event, st.integers(-(2**31), 2**31 - 1), st.integers(-(2**63), 2**63 - 1), event_data
)


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    n = draw(st.integers(0, 30))
    return Batch(
        draw(hnp.arrays(np.int32, n)),
        draw(hnp.arrays(np.int64, n)),
        draw(hnp.arrays(np.float64, n, elements=st.floats(allow_nan=True, allow_infinity=True))),
        draw(hnp.arrays(np.uint8, n)),
        tuple(draw(st.lists(events, max_size=4))),
    )


@settings(max_examples=150)
@given(batches(), st.sampled_from([bytes, bytearray, memoryview]))
def test_round_trip(b: Batch, wrap: Any) -> None:
    frame = b.to_bytes()
    assert len(frame) >= HEADER.size + len(b) * SAMPLE_BYTES
    back = Batch.from_bytes(wrap(frame))
    assert back.equals(b)
    # NaN payloads and -0.0 too, bit for bit
    assert back.value.tobytes() == b.value.tobytes()
    for name, dtype in DTYPES.items():
        assert getattr(back, name).dtype == dtype


def test_round_trip_of_special_values() -> None:
    b = Batch.of(
        [0, -(2**31), 2**31 - 1, 5],
        [0, -(2**63), 2**63 - 1, 1],
        [np.nan, np.inf, -np.inf, -0.0],
        [0, 255, 0x40, 0xC0],
        [
            Event(1, 2, "Zunder\nschicht ° 轧机 \u2028"),
            Event(3, 4, {"é": [1, 2.5, None, True]}),
            Event(5, 6, []),
        ],
    )
    back = Batch.from_bytes(b.to_bytes())
    assert back.equals(b)
    assert np.signbit(back.value[3])


def test_decoded_columns_do_not_alias_the_frame() -> None:
    frame = bytearray(Batch.of([1, 2], [3, 4], [5.0, 6.0]).to_bytes())
    back = Batch.from_bytes(frame)
    frame[HEADER.size :] = bytes(len(frame) - HEADER.size)
    assert back.signal.tolist() == [1, 2]
    assert back.value.tolist() == [5.0, 6.0]
    back.value[0] = 9.0  # writable, ours


def test_empty_batch_frame_is_just_a_header() -> None:
    frame = Batch.empty().to_bytes()
    assert len(frame) == HEADER.size
    assert Batch.from_bytes(frame).equals(Batch.empty())


# -- corrupt frames -----------------------------------------------------------------------------

SAMPLE = Batch.of(
    [1, 2, 3], [10, 20, 30], [1.5, np.nan, -2.0], events=[Event(1, 10, "a"), Event(2, 20, {"k": 1})]
)


def frame(
    body: bytes,
    n: int,
    n_events: int,
    *,
    magic: bytes = b"F5GB",
    version: int = 1,
    crc: int | None = None,
) -> bytes:
    """A frame with a correct checksum unless told otherwise (CRC over version, counts, body)."""
    if crc is None:
        crc = zlib.crc32(body, zlib.crc32(struct.pack("<BBII", version, 0, n, n_events)))
    return HEADER.pack(magic, version, 0, n, n_events, crc) + body


def body_of(b: Batch) -> bytes:
    return b.to_bytes()[HEADER.size :]


@settings(max_examples=100)
@given(st.data())
def test_every_truncation_is_refused(data: st.DataObject) -> None:
    full = SAMPLE.to_bytes()
    cut = data.draw(st.integers(0, len(full) - 1))
    with pytest.raises(BatchDecodeError):
        Batch.from_bytes(full[:cut])


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (0, "shorter than the header"),
        (HEADER.size - 1, "shorter than the header"),
        (HEADER.size, "announces 3 samples"),
        (HEADER.size + 3 * SAMPLE_BYTES - 1, "announces 3 samples"),
        (HEADER.size + 3 * SAMPLE_BYTES, "checksum mismatch"),
    ],
)
def test_truncation_messages(cut: int, message: str) -> None:
    with pytest.raises(BatchDecodeError, match=message):
        Batch.from_bytes(SAMPLE.to_bytes()[:cut])


def test_bad_magic() -> None:
    bad = b"F5GX" + SAMPLE.to_bytes()[4:]
    with pytest.raises(BatchDecodeError, match="bad magic b'F5GX'"):
        Batch.from_bytes(bad)


def test_bad_version() -> None:
    bad = frame(body_of(SAMPLE), 3, 2, version=2)
    with pytest.raises(BatchDecodeError, match="unsupported version 2"):
        Batch.from_bytes(bad)


@settings(max_examples=100)
@given(st.data())
def test_any_changed_body_byte_fails_the_checksum(data: st.DataObject) -> None:
    good = bytearray(SAMPLE.to_bytes())
    at = data.draw(st.integers(HEADER.size, len(good) - 1))
    good[at] ^= data.draw(st.integers(1, 255))
    with pytest.raises(BatchDecodeError, match="checksum mismatch"):
        Batch.from_bytes(good)


def test_changed_checksum_field_fails_the_checksum() -> None:
    good = bytearray(SAMPLE.to_bytes())
    good[HEADER.size - 1] ^= 0x01
    with pytest.raises(BatchDecodeError, match="checksum mismatch"):
        Batch.from_bytes(good)


def test_trailing_bytes() -> None:
    plain = Batch.of([1, 2], 0, 0.0)
    with pytest.raises(BatchDecodeError, match="checksum mismatch"):
        Batch.from_bytes(plain.to_bytes() + b"\x00")
    # even when the checksum covers them
    with pytest.raises(BatchDecodeError, match="1 trailing bytes"):
        Batch.from_bytes(frame(body_of(plain) + b"\x00", 2, 0))


def test_event_count_must_match() -> None:
    with pytest.raises(BatchDecodeError, match="announces 3 events, holds 2"):
        Batch.from_bytes(frame(body_of(SAMPLE), 3, 3))
    with pytest.raises(BatchDecodeError, match="announces 1 events, holds 2"):
        Batch.from_bytes(frame(body_of(SAMPLE), 3, 1))


@pytest.mark.parametrize(
    "line",
    [
        b"{not json",
        b"",
        b"\xff\xfe\x00",  # not UTF-8
        b"5",  # not a triple
        b"[1, 2]",
        b'[1, 2, "x", 4]',
        b'["a", 2, "x"]',  # signal is not an integer
        b'[null, 2, "x"]',
        b'[1.5, 2, "x"]',
        b'[true, 2, "x"]',
        b'[1, "2", "x"]',  # ts is not an integer
        b"[1, 2, 3]",  # data is neither a string, an object nor an array
        b"[1, 2, null]",
        b"[1, 2, " + b"[" * 100_000 + b"]" * 100_000 + b"]",  # absurd nesting
    ],
)
def test_bad_event_json(line: bytes) -> None:
    columns_only = body_of(Batch.of([1], [2], [3.0]))
    with pytest.raises(BatchDecodeError, match="bad event"):
        Batch.from_bytes(frame(columns_only + line, 1, 1))


def test_event_lines_are_json() -> None:
    """The event side channel is one JSON line per event: tools may read it without numpy."""
    body = body_of(SAMPLE)
    lines = body[3 * SAMPLE_BYTES :].split(b"\n")
    assert [json.loads(x) for x in lines] == [[1, 10, "a"], [2, 20, {"k": 1}]]


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_refused_or_decoded(data: bytes) -> None:
    with contextlib.suppress(BatchDecodeError):
        Batch.from_bytes(data)


@settings(max_examples=200)
@given(st.integers(0, 8), st.integers(0, 4), st.binary(max_size=300))
def test_arbitrary_body_with_a_valid_checksum_is_refused_or_decoded(
    n: int, n_events: int, body: bytes
) -> None:
    try:
        b = Batch.from_bytes(frame(body, n, n_events))
    except BatchDecodeError:
        return
    assert len(b) == n
    assert len(b.events) == n_events


def test_a_changed_sample_count_in_the_header_is_caught() -> None:
    import struct

    frame = bytearray(Batch.of([1, 2], [10, 20], [1.0, 2.0]).to_bytes())
    struct.pack_into("<I", frame, 8, 1)  # n: 2 -> 1 (after magic, version, flags, padding)
    with pytest.raises(BatchDecodeError, match="checksum"):
        Batch.from_bytes(bytes(frame))


def test_fractional_signal_ids_are_refused() -> None:
    with pytest.raises(BatchError, match="integers"):
        Batch.of([1.7], [0], [0.0])
    assert Batch.of([2.0], [0], [0.0]).signal.tolist() == [2]


def test_historical_flag_round_trips_and_refuses_to_mix() -> None:
    past = Batch.of([1], [5], [2.0], historical=True)
    assert Batch.from_bytes(past.to_bytes()).historical is True
    assert Batch.from_bytes(Batch.of([1], [5], [2.0]).to_bytes()).historical is False
    assert Batch.concat([past, past]).historical is True
    with pytest.raises(BatchError, match="historical"):
        Batch.concat([past, Batch.of([1], [6], [3.0])])
