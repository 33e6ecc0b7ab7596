"""Engineering values ⇄ Modbus registers: types, word and byte order, bit fields, scale, offset.

Modbus defines 16-bit registers sent high byte first (MODBUS Application Protocol v1.1b3 §4.2,
"big-Endian representation") and single bits (coils, discrete inputs). Wider values span
consecutive registers in a layout each vendor picks; a binding names it with two settings:

==========  ==========  ==========================  =========================
word_order  byte_order  float32 123.456 (42F6E979)  also called
==========  ==========  ==========================  =========================
big         big         ``42F6 E979``               ABCD, big endian (default)
little      big         ``E979 42F6``               CDAB, word swap (Modicon)
big         little      ``F642 79E9``               BADC, byte swap
little      little      ``79E9 F642``               DCBA, little endian
==========  ==========  ==========================  =========================

``byte_order = "little"`` swaps the two bytes of every register, 16-bit types included.
``bit = n`` picks bit n (0 = least significant) of a 16-bit register, after the byte order is
applied. Engineering value = raw × ``scale`` + ``offset``.

Two paths:

* scalar (:func:`encode`, :func:`decode`, :func:`raw_value`, :func:`set_bit`), used by writes:
  strict — a value the type cannot hold raises :class:`ModbusValueError`, nothing is wrapped,
  clipped or silently rounded;
* vectorised (:class:`BlockCodec`), the poll hot path: one numpy gather per register type
  decodes every value of a response at once; its ``encode_into`` is the other direction for
  a simulated device, which, like a device's firmware, rounds and saturates measurements.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from factory5g.connect.base import WriteValue
from factory5g.connect.modbus.errors import ModbusValueError
from factory5g.model.site import ModbusBinding, ModbusType

__all__ = [
    "INT_RANGES",
    "WORDS",
    "BlockCodec",
    "Format",
    "Order",
    "decode",
    "encode",
    "from_registers",
    "raw_value",
    "set_bit",
    "to_registers",
]

Order = Literal["big", "little"]

WORDS: Final[dict[str, int]] = {
    "int16": 1,
    "uint16": 1,
    "bool": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "int64": 4,
    "float64": 4,
}
_STRUCT: Final[dict[str, str]] = {
    "int16": "h",
    "uint16": "H",
    "bool": "H",
    "int32": "i",
    "uint32": "I",
    "float32": "f",
    "int64": "q",
    "float64": "d",
}
INT_RANGES: Final[dict[str, tuple[int, int]]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
}
_FLOAT32_MAX: Final = float(np.finfo(np.float32).max)
# A raw integer computed as (value - offset) / scale carries float error (12.35 / 0.01 =
# 1234.9999999999998): that close to an integer, it is that integer.
_INTEGRAL_REL_TOL: Final = 1e-9


@dataclass(frozen=True, slots=True)
class Format:
    """How one value lies in a register table. ``in_bit_table``: a coil or a discrete input."""

    type: ModbusType = "uint16"
    word_order: Order = "big"
    byte_order: Order = "big"
    bit: int | None = None
    scale: float = 1.0
    offset: float = 0.0
    in_bit_table: bool = False

    def __post_init__(self) -> None:
        if self.in_bit_table and (self.type != "bool" or self.bit is not None):
            raise ValueError("a coil or discrete input is a bool without bit")
        if self.bit is not None and not (
            0 <= self.bit <= 15 and self.type in ("int16", "uint16", "bool")
        ):
            raise ValueError("bit selects one of the 16 bits (0..15) of a 16-bit register")
        if self.type == "bool" and self.bit is None and not self.in_bit_table:
            raise ValueError("a bool in a register needs a bit")
        if self.scale == 0 or not math.isfinite(self.scale) or not math.isfinite(self.offset):
            raise ValueError("scale must be finite and not 0, offset finite")

    @classmethod
    def of(cls, b: ModbusBinding) -> Format:
        return cls(
            type=b.type,
            word_order=b.word_order,
            byte_order=b.byte_order,
            bit=b.bit,
            scale=b.scale,
            offset=b.offset,
            in_bit_table=b.table in ("coil", "discrete"),
        )

    @property
    def is_bit(self) -> bool:
        """One bit: a coil, a discrete input, or a bit field of a register."""
        return self.in_bit_table or self.bit is not None

    @property
    def registers(self) -> int:
        """Registers the value spans (1 for a coil or discrete input: one bit)."""
        return 1 if self.is_bit else WORDS[self.type]


# -- scalar ---------------------------------------------------------------------------------


def to_registers(raw: float, fmt: Format) -> list[int]:
    """A raw value, in range for ``fmt.type``, as the registers of the format's layout."""
    data = struct.pack(">" + _STRUCT[fmt.type], raw)
    words = [data[i : i + 2] for i in range(0, len(data), 2)]  # most significant first
    if fmt.byte_order == "little":
        words = [w[::-1] for w in words]
    if fmt.word_order == "little":
        words.reverse()
    return [int.from_bytes(w, "big") for w in words]


def from_registers(registers: Sequence[int], fmt: Format) -> int | float:
    """The raw value (before scale and offset) held by ``registers`` in the format's layout."""
    n = WORDS[fmt.type]
    if len(registers) < n:
        raise ValueError(f"{fmt.type} needs {n} registers, got {len(registers)}")
    words = [int(r).to_bytes(2, "big") for r in registers[:n]]
    if fmt.word_order == "little":
        words.reverse()
    if fmt.byte_order == "little":
        words = [w[::-1] for w in words]
    raw: int | float = struct.unpack(">" + _STRUCT[fmt.type], b"".join(words))[0]
    return raw


def decode(registers: Sequence[int], fmt: Format) -> float:
    """The engineering value of one binding from its registers (one 0/1 item for a coil)."""
    if fmt.in_bit_table:
        raw: int | float = 1 if registers[0] else 0
    elif fmt.bit is not None:
        word = from_registers(registers, Format("uint16", byte_order=fmt.byte_order))
        raw = (int(word) >> fmt.bit) & 1
    else:
        raw = from_registers(registers, fmt)
    return float(raw) * fmt.scale + fmt.offset


def raw_value(value: WriteValue, fmt: Format) -> int | float:
    """The raw value to write for an engineering ``value``: strict, never wraps or clips.

    Integer types (and bits) need ``(value - offset) / scale`` to be an integer in the type's
    range (0 or 1 for a bit); float32 needs it within float32's finite range. Raises
    :class:`ModbusValueError` saying why not.
    """
    kind = "bit" if fmt.is_bit else fmt.type
    if isinstance(value, str):
        raise ModbusValueError(value, kind, "a number is needed")
    if isinstance(value, bool):
        value = int(value)
    if not math.isfinite(value):
        raise ModbusValueError(value, kind, "not a finite number")
    exact = isinstance(value, int) and fmt.scale == 1 and fmt.offset == 0
    scaled: float = (value - fmt.offset) / fmt.scale
    if fmt.type in ("float32", "float64") and not fmt.is_bit:
        if fmt.type == "float32" and abs(scaled) > _FLOAT32_MAX:
            raise ModbusValueError(value, kind, f"raw {scaled:g} is beyond float32's range")
        return scaled
    if exact:
        raw = int(value)
    else:
        raw = round(scaled)
        if abs(scaled - raw) > _INTEGRAL_REL_TOL * max(1.0, abs(scaled)):
            raise ModbusValueError(
                value,
                kind,
                f"raw value {scaled:.10g} is not an integer "
                f"(resolution: steps of {fmt.scale:g} from {fmt.offset:g})",
            )
    lo, hi = (0, 1) if fmt.is_bit else INT_RANGES[fmt.type]
    if not lo <= raw <= hi:
        what = "a bit is 0 or 1" if fmt.is_bit else f"{fmt.type} holds {lo}..{hi}"
        raise ModbusValueError(value, kind, f"raw value {raw} is out of range: {what}")
    return raw


def encode(value: WriteValue, fmt: Format) -> list[int]:
    """The registers to write for ``value`` (not for bits: see :func:`set_bit`)."""
    if fmt.is_bit:
        raise ValueError("a bit is written with set_bit (in a register) or as a coil")
    return to_registers(raw_value(value, fmt), fmt)


def set_bit(register: int, value: WriteValue, fmt: Format) -> int:
    """``register`` (as read) with the format's bit set to ``value`` (0/1 after scale)."""
    if fmt.bit is None:
        raise ValueError("set_bit needs a format with a bit")
    on = raw_value(value, fmt)
    wire_bit = _wire_bit(fmt.bit, fmt.byte_order)
    return (register & ~(1 << wire_bit) & 0xFFFF) | (int(on) << wire_bit)


def _wire_bit(bit: int, byte_order: Order) -> int:
    """Bit ``bit`` of the value is this bit of the register as sent (bytes swapped: ±8)."""
    return bit if byte_order == "big" else bit ^ 8


# -- vectorised -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Gather:
    """Values of one register type: where they go, and which bytes of the block hold them."""

    dtype: np.dtype[np.generic]  # big-endian numpy type of the raw value
    positions: NDArray[np.intp]  # into the values
    byte_index: NDArray[np.intp]  # (values, bytes) into the block's bytes, most significant first
    lo: float  # saturation bounds for encode_into (integers)
    hi: float


class BlockCodec:
    """Many values of one table at fixed offsets, decoded from one block of registers at once.

    ``offsets[i]`` is the first register (or bit) of value ``i`` in the block. Register blocks
    are arrays of 16-bit register values as sent; bit blocks (coils, discrete inputs) arrays of
    0/1. Formats are all of a register table or all of a bit table.
    """

    def __init__(self, formats: Sequence[Format], offsets: Sequence[int]) -> None:
        if len(formats) != len(offsets):
            raise ValueError(f"{len(formats)} formats but {len(offsets)} offsets")
        kinds = {f.in_bit_table for f in formats}
        if len(kinds) > 1:
            raise ValueError("a block is either registers or bits, not both")
        self.bits = kinds == {True}
        self.size = len(formats)
        self.offsets = np.asarray(offsets, dtype=np.intp)
        self.span = int(
            max((o + f.registers for f, o in zip(formats, offsets, strict=True)), default=0)
        )
        if self.size and int(self.offsets.min()) < 0:
            raise ValueError("offsets must be >= 0")
        self.scale = np.array([f.scale for f in formats], dtype=np.float64)
        self.offset = np.array([f.offset for f in formats], dtype=np.float64)
        self._identity = bool((self.scale == 1.0).all() and (self.offset == 0.0).all())
        self._gathers: list[_Gather] = []
        by_type: dict[str, list[int]] = {}
        bit_pos: list[int] = []
        for i, f in enumerate(formats):
            if f.in_bit_table:
                continue
            if f.bit is not None:
                bit_pos.append(i)
            else:
                by_type.setdefault(f.type, []).append(i)
        for type_, pos in by_type.items():
            rows = [_byte_index(formats[i], int(self.offsets[i])) for i in pos]
            lo, hi = _bounds(type_)
            self._gathers.append(
                _Gather(
                    np.dtype(">" + _STRUCT[type_]),
                    np.asarray(pos, dtype=np.intp),
                    np.asarray(rows, dtype=np.intp).reshape(len(pos), 2 * WORDS[type_]),
                    lo,
                    hi,
                )
            )
        self._bit_pos = np.asarray(bit_pos, dtype=np.intp)
        self._bit_reg = self.offsets[self._bit_pos]
        self._bit_shift = np.asarray(
            [_wire_bit(formats[i].bit or 0, formats[i].byte_order) for i in bit_pos],
            dtype=np.uint16,
        )

    def decode(self, block: ArrayLike) -> NDArray[np.float64]:
        """Every value's engineering value, from the registers (or bits) of one response."""
        wire = np.asarray(block)
        if wire.shape[0] < self.span:
            raise ValueError(f"block of {wire.shape[0]} items, the values span {self.span}")
        # Registers may hold any bits, signalling NaNs too (an uninitialised float): converting
        # or scaling one raises the "invalid" flag. A NaN is a NaN here, not an error.
        with np.errstate(invalid="ignore"):
            return self._decode(wire)

    def _decode(self, wire: NDArray[Any]) -> NDArray[np.float64]:
        out: NDArray[np.float64]
        if self.bits:
            out = (wire[self.offsets] != 0).astype(np.float64)
        else:
            regs = wire.astype(np.uint16, copy=False)
            out = np.empty(self.size, dtype=np.float64)
            if self._gathers:
                data = regs.astype(">u2").view(np.uint8)  # the bytes as they were on the wire
                for g in self._gathers:
                    raw = np.ascontiguousarray(data[g.byte_index]).view(g.dtype)
                    out[g.positions] = raw.reshape(-1)
            if self._bit_pos.size:
                out[self._bit_pos] = (regs[self._bit_reg] >> self._bit_shift) & 1
        if not self._identity:
            out *= self.scale
            out += self.offset
        return out

    def encode_into(self, values: ArrayLike, block: NDArray[np.generic]) -> None:
        """Write ``values`` (engineering) into ``block`` in place, as a device would show them.

        Integers are rounded to the nearest step and saturate at the type's limits (NaN → 0);
        float32 saturates at its largest finite value. Bit fields change only their bit.
        """
        v = np.asarray(values, dtype=np.float64)
        if v.shape != (self.size,):
            raise ValueError(f"{v.shape[0] if v.ndim else 0} values for {self.size} formats")
        raw = v if self._identity else (v - self.offset) / self.scale
        if self.bits:
            block[self.offsets] = _as_bits(raw).astype(block.dtype)
            return
        if block.dtype != np.uint16:
            raise ValueError(f"a register block must be uint16, not {block.dtype}")
        if self._gathers:
            data = block.astype(">u2").view(np.uint8)
            for g in self._gathers:
                r = raw[g.positions]
                if g.dtype.kind in "iu":
                    r = np.clip(np.rint(np.nan_to_num(r, nan=0.0)), g.lo, g.hi)
                elif g.dtype.itemsize == 4:
                    r = np.clip(r, g.lo, g.hi)  # NaN stays NaN: float32 holds it
                data[g.byte_index] = r.astype(g.dtype).view(np.uint8).reshape(g.byte_index.shape)
            block[:] = data.view(">u2")
        if self._bit_pos.size:
            on = _as_bits(raw[self._bit_pos])
            mask = (np.uint16(1) << self._bit_shift).astype(np.uint16)
            np.bitwise_and.at(block, self._bit_reg, ~mask)
            np.bitwise_or.at(block, self._bit_reg, np.where(on, mask, np.uint16(0)))


def _byte_index(fmt: Format, first: int) -> list[int]:
    """Positions, in a block's bytes, of the value's bytes from most to least significant."""
    regs = list(range(first, first + WORDS[fmt.type]))
    if fmt.word_order == "little":
        regs.reverse()
    out: list[int] = []
    for r in regs:
        out += [2 * r, 2 * r + 1] if fmt.byte_order == "big" else [2 * r + 1, 2 * r]
    return out


def _bounds(type_: str) -> tuple[float, float]:
    """Saturation limits as floats that convert back into the type without overflow."""
    if type_ in INT_RANGES:
        lo, hi = INT_RANGES[type_]
        hi_f = float(hi)
        if int(hi_f) > hi:  # int64: 2**63 - 1 rounds up to 2**63 as a float
            hi_f = math.nextafter(hi_f, 0.0)
        return float(lo), hi_f
    if type_ == "float32":
        return -_FLOAT32_MAX, _FLOAT32_MAX
    return -math.inf, math.inf


def _as_bits(raw: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Raw values as bits: anything that rounds to non-zero is on (NaN: off)."""
    on: NDArray[np.bool_] = np.rint(np.nan_to_num(raw, nan=0.0)) != 0
    return on
