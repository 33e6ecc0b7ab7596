"""The columnar Batch: how samples travel from the wire decoders to the store and the apps.

A Batch holds four numpy columns of equal length — ``signal`` (int32 dense ids), ``ts`` (int64 ns
since the Unix epoch, UTC), ``value`` (float64) and ``quality`` (uint8) — plus a small side channel
of :class:`Event` for values that are not numbers (strings, Sparkplug DataSets, ...). No per-sample
Python object exists between a decoder and the store: that is how one process moves millions of
samples per second.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from factory5g.stream.errors import BatchDecodeError, BatchError

__all__ = ["Batch", "Event", "Quality", "now_ns"]


class Quality(IntEnum):
    """Sample quality, coded as the OPC DA quality byte (also used by Sparkplug/Ignition).

    Only the two top bits matter for decisions: ``0b11xxxxxx`` good, ``0b01xxxxxx`` uncertain,
    ``0b00xxxxxx`` bad. Aggregates use samples that are not bad.
    """

    BAD = 0x00
    BAD_NOT_CONNECTED = 0x08
    BAD_STALE = 0x14  # "bad, last known value": the source went quiet (e.g. a sequence gap)
    BAD_COMM_FAILURE = 0x18
    UNCERTAIN = 0x40
    UNCERTAIN_LAST_USABLE = 0x44  # stale: the last value we had, no newer one arrived
    GOOD = 0xC0

    @staticmethod
    def is_usable(quality: NDArray[np.uint8]) -> NDArray[np.bool_]:
        """True where a sample is good or uncertain (not bad)."""
        return np.asarray(quality) >= Quality.UNCERTAIN


def now_ns() -> int:
    """Wall-clock time in ns since the Unix epoch (UTC), the timestamp unit of every Batch."""
    import time

    return time.time_ns()


@dataclass(frozen=True, slots=True)
class Event:
    """A non-numeric value of a signal: a string, or a structured payload (JSON-compatible)."""

    signal: int
    ts: int
    data: str | dict[str, Any] | list[Any]


_I32: Final = np.dtype(np.int32)
_I64: Final = np.dtype(np.int64)
_F64: Final = np.dtype(np.float64)
_U8: Final = np.dtype(np.uint8)

# Wire layout of an encoded Batch (little endian): magic, version, n, n_events, crc32 (over the
# version, the counts and the body), then the four columns back to back and the events as JSON
# lines.
_MAGIC: Final = b"F5GB"
_HEADER: Final = struct.Struct("<4sBBxxIII")  # magic, version, flags, n, n_events, crc
_HISTORICAL: Final = 0x01
_VERSION: Final = 1
_SAMPLE_BYTES: Final = 4 + 8 + 8 + 1


def _counts_crc(version: int, flags: int, n: int, n_events: int) -> int:
    """CRC-32 of the header fields, the seed of the body's CRC: a changed count is caught too."""
    return zlib.crc32(struct.pack("<BBII", version, flags, n, n_events))


@dataclass(frozen=True, slots=True, eq=False)
class Batch:
    """Samples as four equal-length columns plus an event side channel.

    Construct with :meth:`of` (converts and checks) or directly with arrays that already have the
    right dtypes (checked too). Batches are immutable by convention: never write into a column
    you did not create.
    """

    signal: NDArray[np.int32]
    ts: NDArray[np.int64]
    value: NDArray[np.float64]
    quality: NDArray[np.uint8]
    events: tuple[Event, ...] = field(default=())
    # Samples that arrive late by design (store-and-forward): stored, but they do not move the
    # latest value of their signals nor show in live views (Sparkplug is_historical).
    historical: bool = False

    def __post_init__(self) -> None:
        n = self.signal.shape[0] if self.signal.ndim == 1 else -1
        for name, arr, dtype in (
            ("signal", self.signal, _I32),
            ("ts", self.ts, _I64),
            ("value", self.value, _F64),
            ("quality", self.quality, _U8),
        ):
            if arr.dtype != dtype:
                raise BatchError(f"column {name!r} has dtype {arr.dtype}, expected {dtype}")
            if arr.ndim != 1:
                raise BatchError(f"column {name!r} must be one-dimensional, got shape {arr.shape}")
            if arr.shape[0] != n:
                raise BatchError(
                    f"columns differ in length: signal has {n}, {name} has {arr.shape[0]}"
                )

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def of(
        cls,
        signal: ArrayLike,
        ts: ArrayLike,
        value: ArrayLike,
        quality: ArrayLike | int = Quality.GOOD,
        events: Iterable[Event] = (),
        *,
        historical: bool = False,
    ) -> Batch:
        """Build a Batch from anything array-like; scalars (any column) apply to every sample."""
        # numpy says ValueError (lengths that do not broadcast) or OverflowError (a quality of
        # 300, an id beyond int32): callers catch BatchError, so say that.
        raw = np.asarray(signal)
        if raw.dtype.kind == "f" and not np.array_equal(raw, np.trunc(raw)):
            raise BatchError("signal ids must be integers")
        if raw.dtype.kind in "iuf" and raw.size and (raw.min() < -(2**31) or raw.max() >= 2**31):
            raise BatchError("signal ids must fit in int32")
        try:
            cols = (
                np.asarray(raw, dtype=_I32),
                np.asarray(ts, dtype=_I64),
                np.asarray(value, dtype=_F64),
                np.asarray(quality, dtype=_U8),
            )
            shape = np.broadcast_shapes(*(c.shape for c in cols)) or (1,)
            if len(shape) != 1:
                raise BatchError(f"columns must be one-dimensional, got shape {shape}")
            sig, t, v, q = (np.ascontiguousarray(np.broadcast_to(c, shape)) for c in cols)
        except (ValueError, OverflowError) as exc:
            raise BatchError(f"columns do not fit together: {exc}") from exc
        return cls(sig, t, v, q, tuple(events), historical)

    @classmethod
    def empty(cls) -> Batch:
        return cls(np.empty(0, _I32), np.empty(0, _I64), np.empty(0, _F64), np.empty(0, _U8), ())

    @classmethod
    def concat(cls, batches: Sequence[Batch]) -> Batch:
        """One Batch with the samples and events of ``batches`` in order (all live, or all
        historical: mixing them would lose which samples may move the latest values)."""
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        historical = batches[0].historical
        if any(b.historical != historical for b in batches):
            raise BatchError("cannot concatenate historical and live batches")
        return cls(
            np.concatenate([b.signal for b in batches]),
            np.concatenate([b.ts for b in batches]),
            np.concatenate([b.value for b in batches]),
            np.concatenate([b.quality for b in batches]),
            tuple(e for b in batches for e in b.events),
            historical,
        )

    # -- inspection ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.signal.shape[0])

    @property
    def nbytes(self) -> int:
        return len(self) * _SAMPLE_BYTES

    def __repr__(self) -> str:
        past = ", historical" if self.historical else ""
        return f"Batch(samples={len(self)}, events={len(self.events)}{past})"

    def equals(self, other: Batch) -> bool:
        """Column-by-column equality (NaN equal to NaN), events included."""
        return (
            np.array_equal(self.signal, other.signal)
            and np.array_equal(self.ts, other.ts)
            and np.array_equal(self.value, other.value, equal_nan=True)
            and np.array_equal(self.quality, other.quality)
            and self.events == other.events
            and self.historical == other.historical
        )

    def take(self, index: NDArray[np.bool_] | NDArray[np.intp]) -> Batch:
        """The samples selected by a boolean mask or an index array (events kept whole)."""
        return Batch(
            self.signal[index],
            self.ts[index],
            self.value[index],
            self.quality[index],
            self.events,
            self.historical,
        )

    def for_signals(self, signals: NDArray[np.int32] | Sequence[int]) -> Batch:
        """Only the samples and events of the given signal ids."""
        wanted = np.asarray(signals, dtype=_I32)
        mask = np.isin(self.signal, wanted)
        keep = set(wanted.tolist())
        events = tuple(e for e in self.events if e.signal in keep)
        return Batch(
            self.signal[mask],
            self.ts[mask],
            self.value[mask],
            self.quality[mask],
            events,
            self.historical,
        )

    def last_per_signal(self) -> Batch:
        """Per signal, its sample with the greatest timestamp (the later row wins ties)."""
        if len(self) == 0:
            return self
        # Sort by (signal, ts) stably, keep the final row of each signal run.
        order = np.lexsort((self.ts, self.signal))
        sig = self.signal[order]
        last = np.flatnonzero(np.append(sig[1:] != sig[:-1], True))
        return self.take(order[last])

    # -- wire format --------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Encode as one self-checking frame (used by buses that cross a process boundary)."""
        import json

        ev = b"\n".join(
            json.dumps([e.signal, e.ts, e.data], separators=(",", ":")).encode()
            for e in self.events
        )
        body = b"".join(
            (
                self.signal.astype("<i4", copy=False).tobytes(),
                self.ts.astype("<i8", copy=False).tobytes(),
                self.value.astype("<f8", copy=False).tobytes(),
                self.quality.tobytes(),
                ev,
            )
        )
        flags = _HISTORICAL if self.historical else 0
        crc = zlib.crc32(body, _counts_crc(_VERSION, flags, len(self), len(self.events)))
        header = _HEADER.pack(_MAGIC, _VERSION, flags, len(self), len(self.events), crc)
        return header + body

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Batch:
        """Decode a frame written by :meth:`to_bytes`; raise BatchDecodeError if it is not one."""
        buf = memoryview(data)
        if len(buf) < _HEADER.size:
            raise BatchDecodeError(f"frame of {len(buf)} bytes is shorter than the header")
        magic, version, flags, n, n_events, crc = _HEADER.unpack_from(buf)
        if magic != _MAGIC:
            raise BatchDecodeError(f"bad magic {bytes(magic)!r}")
        if version != _VERSION:
            raise BatchDecodeError(f"unsupported version {version}")
        body = buf[_HEADER.size :]
        if len(body) < n * _SAMPLE_BYTES:
            raise BatchDecodeError(f"frame announces {n} samples but holds {len(body)} bytes")
        if zlib.crc32(body, _counts_crc(version, flags, n, n_events)) != crc:
            raise BatchDecodeError("checksum mismatch")
        o = 0
        sig = np.frombuffer(body, "<i4", n, o).astype(_I32)
        o += 4 * n
        ts = np.frombuffer(body, "<i8", n, o).astype(_I64)
        o += 8 * n
        val = np.frombuffer(body, "<f8", n, o).astype(_F64)
        o += 8 * n
        q = np.frombuffer(body, _U8, n, o).copy()
        o += n
        events: list[Event] = []
        rest = bytes(body[o:])
        if n_events:
            lines = rest.split(b"\n")
            if len(lines) != n_events:
                raise BatchDecodeError(f"frame announces {n_events} events, holds {len(lines)}")
            for line in lines:
                events.append(_decode_event(line))
        elif rest:
            raise BatchDecodeError(f"{len(rest)} trailing bytes")
        if flags & ~_HISTORICAL:
            raise BatchDecodeError(f"unknown flags {flags:#04x}")
        return cls(sig, ts, val, q, tuple(events), bool(flags & _HISTORICAL))


def _decode_event(line: bytes) -> Event:
    """One event line, ``[signal, ts, data]`` exactly as :meth:`Batch.to_bytes` writes it."""
    import json

    try:
        item = json.loads(line)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
        raise BatchDecodeError(f"bad event: {exc}") from exc
    if not (
        isinstance(item, list)
        and len(item) == 3
        and type(item[0]) is int  # not bool, not float
        and type(item[1]) is int
        and isinstance(item[2], str | dict | list)
    ):
        raise BatchDecodeError(f"bad event: {line[:80]!r} is not [signal, ts, data]")
    return Event(item[0], item[1], item[2])
