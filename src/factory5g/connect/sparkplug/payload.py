"""Sparkplug B payloads: the protobuf schema of Sparkplug 3.0 §6.4 as frozen dataclasses, with a
plain-Python proto2 codec (no protobuf library at run time).

This is the complete, readable codec: births, commands, DataSets, Templates, property sets. The
hot path for DATA messages is :mod:`factory5g.connect.sparkplug.fastdecode`, which turns many
payloads into numpy columns at once and sends the rare complex metric back here
(:func:`decode_metric`).

Schema (proto2, package ``org.eclipse.tahu.protobuf``, §6.4.1); comments cite fields as
``Message.number`` and sections of the Sparkplug 3.0 specification as §::

    Payload        1 timestamp u64, 2 metrics Metric*, 3 seq u64, 4 uuid str, 5 body bytes, 6+ ext
    Metric         1 name, 2 alias u64, 3 timestamp u64, 4 datatype u32, 5 is_historical,
                   6 is_transient, 7 is_null, 8 metadata, 9 properties, oneof value: 10 int_value
                   u32, 11 long_value u64, 12 float, 13 double, 14 bool, 15 string, 16 bytes,
                   17 dataset_value, 18 template_value, 19 extension_value
    MetaData       1 is_multi_part, 2 content_type, 3 size u64, 4 seq u64, 5 file_name,
                   6 file_type, 7 md5, 8 description
    PropertySet    1 keys str*, 2 values PropertyValue*          PropertySetList  1 propertyset*
    PropertyValue  1 type u32, 2 is_null, oneof: 3 int u32, 4 long u64, 5 float, 6 double,
                   7 bool, 8 string, 9 propertyset_value, 10 propertysets_value, 11 extension
    DataSet        1 num_of_columns u64, 2 columns str*, 3 types u32*, 4 rows Row*
    Row            1 elements DataSetValue*
    DataSetValue   oneof: 1 int u32, 2 long u64, 3 float, 4 double, 5 bool, 6 string, 7 extension
    Template       1 version, 2 metrics Metric*, 3 parameters Parameter*, 4 template_ref,
                   5 is_definition
    Parameter      1 name, 2 type u32, oneof: 3 int u32, 4 long u64, 5 float, 6 double, 7 bool,
                   8 string, 9 extension

How values are represented:

- An absent optional field is ``None``. The flags ``is_historical``, ``is_transient`` and
  ``is_null`` are plain booleans, written only when true; ``Template.is_definition`` is always
  written (tck-id-payloads-template-is-definition).
- A value's Python type follows its datatype (§6.4.17): the integer types and DateTime (ms since
  the epoch, UTC) are ``int``, Float/Double ``float``, Boolean ``bool``, String/Text/UUID ``str``,
  Bytes/File ``bytes``, DataSet :class:`DataSet`, Template :class:`Template`.
- The array datatypes (Int8Array=22 … DateTimeArray=34) travel in ``bytes_value`` as packed little
  endian arrays (§6.4.17); this codec passes them through as ``bytes`` undecoded.
- ``extension_value`` fields are kept as :class:`Extension` (their raw bytes) so they survive a
  decode/encode round trip; Payload extensions (fields 6+) and other unknown fields are skipped
  (forward compatible).
- Signed integers travel two's-complement in the unsigned fields: Int8/Int16/Int32 in
  ``int_value`` (u32), Int64 in ``long_value`` (u64). The encoder writes the value modulo 2**width
  (Int8 -1 → 255, as Eclipse Tahu's Python code and pysparkplug do); the decoder keeps the low
  ``width`` bits and sign-extends them, so it reads that and the sign-extended form of Tahu's Java
  encoder (Int8 -1 → 0xFFFFFFFF) alike.
- The encoder puts UInt32 in ``int_value`` as §6.4.17 says; the decoder accepts any integer field
  for any integer datatype (Tahu's Java encoder sends UInt32 in ``long_value``).

Decoding is strict about the wire and lenient about the schema: truncated varints, lengths past
the end, wire types 3, 4, 6, 7 (groups are not used by Sparkplug), a known field sent with another
wire type, field number 0, invalid UTF-8 and nesting deeper than :data:`MAX_DEPTH` raise
:class:`SparkplugDecodeError` with the byte offset — never another exception, never a hang (the
decoder is linear in the input). A non-repeated field that occurs twice keeps its last occurrence
(protobuf would merge two occurrences of a sub-message; no Sparkplug encoder sends them).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, TypeAlias

from factory5g.connect.sparkplug.errors import SparkplugDecodeError, SparkplugEncodeError

__all__ = [
    "MAX_DEPTH",
    "CellValue",
    "DataSet",
    "DataType",
    "Extension",
    "MetaData",
    "Metric",
    "MetricValue",
    "Parameter",
    "Payload",
    "PropertySet",
    "PropertyValue",
    "PropertyValueData",
    "Template",
    "decode_metric",
    "decode_payload",
    "encode_payload",
]


class DataType(IntEnum):
    """Sparkplug datatypes (Sparkplug 3.0 §6.4.16), spelled as in sparkplug_b.proto."""

    Unknown = 0
    # Basic types
    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
    # Additional metric types
    UUID = 15
    DataSet = 16
    Bytes = 17
    File = 18
    Template = 19
    # Additional property value types
    PropertySet = 20
    PropertySetList = 21
    # Array types: packed little endian in bytes_value
    Int8Array = 22
    Int16Array = 23
    Int32Array = 24
    Int64Array = 25
    UInt8Array = 26
    UInt16Array = 27
    UInt32Array = 28
    UInt64Array = 29
    FloatArray = 30
    DoubleArray = 31
    BooleanArray = 32
    StringArray = 33
    DateTimeArray = 34

    @classmethod
    def of(cls, code: int) -> int:
        """``code`` as a member when Sparkplug defines it, else as a plain int (newer types)."""
        return cls(code) if 0 <= code <= _MAX_DATATYPE else code


_MAX_DATATYPE: Final = 34

#: Deepest nesting of messages the decoder accepts (Payload = 0, its metrics = 1, ...).
MAX_DEPTH: Final = 32


# -- the model ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Extension:
    """An ``extension_value``: the raw bytes of a ``*ValueExtension`` message.

    Extensions are third-party additions opaque to Sparkplug; keeping their bytes lets a decoded
    payload re-encode unchanged.
    """

    raw: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class MetaData:
    """MetaData of a Bytes/File/multi-part metric (§6.4.7)."""

    is_multi_part: bool | None = None  # MetaData.1
    content_type: str | None = None  # MetaData.2
    size: int | None = None  # MetaData.3 (u64)
    seq: int | None = None  # MetaData.4 (u64), the part number of a multi-part metric
    file_name: str | None = None  # MetaData.5
    file_type: str | None = None  # MetaData.6
    md5: str | None = None  # MetaData.7
    description: str | None = None  # MetaData.8


@dataclass(frozen=True, slots=True, kw_only=True)
class PropertyValue:
    """One property (§6.4.9): a typed value; PropertySet (20) and PropertySetList (21) nest.

    ``value`` is a scalar for the basic types, a :class:`PropertySet` for type 20, a tuple of
    them for type 21, an :class:`Extension`, or ``None`` when absent.
    """

    type: int | None = None  # PropertyValue.1, a DataType
    value: PropertyValueData | None = None  # PropertyValue.3..11
    is_null: bool = False  # PropertyValue.2


@dataclass(frozen=True, slots=True, kw_only=True)
class PropertySet:
    """Custom properties of a metric (§6.4.8): keys and values, two arrays of equal length."""

    keys: tuple[str, ...] = ()  # PropertySet.1
    values: tuple[PropertyValue, ...] = ()  # PropertySet.2

    def get(self, key: str) -> PropertyValue | None:
        """The value of property ``key`` (the last one if repeated), or None."""
        found = None
        for k, v in zip(self.keys, self.values, strict=False):
            if k == key:
                found = v
        return found


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSet:
    """A table (§6.4.11): named, typed columns and rows of cells; a null cell is ``None``.

    ``num_of_columns`` (DataSet.1) is not stored: the encoder writes ``len(columns)``.
    """

    columns: tuple[str, ...] = ()  # DataSet.2
    types: tuple[int, ...] = ()  # DataSet.3, DataTypes of the columns
    rows: tuple[tuple[CellValue | None, ...], ...] = ()  # DataSet.4 → Row.1 → DataSetValue


@dataclass(frozen=True, slots=True, kw_only=True)
class Parameter:
    """A Template parameter (§6.4.15): its default in a definition, its value in an instance."""

    name: str | None = None  # Parameter.1
    type: int | None = None  # Parameter.2, a DataType
    value: CellValue | None = None  # Parameter.3..9


@dataclass(frozen=True, slots=True, kw_only=True)
class Template:
    """A Template (§6.4.14): a definition (``is_definition``, no ``template_ref``) or an instance
    naming the definition's metric in ``template_ref``."""

    version: str | None = None  # Template.1
    metrics: tuple[Metric, ...] = ()  # Template.2
    parameters: tuple[Parameter, ...] = ()  # Template.3
    template_ref: str | None = None  # Template.4
    is_definition: bool = False  # Template.5, always written


@dataclass(frozen=True, slots=True, kw_only=True)
class Metric:
    """A metric (§6.4.6). BIRTHs carry name, alias and datatype; DATA and CMD may carry only the
    alias (tck-id-payloads-alias-data-cmd-requirement)."""

    name: str | None = None  # Metric.1
    alias: int | None = None  # Metric.2 (u64)
    timestamp: int | None = None  # Metric.3, ms since the epoch (UTC)
    datatype: int | None = None  # Metric.4, a DataType
    value: MetricValue | None = None  # Metric.10..19
    is_historical: bool = False  # Metric.5
    is_transient: bool = False  # Metric.6
    is_null: bool = False  # Metric.7
    metadata: MetaData | None = None  # Metric.8
    properties: PropertySet | None = None  # Metric.9

    @classmethod
    def for_value(
        cls,
        name_or_alias: str | int,
        datatype: int,
        value: MetricValue | None,
        *,
        alias: int | None = None,
        timestamp: int | None = None,
        is_historical: bool = False,
        is_transient: bool = False,
        metadata: MetaData | None = None,
        properties: PropertySet | None = None,
    ) -> Metric:
        """A metric carrying ``value`` as ``datatype``; ``None`` makes a null metric (is_null).

        ``name_or_alias`` is the name (a ``str``; pass ``alias=`` too in a BIRTH) or the alias (an
        ``int``). The value is checked now (:class:`SparkplugEncodeError` if it does not fit) and
        normalised to what the wire will carry: ints become floats for Float/Double, a Float is
        rounded to 32 bits, bytes-likes become ``bytes``.
        """
        if isinstance(name_or_alias, str):
            name: str | None = name_or_alias
        else:
            if alias is not None and alias != name_or_alias:
                raise SparkplugEncodeError(f"alias given twice: {name_or_alias} and {alias}")
            name, alias = None, name_or_alias
        if value is not None:
            value = _normalised(datatype, value)
        metric = cls(
            name=name,
            alias=alias,
            timestamp=timestamp,
            datatype=DataType.of(datatype),
            value=value,
            is_historical=is_historical,
            is_transient=is_transient,
            is_null=value is None,
            metadata=metadata,
            properties=properties,
        )
        _encode_metric(metric, 1)  # checks alias, timestamp, properties, ... as the encoder will
        return metric


@dataclass(frozen=True, slots=True, kw_only=True)
class Payload:
    """A Sparkplug B payload (§6.4.5): ``seq`` is 0..255 in every message but NDEATH."""

    timestamp: int | None = None  # Payload.1, ms since the epoch (UTC), when published
    metrics: tuple[Metric, ...] = ()  # Payload.2
    seq: int | None = None  # Payload.3
    uuid: str | None = None  # Payload.4
    body: bytes | None = None  # Payload.5


Scalar: TypeAlias = int | float | bool | str
#: A DataSet cell or a Template parameter value.
CellValue: TypeAlias = Scalar | Extension
#: The value of a PropertyValue.
PropertyValueData: TypeAlias = Scalar | PropertySet | tuple[PropertySet, ...] | Extension
#: The value of a Metric.
MetricValue: TypeAlias = Scalar | bytes | DataSet | Template | Extension


# -- datatypes and the oneof value fields ---------------------------------------------------------

# Every value oneof starts with the same six scalar fields, from a message-specific base number
# (Metric 10, PropertyValue 3, DataSetValue 1, Parameter 3); a kind is the offset from that base.
_INT: Final = 0  # uint32
_LONG: Final = 1  # uint64
_FLOAT: Final = 2  # float (fixed32)
_DOUBLE: Final = 3  # double (fixed64)
_BOOL: Final = 4  # bool (varint)
_STRING: Final = 5  # string

# The field each datatype travels in (§6.4.17 "Google Protocol Buffer Type").
_KIND_OF: Final[dict[int, int]] = {
    DataType.Int8: _INT,
    DataType.Int16: _INT,
    DataType.Int32: _INT,
    DataType.UInt8: _INT,
    DataType.UInt16: _INT,
    DataType.UInt32: _INT,
    DataType.Int64: _LONG,
    DataType.UInt64: _LONG,
    DataType.DateTime: _LONG,
    DataType.Float: _FLOAT,
    DataType.Double: _DOUBLE,
    DataType.Boolean: _BOOL,
    DataType.String: _STRING,
    DataType.Text: _STRING,
    DataType.UUID: _STRING,
}
# (bits, signed) of the integer datatypes.
_INT_WIDTH: Final[dict[int, tuple[int, bool]]] = {
    DataType.Int8: (8, True),
    DataType.Int16: (16, True),
    DataType.Int32: (32, True),
    DataType.Int64: (64, True),
    DataType.UInt8: (8, False),
    DataType.UInt16: (16, False),
    DataType.UInt32: (32, False),
    DataType.UInt64: (64, False),
    DataType.DateTime: (64, False),
}
_BYTES_TYPES: Final = frozenset(
    {DataType.Bytes, DataType.File, *range(DataType.Int8Array, DataType.DateTimeArray + 1)}
)

_U32: Final = (1 << 32) - 1
_U64: Final = (1 << 64) - 1

# Protobuf wire types.
_VARINT: Final = 0
_I64: Final = 1
_LEN: Final = 2
_I32: Final = 5
_WIRE_OF_KIND: Final = (_VARINT, _VARINT, _I32, _I64, _VARINT, _LEN)
_MAX_FIELD_NUMBER: Final = (1 << 29) - 1

_F32: Final = struct.Struct("<f")
_F64: Final = struct.Struct("<d")


def _sign_extend(raw: int, bits: int) -> int:
    """The low ``bits`` of ``raw`` read as a two's-complement number."""
    raw &= (1 << bits) - 1
    return raw - (1 << bits) if raw >> (bits - 1) else raw


def _typed(kind: int, wire: Scalar, datatype: int | None) -> Scalar:
    """A decoded scalar as its datatype wants it: signed integers get their sign back."""
    if kind <= _LONG and datatype is not None:
        width = _INT_WIDTH.get(datatype)
        if width is not None and width[1]:
            assert isinstance(wire, int)
            return _sign_extend(wire, width[0])
    return wire


# -- decoding -------------------------------------------------------------------------------------


def decode_payload(data: bytes | bytearray | memoryview) -> Payload:
    """Decode a Sparkplug B payload; raise :class:`SparkplugDecodeError` if it is not one."""
    buf = bytes(data)
    return _decode_payload(buf, 0, len(buf))


def decode_metric(data: bytes | bytearray | memoryview) -> Metric:
    """Decode one ``Metric`` message (the bytes of a ``Payload.2`` field, without tag and length).

    :mod:`~factory5g.connect.sparkplug.fastdecode` gives each metric's byte range for this.
    """
    buf = bytes(data)
    return _decode_metric(buf, 0, len(buf), 1)


def _read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it; at most 10 bytes, kept to 64 bits."""
    start = pos
    result = 0
    shift = 0
    while pos < end:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & _U64, pos
        shift += 7
        if shift >= 70:
            raise SparkplugDecodeError("varint longer than 10 bytes", start)
    raise SparkplugDecodeError("varint runs past the end of its message", start)


def _fields(buf: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """The fields of the message ``buf[pos:end]`` as ``(number, wire_type, value, start, stop)``.

    ``value`` is a varint's value or a length-delimited field's length (0 for fixed32/64 fields);
    ``buf[start:stop]`` holds the field's value.
    """
    while pos < end:
        at = pos
        tag, pos = _read_varint(buf, pos, end)
        number, wire_type = tag >> 3, tag & 7
        if not 1 <= number <= _MAX_FIELD_NUMBER:
            raise SparkplugDecodeError(f"field number {number} out of range", at)
        start = pos
        value = 0
        if wire_type == _VARINT:
            value, pos = _read_varint(buf, pos, end)
        elif wire_type == _LEN:
            value, start = _read_varint(buf, pos, end)
            if value > end - start:
                raise SparkplugDecodeError(f"field {number} of {value} bytes runs past the end", at)
            pos = start + value
        elif wire_type in (_I64, _I32):
            pos += 8 if wire_type == _I64 else 4
            if pos > end:
                raise SparkplugDecodeError(f"fixed-size field {number} runs past the end", at)
        else:
            raise SparkplugDecodeError(f"field {number} has wire type {wire_type}", at)
        yield number, wire_type, value, start, pos


def _want(wire_type: int, expected: int, what: str, at: int) -> None:
    if wire_type != expected:
        raise SparkplugDecodeError(f"{what} has wire type {wire_type}, expected {expected}", at)


def _utf8(buf: bytes, start: int, stop: int, what: str) -> str:
    try:
        return buf[start:stop].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SparkplugDecodeError(f"{what} is not UTF-8", start + exc.start) from None


def _check_depth(depth: int, at: int) -> None:
    if depth > MAX_DEPTH:
        raise SparkplugDecodeError(f"messages nested deeper than {MAX_DEPTH}", at)


def _scalar(buf: bytes, kind: int, field: tuple[int, int, int, int, int], what: str) -> Scalar:
    """The value of a scalar oneof field of ``kind``, as it is on the wire (unsigned ints)."""
    _, wire_type, value, start, stop = field
    _want(wire_type, _WIRE_OF_KIND[kind], what, start)
    if kind == _INT:
        return value & _U32  # a uint32 sent as a longer varint keeps its low 32 bits
    if kind == _LONG:
        return value
    if kind == _FLOAT:
        return float(_F32.unpack_from(buf, start)[0])
    if kind == _DOUBLE:
        return float(_F64.unpack_from(buf, start)[0])
    if kind == _BOOL:
        return value != 0
    return _utf8(buf, start, stop, what)


def _decode_payload(buf: bytes, pos: int, end: int) -> Payload:
    timestamp = seq = uuid = body = None
    metrics: list[Metric] = []
    for f in _fields(buf, pos, end):
        number, wire_type, value, start, stop = f
        if number == 1:  # Payload.1 timestamp
            _want(wire_type, _VARINT, "Payload.timestamp", start)
            timestamp = value
        elif number == 2:  # Payload.2 metrics
            _want(wire_type, _LEN, "Payload.metrics", start)
            metrics.append(_decode_metric(buf, start, stop, 1))
        elif number == 3:  # Payload.3 seq
            _want(wire_type, _VARINT, "Payload.seq", start)
            seq = value
        elif number == 4:  # Payload.4 uuid
            _want(wire_type, _LEN, "Payload.uuid", start)
            uuid = _utf8(buf, start, stop, "Payload.uuid")
        elif number == 5:  # Payload.5 body
            _want(wire_type, _LEN, "Payload.body", start)
            body = buf[start:stop]
        # 6+: extensions and unknown fields, skipped
    return Payload(timestamp=timestamp, metrics=tuple(metrics), seq=seq, uuid=uuid, body=body)


def _decode_metric(buf: bytes, pos: int, end: int, depth: int) -> Metric:
    _check_depth(depth, pos)
    name = alias = timestamp = datatype = None
    is_historical = is_transient = is_null = False
    metadata = properties = None
    value: MetricValue | None = None
    kind = -1  # the scalar kind of value, -1 when it is not a scalar
    for f in _fields(buf, pos, end):
        number, wire_type, raw, start, stop = f
        if number == 1:  # Metric.1 name
            _want(wire_type, _LEN, "Metric.name", start)
            name = _utf8(buf, start, stop, "Metric.name")
        elif number == 2:  # Metric.2 alias
            _want(wire_type, _VARINT, "Metric.alias", start)
            alias = raw
        elif number == 3:  # Metric.3 timestamp
            _want(wire_type, _VARINT, "Metric.timestamp", start)
            timestamp = raw
        elif number == 4:  # Metric.4 datatype (u32)
            _want(wire_type, _VARINT, "Metric.datatype", start)
            datatype = DataType.of(raw & _U32)
        elif 5 <= number <= 7:  # Metric.5 is_historical, .6 is_transient, .7 is_null
            _want(wire_type, _VARINT, "Metric flag", start)
            if number == 5:
                is_historical = raw != 0
            elif number == 6:
                is_transient = raw != 0
            else:
                is_null = raw != 0
        elif number == 8:  # Metric.8 metadata
            _want(wire_type, _LEN, "Metric.metadata", start)
            metadata = _decode_metadata(buf, start, stop, depth + 1)
        elif number == 9:  # Metric.9 properties
            _want(wire_type, _LEN, "Metric.properties", start)
            properties = _decode_property_set(buf, start, stop, depth + 1)
        elif 10 <= number <= 15:  # Metric.10..15 int/long/float/double/boolean/string_value
            kind = number - 10
            value = _scalar(buf, kind, f, "Metric.value")
        elif 16 <= number <= 19:
            _want(wire_type, _LEN, "Metric.value", start)
            kind = -1
            if number == 16:  # Metric.16 bytes_value (Bytes, File, arrays)
                value = buf[start:stop]
            elif number == 17:  # Metric.17 dataset_value
                value = _decode_dataset(buf, start, stop, depth + 1)
            elif number == 18:  # Metric.18 template_value
                value = _decode_template(buf, start, stop, depth + 1)
            else:  # Metric.19 extension_value
                value = Extension(buf[start:stop])
    if kind >= 0:
        assert isinstance(value, int | float | str)
        value = _typed(kind, value, datatype)
    return Metric(
        name=name,
        alias=alias,
        timestamp=timestamp,
        datatype=datatype,
        value=value,
        is_historical=is_historical,
        is_transient=is_transient,
        is_null=is_null,
        metadata=metadata,
        properties=properties,
    )


def _decode_metadata(buf: bytes, pos: int, end: int, depth: int) -> MetaData:
    _check_depth(depth, pos)
    is_multi_part = size = seq = None
    strings: dict[int, str] = {}
    for number, wire_type, value, start, stop in _fields(buf, pos, end):
        if number == 1:  # MetaData.1 is_multi_part
            _want(wire_type, _VARINT, "MetaData.is_multi_part", start)
            is_multi_part = value != 0
        elif number == 3 or number == 4:  # MetaData.3 size, .4 seq
            _want(wire_type, _VARINT, "MetaData.size/seq", start)
            if number == 3:
                size = value
            else:
                seq = value
        elif 2 <= number <= 8:  # MetaData.2, .5-.8: content_type, file_name/type, md5, description
            _want(wire_type, _LEN, "MetaData string", start)
            strings[number] = _utf8(buf, start, stop, "MetaData string")
    return MetaData(
        is_multi_part=is_multi_part,
        content_type=strings.get(2),
        size=size,
        seq=seq,
        file_name=strings.get(5),
        file_type=strings.get(6),
        md5=strings.get(7),
        description=strings.get(8),
    )


def _decode_property_set(buf: bytes, pos: int, end: int, depth: int) -> PropertySet:
    _check_depth(depth, pos)
    keys: list[str] = []
    values: list[PropertyValue] = []
    for number, wire_type, _, start, stop in _fields(buf, pos, end):
        if number == 1:  # PropertySet.1 keys
            _want(wire_type, _LEN, "PropertySet.keys", start)
            keys.append(_utf8(buf, start, stop, "PropertySet.keys"))
        elif number == 2:  # PropertySet.2 values
            _want(wire_type, _LEN, "PropertySet.values", start)
            values.append(_decode_property_value(buf, start, stop, depth + 1))
    return PropertySet(keys=tuple(keys), values=tuple(values))


def _decode_property_value(buf: bytes, pos: int, end: int, depth: int) -> PropertyValue:
    _check_depth(depth, pos)
    type_ = None
    is_null = False
    value: PropertyValueData | None = None
    kind = -1
    for f in _fields(buf, pos, end):
        number, wire_type, raw, start, stop = f
        if number == 1:  # PropertyValue.1 type
            _want(wire_type, _VARINT, "PropertyValue.type", start)
            type_ = DataType.of(raw & _U32)
        elif number == 2:  # PropertyValue.2 is_null
            _want(wire_type, _VARINT, "PropertyValue.is_null", start)
            is_null = raw != 0
        elif 3 <= number <= 8:  # PropertyValue.3..8 scalars
            kind = number - 3
            value = _scalar(buf, kind, f, "PropertyValue.value")
        elif 9 <= number <= 11:
            _want(wire_type, _LEN, "PropertyValue.value", start)
            kind = -1
            if number == 9:  # PropertyValue.9 propertyset_value
                value = _decode_property_set(buf, start, stop, depth + 1)
            elif number == 10:  # PropertyValue.10 propertysets_value (PropertySetList)
                value = _decode_property_set_list(buf, start, stop, depth + 1)
            else:  # PropertyValue.11 extension_value
                value = Extension(buf[start:stop])
    if kind >= 0:
        assert isinstance(value, int | float | str)
        value = _typed(kind, value, type_)
    return PropertyValue(type=type_, value=value, is_null=is_null)


def _decode_property_set_list(
    buf: bytes, pos: int, end: int, depth: int
) -> tuple[PropertySet, ...]:
    _check_depth(depth, pos)
    sets: list[PropertySet] = []
    for number, wire_type, _, start, stop in _fields(buf, pos, end):
        if number == 1:  # PropertySetList.1 propertyset
            _want(wire_type, _LEN, "PropertySetList.propertyset", start)
            sets.append(_decode_property_set(buf, start, stop, depth + 1))
    return tuple(sets)


def _decode_dataset(buf: bytes, pos: int, end: int, depth: int) -> DataSet:
    _check_depth(depth, pos)
    columns: list[str] = []
    types: list[int] = []
    raw_rows: list[list[tuple[int, CellValue | None]]] = []  # (scalar kind or -1, value)
    for number, wire_type, value, start, stop in _fields(buf, pos, end):
        if number == 1:  # DataSet.1 num_of_columns: implied by the columns
            _want(wire_type, _VARINT, "DataSet.num_of_columns", start)
        elif number == 2:  # DataSet.2 columns
            _want(wire_type, _LEN, "DataSet.columns", start)
            columns.append(_utf8(buf, start, stop, "DataSet.columns"))
        elif number == 3:  # DataSet.3 types: repeated u32, unpacked (proto2) or packed
            if wire_type == _LEN:
                p = start
                while p < stop:
                    code, p = _read_varint(buf, p, stop)
                    types.append(DataType.of(code & _U32))
            else:
                _want(wire_type, _VARINT, "DataSet.types", start)
                types.append(DataType.of(value & _U32))
        elif number == 4:  # DataSet.4 rows
            _want(wire_type, _LEN, "DataSet.rows", start)
            raw_rows.append(_decode_row(buf, start, stop, depth + 1))
    # The types may follow the rows on the wire: give cells their sign once all are known.
    rows = tuple(
        tuple(
            _typed_cell(kind, cell, types[i] if i < len(types) else None)
            for i, (kind, cell) in enumerate(row)
        )
        for row in raw_rows
    )
    return DataSet(columns=tuple(columns), types=tuple(types), rows=rows)


def _typed_cell(kind: int, cell: CellValue | None, datatype: int | None) -> CellValue | None:
    if kind < 0 or cell is None or isinstance(cell, Extension):
        return cell
    return _typed(kind, cell, datatype)


def _decode_row(buf: bytes, pos: int, end: int, depth: int) -> list[tuple[int, CellValue | None]]:
    _check_depth(depth, pos)
    cells: list[tuple[int, CellValue | None]] = []
    for number, wire_type, _, start, stop in _fields(buf, pos, end):
        if number == 1:  # Row.1 elements
            _want(wire_type, _LEN, "Row.elements", start)
            cells.append(_decode_cell(buf, start, stop, depth + 1))
    return cells


def _decode_cell(buf: bytes, pos: int, end: int, depth: int) -> tuple[int, CellValue | None]:
    """A DataSetValue as (scalar kind or -1, value); no value at all is a null cell."""
    _check_depth(depth, pos)
    kind = -1
    value: CellValue | None = None
    for f in _fields(buf, pos, end):
        number, wire_type, _, start, stop = f
        if 1 <= number <= 6:  # DataSetValue.1..6 scalars
            kind = number - 1
            value = _scalar(buf, kind, f, "DataSetValue")
        elif number == 7:  # DataSetValue.7 extension_value
            _want(wire_type, _LEN, "DataSetValue.extension_value", start)
            kind, value = -1, Extension(buf[start:stop])
    return kind, value


def _decode_template(buf: bytes, pos: int, end: int, depth: int) -> Template:
    _check_depth(depth, pos)
    version = template_ref = None
    is_definition = False
    metrics: list[Metric] = []
    parameters: list[Parameter] = []
    for number, wire_type, value, start, stop in _fields(buf, pos, end):
        if number == 1:  # Template.1 version
            _want(wire_type, _LEN, "Template.version", start)
            version = _utf8(buf, start, stop, "Template.version")
        elif number == 2:  # Template.2 metrics
            _want(wire_type, _LEN, "Template.metrics", start)
            metrics.append(_decode_metric(buf, start, stop, depth + 1))
        elif number == 3:  # Template.3 parameters
            _want(wire_type, _LEN, "Template.parameters", start)
            parameters.append(_decode_parameter(buf, start, stop, depth + 1))
        elif number == 4:  # Template.4 template_ref
            _want(wire_type, _LEN, "Template.template_ref", start)
            template_ref = _utf8(buf, start, stop, "Template.template_ref")
        elif number == 5:  # Template.5 is_definition
            _want(wire_type, _VARINT, "Template.is_definition", start)
            is_definition = value != 0
    return Template(
        version=version,
        metrics=tuple(metrics),
        parameters=tuple(parameters),
        template_ref=template_ref,
        is_definition=is_definition,
    )


def _decode_parameter(buf: bytes, pos: int, end: int, depth: int) -> Parameter:
    _check_depth(depth, pos)
    name = type_ = None
    value: CellValue | None = None
    kind = -1
    for f in _fields(buf, pos, end):
        number, wire_type, raw, start, stop = f
        if number == 1:  # Parameter.1 name
            _want(wire_type, _LEN, "Parameter.name", start)
            name = _utf8(buf, start, stop, "Parameter.name")
        elif number == 2:  # Parameter.2 type
            _want(wire_type, _VARINT, "Parameter.type", start)
            type_ = DataType.of(raw & _U32)
        elif 3 <= number <= 8:  # Parameter.3..8 scalars
            kind = number - 3
            value = _scalar(buf, kind, f, "Parameter.value")
        elif number == 9:  # Parameter.9 extension_value
            _want(wire_type, _LEN, "Parameter.extension_value", start)
            kind, value = -1, Extension(buf[start:stop])
    if kind >= 0:
        assert isinstance(value, int | float | str)
        value = _typed(kind, value, type_)
    return Parameter(name=name, type=type_, value=value)


# -- encoding -------------------------------------------------------------------------------------


def encode_payload(payload: Payload) -> bytes:
    """Encode a payload (fields in number order, as protobuf does); raise
    :class:`SparkplugEncodeError` for a value that does not fit its datatype or field."""
    out = bytearray()
    if payload.timestamp is not None:
        _put_uint(out, 1, payload.timestamp, "Payload.timestamp")
    for metric in payload.metrics:
        _put_bytes(out, 2, _encode_metric(metric, 1))
    if payload.seq is not None:
        _put_uint(out, 3, payload.seq, "Payload.seq")
    if payload.uuid is not None:
        _put_bytes(out, 4, _utf8_bytes(payload.uuid, "Payload.uuid"))
    if payload.body is not None:
        _put_bytes(out, 5, bytes(payload.body))
    return bytes(out)


def _put_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _put_tag(out: bytearray, number: int, wire_type: int) -> None:
    _put_varint(out, number << 3 | wire_type)


def _put_uint(out: bytearray, number: int, value: int, what: str, bits: int = 64) -> None:
    if type(value) is bool or not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise SparkplugEncodeError(f"{what} must be an unsigned {bits}-bit int, got {value!r}")
    _put_tag(out, number, _VARINT)
    _put_varint(out, value)


def _put_bool(out: bytearray, number: int, value: bool) -> None:
    _put_tag(out, number, _VARINT)
    out.append(1 if value else 0)


def _put_bytes(out: bytearray, number: int, value: bytes) -> None:
    _put_tag(out, number, _LEN)
    _put_varint(out, len(value))
    out += value


def _utf8_bytes(text: str, what: str) -> bytes:
    if not isinstance(text, str):
        raise SparkplugEncodeError(f"{what} must be a str, got {type(text).__name__}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise SparkplugEncodeError(f"{what} cannot be encoded as UTF-8: {exc.reason}") from None


def _check_encode_depth(depth: int, what: str) -> None:
    if depth > MAX_DEPTH:
        raise SparkplugEncodeError(f"{what} nested deeper than {MAX_DEPTH} messages")


def _infer_kind(value: object, what: str) -> int:
    """The scalar field for a value whose datatype is absent or unknown."""
    if isinstance(value, bool):
        return _BOOL
    if isinstance(value, int):
        return _INT if 0 <= value <= _U32 else _LONG
    if isinstance(value, float):
        return _DOUBLE
    if isinstance(value, str):
        return _STRING
    raise SparkplugEncodeError(f"{what}: cannot encode a {type(value).__name__} without a datatype")


def _put_scalar(out: bytearray, base: int, datatype: int | None, value: object, what: str) -> None:
    """Write ``value`` in the scalar field of its ``datatype`` (in a oneof starting at ``base``)."""
    kind = _KIND_OF.get(datatype) if datatype is not None else None
    if kind is None:
        kind = _infer_kind(value, what)
    number = base + kind
    if kind in (_INT, _LONG):
        width = _INT_WIDTH.get(datatype) if datatype is not None else None
        bits, signed = width if width is not None else (32 if kind == _INT else 64, False)
        if type(value) is bool or not isinstance(value, int):
            raise SparkplugEncodeError(f"{what}: {value!r} is not an int")
        low = -(1 << (bits - 1)) if signed else 0
        high = (1 << (bits - 1)) if signed else (1 << bits)
        if not low <= value < high:
            name = DataType(datatype).name if datatype in _INT_WIDTH else f"{bits}-bit field"
            raise SparkplugEncodeError(f"{what}: {value} does not fit {name}")
        _put_tag(out, number, _VARINT)
        _put_varint(out, value & ((1 << bits) - 1))  # two's complement in the type's own width
    elif kind in (_FLOAT, _DOUBLE):
        if type(value) is bool or not isinstance(value, int | float):
            raise SparkplugEncodeError(f"{what}: {value!r} is not a number")
        try:
            packed = (_F32 if kind == _FLOAT else _F64).pack(float(value))
        except OverflowError:
            raise SparkplugEncodeError(f"{what}: {value!r} does not fit a 32-bit float") from None
        _put_tag(out, number, _I32 if kind == _FLOAT else _I64)
        out += packed
    elif kind == _BOOL:
        if not isinstance(value, bool):
            raise SparkplugEncodeError(f"{what}: {value!r} is not a bool")
        _put_bool(out, number, value)
    else:
        if not isinstance(value, str):
            raise SparkplugEncodeError(f"{what}: {value!r} is not a str")
        _put_bytes(out, number, _utf8_bytes(value, what))


def _normalised(datatype: int, value: MetricValue) -> MetricValue:
    """``value`` as the wire will give it back (used by :meth:`Metric.for_value`)."""
    _put_metric_value(bytearray(), datatype, value, 1)  # raises if it does not fit
    if datatype == DataType.Float and isinstance(value, int | float):
        return float(_F32.unpack(_F32.pack(float(value)))[0])
    if datatype == DataType.Double and isinstance(value, int | float):
        return float(value)
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return value


def _put_metric_value(out: bytearray, datatype: int | None, value: object, depth: int) -> None:
    if isinstance(value, Extension):  # Metric.19: replaces the value whatever the datatype
        _put_bytes(out, 19, bytes(value.raw))
        return
    # The datatype decides the field (§6.4.17); without a known one, the value's Python type does.
    if datatype in _KIND_OF:
        shape = "scalar"
    elif datatype in _BYTES_TYPES:
        shape = "bytes"
    elif datatype == DataType.DataSet:
        shape = "dataset"
    elif datatype == DataType.Template:
        shape = "template"
    elif isinstance(value, DataSet):
        shape = "dataset"
    elif isinstance(value, Template):
        shape = "template"
    elif isinstance(value, bytes | bytearray | memoryview):
        shape = "bytes"
    else:
        shape = "scalar"
    if shape == "dataset":
        if not isinstance(value, DataSet):
            raise SparkplugEncodeError(f"a DataSet metric needs a DataSet, got {value!r}")
        _put_bytes(out, 17, _encode_dataset(value, depth + 1))  # Metric.17
    elif shape == "template":
        if not isinstance(value, Template):
            raise SparkplugEncodeError(f"a Template metric needs a Template, got {value!r}")
        _put_bytes(out, 18, _encode_template(value, depth + 1))  # Metric.18
    elif shape == "bytes":
        if not isinstance(value, bytes | bytearray | memoryview):
            raise SparkplugEncodeError(f"a Bytes/File/array metric needs bytes, got {value!r}")
        _put_bytes(out, 16, bytes(value))  # Metric.16
    else:
        _put_scalar(out, 10, datatype, value, "Metric.value")  # Metric.10..15


def _encode_metric(m: Metric, depth: int) -> bytes:
    _check_encode_depth(depth, "Metric")
    out = bytearray()
    if m.name is not None:
        _put_bytes(out, 1, _utf8_bytes(m.name, "Metric.name"))
    if m.alias is not None:
        _put_uint(out, 2, m.alias, "Metric.alias")
    if m.timestamp is not None:
        _put_uint(out, 3, m.timestamp, "Metric.timestamp")
    if m.datatype is not None:
        _put_uint(out, 4, m.datatype, "Metric.datatype", 32)
    if m.is_historical:
        _put_bool(out, 5, True)
    if m.is_transient:
        _put_bool(out, 6, True)
    if m.is_null:
        _put_bool(out, 7, True)
    if m.metadata is not None:
        _put_bytes(out, 8, _encode_metadata(m.metadata))
    if m.properties is not None:
        _put_bytes(out, 9, _encode_property_set(m.properties, depth + 1))
    if m.value is not None:
        _put_metric_value(out, m.datatype, m.value, depth)
    return bytes(out)


def _encode_metadata(md: MetaData) -> bytes:
    out = bytearray()
    if md.is_multi_part is not None:
        _put_bool(out, 1, md.is_multi_part)
    if md.content_type is not None:
        _put_bytes(out, 2, _utf8_bytes(md.content_type, "MetaData.content_type"))
    if md.size is not None:
        _put_uint(out, 3, md.size, "MetaData.size")
    if md.seq is not None:
        _put_uint(out, 4, md.seq, "MetaData.seq")
    for number, text in ((5, md.file_name), (6, md.file_type), (7, md.md5), (8, md.description)):
        if text is not None:
            _put_bytes(out, number, _utf8_bytes(text, "MetaData string"))
    return bytes(out)


def _encode_property_set(ps: PropertySet, depth: int) -> bytes:
    _check_encode_depth(depth, "PropertySet")
    if len(ps.keys) != len(ps.values):  # tck-id-payloads-propertyset-keys-array-size
        raise SparkplugEncodeError(
            f"PropertySet has {len(ps.keys)} keys and {len(ps.values)} values"
        )
    out = bytearray()
    for key in ps.keys:
        _put_bytes(out, 1, _utf8_bytes(key, "PropertySet.keys"))
    for value in ps.values:
        _put_bytes(out, 2, _encode_property_value(value, depth + 1))
    return bytes(out)


def _encode_property_value(pv: PropertyValue, depth: int) -> bytes:
    _check_encode_depth(depth, "PropertyValue")
    out = bytearray()
    if pv.type is not None:
        _put_uint(out, 1, pv.type, "PropertyValue.type", 32)
    if pv.is_null:
        _put_bool(out, 2, True)
    value = pv.value
    if value is None:
        pass
    elif isinstance(value, Extension):  # PropertyValue.11
        _put_bytes(out, 11, bytes(value.raw))
    elif pv.type == DataType.PropertySet or isinstance(value, PropertySet):
        if not isinstance(value, PropertySet) or pv.type not in (None, DataType.PropertySet):
            raise SparkplugEncodeError(f"PropertyValue of type {pv.type} holds {value!r}")
        _put_bytes(out, 9, _encode_property_set(value, depth + 1))  # PropertyValue.9
    elif pv.type == DataType.PropertySetList or isinstance(value, tuple):
        if not isinstance(value, tuple) or pv.type not in (None, DataType.PropertySetList):
            raise SparkplugEncodeError(f"PropertyValue of type {pv.type} holds {value!r}")
        _check_encode_depth(depth + 1, "PropertySetList")
        sets = bytearray()  # PropertySetList.1 propertyset
        for ps in value:
            if not isinstance(ps, PropertySet):
                raise SparkplugEncodeError(f"PropertySetList holds {ps!r}")
            _put_bytes(sets, 1, _encode_property_set(ps, depth + 2))
        _put_bytes(out, 10, bytes(sets))  # PropertyValue.10
    else:
        _put_scalar(out, 3, pv.type, value, "PropertyValue.value")  # PropertyValue.3..8
    return bytes(out)


def _encode_dataset(ds: DataSet, depth: int) -> bytes:
    _check_encode_depth(depth, "DataSet")
    width = len(ds.columns)
    if len(ds.types) != width:  # tck-id-payloads-dataset-types-num
        raise SparkplugEncodeError(f"DataSet has {width} columns and {len(ds.types)} types")
    out = bytearray()
    _put_uint(out, 1, width, "DataSet.num_of_columns")  # tck-id-payloads-dataset-column-size
    for column in ds.columns:
        _put_bytes(out, 2, _utf8_bytes(column, "DataSet.columns"))
    for code in ds.types:
        _put_uint(out, 3, code, "DataSet.types", 32)
    for r, row in enumerate(ds.rows):
        if len(row) != width:
            raise SparkplugEncodeError(f"DataSet row {r} has {len(row)} cells, not {width}")
        elements = bytearray()
        for code, cell in zip(ds.types, row, strict=True):
            element = bytearray()
            if isinstance(cell, Extension):
                _put_bytes(element, 7, bytes(cell.raw))  # DataSetValue.7
            elif cell is not None:  # a null cell is an empty DataSetValue
                _put_scalar(element, 1, code, cell, f"DataSet row {r}")  # DataSetValue.1..6
            _put_bytes(elements, 1, bytes(element))  # Row.1 elements
        _put_bytes(out, 4, bytes(elements))  # DataSet.4 rows
    return bytes(out)


def _encode_template(t: Template, depth: int) -> bytes:
    _check_encode_depth(depth, "Template")
    out = bytearray()
    if t.version is not None:
        _put_bytes(out, 1, _utf8_bytes(t.version, "Template.version"))
    for metric in t.metrics:
        _put_bytes(out, 2, _encode_metric(metric, depth + 1))
    for parameter in t.parameters:
        _check_encode_depth(depth + 1, "Parameter")
        p = bytearray()
        if parameter.name is not None:
            _put_bytes(p, 1, _utf8_bytes(parameter.name, "Parameter.name"))
        if parameter.type is not None:
            _put_uint(p, 2, parameter.type, "Parameter.type", 32)
        if isinstance(parameter.value, Extension):
            _put_bytes(p, 9, bytes(parameter.value.raw))  # Parameter.9
        elif parameter.value is not None:
            _put_scalar(p, 3, parameter.type, parameter.value, "Parameter.value")  # .3..8
        _put_bytes(out, 3, bytes(p))
    if t.template_ref is not None:
        _put_bytes(out, 4, _utf8_bytes(t.template_ref, "Template.template_ref"))
    _put_bool(out, 5, t.is_definition)  # tck-id-payloads-template-is-definition: always present
    return bytes(out)
