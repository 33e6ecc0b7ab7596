"""Bulk decoding of Sparkplug B DATA payloads into numpy columns: the host's hot path.

One call decodes many payloads (NDATA/DDATA, Sparkplug 3.0 §6.4) held back to back in one
``uint8`` buffer, with ``starts``/``ends`` marking each, into :class:`DataColumns`: one row per
metric, numpy arrays only — no Python object per metric. :func:`decode_messages` takes the list
of payloads the MQTT layer hands over (it joins them with ``b"".join``: about 3 ms per 22 MB,
10,000 payloads of 100 metrics).

What the columns hold, per metric row:

* ``msg`` — the index of the payload; ``alias`` (Metric.2, -1 when absent);
  ``name_off``/``name_len`` — where the name's UTF-8 bytes (Metric.1) are in ``buffer`` (-1 when
  absent; names are decoded to ``str`` only on demand, :meth:`DataColumns.name`);
* ``ts_ms`` — the metric timestamp (Metric.3), else the payload's (Payload.1), else -1;
* ``datatype`` (Metric.4; 0 when absent, values above 254 read 255) and ``value``: float64 — the
  numeric value converted per datatype (signed integers get their sign, Boolean is 0/1, DateTime is
  ms), NaN when the metric is null, has no value or is not numeric;
* ``flags`` — :data:`IS_NULL` (Metric.7), :data:`IS_HISTORICAL` (Metric.5), :data:`IS_TRANSIENT`
  (Metric.6), :data:`HAS_VALUE` (a value field is present), :data:`COMPLEX` (the value is a
  string, text, UUID, bytes, file, DataSet, Template, extension or array, or of an unknown
  datatype: :meth:`DataColumns.metric` decodes that one metric with the full codec from its byte
  range ``m_off``/``m_len``);
* ``value_field`` (the oneof field that carried the value, 10..19, 0 for none) and ``value_bits``
  (its raw bits: the varint, or the IEEE bits of a float/double) — DATA messages may omit the
  datatype (it is required only in births, tck-id-payloads-metric-datatype-req), and then a signed
  integer can only be read right with the datatype from the birth:
  :meth:`DataColumns.with_datatypes` recomputes ``value`` and ``flags`` from these.

and per payload: ``seq`` (Payload.3, -1 when absent), ``payload_ts_ms`` (Payload.1, -1 when absent),
``status`` (:class:`Status`: 0, or why the payload is malformed — its metrics are then left out and
the other payloads of the call are unaffected) and ``row_start`` (payload ``p`` has rows
``row_start[p]:row_start[p + 1]``). Unsigned 64-bit wire values are stored as their int64 bit
pattern (an alias or timestamp of 2**63 or more reads negative).

The decoder checks the wire structure of the Payload and of each Metric (the same checks as
:func:`~factory5g.connect.sparkplug.payload.decode_payload`: truncation, wire types, field
numbers); it skips metadata, properties, DataSets and Templates without looking inside, and does
not check that names are UTF-8 — the full decoder does when a metric is decoded with it. It never
reads outside a payload's ``[start, end)`` range and never raises for malformed input.

Two implementations with one contract: numba kernels (``@njit(cache=True, nogil=True)``; numba is
imported and the kernels compiled on first use, about 3 s on a 2-core machine, or loaded from
numba's cache in about 0.3 s) and a pure-Python fallback (about 30x slower) used when
``FACTORY5G_NO_JIT=1`` is set or numba is missing. The cache is written next to this file
(``__pycache__``); when the package directory is read-only (an installed wheel), numba writes it
to its user-wide cache directory (``~/.cache/numba``, or ``NUMBA_CACHE_DIR``). :func:`warm_up`
compiles or loads the kernels ahead of the first message. They release the GIL: decoding may run
in a worker thread.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from factory5g.connect.sparkplug.errors import SparkplugDecodeError
from factory5g.connect.sparkplug.payload import DataType, Metric, Payload, encode_payload
from factory5g.connect.sparkplug.payload import decode_metric as _decode_metric_bytes

__all__ = [
    "COMPLEX",
    "HAS_VALUE",
    "IS_HISTORICAL",
    "IS_NULL",
    "IS_TRANSIENT",
    "DataColumns",
    "Status",
    "concat",
    "decode_buffer",
    "decode_messages",
    "decode_metric",
    "jit_enabled",
    "join_payloads",
    "warm_up",
]

log = logging.getLogger(__name__)

# Bits of DataColumns.flags.
IS_NULL: Final = 1  # Metric.7 is_null
IS_HISTORICAL: Final = 2  # Metric.5 is_historical
IS_TRANSIENT: Final = 4  # Metric.6 is_transient
HAS_VALUE: Final = 8  # one of Metric.10..19 is present
COMPLEX: Final = 16  # not a number: decode this metric with payload.decode_metric


class Status(IntEnum):
    """Why a payload could not be decoded (``DataColumns.status``)."""

    OK = 0
    TRUNCATED = 1  # a varint, fixed field or length runs past the end of its message
    VARINT_TOO_LONG = 2  # a varint of more than 10 bytes
    BAD_WIRE_TYPE = 3  # wire type 3, 4, 6 or 7, or not the one the schema gives a known field
    BAD_FIELD_NUMBER = 4  # field number 0 or above 2**29 - 1
    BAD_RANGE = 5  # starts/ends outside the buffer
    INTERNAL = 6  # more metrics than counted: cannot happen, kept as a guard


# The kernels use plain ints (numba freezes module-level ints as constants).
_OK: Final = 0
_TRUNCATED: Final = 1
_VARINT_TOO_LONG: Final = 2
_BAD_WIRE_TYPE: Final = 3
_BAD_FIELD_NUMBER: Final = 4
_BAD_RANGE: Final = 5
_INTERNAL: Final = 6
_MAX_FIELD_NUMBER: Final = (1 << 29) - 1
_MAX_BUFFER: Final = (1 << 31) - 1  # name_off/m_off are int32
_COMPLEX_OFF: Final = ~COMPLEX

_U32: Final = 0xFFFFFFFF
_U64: Final = (1 << 64) - 1


# -- the numba kernels ----------------------------------------------------------------------------
# Written in the subset of Python that numba compiles; every integer is an int64 there, so a
# uint64 from the wire is its bit pattern. They are plain functions until _jitted() compiles them.


def _varint(buf: NDArray[np.uint8], pos: int, end: int) -> tuple[int, int]:
    """(value, position after it) of the varint at ``pos``; the position is -status on error."""
    result = 0
    shift = 0
    while pos < end:
        b = int(buf[pos])
        pos += 1
        result |= (b & 0x7F) << shift  # the 10th byte's bits above bit 63 fall off
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            return 0, -_VARINT_TOO_LONG
    return 0, -_TRUNCATED


def _fixed(buf: NDArray[np.uint8], pos: int, size: int) -> int:
    """The little-endian fixed32/fixed64 at ``pos`` (the caller checked it fits)."""
    v = 0
    for i in range(size):
        v |= int(buf[pos + i]) << (8 * i)
    return v


def _skip(buf: NDArray[np.uint8], pos: int, end: int, wire_type: int) -> int:
    """The position after a field's value of ``wire_type``; -status on error."""
    if wire_type == 0:
        _, pos = _varint(buf, pos, end)
        return pos
    if wire_type == 2:
        n, pos = _varint(buf, pos, end)
        if pos < 0:
            return pos
        if n < 0 or n > end - pos:
            return -_TRUNCATED
        return pos + n
    if wire_type in (1, 5):
        size = 8 if wire_type == 1 else 4
        if size > end - pos:
            return -_TRUNCATED
        return pos + size
    return -_BAD_WIRE_TYPE  # 3, 4 (groups, unused by Sparkplug), 6, 7


def _convert(field: int, bits: int, datatype: int) -> float:
    """The number a value field holds, read as ``datatype`` says."""
    if field in (10, 11):  # Metric.10 int_value (u32), .11 long_value (u64)
        # Signed types travel two's-complement: keep the type's width, sign-extend (§6.4.17).
        if datatype == 1:  # Int8
            v = bits & 0xFF
            return float(v - 0x100 if v >= 0x80 else v)
        if datatype == 2:  # Int16
            v = bits & 0xFFFF
            return float(v - 0x10000 if v >= 0x8000 else v)
        if datatype == 3:  # Int32
            v = bits & 0xFFFFFFFF
            return float(v - 0x100000000 if v >= 0x80000000 else v)
        if datatype == 4:  # Int64: the int64 bit pattern is the value
            return float(bits)
        return float(np.float64(np.uint64(bits)))
    if field == 14:  # Metric.14 boolean_value
        return 1.0 if bits != 0 else 0.0
    if field == 12:  # Metric.12 float_value
        return float(np.uint32(bits & 0xFFFFFFFF).view(np.float32))
    if field == 13:  # Metric.13 double_value
        return float(np.int64(bits).view(np.float64))
    return np.nan


def _finish(datatype: int, field: int, bits: int, flags: int) -> tuple[float, int]:
    """(value, flags) of a row once its datatype is known."""
    # Numbers: absent (0), Int8..Boolean (1..11), DateTime (13); the rest needs the full codec.
    complex_ = field >= 15 or datatype == 12 or datatype >= 14
    flags = flags | COMPLEX if complex_ else flags & _COMPLEX_OFF
    if field != 0:
        flags |= HAS_VALUE
    if complex_ or field == 0 or flags & IS_NULL:
        return np.nan, flags
    return _convert(field, bits, datatype), flags


def _metric(
    buf: NDArray[np.uint8],
    pos: int,
    end: int,
) -> tuple[int, int, int, int, int, int, int, int, int]:
    """Decode the Metric at ``buf[pos:end]``:
    (status, alias, name_off, name_len, timestamp, datatype, value field, value bits, flags)."""
    alias = -1
    name_off = -1
    name_len = -1
    ts = -1
    datatype = 0
    field = 0
    bits = 0
    flags = 0
    while pos < end:
        tag, pos = _varint(buf, pos, end)
        if pos < 0:
            return -pos, 0, 0, 0, 0, 0, 0, 0, 0
        number = tag >> 3
        wire_type = tag & 7
        if tag < 0 or number == 0 or number > _MAX_FIELD_NUMBER:
            return _BAD_FIELD_NUMBER, 0, 0, 0, 0, 0, 0, 0, 0
        if number == 1:  # Metric.1 name
            if wire_type != 2:
                return _BAD_WIRE_TYPE, 0, 0, 0, 0, 0, 0, 0, 0
            n, pos = _varint(buf, pos, end)
            if pos < 0:
                return -pos, 0, 0, 0, 0, 0, 0, 0, 0
            if n < 0 or n > end - pos:
                return _TRUNCATED, 0, 0, 0, 0, 0, 0, 0, 0
            name_off = pos
            name_len = n
            pos += n
        elif number <= 7 or number in (10, 11, 14):
            # Metric.2 alias, .3 timestamp, .4 datatype, .5-.7 flags; .10, .11, .14 values
            if wire_type != 0:
                return _BAD_WIRE_TYPE, 0, 0, 0, 0, 0, 0, 0, 0
            v, pos = _varint(buf, pos, end)
            if pos < 0:
                return -pos, 0, 0, 0, 0, 0, 0, 0, 0
            if number == 2:
                alias = v
            elif number == 3:
                ts = v
            elif number == 4:
                datatype = v & 0xFFFFFFFF  # u32
            elif number == 5:
                flags = flags | IS_HISTORICAL if v != 0 else flags & ~IS_HISTORICAL
            elif number == 6:
                flags = flags | IS_TRANSIENT if v != 0 else flags & ~IS_TRANSIENT
            elif number == 7:
                flags = flags | IS_NULL if v != 0 else flags & ~IS_NULL
            else:  # a value: the last one of the oneof wins
                field = number
                if number == 10:
                    bits = v & 0xFFFFFFFF
                elif number == 11:
                    bits = v
                else:
                    bits = 1 if v != 0 else 0
        elif number in (12, 13):  # Metric.12 float (fixed32), .13 double (fixed64)
            size = 4 if number == 12 else 8
            if wire_type != (5 if number == 12 else 1):
                return _BAD_WIRE_TYPE, 0, 0, 0, 0, 0, 0, 0, 0
            if size > end - pos:
                return _TRUNCATED, 0, 0, 0, 0, 0, 0, 0, 0
            field = number
            bits = _fixed(buf, pos, size)
            pos += size
        elif number <= 19:  # Metric.8 metadata, .9 properties, .15-.19 complex values
            if wire_type != 2:
                return _BAD_WIRE_TYPE, 0, 0, 0, 0, 0, 0, 0, 0
            pos = _skip(buf, pos, end, 2)
            if pos < 0:
                return -pos, 0, 0, 0, 0, 0, 0, 0, 0
            if number >= 15:
                field = number
                bits = 0
        else:  # unknown field: skipped
            pos = _skip(buf, pos, end, wire_type)
            if pos < 0:
                return -pos, 0, 0, 0, 0, 0, 0, 0, 0
    return _OK, alias, name_off, name_len, ts, datatype, field, bits, flags


def _top_field(buf: NDArray[np.uint8], pos: int, end: int) -> tuple[int, int, int, int]:
    """The Payload field at ``pos``: (status, number, wire type, position after the tag)."""
    tag, pos = _varint(buf, pos, end)
    if pos < 0:
        return -pos, 0, 0, pos
    number = tag >> 3
    if tag < 0 or number == 0 or number > _MAX_FIELD_NUMBER:
        return _BAD_FIELD_NUMBER, 0, 0, pos
    return _OK, number, tag & 7, pos


def _count_metrics(
    buf: NDArray[np.uint8], starts: NDArray[np.int64], ends: NDArray[np.int64]
) -> int:
    """How many Payload.2 fields the payloads hold: an upper bound of the rows to decode."""
    total = 0
    n = buf.shape[0]
    for p in range(starts.shape[0]):
        pos = starts[p]
        end = ends[p]
        if pos < 0 or end < pos or end > n:
            continue
        while pos < end:
            status, number, wire_type, pos = _top_field(buf, pos, end)
            if status != _OK:
                break
            if number == 2 and wire_type == 2:
                total += 1
            pos = _skip(buf, pos, end, wire_type)
            if pos < 0:
                break
    return total


def _decode_all(
    buf: NDArray[np.uint8],
    starts: NDArray[np.int64],
    ends: NDArray[np.int64],
    msg: NDArray[np.int32],
    alias: NDArray[np.int64],
    name_off: NDArray[np.int32],
    name_len: NDArray[np.int32],
    ts_ms: NDArray[np.int64],
    datatype: NDArray[np.uint8],
    value: NDArray[np.float64],
    flags: NDArray[np.uint8],
    m_off: NDArray[np.int32],
    m_len: NDArray[np.int32],
    value_field: NDArray[np.uint8],
    value_bits: NDArray[np.int64],
    seq: NDArray[np.int64],
    payload_ts_ms: NDArray[np.int64],
    status: NDArray[np.uint8],
    row_start: NDArray[np.int64],
) -> int:
    """Decode every payload into the preallocated columns; the number of rows written."""
    n = buf.shape[0]
    capacity = msg.shape[0]
    k = 0
    for p in range(starts.shape[0]):
        first = k
        row_start[p] = first
        pos = starts[p]
        end = ends[p]
        st = _OK
        p_seq = -1
        p_ts = -1
        if pos < 0 or end < pos or end > n:
            st = _BAD_RANGE
        while st == _OK and pos < end:
            st, number, wire_type, pos = _top_field(buf, pos, end)
            if st != _OK:
                break
            if number in (1, 3):  # Payload.1 timestamp, Payload.3 seq
                if wire_type != 0:
                    st = _BAD_WIRE_TYPE
                    break
                v, pos = _varint(buf, pos, end)
                if pos < 0:
                    st = -pos
                    break
                if number == 1:
                    p_ts = v
                else:
                    p_seq = v
            elif number == 2:  # Payload.2 metrics
                if wire_type != 2:
                    st = _BAD_WIRE_TYPE
                    break
                size, pos = _varint(buf, pos, end)
                if pos < 0:
                    st = -pos
                    break
                if size < 0 or size > end - pos:
                    st = _TRUNCATED
                    break
                if k >= capacity:
                    st = _INTERNAL
                    break
                m_st, m_alias, m_name_off, m_name_len, m_ts, m_dt, m_field, m_bits, m_flags = (
                    _metric(buf, pos, pos + size)
                )
                if m_st != _OK:
                    st = m_st
                    break
                v_value, v_flags = _finish(m_dt, m_field, m_bits, m_flags)
                msg[k] = p
                alias[k] = m_alias
                name_off[k] = m_name_off
                name_len[k] = m_name_len
                ts_ms[k] = m_ts
                datatype[k] = min(m_dt, 255)
                value[k] = v_value
                flags[k] = v_flags
                m_off[k] = pos
                m_len[k] = size
                value_field[k] = m_field
                value_bits[k] = m_bits
                k += 1
                pos += size
            elif number in (4, 5):  # Payload.4 uuid, Payload.5 body: not needed here
                if wire_type != 2:
                    st = _BAD_WIRE_TYPE
                    break
                pos = _skip(buf, pos, end, 2)
                if pos < 0:
                    st = -pos
                    break
            else:  # extensions (6+) and unknown fields
                pos = _skip(buf, pos, end, wire_type)
                if pos < 0:
                    st = -pos
                    break
        if st != _OK:
            k = first  # a malformed payload contributes no rows
            p_seq = -1
            p_ts = -1
        else:
            for r in range(first, k):  # the payload timestamp may come after its metrics
                if ts_ms[r] == -1:
                    ts_ms[r] = p_ts
        status[p] = st
        seq[p] = p_seq
        payload_ts_ms[p] = p_ts
    row_start[starts.shape[0]] = k
    return k


def _refill(
    datatype: NDArray[np.uint8],
    value_field: NDArray[np.uint8],
    value_bits: NDArray[np.int64],
    flags: NDArray[np.uint8],
    value_out: NDArray[np.float64],
    flags_out: NDArray[np.uint8],
) -> None:
    """Recompute value and flags of every row from its datatype, value field and bits."""
    for r in range(datatype.shape[0]):
        v, fl = _finish(
            int(datatype[r]),
            int(value_field[r]),
            int(value_bits[r]),
            int(flags[r]),
        )
        value_out[r] = v
        flags_out[r] = fl


# Compiled by _jitted(): a kernel finds its callees in this module's globals when it compiles.
_HELPERS: Final = ("_varint", "_fixed", "_skip", "_convert", "_finish", "_metric", "_top_field")
_ENTRY_POINTS: Final = ("_count_metrics", "_decode_all", "_refill")
_jit_lock = threading.Lock()
_jit_state: dict[str, Any] = {}  # "kernels": the compiled entry points; "failed": no numba


def _jitted() -> tuple[Callable[..., int], Callable[..., int], Callable[..., None]] | None:
    """The compiled entry points, compiling (or loading from numba's cache) on first use; None
    when FACTORY5G_NO_JIT=1 or numba is not installed."""
    if os.environ.get("FACTORY5G_NO_JIT", "") not in ("", "0") or "failed" in _jit_state:
        return None
    kernels = _jit_state.get("kernels")
    if kernels is None:
        with _jit_lock:
            kernels = _jit_state.get("kernels") or _compile()
            _jit_state["kernels"] = kernels
    return kernels


def _compile() -> tuple[Callable[..., int], Callable[..., int], Callable[..., None]] | None:
    try:
        import numba
    except ImportError:
        log.warning("numba is not installed: Sparkplug DATA decoding runs in pure Python")
        _jit_state["failed"] = True
        return None
    # No reference counting (numba's target option _nrt, absent from its typed signature): the
    # kernels allocate nothing, and with it every helper call increfs/decrefs the buffer, atomic
    # operations that cost more than the decoding. Helpers are inlined (forceinline: LLVM
    # always-inline). Together 2x faster.
    options: dict[str, Any] = {"cache": True, "nogil": True, "_nrt": False}
    g = globals()
    for name in _HELPERS + _ENTRY_POINTS:
        g[name] = numba.njit(**options, forceinline=name in _HELPERS)(g[name])
    return g["_count_metrics"], g["_decode_all"], g["_refill"]


def jit_enabled() -> bool:
    """True when decoding uses the numba kernels (False with FACTORY5G_NO_JIT=1 or no numba)."""
    return _jitted() is not None


# -- the pure-Python fallback ---------------------------------------------------------------------
# The same contract as the kernels, written for CPython: Python ints (unbounded, so uint64 values
# are masked and turned into int64 bit patterns where the columns want them) over bytes.

_F32: Final = struct.Struct("<f")
_F64: Final = struct.Struct("<d")
_U32_S: Final = struct.Struct("<I")
_U64_S: Final = struct.Struct("<Q")


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def _py_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while pos < end:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & _U64, pos
        shift += 7
        if shift >= 70:
            return 0, -_VARINT_TOO_LONG
    return 0, -_TRUNCATED


def _py_skip(data: bytes, pos: int, end: int, wire_type: int) -> int:
    if wire_type == 0:
        return _py_varint(data, pos, end)[1]
    if wire_type == 2:
        n, pos = _py_varint(data, pos, end)
        if pos < 0:
            return pos
        return pos + n if n <= end - pos else -_TRUNCATED
    if wire_type in (1, 5):
        size = 8 if wire_type == 1 else 4
        return pos + size if size <= end - pos else -_TRUNCATED
    return -_BAD_WIRE_TYPE


def _py_convert(field: int, bits: int, datatype: int) -> float:
    """As :func:`_convert`, with ``bits`` unsigned."""
    if field in (10, 11):
        width = {1: 8, 2: 16, 3: 32, 4: 64}.get(datatype)
        if width is None:
            return float(bits)
        v = bits & ((1 << width) - 1)
        return float(v - (1 << width) if v >> (width - 1) else v)
    if field == 14:
        return 1.0 if bits else 0.0
    if field == 12:
        return float(_F32.unpack(_U32_S.pack(bits & _U32))[0])
    if field == 13:
        return float(_F64.unpack(_U64_S.pack(bits))[0])
    return np.nan


def _py_finish(datatype: int, field: int, bits: int, flags: int) -> tuple[float, int]:
    """As :func:`_finish`, with ``bits`` unsigned."""
    complex_ = field >= 15 or datatype == 12 or datatype >= 14
    flags = flags | COMPLEX if complex_ else flags & ~COMPLEX
    if field:
        flags |= HAS_VALUE
    if complex_ or not field or flags & IS_NULL:
        return np.nan, flags
    return _py_convert(field, bits, datatype), flags


def _py_metric(data: bytes, pos: int, end: int) -> tuple[int, ...]:
    """As :func:`_metric`; alias and timestamp unsigned, -1 when absent."""
    alias = name_off = name_len = ts = -1
    datatype = field = bits = flags = 0
    while pos < end:
        tag, pos = _py_varint(data, pos, end)
        if pos < 0:
            return (-pos,)
        number, wire_type = tag >> 3, tag & 7
        if not 1 <= number <= _MAX_FIELD_NUMBER:
            return (_BAD_FIELD_NUMBER,)
        if number == 1:  # Metric.1 name
            if wire_type != 2:
                return (_BAD_WIRE_TYPE,)
            n, pos = _py_varint(data, pos, end)
            if pos < 0:
                return (-pos,)
            if n > end - pos:
                return (_TRUNCATED,)
            name_off, name_len = pos, n
            pos += n
        elif number <= 7 or number in (10, 11, 14):  # varint fields
            if wire_type != 0:
                return (_BAD_WIRE_TYPE,)
            v, pos = _py_varint(data, pos, end)
            if pos < 0:
                return (-pos,)
            if number == 2:
                alias = v
            elif number == 3:
                ts = v
            elif number == 4:
                datatype = v & _U32
            elif number <= 7:
                bit = {5: IS_HISTORICAL, 6: IS_TRANSIENT, 7: IS_NULL}[number]
                flags = flags | bit if v else flags & ~bit
            else:
                field = number
                bits = v & _U32 if number == 10 else v if number == 11 else int(v != 0)
        elif number in (12, 13):  # fixed32 float, fixed64 double
            size = 4 if number == 12 else 8
            if wire_type != (5 if number == 12 else 1):
                return (_BAD_WIRE_TYPE,)
            if size > end - pos:
                return (_TRUNCATED,)
            field = number
            bits = int.from_bytes(data[pos : pos + size], "little")
            pos += size
        elif number <= 19:  # length-delimited: metadata, properties, complex values
            if wire_type != 2:
                return (_BAD_WIRE_TYPE,)
            pos = _py_skip(data, pos, end, 2)
            if pos < 0:
                return (-pos,)
            if number >= 15:
                field, bits = number, 0
        else:
            pos = _py_skip(data, pos, end, wire_type)
            if pos < 0:
                return (-pos,)
    return _OK, alias, name_off, name_len, ts, datatype, field, bits, flags


def _py_payload(
    data: bytes, pos: int, end: int, p: int, rows: list[tuple[Any, ...]]
) -> tuple[int, int, int]:
    """Append the rows of payload ``p`` to ``rows``; (status, seq, timestamp)."""
    first = len(rows)
    seq = ts = -1
    while pos < end:
        tag, pos = _py_varint(data, pos, end)
        if pos < 0:
            return -pos, -1, -1
        number, wire_type = tag >> 3, tag & 7
        if not 1 <= number <= _MAX_FIELD_NUMBER:
            return _BAD_FIELD_NUMBER, -1, -1
        if number in (1, 3):  # Payload.1 timestamp, .3 seq
            if wire_type != 0:
                return _BAD_WIRE_TYPE, -1, -1
            v, pos = _py_varint(data, pos, end)
            if pos < 0:
                return -pos, -1, -1
            if number == 1:
                ts = v
            else:
                seq = v
        elif number == 2:  # Payload.2 metrics
            if wire_type != 2:
                return _BAD_WIRE_TYPE, -1, -1
            size, pos = _py_varint(data, pos, end)
            if pos < 0:
                return -pos, -1, -1
            if size > end - pos:
                return _TRUNCATED, -1, -1
            m = _py_metric(data, pos, pos + size)
            if m[0] != _OK:
                return m[0], -1, -1
            _, alias, name_off, name_len, m_ts, dt, field, bits, flags = m
            value, flags = _py_finish(dt, field, bits, flags)
            rows.append(
                (
                    p,
                    alias,
                    name_off,
                    name_len,
                    m_ts,
                    min(dt, 255),
                    value,
                    flags,
                    pos,
                    size,
                    field,
                    bits,
                )
            )
            pos += size
        elif number in (4, 5):  # Payload.4 uuid, .5 body
            if wire_type != 2:
                return _BAD_WIRE_TYPE, -1, -1
            pos = _py_skip(data, pos, end, 2)
            if pos < 0:
                return -pos, -1, -1
        else:
            pos = _py_skip(data, pos, end, wire_type)
            if pos < 0:
                return -pos, -1, -1
    for r in range(first, len(rows)):
        if rows[r][4] in (-1, _U64):  # absent (or 2**64 - 1, which reads -1 in the kernel)
            rows[r] = (*rows[r][:4], ts, *rows[r][5:])
    return _OK, seq, ts


def _decode_pure(
    buf: NDArray[np.uint8], starts: NDArray[np.int64], ends: NDArray[np.int64]
) -> DataColumns:
    data = buf.tobytes()
    rows: list[tuple[Any, ...]] = []
    seqs: list[int] = []
    stamps: list[int] = []
    statuses: list[int] = []
    row_start: list[int] = []
    for p, (start, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        first = len(rows)
        row_start.append(first)
        if start < 0 or end < start or end > len(data):
            st, seq, ts = _BAD_RANGE, -1, -1
        else:
            st, seq, ts = _py_payload(data, start, end, p, rows)
        if st != _OK:
            del rows[first:]
        statuses.append(st)
        seqs.append(_signed64(seq) if seq >= 0 else -1)
        stamps.append(_signed64(ts) if ts >= 0 else -1)
    row_start.append(len(rows))
    cols = list(zip(*rows, strict=True)) if rows else [()] * 12

    def col(i: int, dtype: type[np.generic], signed64: bool = False) -> NDArray[Any]:
        values = [_signed64(v) if v >= 0 else -1 for v in cols[i]] if signed64 else cols[i]
        return np.array(values, dtype=dtype)

    return DataColumns(
        buffer=buf,
        msg=col(0, np.int32),
        alias=col(1, np.int64, True),
        name_off=col(2, np.int32),
        name_len=col(3, np.int32),
        ts_ms=col(4, np.int64, True),
        datatype=col(5, np.uint8),
        value=col(6, np.float64),
        flags=col(7, np.uint8),
        m_off=col(8, np.int32),
        m_len=col(9, np.int32),
        value_field=col(10, np.uint8),
        value_bits=col(11, np.int64, True).view(np.uint64),
        seq=np.array(seqs, np.int64),
        payload_ts_ms=np.array(stamps, np.int64),
        status=np.array(statuses, np.uint8),
        row_start=np.array(row_start, np.int64),
    )


# -- the public API -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class DataColumns:
    """Decoded DATA payloads: per-metric columns (one row per metric) and per-payload arrays.

    See the module docstring for what each column holds. Rows are in payload order, then in the
    order of the metrics in each payload; the rows of payload ``p`` are :meth:`rows_of` ``(p)``.
    """

    buffer: NDArray[np.uint8]  # the payloads back to back: offsets below point into it
    # per metric
    msg: NDArray[np.int32]
    alias: NDArray[np.int64]
    name_off: NDArray[np.int32]
    name_len: NDArray[np.int32]
    ts_ms: NDArray[np.int64]
    datatype: NDArray[np.uint8]
    value: NDArray[np.float64]
    flags: NDArray[np.uint8]
    m_off: NDArray[np.int32]
    m_len: NDArray[np.int32]
    value_field: NDArray[np.uint8]
    value_bits: NDArray[np.uint64]
    # per payload
    seq: NDArray[np.int64]
    payload_ts_ms: NDArray[np.int64]
    status: NDArray[np.uint8]
    row_start: NDArray[np.int64]  # n_payloads + 1 entries

    def __len__(self) -> int:
        return int(self.msg.shape[0])

    @property
    def n_payloads(self) -> int:
        return int(self.status.shape[0])

    def rows_of(self, payload: int) -> slice:
        """The rows of payload ``payload`` (empty when it was malformed)."""
        return slice(int(self.row_start[payload]), int(self.row_start[payload + 1]))

    def name(self, row: int) -> str | None:
        """The metric name of ``row`` (Metric.1), None when absent."""
        off, size = int(self.name_off[row]), int(self.name_len[row])
        if off < 0:
            return None
        try:
            return self.buffer[off : off + size].tobytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SparkplugDecodeError("Metric.name is not UTF-8", off + exc.start) from None

    def metric(self, row: int) -> Metric:
        """The metric of ``row`` decoded in full (for COMPLEX rows); raises SparkplugDecodeError.

        Its ``timestamp`` is the metric's own: the payload's fallback is only in ``ts_ms``.
        """
        off, size = int(self.m_off[row]), int(self.m_len[row])
        return _decode_metric_bytes(self.buffer[off : off + size].tobytes())

    def with_datatypes(self, datatype: ArrayLike) -> DataColumns:
        """These columns with ``datatype`` (one per row, e.g. from the births by alias) used for
        the rows whose payload carried none, and ``value``/``flags`` recomputed accordingly."""
        wanted = np.broadcast_to(np.asarray(datatype, dtype=np.uint8), self.datatype.shape)
        new_dt = np.where(self.datatype == 0, wanted, self.datatype).astype(np.uint8)
        value = np.empty_like(self.value)
        flags = np.empty_like(self.flags)
        kernels = _jitted()
        if kernels is not None:
            bits = self.value_bits.view(np.int64)
            kernels[2](new_dt, self.value_field, bits, self.flags, value, flags)
        else:
            for r, (dt, field, bits_r, fl) in enumerate(
                zip(
                    new_dt.tolist(),
                    self.value_field.tolist(),
                    self.value_bits.tolist(),
                    self.flags.tolist(),
                    strict=True,
                )
            ):
                value[r], flags[r] = _py_finish(dt, field, bits_r, fl)
        return replace(self, datatype=new_dt, value=value, flags=flags)


def join_payloads(
    payloads: Sequence[bytes | bytearray | memoryview],
) -> tuple[NDArray[np.uint8], NDArray[np.int64], NDArray[np.int64]]:
    """(buffer, starts, ends): the payloads back to back, as :func:`decode_buffer` takes them."""
    lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    return np.frombuffer(b"".join(payloads), dtype=np.uint8), starts, ends


def decode_messages(
    payloads: Sequence[bytes | bytearray | memoryview], *, jit: bool | None = None
) -> DataColumns:
    """Decode a list of DATA payloads (as MQTT delivers them) into columns."""
    return decode_buffer(*join_payloads(payloads), jit=jit)


def _readonly(a: ArrayLike, dtype: type[np.generic]) -> NDArray[Any]:
    """A read-only, contiguous view: one array type, one compiled kernel signature."""
    view = np.ascontiguousarray(a, dtype=dtype).view()
    view.flags.writeable = False
    return view


def decode_buffer(
    buf: ArrayLike, starts: ArrayLike, ends: ArrayLike, *, jit: bool | None = None
) -> DataColumns:
    """Decode the payloads ``buf[starts[i]:ends[i]]`` into columns.

    ``jit=None`` uses the numba kernels unless FACTORY5G_NO_JIT=1 (or numba is missing);
    ``jit=False`` forces the pure-Python fallback, ``jit=True`` requires numba.
    """
    if isinstance(buf, bytes | bytearray | memoryview):
        buf = np.frombuffer(buf, np.uint8)
    b = _readonly(buf, np.uint8)
    s = _readonly(starts, np.int64)
    e = _readonly(ends, np.int64)
    if b.ndim != 1 or s.shape != e.shape or s.ndim != 1:
        raise ValueError("buf, starts and ends must be 1-D, starts and ends of equal length")
    if b.shape[0] > _MAX_BUFFER:
        raise ValueError(f"buffer of {b.shape[0]} bytes: decode at most 2 GiB per call")
    kernels = _jitted() if jit is not False else None
    if kernels is None:
        if jit:
            raise RuntimeError("jit=True but numba is disabled (FACTORY5G_NO_JIT) or missing")
        return _decode_pure(b, s, e)
    count, decode, _ = kernels
    cap = int(count(b, s, e))
    n = s.shape[0]
    msg = np.empty(cap, np.int32)
    alias = np.empty(cap, np.int64)
    name_off = np.empty(cap, np.int32)
    name_len = np.empty(cap, np.int32)
    ts_ms = np.empty(cap, np.int64)
    datatype = np.empty(cap, np.uint8)
    value = np.empty(cap, np.float64)
    flags = np.empty(cap, np.uint8)
    m_off = np.empty(cap, np.int32)
    m_len = np.empty(cap, np.int32)
    value_field = np.empty(cap, np.uint8)
    value_bits = np.empty(cap, np.int64)
    seq = np.empty(n, np.int64)
    payload_ts_ms = np.empty(n, np.int64)
    status = np.empty(n, np.uint8)
    row_start = np.empty(n + 1, np.int64)
    rows = int(
        decode(
            b, s, e, msg, alias, name_off, name_len, ts_ms, datatype, value, flags, m_off, m_len,
            value_field, value_bits, seq, payload_ts_ms, status, row_start,
        )
    )  # fmt: skip
    # Fewer rows than counted only when some payload was malformed: trim (views, no copy).
    return DataColumns(
        buffer=b,
        msg=msg[:rows],
        alias=alias[:rows],
        name_off=name_off[:rows],
        name_len=name_len[:rows],
        ts_ms=ts_ms[:rows],
        datatype=datatype[:rows],
        value=value[:rows],
        flags=flags[:rows],
        m_off=m_off[:rows],
        m_len=m_len[:rows],
        value_field=value_field[:rows],
        value_bits=value_bits[:rows].view(np.uint64),
        seq=seq,
        payload_ts_ms=payload_ts_ms,
        status=status,
        row_start=row_start,
    )


def decode_metric(cols: DataColumns, row: int) -> Metric:
    """The metric of ``row`` decoded in full: ``cols.metric(row)``."""
    return cols.metric(row)


def concat(parts: Sequence[DataColumns]) -> DataColumns:
    """One DataColumns holding the payloads of ``parts`` in order: payload indices, row indices
    and buffer offsets of each part are shifted past those of the parts before it."""
    if not parts:
        raise ValueError("concat needs at least one DataColumns")
    if len(parts) == 1:
        return parts[0]
    shifted = {"msg", "name_off", "m_off", "row_start"}
    pieces: dict[str, list[NDArray[Any]]] = {name: [] for name in DataColumns.__slots__}
    buf_at = msg_at = row_at = 0
    for part in parts:
        for name in pieces.keys() - shifted:
            pieces[name].append(getattr(part, name))
        pieces["msg"].append(part.msg + msg_at)
        pieces["name_off"].append(np.where(part.name_off >= 0, part.name_off + buf_at, -1))
        pieces["m_off"].append(part.m_off + buf_at)
        pieces["row_start"].append(part.row_start[:-1] + row_at)
        buf_at += part.buffer.shape[0]
        msg_at += part.n_payloads
        row_at += len(part)
    if buf_at > _MAX_BUFFER:
        raise ValueError(f"joined buffers of {buf_at} bytes: at most 2 GiB")
    pieces["row_start"].append(np.array([row_at], np.int64))
    first = parts[0]
    return DataColumns(
        **{
            name: np.concatenate(arrays).astype(getattr(first, name).dtype, copy=False)
            for name, arrays in pieces.items()
        }
    )


def warm_up() -> float:
    """Compile the kernels (or load them from numba's cache) now; the seconds it took."""
    t0 = time.perf_counter()
    sample = encode_payload(
        Payload(
            timestamp=1,
            seq=0,
            metrics=(
                Metric.for_value(1, DataType.Double, 1.0, timestamp=2),
                Metric.for_value(2, DataType.Int8, -1),
            ),
        )
    )
    cols = decode_messages([sample, sample[:5]])
    cols.with_datatypes(np.zeros(len(cols), np.uint8))
    return time.perf_counter() - t0
