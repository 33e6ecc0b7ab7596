"""fastdecode: numba kernels == pure-Python fallback == payload.py, on good and malformed input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factory5g.connect.sparkplug import fastdecode
from factory5g.connect.sparkplug.errors import SparkplugDecodeError
from factory5g.connect.sparkplug.fastdecode import (
    COMPLEX,
    HAS_VALUE,
    IS_HISTORICAL,
    IS_NULL,
    IS_TRANSIENT,
    DataColumns,
    Status,
    concat,
    decode_buffer,
    decode_messages,
    join_payloads,
)
from factory5g.connect.sparkplug.payload import (
    DataSet,
    DataType,
    Extension,
    MetaData,
    Metric,
    Payload,
    PropertySet,
    PropertyValue,
    Template,
    decode_payload,
    encode_payload,
)
from tests.connect.sparkplug.test_payload import canon, decode_error, scalar_values, varint

D = DataType
NUMERIC_TYPES = [*range(1, 12), 13]  # Int8..Boolean, DateTime
SIGNED_BITS = {D.Int8: 8, D.Int16: 16, D.Int32: 32, D.Int64: 64}
COLUMNS = [f.name for f in fields(DataColumns)]


@pytest.fixture(scope="module", autouse=True)
def _compiled() -> None:
    fastdecode.warm_up()  # compile, or load from numba's cache, once for the module
    assert fastdecode.jit_enabled()


# -- strategies -----------------------------------------------------------------------------------

timestamps = (
    st.none() | st.integers(0, 2**63 - 1) | st.sampled_from([1_700_000_000_000, 2**63, 2**64 - 1])
)
aliases = st.none() | st.integers(0, 2**63 - 1) | st.sampled_from([0, 1, 2**63, 2**64 - 1])


@st.composite
def numeric_metrics(draw: st.DrawFn) -> Metric:
    dt = D(draw(st.sampled_from(NUMERIC_TYPES)))
    value = draw(scalar_values(dt))
    if draw(st.booleans()):
        datatype: int | None = dt
    else:  # DATA may omit the datatype: the wire then holds the unsigned two's complement
        datatype = None
        if dt in SIGNED_BITS:
            value %= 1 << SIGNED_BITS[dt]
    return Metric(
        alias=draw(aliases),
        name=draw(st.none() | st.text(max_size=6)),
        timestamp=draw(timestamps),
        datatype=datatype,
        value=value,
        is_historical=draw(st.booleans()),
        is_transient=draw(st.booleans()),
    )


@st.composite
def other_metrics(draw: st.DrawFn) -> Metric:
    """Null, complex and decorated metrics, as a DATA message may carry them too."""
    kind = draw(st.sampled_from(["null", "string", "bytes", "array", "dataset", "template", "ext"]))
    alias = draw(aliases)
    ts = draw(timestamps)
    if kind == "null":
        dt = draw(st.sampled_from([*NUMERIC_TYPES, D.String, D.DataSet]))
        return Metric(alias=alias, timestamp=ts, datatype=dt, is_null=True)
    value: Any = {
        "string": draw(st.text(max_size=8)),
        "bytes": draw(st.binary(max_size=8)),
        "array": draw(st.binary(max_size=8)),
        "dataset": DataSet(columns=("a",), types=(D.Int8,), rows=((-1,), (None,))),
        "template": Template(metrics=(Metric.for_value("m", D.Int16, -5),), template_ref="T"),
        "ext": Extension(b"\x08\x01"),
    }[kind]
    dt = {"string": D.Text, "bytes": D.Bytes, "array": D.Int32Array, "dataset": D.DataSet}.get(
        kind, D.Template if kind == "template" else None
    )
    return Metric(
        alias=alias,
        timestamp=ts,
        datatype=draw(st.sampled_from([dt, None])) if kind != "ext" else None,
        value=value,
        is_historical=draw(st.booleans()),
        properties=draw(
            st.none()
            | st.just(PropertySet(keys=("Quality",), values=(PropertyValue(type=3, value=192),)))
        ),
        metadata=draw(st.none() | st.just(MetaData(content_type="x", size=3))),
    )


data_payloads = st.builds(
    Payload,
    timestamp=timestamps,
    seq=st.none() | st.integers(0, 255),
    metrics=st.lists(numeric_metrics() | other_metrics(), max_size=6).map(tuple),
    uuid=st.none() | st.just("u"),
    body=st.none() | st.just(b"\x00\x01"),
)


# -- the oracle: payload.py -----------------------------------------------------------------------


def signed64(v: int | None) -> int:
    if v is None:
        return -1
    return v - (1 << 64) if v >= 1 << 63 else v


def assert_same_columns(a: DataColumns, b: DataColumns) -> None:
    for name in COLUMNS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name


def assert_matches_payload_py(cols: DataColumns, raws: list[bytes]) -> None:
    """Every payload payload.py decodes has status 0 and exactly its metrics as rows."""
    assert cols.n_payloads == len(raws)
    assert cols.row_start[0] == 0
    assert cols.row_start[-1] == len(cols)
    for p, raw in enumerate(raws):
        if decode_error(raw) is not None:
            continue  # fastdecode may accept what only the full decoder checks (names, nesting)
        payload = decode_payload(raw)
        assert cols.status[p] == Status.OK
        assert cols.seq[p] == signed64(payload.seq)
        assert cols.payload_ts_ms[p] == signed64(payload.timestamp)
        rows = range(*cols.rows_of(p).indices(len(cols)))
        assert len(rows) == len(payload.metrics)
        for r, m in zip(rows, payload.metrics, strict=True):
            assert cols.msg[r] == p
            assert cols.alias[r] == signed64(m.alias)
            assert cols.name(r) == m.name
            ts = signed64(m.timestamp)
            assert cols.ts_ms[r] == (ts if ts != -1 else signed64(payload.timestamp))
            dt = m.datatype or 0
            assert cols.datatype[r] == min(dt, 255)
            complex_ = (
                dt == D.String
                or dt >= D.Text
                or isinstance(m.value, str | bytes | DataSet | Template | Extension)
            )
            flags = (
                IS_NULL * m.is_null
                | IS_HISTORICAL * m.is_historical
                | IS_TRANSIENT * m.is_transient
                | HAS_VALUE * (m.value is not None)
                | COMPLEX * complex_
            )
            assert cols.flags[r] == flags
            assert (cols.value_field[r] != 0) == (m.value is not None)
            if m.is_null or complex_ or m.value is None:
                assert math.isnan(cols.value[r])
            else:
                assert isinstance(m.value, int | float)
                expected = float(m.value)
                assert cols.value[r] == expected or (
                    math.isnan(expected) and math.isnan(cols.value[r])
                )
            assert canon(cols.metric(r)) == canon(m)


def decode_both(buf: Any, starts: Any, ends: Any) -> DataColumns:
    jit = decode_buffer(buf, starts, ends)
    pure = decode_buffer(buf, starts, ends, jit=False)
    assert_same_columns(jit, pure)
    return jit


# -- well-formed batches --------------------------------------------------------------------------


@settings(max_examples=200)
@given(st.lists(data_payloads, max_size=6))
def test_numba_pure_and_payload_py_agree(batch: list[Payload]) -> None:
    raws = [encode_payload(p) for p in batch]
    cols = decode_both(*join_payloads(raws))
    assert not cols.status.any()
    assert_matches_payload_py(cols, raws)


def test_the_host_workload_shape() -> None:
    """DDATA of aliased doubles with timestamps: what the host decodes 10,000 times a second."""
    raws = [
        encode_payload(
            Payload(
                timestamp=1_700_000_000_000 + i,
                seq=i % 256,
                metrics=tuple(
                    Metric.for_value(a, D.Double, a * 0.5 + i, timestamp=1_700_000_000_000 + a)
                    for a in range(100)
                ),
            )
        )
        for i in range(50)
    ]
    cols = decode_messages(raws)
    assert len(cols) == 5000
    assert cols.n_payloads == 50
    assert np.array_equal(cols.msg, np.repeat(np.arange(50, dtype=np.int32), 100))
    assert np.array_equal(cols.alias, np.tile(np.arange(100), 50))
    assert np.array_equal(cols.value[100:200], np.arange(100) * 0.5 + 1)
    assert np.array_equal(cols.ts_ms[:100], 1_700_000_000_000 + np.arange(100))
    assert np.array_equal(cols.seq, np.arange(50))
    assert (cols.flags == HAS_VALUE).all()
    assert (cols.datatype == D.Double).all()
    assert (cols.name_off == -1).all()
    assert cols.rows_of(3) == slice(300, 400)


def test_payload_timestamp_fills_in_and_may_follow_the_metrics() -> None:
    metric = encode_payload(Payload(metrics=(Metric.for_value(1, D.Int8, -2),)))
    raw = metric + b"\x08\x2a"  # Payload.2 metric, then Payload.1 timestamp = 42
    cols = decode_both(*join_payloads([raw, metric]))
    assert cols.ts_ms.tolist() == [42, -1]
    assert cols.value.tolist() == [-2.0, -2.0]
    assert cols.payload_ts_ms.tolist() == [42, -1]


def test_datatypes_from_the_birth_fix_signed_values() -> None:
    """DATA without datatypes carries the unsigned two's complement; the births know better."""
    raws = [
        encode_payload(
            Payload(
                metrics=(
                    Metric(alias=1, value=255),  # Int8 -1
                    Metric(alias=2, value=2**64 - 1),  # Int64 -1
                    Metric(alias=3, value=2**31),  # Int32 -2**31
                    Metric(alias=4, value=7),  # UInt16 7
                    Metric(alias=5, value=1.5),  # Float
                    Metric(alias=6, value=True),  # Boolean
                    Metric(alias=7, value=9),  # a String by its birth: not a number
                    Metric(alias=8, datatype=D.Int8, value=-3),  # has its own datatype
                    Metric(alias=9, value=300, is_null=True),
                )
            )
        )
    ]
    birth = np.array([D.Int8, D.Int64, D.Int32, D.UInt16, D.Float, D.Boolean, D.String, 0, D.Int8])
    for jit in (True, False):
        cols = decode_messages(raws, jit=jit)
        assert cols.value[:4].tolist() == [255.0, float(2**64 - 1), float(2**31), 7.0]
        fixed = cols.with_datatypes(birth)
        assert fixed.datatype.tolist() == [1, 4, 3, 6, 9, 11, 12, 1, 1]
        assert fixed.value[:6].tolist() == [-1.0, -1.0, float(-(2**31)), 7.0, 1.5, 1.0]
        assert math.isnan(fixed.value[6])
        assert fixed.flags[6] & COMPLEX
        assert fixed.value[7] == -3.0
        assert math.isnan(fixed.value[8])
        assert not (fixed.flags[:6] & COMPLEX).any()
        assert fixed.flags[8] == IS_NULL | HAS_VALUE
        assert cols.value[0] == 255.0  # the original is untouched


def test_names_and_complex_metrics_on_demand() -> None:
    ds = DataSet(columns=("a",), types=(D.Int8,), rows=((-1,),))
    raw = encode_payload(
        Payload(
            metrics=(
                Metric.for_value("température", D.Double, 1.0, alias=1),
                Metric.for_value(2, D.DataSet, ds),
                Metric.for_value(3, D.String, "on"),
            )
        )
    )
    cols = decode_messages([raw])
    assert [cols.name(r) for r in range(3)] == ["température", None, None]
    assert cols.flags[1] & COMPLEX
    assert cols.flags[2] & COMPLEX
    assert fastdecode.decode_metric(cols, 1).value == ds
    assert cols.metric(2).value == "on"
    bad = b"\x12\x03\x0a\x01\xff"  # a name that is not UTF-8: only decoding it tells
    cols = decode_messages([bad])
    assert cols.status[0] == Status.OK
    with pytest.raises(SparkplugDecodeError, match="UTF-8"):
        cols.name(0)


def test_unknown_fields_are_skipped() -> None:
    metric = encode_payload(Payload(metrics=(Metric.for_value(5, D.Int16, -9, timestamp=3),)))
    body = metric[2:]
    odd = b"\xf8\x01\x05" + b"\xf9\x01" + b"\x00" * 8 + b"\xfd\x01" + b"\x00" * 4  # 31: v, i64, i32
    inner = odd + body + b"\xfa\x01\x02hi"
    raw = b"\x32\x00" + b"\x12" + varint(len(inner)) + inner + odd + b"\x18\x05"
    cols = decode_both(*join_payloads([raw]))
    assert cols.status.tolist() == [0]
    assert cols.seq.tolist() == [5]
    assert (cols.alias[0], cols.value[0], cols.ts_ms[0]) == (5, -9.0, 3)


# -- malformed input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"\x08", Status.TRUNCATED),
        (b"\x08" + b"\xff" * 10 + b"\x01", Status.VARINT_TOO_LONG),
        (b"\x0b", Status.BAD_WIRE_TYPE),
        (b"\x0f", Status.BAD_WIRE_TYPE),
        (b"\x0a\x00", Status.BAD_WIRE_TYPE),  # Payload.1 sent length-delimited
        (b"\x10\x01", Status.BAD_WIRE_TYPE),  # Payload.2 sent as a varint
        (b"\x22\x01", Status.TRUNCATED),
        (b"\x00", Status.BAD_FIELD_NUMBER),
        (b"\x80\x80\x80\x80\x80\x01", Status.BAD_FIELD_NUMBER),  # field 2**32
        (b"\x12\x05\x10", Status.TRUNCATED),
        (b"\x12\x02\x0b\x00", Status.BAD_WIRE_TYPE),
        (b"\x12\x02\x12\x00", Status.BAD_WIRE_TYPE),  # Metric.2 alias length-delimited
        (b"\x12\x02\x68\x00", Status.BAD_WIRE_TYPE),  # Metric.13 double as a varint
        (b"\x12\x02\x69\x00", Status.TRUNCATED),
        (b"\x12\x02\x65\x00", Status.TRUNCATED),  # Metric.12 float: 1 byte of 4
        (b"\x12\x02\x42\x05", Status.TRUNCATED),  # Metric.8 metadata past the end
        (b"\x12\x02\x0a\x05", Status.TRUNCATED),
        (b"\x12\x01\x10", Status.TRUNCATED),  # Metric.2 alias without its value
    ],
)
def test_malformed_payloads_get_a_status(raw: bytes, status: Status) -> None:
    good = encode_payload(Payload(seq=1, metrics=(Metric.for_value(1, D.Double, 2.0),)))
    cols = decode_both(*join_payloads([good, raw, good]))
    assert cols.status.tolist() == [0, status, 0]
    assert cols.msg.tolist() == [0, 2]
    assert cols.value.tolist() == [2.0, 2.0]
    assert cols.seq.tolist() == [1, -1, 1]
    assert cols.rows_of(1) == slice(1, 1)
    with pytest.raises(SparkplugDecodeError):
        decode_payload(raw)


def test_ranges_outside_the_buffer_are_flagged() -> None:
    good = encode_payload(Payload(metrics=(Metric.for_value(1, D.Double, 2.0),)))
    buf = np.frombuffer(good, np.uint8)
    n = len(good)
    cols = decode_both(buf, [0, -1, 0, 3, 0], [n, n, n + 1, 2, n])
    assert cols.status.tolist() == [0, Status.BAD_RANGE, Status.BAD_RANGE, Status.BAD_RANGE, 0]
    assert cols.msg.tolist() == [0, 4]


def sample_data() -> bytes:
    return encode_payload(
        Payload(
            timestamp=1_700_000_000_000,
            seq=17,
            metrics=(
                Metric.for_value(1, D.Double, 20.5, timestamp=1_700_000_000_001),
                Metric.for_value(2, D.Int32, -40_000),
                Metric.for_value("s", D.String, "run", alias=3),
                Metric.for_value(4, D.Boolean, None, is_historical=True),
                Metric.for_value(5, D.Float, 1.25, properties=PropertySet()),
                Metric.for_value(6, D.DataSet, DataSet(columns=("c",), types=(D.Int64,))),
            ),
        )
    )


def test_truncation_at_every_offset() -> None:
    raw = sample_data()
    good = encode_payload(Payload(seq=9, metrics=(Metric.for_value(7, D.UInt64, 2**64 - 1),)))
    pieces = [good]
    for cut in range(len(raw) + 1):
        pieces += [raw[:cut], good]
    cols = decode_both(*join_payloads(pieces))
    assert_matches_payload_py(cols, pieces)
    for cut in range(len(raw) + 1):
        ok = decode_error(raw[:cut]) is None
        # A truncation inside any length-delimited field breaks its enclosing Payload field too.
        assert (cols.status[1 + 2 * cut] == 0) == ok, cut
    assert (cols.status[::2] == 0).all()
    assert (cols.value[cols.alias == 7] == 2.0**64).all()


@settings(max_examples=200)
@given(st.data())
def test_flipped_bytes_never_spoil_the_others(data: st.DataObject) -> None:
    raw = bytearray(sample_data())
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    good = sample_data()
    pieces = [good, bytes(raw), good]
    cols = decode_both(*join_payloads(pieces))
    assert cols.status[0] == 0
    assert cols.status[2] == 0
    assert_matches_payload_py(cols, pieces)  # also: what payload.py decodes, fastdecode does


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=40), max_size=4))
def test_random_bytes_never_crash(pieces: list[bytes]) -> None:
    cols = decode_both(*join_payloads(pieces))
    assert_matches_payload_py(cols, pieces)


# -- helpers, threads, the cache ------------------------------------------------------------------


def test_join_and_concat() -> None:
    a = [sample_data(), encode_payload(Payload(metrics=(Metric.for_value("x", D.Int8, 1),)))]
    b = [b"\x0b", sample_data()]
    buf, starts, ends = join_payloads(a + b)
    assert starts.tolist() == [0, len(a[0]), len(a[0]) + len(a[1]), len(a[0]) + len(a[1]) + 1]
    assert ends.tolist() == [*starts[1:].tolist(), buf.shape[0]]
    whole = decode_messages(a + b)
    joined = concat([decode_messages(a), decode_messages(b)])
    assert_same_columns(joined, whole)
    assert concat([whole]) is whole
    with pytest.raises(ValueError, match="at least one"):
        concat([])


def test_empty_input() -> None:
    for jit in (True, False):
        cols = decode_messages([], jit=jit)
        assert len(cols) == 0
        assert cols.n_payloads == 0
        assert cols.row_start.tolist() == [0]
        assert len(decode_buffer(b"", [0], [0], jit=jit)) == 0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="1-D"):
        decode_buffer(np.zeros((2, 2), np.uint8), [0], [1])
    with pytest.raises(ValueError, match="1-D"):
        decode_buffer(b"\x08\x01", [0, 0], [1])


def test_decoding_runs_in_worker_threads() -> None:
    """The kernels release the GIL (nogil=True): the host may decode off the event loop."""
    raws = [sample_data()] * 20
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(decode_messages, [raws] * 4))
    for cols in results:
        assert_same_columns(cols, decode_messages(raws))


def test_no_jit_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACTORY5G_NO_JIT", "1")
    assert not fastdecode.jit_enabled()
    with pytest.raises(RuntimeError, match="numba is disabled"):
        decode_messages([sample_data()], jit=True)
    cols = decode_messages([sample_data()])
    monkeypatch.delenv("FACTORY5G_NO_JIT")
    assert fastdecode.jit_enabled()
    assert_same_columns(cols, decode_messages([sample_data()]))


def test_flag_constants() -> None:
    assert [IS_NULL, IS_HISTORICAL, IS_TRANSIENT, HAS_VALUE, COMPLEX] == [1, 2, 4, 8, 16]


def test_compiled_kernels_load_from_the_cache_in_a_new_process() -> None:
    """cache=True works: a second process loads the kernels instead of compiling them."""
    code = (
        "import json; from factory5g.connect.sparkplug import fastdecode as f; f.warm_up(); "
        "print(json.dumps([len(f._decode_all.stats.cache_hits), "
        "len(f._decode_all.stats.cache_misses)]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "FACTORY5G_NO_JIT"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [1, 0]
