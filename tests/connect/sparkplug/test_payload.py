"""The pure-Python Sparkplug B codec: round trips, an independent protobuf peer, malformed input."""

from __future__ import annotations

import math
import struct
from dataclasses import fields, is_dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pysparkplug._protobuf import sparkplug_b_pb2

from factory5g.connect.sparkplug.errors import (
    SparkplugDecodeError,
    SparkplugEncodeError,
    SparkplugError,
    SparkplugSequenceError,
    SparkplugTopicError,
)
from factory5g.connect.sparkplug.payload import (
    MAX_DEPTH,
    DataSet,
    DataType,
    Extension,
    MetaData,
    Metric,
    Parameter,
    Payload,
    PropertySet,
    PropertyValue,
    Template,
    decode_metric,
    decode_payload,
    encode_payload,
)

# The independent peer: protobuf's generated classes (upb runtime), as shipped by pysparkplug.
PB: Any = sparkplug_b_pb2.Payload  # type: ignore[attr-defined]

D = DataType
INT_RANGE = {
    D.Int8: (-(2**7), 2**7 - 1),
    D.Int16: (-(2**15), 2**15 - 1),
    D.Int32: (-(2**31), 2**31 - 1),
    D.Int64: (-(2**63), 2**63 - 1),
    D.UInt8: (0, 2**8 - 1),
    D.UInt16: (0, 2**16 - 1),
    D.UInt32: (0, 2**32 - 1),
    D.UInt64: (0, 2**64 - 1),
    D.DateTime: (0, 2**64 - 1),
}
SIGNED_BITS = {D.Int8: 8, D.Int16: 16, D.Int32: 32, D.Int64: 64}
# §6.4.16: the protobuf field each datatype travels in.
FIELD_OF = {
    **{t: "int_value" for t in (D.Int8, D.Int16, D.Int32, D.UInt8, D.UInt16, D.UInt32)},
    **{t: "long_value" for t in (D.Int64, D.UInt64, D.DateTime)},
    D.Float: "float_value",
    D.Double: "double_value",
    D.Boolean: "boolean_value",
    D.String: "string_value",
    D.Text: "string_value",
    D.UUID: "string_value",
}
SCALAR_TYPES = list(FIELD_OF)
BYTES_TYPES = [D.Bytes, D.File, *(D(t) for t in range(22, 35))]
METRIC_TYPES = [*SCALAR_TYPES, *BYTES_TYPES, D.DataSet, D.Template]


# -- strategies -----------------------------------------------------------------------------------


def scalar_values(dt: int) -> st.SearchStrategy[Any]:
    if dt in INT_RANGE:
        lo, hi = INT_RANGE[dt]
        return st.integers(lo, hi) | st.sampled_from([lo, hi, 0, max(lo, -1), min(hi, 1)])
    if dt == D.Float:
        return st.floats(width=32) | st.sampled_from([math.inf, -math.inf, math.nan, -0.0])
    if dt == D.Double:
        return st.floats() | st.sampled_from([math.inf, -math.inf, math.nan, -0.0, 5e-324])
    if dt == D.Boolean:
        return st.booleans()
    return st.text(max_size=12) | st.sampled_from(["", "Ω/温度/🚀", "a\x00b"])


extensions = st.sampled_from([b"", b"\x08\x01", b"\x12\x03abc"]).map(Extension)
texts = st.text(max_size=8)
uint64s = st.integers(0, 2**64 - 1)


@st.composite
def datasets(draw: st.DrawFn) -> DataSet:
    types = draw(st.lists(st.sampled_from(SCALAR_TYPES), max_size=len(SCALAR_TYPES)))
    columns = draw(st.lists(texts, min_size=len(types), max_size=len(types)))
    cells = [st.none() | scalar_values(t) | extensions for t in types]
    rows = draw(st.lists(st.tuples(*cells), max_size=3))
    return DataSet(columns=tuple(columns), types=tuple(types), rows=tuple(rows))


def scalar_property(dt: int) -> st.SearchStrategy[PropertyValue]:
    return st.one_of(
        scalar_values(dt).map(lambda v: PropertyValue(type=dt, value=v)),
        st.just(PropertyValue(type=dt, is_null=True)),
    )


property_leaves = st.sampled_from(SCALAR_TYPES).flatmap(scalar_property) | extensions.map(
    lambda e: PropertyValue(type=D.String, value=e)
)


def property_set_of(children: st.SearchStrategy[PropertyValue]) -> st.SearchStrategy[PropertySet]:
    return st.lists(st.tuples(texts, children), max_size=3).map(
        lambda kv: PropertySet(keys=tuple(k for k, _ in kv), values=tuple(v for _, v in kv))
    )


property_values = st.recursive(
    property_leaves,
    lambda children: st.one_of(
        property_set_of(children).map(lambda ps: PropertyValue(type=D.PropertySet, value=ps)),
        st.lists(property_set_of(children), max_size=2).map(
            lambda sets: PropertyValue(type=D.PropertySetList, value=tuple(sets))
        ),
    ),
    max_leaves=6,
)
property_sets = property_set_of(property_values)

metadatas = st.builds(
    MetaData,
    is_multi_part=st.none() | st.booleans(),
    content_type=st.none() | texts,
    size=st.none() | uint64s,
    seq=st.none() | uint64s,
    file_name=st.none() | texts,
    file_type=st.none() | texts,
    md5=st.none() | texts,
    description=st.none() | texts,
)


@st.composite
def parameters(draw: st.DrawFn) -> Parameter:
    dt = draw(st.sampled_from(SCALAR_TYPES))
    value = draw(st.none() | scalar_values(dt) | extensions)
    return Parameter(name=draw(st.none() | texts), type=dt, value=value)


@st.composite
def templates(draw: st.DrawFn, depth: int = 0) -> Template:
    members = draw(st.lists(metrics(depth + 1), max_size=3))
    definition = draw(st.booleans())
    return Template(
        version=draw(st.none() | texts),
        metrics=tuple(members),
        parameters=tuple(draw(st.lists(parameters(), max_size=3))),
        template_ref=None if definition else draw(texts),
        is_definition=definition,
    )


def metric_values(dt: int, depth: int) -> st.SearchStrategy[Any]:
    if dt == D.DataSet:
        return datasets()
    if dt == D.Template:
        return templates(depth) if depth < 2 else st.just(Template())
    if dt in BYTES_TYPES:
        return st.binary(max_size=16)
    return scalar_values(dt)


@st.composite
def metrics(draw: st.DrawFn, depth: int = 0, types: list[DataType] = METRIC_TYPES) -> Metric:
    dt = draw(st.sampled_from(types))
    is_null = draw(st.integers(0, 9)) == 0
    value = None if is_null else draw(metric_values(dt, depth) | extensions)
    return Metric(
        name=draw(st.none() | texts),
        alias=draw(st.none() | uint64s),
        timestamp=draw(st.none() | uint64s),
        datatype=dt,
        value=value,
        is_historical=draw(st.booleans()),
        is_transient=draw(st.booleans()),
        is_null=is_null,
        metadata=draw(st.none() | metadatas) if depth == 0 else None,
        properties=draw(st.none() | property_sets) if depth == 0 else None,
    )


payloads = st.builds(
    Payload,
    timestamp=st.none() | uint64s,
    metrics=st.lists(metrics(), max_size=4).map(tuple),
    seq=st.none() | st.integers(0, 255) | uint64s,
    uuid=st.none() | texts,
    body=st.none() | st.binary(max_size=8),
)


def canon(x: Any) -> Any:
    """A comparable form: floats by their bits (NaN as one value), bools apart from ints."""
    if is_dataclass(x):
        return (type(x).__name__, tuple(canon(getattr(x, f.name)) for f in fields(x)))
    if isinstance(x, float):
        return ("nan",) if math.isnan(x) else ("f", struct.pack("<d", x))
    if isinstance(x, tuple | list):
        return tuple(canon(v) for v in x)
    if isinstance(x, bool):
        return ("bool", x)
    if isinstance(x, int):
        return ("int", int(x))
    return x


# -- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dt", METRIC_TYPES, ids=lambda t: t.name)
@settings(max_examples=30)
@given(data=st.data())
def test_every_datatype_round_trips(dt: DataType, data: st.DataObject) -> None:
    value = data.draw(metric_values(dt, 0))
    alias = data.draw(st.none() | uint64s)
    name = data.draw(st.none() | texts)
    metric = Metric(name=name, alias=alias, timestamp=1, datatype=dt, value=value)
    raw = encode_payload(Payload(metrics=(metric,)))
    decoded = decode_payload(raw).metrics[0]
    assert canon(decoded) == canon(metric)
    assert type(decoded.value) is type(value)


@settings(max_examples=150)
@given(payloads)
def test_payloads_round_trip(p: Payload) -> None:
    raw = encode_payload(p)
    back = decode_payload(raw)
    assert canon(back) == canon(p)
    assert encode_payload(back) == raw


@pytest.mark.parametrize(
    ("dt", "value", "wire"),
    [
        (D.Int8, -128, 0x80),
        (D.Int8, 127, 0x7F),
        (D.Int8, -1, 0xFF),
        (D.Int16, -32768, 0x8000),
        (D.Int32, -(2**31), 2**31),
        (D.Int32, 2**31 - 1, 2**31 - 1),
        (D.Int32, -1, 2**32 - 1),
        (D.Int64, -(2**63), 2**63),
        (D.Int64, -1, 2**64 - 1),
        (D.Int64, 2**63 - 1, 2**63 - 1),
        (D.UInt32, 2**32 - 1, 2**32 - 1),
        (D.UInt64, 2**64 - 1, 2**64 - 1),
    ],
)
def test_signed_integers_travel_twos_complement(dt: DataType, value: int, wire: int) -> None:
    raw = encode_payload(Payload(metrics=(Metric.for_value("m", dt, value),)))
    pb = PB.FromString(raw)
    assert getattr(pb.metrics[0], FIELD_OF[dt]) == wire
    assert decode_payload(raw).metrics[0].value == value


@pytest.mark.parametrize(
    ("dt", "field", "wire", "value"),
    [
        # Eclipse Tahu's Java encoder sign-extends Int8/Int16 to 32 bits: read the same value.
        (D.Int8, "int_value", 0xFFFFFFFF, -1),
        (D.Int8, "int_value", 0xFFFFFF80, -128),
        (D.Int16, "int_value", 0xFFFF8000, -32768),
        # ... and sends UInt32 in long_value.
        (D.UInt32, "long_value", 2**32 - 1, 2**32 - 1),
        (D.Int32, "long_value", 2**64 - 1, -1),
        (D.Int64, "int_value", 2**32 - 1, 2**32 - 1),
    ],
)
def test_other_encoders_integer_forms_are_read(
    dt: DataType, field: str, wire: int, value: int
) -> None:
    pb = PB()
    m = pb.metrics.add()
    m.datatype = dt
    setattr(m, field, wire)
    assert decode_payload(pb.SerializeToString()).metrics[0].value == value


def test_float_values_round_to_32_bits() -> None:
    m = Metric.for_value("f", D.Float, 0.1)
    assert m.value == struct.unpack("<f", struct.pack("<f", 0.1))[0]
    assert decode_payload(encode_payload(Payload(metrics=(m,)))).metrics[0] == m
    plain = Metric(name="f", datatype=D.Float, value=0.1)  # not normalised: rounds on the wire
    back = decode_payload(encode_payload(Payload(metrics=(plain,)))).metrics[0]
    assert back.value == m.value
    assert Metric.for_value("d", D.Double, 3).value == 3.0


def test_for_value_by_name_alias_and_null() -> None:
    birth = Metric.for_value("Node Control/Rebirth", D.Boolean, False, alias=7, timestamp=5)
    assert (birth.name, birth.alias, birth.timestamp, birth.value) == (
        "Node Control/Rebirth",
        7,
        5,
        False,
    )
    data = Metric.for_value(7, D.Int8, -3)
    assert (data.name, data.alias, data.datatype) == (None, 7, D.Int8)
    assert isinstance(data.datatype, DataType)
    null = Metric.for_value(7, D.String, None, is_historical=True)
    assert null.is_null
    assert null.value is None
    assert null.is_historical
    raw = encode_payload(Payload(metrics=(null,)))
    assert PB.FromString(raw).metrics[0].WhichOneof("value") is None
    assert Metric.for_value("b", D.Bytes, bytearray(b"xy")).value == b"xy"
    with pytest.raises(SparkplugEncodeError, match="alias given twice"):
        Metric.for_value(7, D.Int8, 1, alias=8)


@pytest.mark.parametrize(
    ("dt", "value"),
    [
        (D.Int8, 128),
        (D.Int8, -129),
        (D.UInt8, -1),
        (D.UInt64, 2**64),
        (D.Int64, 2**63),
        (D.Int32, 1.5),
        (D.Int32, True),
        (D.Boolean, 1),
        (D.Float, 1e39),
        (D.Double, "1"),
        (D.String, b"x"),
        (D.String, "\ud800"),
        (D.Bytes, "x"),
        (D.DataSet, 1),
        (D.Template, DataSet()),
        (D.Unknown, object()),
    ],
)
def test_values_that_do_not_fit_are_refused(dt: DataType, value: Any) -> None:
    with pytest.raises(SparkplugEncodeError):
        Metric.for_value("m", dt, value)
    with pytest.raises(SparkplugEncodeError):
        encode_payload(Payload(metrics=(Metric(name="m", datatype=dt, value=value),)))


@pytest.mark.parametrize(
    "payload",
    [
        Payload(timestamp=-1),
        Payload(seq=2**64),
        Payload(metrics=(Metric(alias=-1),)),
        Payload(metrics=(Metric(datatype=2**32),)),
        Payload(metrics=(Metric(properties=PropertySet(keys=("a",))),)),
        Payload(metrics=(Metric(value=DataSet(columns=("a",))),)),
        Payload(metrics=(Metric(value=DataSet(columns=("a",), types=(3,), rows=((1, 2),))),)),
        Payload(
            metrics=(
                Metric(
                    properties=PropertySet(
                        keys=("a",), values=(PropertyValue(type=D.PropertySet, value=1),)
                    )
                ),
            )
        ),
        Payload(
            metrics=(
                Metric(
                    properties=PropertySet(
                        keys=("a",), values=(PropertyValue(type=D.PropertySetList, value=(1,)),)
                    )
                ),
            )
        ),
    ],
)
def test_malformed_models_are_refused(payload: Payload) -> None:
    with pytest.raises(SparkplugEncodeError):
        encode_payload(payload)


def test_values_without_datatype_are_inferred() -> None:
    p = Payload(
        metrics=(
            Metric(alias=1, value=True),
            Metric(alias=2, value=5),
            Metric(alias=3, value=2**40),
            Metric(alias=4, value=1.5),
            Metric(alias=5, value="s"),
            Metric(alias=6, value=b"b"),
            Metric(alias=7, value=DataSet()),
            Metric(alias=8, value=Template()),
        )
    )
    pb = PB.FromString(encode_payload(p))
    assert [m.WhichOneof("value") for m in pb.metrics] == [
        "boolean_value",
        "int_value",
        "long_value",
        "double_value",
        "string_value",
        "bytes_value",
        "dataset_value",
        "template_value",
    ]
    assert canon(decode_payload(encode_payload(p))) == canon(p)
    with pytest.raises(SparkplugEncodeError):
        encode_payload(Payload(metrics=(Metric(alias=1, value=-1),)))


def test_property_set_lookup_and_forward_compatible_datatypes() -> None:
    ps = PropertySet(
        keys=("Quality", "x", "Quality"),
        values=(PropertyValue(type=D.Int32, value=0), PropertyValue(), PropertyValue(value=192)),
    )
    assert ps.get("Quality") == PropertyValue(value=192)
    assert ps.get("missing") is None
    assert DataType.of(3) is D.Int32
    assert DataType.of(99) == 99
    raw = encode_payload(Payload(metrics=(Metric(alias=1, datatype=99, value=2.5),)))
    assert decode_payload(raw).metrics[0] == Metric(alias=1, datatype=99, value=2.5)


# -- the independent peer: protobuf's generated classes ------------------------------------------


def pb_scalar(msg: Any, dt: int | None, value: Any) -> None:
    """Set a scalar oneof the way §6.4.16 says, on any of the four value messages."""
    if isinstance(value, Extension):
        msg.extension_value.SetInParent()
        msg.extension_value.MergeFromString(value.raw)
    elif dt in FIELD_OF:
        if dt in SIGNED_BITS:
            value %= 1 << SIGNED_BITS[DataType(dt)]
        setattr(msg, FIELD_OF[DataType(dt)], value)
    else:
        raise AssertionError(f"no field for {dt} {value!r}")


def pb_property_set(msg: Any, ps: PropertySet) -> None:
    msg.SetInParent()
    msg.keys.extend(ps.keys)
    for pv in ps.values:
        v = msg.values.add()
        if pv.type is not None:
            v.type = pv.type
        if pv.is_null:
            v.is_null = True
        if isinstance(pv.value, PropertySet):
            pb_property_set(v.propertyset_value, pv.value)
        elif isinstance(pv.value, tuple):
            v.propertysets_value.SetInParent()
            for sub in pv.value:
                pb_property_set(v.propertysets_value.propertyset.add(), sub)
        elif pv.value is not None:
            pb_scalar(v, pv.type, pv.value)


def pb_metric(msg: Any, m: Metric) -> None:
    if m.name is not None:
        msg.name = m.name
    if m.alias is not None:
        msg.alias = m.alias
    if m.timestamp is not None:
        msg.timestamp = m.timestamp
    if m.datatype is not None:
        msg.datatype = m.datatype
    for flag in ("is_historical", "is_transient", "is_null"):
        if getattr(m, flag):
            setattr(msg, flag, True)
    if m.metadata is not None:
        msg.metadata.SetInParent()
        for f in fields(m.metadata):
            if getattr(m.metadata, f.name) is not None:
                setattr(msg.metadata, f.name, getattr(m.metadata, f.name))
    if m.properties is not None:
        pb_property_set(msg.properties, m.properties)
    v = m.value
    if v is None:
        return
    if isinstance(v, DataSet):
        ds = msg.dataset_value
        ds.num_of_columns = len(v.columns)
        ds.columns.extend(v.columns)
        ds.types.extend(v.types)
        for row in v.rows:
            r = ds.rows.add()
            for dt, cell in zip(v.types, row, strict=True):
                element = r.elements.add()
                if cell is not None:
                    pb_scalar(element, dt, cell)
    elif isinstance(v, Template):
        t = msg.template_value
        if v.version is not None:
            t.version = v.version
        for member in v.metrics:
            pb_metric(t.metrics.add(), member)
        for p in v.parameters:
            pp = t.parameters.add()
            if p.name is not None:
                pp.name = p.name
            if p.type is not None:
                pp.type = p.type
            if p.value is not None:
                pb_scalar(pp, p.type, p.value)
        if v.template_ref is not None:
            t.template_ref = v.template_ref
        t.is_definition = v.is_definition
    elif isinstance(v, bytes):
        msg.bytes_value = v
    else:
        pb_scalar(msg, m.datatype, v)


def to_pb(p: Payload) -> Any:
    msg = PB()
    if p.timestamp is not None:
        msg.timestamp = p.timestamp
    for m in p.metrics:
        pb_metric(msg.metrics.add(), m)
    if p.seq is not None:
        msg.seq = p.seq
    if p.uuid is not None:
        msg.uuid = p.uuid
    if p.body is not None:
        msg.body = p.body
    return msg


def same_scalar(ours: Any, wire: Any, dt: int | None) -> bool:
    if isinstance(ours, float):
        return (math.isnan(ours) and math.isnan(wire)) or struct.pack("<d", ours) == struct.pack(
            "<d", wire
        )
    if dt in SIGNED_BITS:
        return bool(ours % (1 << SIGNED_BITS[DataType(dt)]) == wire)
    return bool(ours == wire)


def check_value(ours: Any, msg: Any, dt: int | None) -> None:
    which = msg.WhichOneof("value")
    if ours is None:
        assert which is None
    elif isinstance(ours, Extension):
        assert which == "extension_value"
        assert msg.extension_value.SerializeToString() == ours.raw
    else:
        assert which == FIELD_OF[DataType(dt)]
        assert same_scalar(ours, getattr(msg, which), dt)


def check_optional(ours: Any, msg: Any, name: str) -> None:
    assert msg.HasField(name) == (ours is not None), name
    if ours is not None:
        assert getattr(msg, name) == ours, name


def check_property_set(ours: PropertySet, msg: Any) -> None:
    assert list(msg.keys) == list(ours.keys)
    assert len(msg.values) == len(ours.values)
    for pv, v in zip(ours.values, msg.values, strict=True):
        check_optional(pv.type, v, "type")
        assert v.is_null == pv.is_null
        if isinstance(pv.value, PropertySet):
            assert v.WhichOneof("value") == "propertyset_value"
            check_property_set(pv.value, v.propertyset_value)
        elif isinstance(pv.value, tuple):
            assert v.WhichOneof("value") == "propertysets_value"
            assert len(v.propertysets_value.propertyset) == len(pv.value)
            for sub, sub_msg in zip(pv.value, v.propertysets_value.propertyset, strict=True):
                check_property_set(sub, sub_msg)
        else:
            check_value(pv.value, v, pv.type)


def check_metric(m: Metric, msg: Any) -> None:
    for name in ("name", "alias", "timestamp", "datatype"):
        check_optional(getattr(m, name), msg, name)
    assert (msg.is_historical, msg.is_transient, msg.is_null) == (
        m.is_historical,
        m.is_transient,
        m.is_null,
    )
    assert msg.HasField("metadata") == (m.metadata is not None)
    if m.metadata is not None:
        for f in fields(m.metadata):
            check_optional(getattr(m.metadata, f.name), msg.metadata, f.name)
    assert msg.HasField("properties") == (m.properties is not None)
    if m.properties is not None:
        check_property_set(m.properties, msg.properties)
    v = m.value
    which = msg.WhichOneof("value")
    if isinstance(v, DataSet):
        assert which == "dataset_value"
        ds = msg.dataset_value
        assert ds.num_of_columns == len(v.columns)
        assert (list(ds.columns), list(ds.types)) == (list(v.columns), list(v.types))
        assert len(ds.rows) == len(v.rows)
        for row, row_msg in zip(v.rows, ds.rows, strict=True):
            assert len(row_msg.elements) == len(row)
            for dt, cell, element in zip(v.types, row, row_msg.elements, strict=True):
                check_value(cell, element, dt)
    elif isinstance(v, Template):
        assert which == "template_value"
        t = msg.template_value
        check_optional(v.version, t, "version")
        check_optional(v.template_ref, t, "template_ref")
        assert t.HasField("is_definition")
        assert t.is_definition == v.is_definition
        assert len(t.metrics) == len(v.metrics)
        for member, member_msg in zip(v.metrics, t.metrics, strict=True):
            check_metric(member, member_msg)
        assert len(t.parameters) == len(v.parameters)
        for p, p_msg in zip(v.parameters, t.parameters, strict=True):
            check_optional(p.name, p_msg, "name")
            check_optional(p.type, p_msg, "type")
            check_value(p.value, p_msg, p.type)
    elif isinstance(v, bytes):
        assert which == "bytes_value"
        assert msg.bytes_value == v
    else:
        check_value(v, msg, m.datatype)


def check_payload(p: Payload, msg: Any) -> None:
    for name in ("timestamp", "seq", "uuid", "body"):
        check_optional(getattr(p, name), msg, name)
    assert len(msg.metrics) == len(p.metrics)
    for m, m_msg in zip(p.metrics, msg.metrics, strict=True):
        check_metric(m, m_msg)


@settings(max_examples=150)
@given(payloads)
def test_protobuf_parses_what_we_encode(p: Payload) -> None:
    check_payload(p, PB.FromString(encode_payload(p)))


@settings(max_examples=150)
@given(payloads)
def test_we_decode_what_protobuf_encodes(p: Payload) -> None:
    raw = to_pb(p).SerializeToString()
    assert canon(decode_payload(raw)) == canon(p)
    assert encode_payload(p) == raw  # same field order, same varints: byte for byte


def test_a_birth_field_by_field() -> None:
    birth = Payload(
        timestamp=1_486_144_502_122,
        seq=0,
        metrics=(
            Metric.for_value("bdSeq", D.UInt64, 0, timestamp=1_486_144_502_122),
            Metric.for_value("Node Control/Rebirth", D.Boolean, False, alias=1),
            Metric.for_value("Supply Voltage", D.Float, 12.1, alias=2),
            Metric.for_value(
                "Counter",
                D.Int32,
                -7,
                alias=3,
                properties=PropertySet(
                    keys=("Quality", "engUnit"),
                    values=(
                        PropertyValue(type=D.Int32, value=192),
                        PropertyValue(type=D.String, value="V"),
                    ),
                ),
            ),
        ),
    )
    pb = PB.FromString(encode_payload(birth))
    assert (pb.timestamp, pb.seq, len(pb.metrics)) == (1_486_144_502_122, 0, 4)
    assert (pb.metrics[0].name, pb.metrics[0].datatype, pb.metrics[0].long_value) == ("bdSeq", 8, 0)
    assert pb.metrics[1].HasField("boolean_value")
    assert not pb.metrics[1].boolean_value
    assert pb.metrics[2].float_value == pytest.approx(12.1, rel=1e-7)
    assert pb.metrics[3].int_value == 2**32 - 7
    assert pb.metrics[3].properties.values[0].int_value == 192
    assert decode_payload(pb.SerializeToString()) == birth


# -- decoding: unknown fields, malformed input ----------------------------------------------------


def unknown_fields(number: int) -> bytes:
    """One unknown field of each wire type: varint, fixed64, length-delimited, fixed32."""
    return (
        varint(number << 3 | 0)
        + b"\x96\x01"
        + varint(number << 3 | 1)
        + b"\x00" * 8
        + varint(number << 3 | 2)
        + b"\x02hi"
        + varint(number << 3 | 5)
        + b"\x00" * 4
    )


def test_unknown_fields_are_skipped() -> None:
    metric = Metric.for_value("m", D.Int16, -2, alias=4, timestamp=9)
    body = bytes(encode_payload(Payload(metrics=(metric,))))[2:]  # the Metric message
    inner = unknown_fields(30) + body
    raw = (
        unknown_fields(15)
        + b"\x12"
        + varint(len(inner))
        + inner
        + b"\x18\x07"
        + unknown_fields(6)  # Payload extensions 6+
    )
    assert decode_payload(raw) == Payload(seq=7, metrics=(metric,))
    assert decode_metric(body + unknown_fields(99)) == metric


@pytest.mark.parametrize(
    ("raw", "reason", "offset"),
    [
        (b"\x08", "varint runs past the end", 1),
        (b"\x08" + b"\xff" * 10 + b"\x01", "varint longer than 10 bytes", 1),
        (b"\x0b\x00", "wire type 3", 0),
        (b"\x0c", "wire type 4", 0),
        (b"\x0e", "wire type 6", 0),
        (b"\x0f", "wire type 7", 0),
        (b"\x00\x00", "field number 0", 0),
        (b"\x12\x05\x01", "runs past the end", 0),
        (b"\x09\x00\x00", "runs past the end", 0),
        (b"\x0a\x00", "Payload.timestamp has wire type 2", 2),
        (b"\x12\x02\x08\x01", "Metric.name has wire type 0", 3),
        (b"\x12\x02\x62\x00", "Metric.value has wire type 2", 4),
        (b"\x12\x02\x0a\x01", "runs past the end", 2),
        (b"\x12\x03\x0a\x01\xff", "Metric.name is not UTF-8", 4),
        (b"\x22\x01\xc3", "Payload.uuid is not UTF-8", 2),
    ],
)
def test_malformed_bytes_raise_with_the_offset(raw: bytes, reason: str, offset: int) -> None:
    with pytest.raises(SparkplugDecodeError) as info:
        decode_payload(raw)
    assert reason in info.value.reason
    assert info.value.offset == offset
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, SparkplugError)


def nested_property_sets(depth: int) -> bytes:
    """A Payload whose metric nests ``depth`` PropertySets in each other (Metric.9, .2, .9...)."""
    inner = b""
    for _ in range(depth):
        value = b"\x08\x14\x4a" + varint(len(inner)) + inner  # type 20, propertyset_value
        inner = b"\x12" + varint(len(value)) + value  # PropertySet.2 values
    metric = b"\x4a" + varint(len(inner)) + inner
    return b"\x12" + varint(len(metric)) + metric


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def test_nesting_is_limited() -> None:
    ok = decode_payload(nested_property_sets(MAX_DEPTH // 2 - 1))
    assert ok.metrics[0].properties is not None
    with pytest.raises(SparkplugDecodeError, match="nested deeper"):
        decode_payload(nested_property_sets(MAX_DEPTH))
    with pytest.raises(SparkplugDecodeError, match="nested deeper"):
        decode_payload(nested_property_sets(5_000))  # no RecursionError, no hang
    deep: PropertySet = PropertySet()
    for _ in range(MAX_DEPTH):
        deep = PropertySet(keys=("k",), values=(PropertyValue(type=D.PropertySet, value=deep),))
    with pytest.raises(SparkplugEncodeError, match="nested deeper"):
        encode_payload(Payload(metrics=(Metric(properties=deep),)))


def test_repeated_singular_fields_keep_the_last() -> None:
    raw = b"\x08\x01\x08\x02\x12\x04\x50\x01\x70\x01\x12\x02\x38\x01\x12\x00"
    p = decode_payload(raw)
    assert p.timestamp == 2
    assert p.metrics[0].value is True  # int_value 1 then boolean_value 1: the last oneof wins
    assert p.metrics[1].is_null
    assert p.metrics[2] == Metric()


def test_packed_dataset_types_are_read() -> None:
    ds = b"\x08\x02\x12\x01a\x12\x01b\x1a\x02\x03\x0c"  # 2 columns, types [Int32, String] packed
    metric = b"\x8a\x01" + varint(len(ds)) + ds  # Metric.17 dataset_value
    raw = b"\x12" + varint(len(metric)) + metric
    assert decode_payload(raw).metrics[0].value == DataSet(columns=("a", "b"), types=(3, 12))


def decode_error(raw: bytes | bytearray) -> SparkplugDecodeError | None:
    """The error decoding ``raw`` raises, None if it decodes (any other exception propagates)."""
    try:
        decode_payload(raw)
    except SparkplugDecodeError as e:
        return e
    return None


def sample_birth() -> bytes:
    return encode_payload(
        Payload(
            timestamp=1_700_000_000_000,
            seq=0,
            uuid="u",
            metrics=(
                Metric.for_value("a/b", D.Int8, -5, alias=1, timestamp=1_700_000_000_001),
                Metric.for_value("s", D.String, "héllo", alias=2),
                Metric(
                    name="t",
                    datatype=D.Template,
                    value=Template(
                        metrics=(Metric.for_value("x", D.Double, 1.5),),
                        parameters=(Parameter(name="p", type=D.Int16, value=-2),),
                        template_ref="T",
                    ),
                    properties=PropertySet(
                        keys=("k",), values=(PropertyValue(type=D.Int32, value=1),)
                    ),
                ),
                Metric(
                    name="d",
                    datatype=D.DataSet,
                    value=DataSet(columns=("c",), types=(D.Int64,), rows=((-1,), (None,))),
                    metadata=MetaData(description="x"),
                ),
            ),
        )
    )


def test_truncation_at_every_offset_raises_only_decode_errors() -> None:
    raw = sample_birth()
    for cut in range(len(raw)):
        error = decode_error(raw[:cut])
        assert error is None or 0 <= error.offset <= cut


@settings(max_examples=300)
@given(st.data())
def test_flipped_bytes_raise_only_decode_errors(data: st.DataObject) -> None:
    raw = bytearray(sample_birth())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    error = decode_error(raw)
    assert error is None or 0 <= error.offset <= len(raw)


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_decode_errors(raw: bytes) -> None:
    error = decode_error(raw)
    assert error is None or 0 <= error.offset <= len(raw)


def test_error_tree() -> None:
    topic = SparkplugTopicError("spBv1.0/x", "too short")
    assert (topic.topic, topic.reason) == ("spBv1.0/x", "too short")
    gap = SparkplugSequenceError(4, 6)
    assert (gap.expected, gap.got) == (4, 6)
    assert "expected seq 4, got 6" in str(gap)
    for e in (topic, gap, SparkplugDecodeError("r", 3), SparkplugEncodeError("r")):
        assert isinstance(e, SparkplugError)
    assert str(SparkplugDecodeError("bad", 3)) == "bad (at byte 3)"
