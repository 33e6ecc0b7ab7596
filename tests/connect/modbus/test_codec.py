"""The register codec: fixed vectors typed in from IEEE 754 / common Modbus practice and the
MODBUS Application Protocol v1.1b3 examples, then round-trip and agreement properties."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factory5g.connect.modbus import ModbusValueError
from factory5g.connect.modbus.codec import (
    INT_RANGES,
    WORDS,
    BlockCodec,
    Format,
    decode,
    encode,
    from_registers,
    raw_value,
    set_bit,
    to_registers,
)

ORDERS = [("big", "big"), ("little", "big"), ("big", "little"), ("little", "little")]
REGISTER_TYPES = ["int16", "uint16", "int32", "uint32", "int64", "float32", "float64"]

# -- fixed vectors (not derived from our code) ------------------------------------------------

# float32 123.456 is 0x42F6E979 (IEEE 754). Its four register layouts, as device manuals
# name them: ABCD (big endian), CDAB (word swap, "Modicon"), BADC (byte swap), DCBA.
FLOAT32_123_456 = {
    ("big", "big"): [0x42F6, 0xE979],
    ("little", "big"): [0xE979, 0x42F6],
    ("big", "little"): [0xF642, 0x79E9],
    ("little", "little"): [0x79E9, 0xF642],
}

VECTORS: list[tuple[str, str, str, list[int], float]] = [
    # type, word order, byte order, registers, raw value
    ("float32", "big", "big", [0xBFC0, 0x0000], -1.5),
    ("float32", "big", "big", [0x3F80, 0x0000], 1.0),
    ("float64", "big", "big", [0x4009, 0x21FB, 0x5444, 0x2D18], math.pi),
    ("float64", "big", "big", [0x3FF0, 0x0000, 0x0000, 0x0000], 1.0),
    ("float64", "little", "little", [0x0000, 0x0000, 0x0000, 0xF03F], 1.0),
    ("int16", "big", "big", [0xFFFF], -1),
    ("int16", "big", "big", [0x8000], -32768),
    ("uint16", "big", "big", [0xFF85], 65413),
    ("uint16", "big", "little", [0x3412], 0x1234),
    ("int32", "big", "big", [0xFFFE, 0x1DC0], -123456),
    ("uint32", "big", "big", [0x1234, 0x5678], 0x12345678),
    ("uint32", "little", "big", [0x5678, 0x1234], 0x12345678),
    ("int64", "big", "big", [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE], -2),
    ("int64", "little", "big", [0x0004, 0x0003, 0x0002, 0x0001], 0x0001000200030004),
]


@pytest.mark.parametrize(("orders", "registers"), FLOAT32_123_456.items())
def test_float32_123_456_in_every_layout(orders: tuple[str, str], registers: list[int]) -> None:
    fmt = Format("float32", *orders)  # type: ignore[arg-type]
    assert encode(123.456, fmt) == registers
    assert decode(registers, fmt) == pytest.approx(123.456, abs=1e-5)
    codec = BlockCodec([fmt], [1])
    assert codec.decode([0, *registers])[0] == pytest.approx(123.456, abs=1e-5)


@pytest.mark.parametrize(("type_", "word", "byte", "registers", "raw"), VECTORS)
def test_fixed_vectors(type_: Any, word: Any, byte: Any, registers: list[int], raw: float) -> None:
    fmt = Format(type_, word, byte)
    assert to_registers(raw, fmt) == registers
    assert from_registers(registers, fmt) == raw
    assert decode(registers, fmt) == raw
    assert BlockCodec([fmt], [0]).decode(registers)[0] == raw


def test_spec_read_holding_registers_example() -> None:
    # MODBUS Application Protocol v1.1b3 §6.3: registers 108..110 answer 0x022B 0x0000 0x0064.
    block = [0x022B, 0x0000, 0x0064]
    codec = BlockCodec([Format("uint16")] * 3, [0, 1, 2])
    assert codec.decode(block).tolist() == [555.0, 0.0, 100.0]
    # Read as one uint32 at 109..110 the same registers say 100.
    assert BlockCodec([Format("uint32")], [1]).decode(block)[0] == 100.0


def test_signalling_nans_decode_to_nan_without_a_warning() -> None:
    # Uninitialised float registers may hold a signalling NaN (quiet bit clear): converting or
    # scaling it must not warn (pytest turns warnings into errors here).
    cases = [
        (Format("float32"), [0x7F80, 0x0001]),
        (Format("float32", scale=0.5, offset=1.0), [0xFF80, 0x0001]),
        (Format("float64", scale=2.0), [0x7FF0, 0x0000, 0x0000, 0x0001]),
    ]
    for fmt, registers in cases:
        assert math.isnan(decode(registers, fmt))
        assert math.isnan(BlockCodec([fmt], [0]).decode(registers)[0])


def test_scale_offset_and_bits() -> None:
    # A temperature transmitter: raw tenths of a degree with a -40 °C offset.
    fmt = Format("uint16", scale=0.1, offset=-40.0)
    assert decode([1000], fmt) == pytest.approx(60.0)
    assert encode(60.0, fmt) == [1000]
    word = 0x8005  # bits 0, 2 and 15 set
    bits = [Format("bool", bit=b) for b in (0, 1, 2, 15)]
    assert [decode([word], f) for f in bits] == [1.0, 0.0, 1.0, 1.0]
    assert BlockCodec(bits, [0] * 4).decode([word]).tolist() == [1.0, 0.0, 1.0, 1.0]
    # Bytes swapped, value bit 0 is the register's bit 8.
    swapped = Format("bool", bit=0, byte_order="little")
    assert decode([0x0100], swapped) == 1.0
    assert decode([0x0001], swapped) == 0.0
    assert set_bit(0x0100, True, Format("bool", bit=3)) == 0x0108
    assert set_bit(0x0108, 0, Format("bool", bit=3)) == 0x0100
    assert set_bit(0x0000, 1, swapped) == 0x0100
    # A bit field of a uint16 with a scale: the bit's engineering value.
    assert decode([0x8000], Format("uint16", bit=15, scale=10.0)) == 10.0


@pytest.mark.parametrize(
    ("value", "fmt", "reason"),
    [
        (70000, Format("uint16"), "out of range: uint16 holds 0..65535"),
        (-1, Format("uint16"), "out of range"),
        (32768, Format("int16"), "out of range: int16 holds -32768..32767"),
        (2**31, Format("int32"), "out of range"),
        (2**32, Format("uint32"), "out of range"),
        (2**63, Format("int64"), "out of range"),
        (4000.0, Format("int16", scale=0.1), "out of range"),
        (1e39, Format("float32"), "beyond float32's range"),
        (12.345, Format("int16", scale=0.01), "not an integer"),
        (float("nan"), Format("float32"), "not a finite number"),
        (float("inf"), Format("int32"), "not a finite number"),
        ("12", Format("uint16"), "a number is needed"),
        (2, Format("bool", bit=4), "a bit is 0 or 1"),
        (2, Format("bool", in_bit_table=True), "a bit is 0 or 1"),
    ],
)
def test_values_the_type_cannot_hold_are_refused(value: Any, fmt: Format, reason: str) -> None:
    with pytest.raises(ModbusValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        raw_value(value, fmt)


def test_raw_values_at_the_limits_and_float_noise() -> None:
    for type_, (lo, hi) in INT_RANGES.items():
        fmt = Format(type_)  # type: ignore[arg-type]
        assert from_registers(encode(lo, fmt), fmt) == lo
        assert from_registers(encode(hi, fmt), fmt) == hi
    # 12.35 / 0.01 = 1234.9999999999998: that is 1235, not a refusal.
    assert encode(12.35, Format("int16", scale=0.01)) == [1235]
    assert raw_value(True, Format("bool", in_bit_table=True)) == 1


def test_encode_into_saturates_and_rounds_like_a_device() -> None:
    fmts = [
        Format("int16"),
        Format("int16"),
        Format("uint16"),
        Format("uint16", scale=0.1),
        Format("float32"),
        Format("int64"),
    ]
    codec = BlockCodec(fmts, [0, 1, 2, 3, 4, 6])
    block = np.zeros(10, dtype=np.uint16)
    codec.encode_into([1e6, -1e6, float("nan"), 12.34, 1e40, 1e30], block)
    assert block[:4].tolist() == [0x7FFF, 0x8000, 0, 123]
    assert decode(block[4:6].tolist(), Format("float32")) == float(np.finfo(np.float32).max)
    assert decode(block[6:10].tolist(), Format("int64")) == float(2**63 - 1024)


def test_formats_are_checked() -> None:
    with pytest.raises(ValueError, match="needs a bit"):
        Format("bool")
    with pytest.raises(ValueError, match="16-bit register"):
        Format("float32", bit=1)
    with pytest.raises(ValueError, match="scale"):
        Format("uint16", scale=0.0)
    with pytest.raises(ValueError, match="registers or bits"):
        BlockCodec([Format("uint16"), Format("bool", in_bit_table=True)], [0, 0])
    with pytest.raises(ValueError, match="span"):
        BlockCodec([Format("float64")], [2]).decode([0, 0, 0, 0])


# -- properties -------------------------------------------------------------------------------

orders = st.sampled_from(ORDERS)


def raws(type_: str) -> st.SearchStrategy[Any]:
    if type_ in INT_RANGES:
        lo, hi = INT_RANGES[type_]
        return st.integers(lo, hi)
    if type_ == "float32":
        return st.floats(width=32, allow_nan=False)
    return st.floats(allow_nan=False)


@st.composite
def typed_raw(draw: st.DrawFn) -> tuple[Format, Any]:
    type_ = draw(st.sampled_from(REGISTER_TYPES))
    word, byte = draw(orders)
    return Format(type_, word, byte), draw(raws(type_))  # type: ignore[arg-type]


@given(typed_raw())
def test_raw_round_trip_in_every_layout(case: tuple[Format, Any]) -> None:
    fmt, raw = case
    registers = to_registers(raw, fmt)
    assert len(registers) == WORDS[fmt.type]
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert from_registers(registers, fmt) == raw
    assert BlockCodec([fmt], [0]).decode(registers)[0] == float(raw)


@given(typed_raw())
def test_layouts_agree_with_pythons_struct(case: tuple[Format, Any]) -> None:
    """ABCD is the big-endian encoding and DCBA the little-endian one, byte for byte; CDAB and
    BADC are their word and byte swaps."""
    fmt, raw = case
    code = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I"}
    code |= {"int64": "q", "float32": "f", "float64": "d"}
    big = struct.pack(">" + code[fmt.type], raw)
    little = struct.pack("<" + code[fmt.type], raw)
    words_big = [big[i : i + 2] for i in range(0, len(big), 2)]
    expected = {
        ("big", "big"): big,
        ("little", "little"): little,
        ("little", "big"): b"".join(reversed(words_big)),
        ("big", "little"): b"".join(w[::-1] for w in words_big),
    }[(fmt.word_order, fmt.byte_order)]
    got = b"".join(r.to_bytes(2, "big") for r in to_registers(raw, fmt))
    assert got == expected


SCALES = [1.0, 0.1, 0.01, 0.5, 10.0, -1.0, 0.001]
OFFSETS = [0.0, -40.0, 273.15, 1000.0]


@given(
    st.sampled_from([t for t in REGISTER_TYPES if t in INT_RANGES]),
    orders,
    st.sampled_from(SCALES),
    st.sampled_from(OFFSETS),
    st.data(),
)
def test_engineering_round_trip(
    type_: Any, order: tuple[Any, Any], scale: float, offset: float, data: st.DataObject
) -> None:
    lo, hi = INT_RANGES[type_]
    raw = data.draw(st.integers(max(lo, -(2**40)), min(hi, 2**40)))  # float64-exact range
    fmt = Format(type_, *order, scale=scale, offset=offset)
    value = raw * scale + offset
    assert raw_value(value, fmt) == raw
    assert from_registers(encode(value, fmt), fmt) == raw
    assert decode(encode(value, fmt), fmt) == pytest.approx(value, rel=1e-12, abs=1e-9)


@st.composite
def layouts(draw: st.DrawFn) -> tuple[list[Format], list[int], list[int]]:
    """Formats at offsets in a block of random registers (values may overlap: decode only)."""
    n = draw(st.integers(1, 12))
    fmts: list[Format] = []
    offsets: list[int] = []
    for _ in range(n):
        word, byte = draw(orders)
        scale = draw(st.sampled_from(SCALES))
        offset = draw(st.sampled_from(OFFSETS))
        if draw(st.booleans()):
            type_ = draw(st.sampled_from(REGISTER_TYPES))
            fmts.append(Format(type_, word, byte, scale=scale, offset=offset))
        else:
            type_ = draw(st.sampled_from(["bool", "uint16", "int16"]))
            bit = draw(st.integers(0, 15))
            fmts.append(Format(type_, word, byte, bit=bit, scale=scale, offset=offset))
        offsets.append(draw(st.integers(0, 20)))
    size = max(o + f.registers for f, o in zip(fmts, offsets, strict=True))
    block = draw(st.lists(st.integers(0, 0xFFFF), min_size=size, max_size=size + 3))
    return fmts, offsets, block


@given(layouts())
def test_vectorised_decode_equals_scalar_decode(
    case: tuple[list[Format], list[int], list[int]],
) -> None:
    fmts, offsets, block = case
    got = BlockCodec(fmts, offsets).decode(np.asarray(block, dtype=np.uint16))
    want = [decode(block[o : o + f.registers], f) for f, o in zip(fmts, offsets, strict=True)]
    np.testing.assert_array_equal(got, np.asarray(want))


@settings(max_examples=200)
@given(st.data())
def test_encode_into_then_decode_gives_the_values_back(data: st.DataObject) -> None:
    """Values placed without overlap (bit fields may share a register, on different bits),
    with scales that are powers of two so raw * scale is exact."""
    fmts: list[Format] = []
    offsets: list[int] = []
    values: list[float] = []
    address = 0
    for _ in range(data.draw(st.integers(1, 10))):
        word, byte = data.draw(orders)
        scale = data.draw(st.sampled_from([1.0, 0.5, 0.25, 2.0]))
        if data.draw(st.booleans()):
            bits = data.draw(st.lists(st.integers(0, 15), min_size=1, max_size=4, unique=True))
            for b in bits:
                fmts.append(Format("bool", word, byte, bit=b, scale=scale))
                offsets.append(address)
                values.append(data.draw(st.integers(0, 1)) * scale)
            address += 1
            continue
        type_ = data.draw(st.sampled_from(REGISTER_TYPES))
        fmt = Format(type_, word, byte, scale=scale)
        raw = data.draw(raws(type_))
        if type_ == "int64":
            raw = data.draw(st.integers(-(2**52), 2**52))  # exact as a float64
        if type_ == "float32" and abs(raw * scale) > 3e38:
            raw = 1.0
        fmts.append(fmt)
        offsets.append(address)
        values.append(float(raw) * scale)
        address += fmt.registers + data.draw(st.integers(0, 2))
    block = np.zeros(address + 1, dtype=np.uint16)
    codec = BlockCodec(fmts, offsets)
    codec.encode_into(values, block)
    got = [
        decode(block[o : o + f.registers].tolist(), f) for f, o in zip(fmts, offsets, strict=True)
    ]
    assert got == values
    np.testing.assert_array_equal(codec.decode(block), np.asarray(values))


@given(st.lists(st.booleans(), min_size=1, max_size=40), st.data())
def test_bit_tables(bits: list[bool], data: st.DataObject) -> None:
    offsets = data.draw(st.lists(st.integers(0, len(bits) - 1), min_size=1, max_size=10))
    fmts = [Format("bool", in_bit_table=True)] * len(offsets)
    codec = BlockCodec(fmts, offsets)
    assert codec.decode(bits).tolist() == [float(bits[o]) for o in offsets]
    block = np.zeros(len(bits), dtype=np.bool_)
    codec.encode_into([float(bits[o]) for o in offsets], block)
    assert [bool(block[o]) for o in offsets] == [bits[o] for o in offsets]
