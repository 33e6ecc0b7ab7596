"""OPC UA values to and from the platform: status codes, Variants, timestamps.

Reading (data change notifications):

* **Quality** from the StatusCode's severity, the two top bits (OPC 10000-4 §7.39):
  ``00`` Good → ``GOOD``, ``01`` Uncertain → ``UNCERTAIN``, ``10``/``11`` Bad → ``BAD``; two Bad
  codes keep their meaning: ``BadNotConnected`` → ``BAD_NOT_CONNECTED`` and
  ``BadCommunicationError`` → ``BAD_COMM_FAILURE``.
* **Values** become float64: numbers as they are, Boolean as 0/1, DateTime as Unix seconds. A
  signal of type string receives every value as an Event (text). Anything else (arrays,
  structures, ByteString, a String on a numeric signal) cannot be a sample: it is counted and
  skipped.
* **Timestamps**: the server's SourceTimestamp when present, else the time of arrival.

Writing: the node's DataType (one of the built-in types Boolean, SByte..UInt64, Float, Double,
String) decides the Variant; a value that does not fit (out of range, not an integer, a string
for a number...) is refused before anything goes on the wire.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Final

from asyncua import ua

from factory5g.connect.base import WriteValue
from factory5g.stream import Quality

__all__ = [
    "ConversionError",
    "datetime_ns",
    "quality_of",
    "sample_value",
    "to_variant",
    "variant_type_of",
    "writable_types",
]

_SEVERITY: Final = 0xC0000000
_UNCERTAIN: Final = 0x40000000
_BY_CODE: Final = {
    ua.StatusCodes.BadNotConnected: Quality.BAD_NOT_CONNECTED,
    ua.StatusCodes.BadCommunicationError: Quality.BAD_COMM_FAILURE,
}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_INT_RANGES: Final = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}
_FLOAT32_MAX: Final = 3.4028234663852886e38


class ConversionError(ValueError):
    """A value that does not fit a Variant type; ``why`` says how, for the operator."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def quality_of(code: int) -> int:
    """The platform quality byte of an OPC UA StatusCode value."""
    severity = code & _SEVERITY
    if severity == 0:
        return Quality.GOOD
    if severity == _UNCERTAIN:
        return Quality.UNCERTAIN
    return _BY_CODE.get(code & 0xFFFF0000, Quality.BAD)


def datetime_ns(dt: datetime) -> int:
    """A DateTime as ns since the Unix epoch, exactly (a naive one is taken as UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    d = dt - _EPOCH
    return ((d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds) * 1_000


def sample_value(value: object) -> float | None:
    """A Variant's value as a sample, or None if it cannot be one (arrays, text, structures)."""
    if type(value) is float:  # the common case first: Double and Float
        return value
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, datetime):
        return datetime_ns(value) / 1e9
    return None


def variant_type_of(data_type: ua.NodeId) -> ua.VariantType | None:
    """The Variant type of a concrete built-in DataType (ns=0, i=1..21), Int32 for Enumeration;
    None for anything else (abstract types such as Number, structures, custom types)."""
    if data_type.NamespaceIndex == 0 and isinstance(data_type.Identifier, int):
        ident = data_type.Identifier
        if 1 <= ident <= 21:
            # OPC 10000-6 §5.1.2: built-in DataType ids equal their Variant type ids
            return ua.VariantType(ident)
        if ident == ua.ObjectIds.Enumeration:
            return ua.VariantType.Int32  # OPC 10000-3 §8.14: enumerations travel as Int32
    return None


def writable_types() -> tuple[ua.VariantType, ...]:
    """The Variant types :func:`to_variant` writes."""
    return (
        ua.VariantType.Boolean,
        *_INT_RANGES,
        ua.VariantType.Float,
        ua.VariantType.Double,
        ua.VariantType.String,
    )


def to_variant(value: WriteValue, vtype: ua.VariantType) -> ua.Variant:
    """``value`` as a Variant of type ``vtype``; raise ConversionError if it does not fit."""
    if vtype in _INT_RANGES:
        if isinstance(value, str):
            raise ConversionError("a number is needed, not text")
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise ConversionError(f"{value} is not an integer")
        iv = int(value)
        lo, hi = _INT_RANGES[vtype]
        if not lo <= iv <= hi:
            raise ConversionError(f"{iv} is outside {vtype.name} [{lo}, {hi}]")
        return ua.Variant(iv, vtype)
    if vtype is ua.VariantType.Double:
        if isinstance(value, str):
            raise ConversionError("a number is needed, not text")
        return ua.Variant(float(value), vtype)
    if vtype is ua.VariantType.Float:
        if isinstance(value, str):
            raise ConversionError("a number is needed, not text")
        fv = float(value)
        if math.isfinite(fv) and abs(fv) > _FLOAT32_MAX:
            raise ConversionError(f"{fv} is outside Float [±{_FLOAT32_MAX:.7g}]")
        return ua.Variant(fv, vtype)
    if vtype is ua.VariantType.Boolean:
        if isinstance(value, str):
            raise ConversionError("true or false is needed, not text")
        if not isinstance(value, bool) and value not in (0, 1):
            raise ConversionError(f"{value} is not a Boolean (use true/false or 0/1)")
        return ua.Variant(bool(value), vtype)
    if vtype is ua.VariantType.String:
        if not isinstance(value, str):
            raise ConversionError(f"text is needed, not {type(value).__name__} {value!r}")
        try:
            value.encode("utf-8")  # OPC 10000-6 §5.2.2.4: Strings are UTF-8
        except UnicodeEncodeError as exc:
            raise ConversionError(f"the text is not valid Unicode ({exc.reason})") from None
        return ua.Variant(value, vtype)
    raise ConversionError(f"writing {vtype.name} values is not supported")
