"""Status codes to qualities, Variants to samples, Python values to Variants (and on the wire)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import variant_from_binary, variant_to_binary
from hypothesis import given
from hypothesis import strategies as st

from factory5g.connect.opcua.convert import (
    ConversionError,
    datetime_ns,
    quality_of,
    sample_value,
    to_variant,
    variant_type_of,
    writable_types,
)
from factory5g.stream import Quality

INT_RANGES = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}


def wire(v: ua.Variant) -> object:
    """The value after a trip through the OPC UA binary encoding (OPC 10000-6 §5.2.2.16)."""
    return variant_from_binary(Buffer(variant_to_binary(v))).Value


@pytest.mark.parametrize(
    ("code", "quality"),
    [
        (ua.StatusCodes.Good, Quality.GOOD),
        (ua.StatusCodes.GoodClamped, Quality.GOOD),
        (ua.StatusCodes.UncertainLastUsableValue, Quality.UNCERTAIN),
        (ua.StatusCodes.UncertainSensorNotAccurate, Quality.UNCERTAIN),
        (ua.StatusCodes.BadNodeIdUnknown, Quality.BAD),
        (ua.StatusCodes.BadOutOfService, Quality.BAD),
        (ua.StatusCodes.BadNotConnected, Quality.BAD_NOT_CONNECTED),
        (ua.StatusCodes.BadCommunicationError, Quality.BAD_COMM_FAILURE),
        (ua.StatusCodes.BadNotConnected | 0x0400, Quality.BAD_NOT_CONNECTED),  # info bits
    ],
)
def test_status_codes_map_to_qualities_by_severity(code: int, quality: Quality) -> None:
    assert quality_of(code) == quality


@given(st.integers(0, 2**32 - 1))
def test_every_status_code_has_the_quality_of_its_severity(code: int) -> None:
    q = quality_of(code)
    severity = code >> 30
    if severity == 0:
        assert q == Quality.GOOD
    elif severity == 1:
        assert q == Quality.UNCERTAIN
    else:
        assert q < Quality.UNCERTAIN  # some bad quality


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1)))
def test_datetime_ns_is_exact(naive: datetime) -> None:
    dt = naive.replace(tzinfo=UTC)
    ns = datetime_ns(dt)
    back = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    assert back == dt
    assert ns % 1000 == 0
    assert datetime_ns(naive) == ns  # naive DateTimes are UTC


def test_samples_from_variant_values() -> None:
    assert sample_value(2.5) == 2.5
    assert sample_value(True) == 1.0
    assert sample_value(False) == 0.0
    assert sample_value(-7) == -7.0
    assert sample_value(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)) == 1.0
    assert sample_value("text") is None
    assert sample_value([1.0, 2.0]) is None
    assert sample_value(b"\x00") is None


def test_data_types_map_to_variant_types() -> None:
    assert variant_type_of(ua.NodeId(ua.Int32(ua.ObjectIds.Double))) is ua.VariantType.Double
    assert variant_type_of(ua.NodeId(ua.Int32(ua.ObjectIds.Int16))) is ua.VariantType.Int16
    assert variant_type_of(ua.NodeId(ua.Int32(ua.ObjectIds.Enumeration))) is ua.VariantType.Int32
    # abstract (Number, BaseDataType), structures and other namespaces are not built-in types
    for ident in (ua.ObjectIds.Number, ua.ObjectIds.BaseDataType, ua.ObjectIds.Structure):
        assert variant_type_of(ua.NodeId(ua.Int32(ident))) is None
    assert variant_type_of(ua.NodeId(ua.Int32(11), ua.Int16(2))) is None


@pytest.mark.parametrize("vtype", list(INT_RANGES))
@given(data=st.data())
def test_integers_in_range_are_written_exactly(vtype: ua.VariantType, data: st.DataObject) -> None:
    lo, hi = INT_RANGES[vtype]
    value = data.draw(st.integers(lo, hi))
    as_float = data.draw(st.booleans()) and abs(value) < 2**53
    variant = to_variant(float(value) if as_float else value, vtype)
    assert variant.VariantType is vtype
    assert wire(variant) == value


@pytest.mark.parametrize("vtype", list(INT_RANGES))
@given(data=st.data())
def test_integers_out_of_range_are_refused_with_the_range(
    vtype: ua.VariantType, data: st.DataObject
) -> None:
    lo, hi = INT_RANGES[vtype]
    value = data.draw(st.integers(hi + 1, hi + 2**70) | st.integers(lo - 2**70, lo - 1))
    with pytest.raises(ConversionError) as caught:
        to_variant(value, vtype)
    assert f"[{lo}, {hi}]" in caught.value.why
    assert vtype.name in caught.value.why


@given(st.floats(allow_nan=True).filter(lambda f: not (math.isfinite(f) and f.is_integer())))
def test_integers_refuse_fractions_and_non_finite_numbers(value: float) -> None:
    with pytest.raises(ConversionError, match="not an integer"):
        to_variant(value, ua.VariantType.Int32)


@given(st.floats(allow_nan=False, width=32))
def test_float32_values_survive_the_wire(value: float) -> None:
    assert wire(to_variant(value, ua.VariantType.Float)) == value


@given(
    st.floats(min_value=3.5e38, allow_infinity=False)
    | st.floats(max_value=-3.5e38, allow_infinity=False)
)
def test_float32_refuses_what_it_cannot_hold(value: float) -> None:
    with pytest.raises(ConversionError, match="outside Float"):
        to_variant(value, ua.VariantType.Float)


@given(st.floats() | st.integers(-(2**53), 2**53))
def test_doubles_take_any_number(value: float) -> None:
    got = wire(to_variant(value, ua.VariantType.Double))
    assert got == float(value) or (math.isnan(value) and math.isnan(got))  # type: ignore[arg-type]


@given(st.text())
def test_strings_survive_the_wire(value: str) -> None:
    assert wire(to_variant(value, ua.VariantType.String)) == value


@pytest.mark.parametrize(
    ("value", "expected"), [(True, True), (False, False), (1, True), (0, False), (1.0, True)]
)
def test_booleans_take_bools_and_zero_or_one(value: float, expected: bool) -> None:
    assert wire(to_variant(value, ua.VariantType.Boolean)) is expected


@pytest.mark.parametrize(
    ("value", "vtype", "why"),
    [
        (2, ua.VariantType.Boolean, "not a Boolean"),
        ("true", ua.VariantType.Boolean, "not text"),
        ("12", ua.VariantType.Int16, "a number is needed"),
        ("1.5", ua.VariantType.Double, "a number is needed"),
        ("1.5", ua.VariantType.Float, "a number is needed"),
        (12, ua.VariantType.String, "text is needed"),
        (1.0, ua.VariantType.DateTime, "not supported"),
    ],
)
def test_values_of_the_wrong_kind_are_refused(
    value: object, vtype: ua.VariantType, why: str
) -> None:
    with pytest.raises(ConversionError, match=why):
        to_variant(value, vtype)  # type: ignore[arg-type]


def test_writable_types_are_the_built_in_scalars() -> None:
    names = {t.name for t in writable_types()}
    assert names == {
        "Boolean",
        "SByte",
        "Byte",
        "Int16",
        "UInt16",
        "Int32",
        "UInt32",
        "Int64",
        "UInt64",
        "Float",
        "Double",
        "String",
    }
