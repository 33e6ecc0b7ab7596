"""NR peak data rate — TS 38.306 §4.1.2 — and the transmission bandwidth tables N_PRB.

A leaf module (numpy and the standard library only): the site-file schema imports it to check a
cell's bandwidth against its SCS.

    rate_Mbps = 1e-6 · Σ_carriers [ v_layers · Q_m · f · R_max · (N_PRB · 12) / T_s · (1 − OH) ]

with R_max = 948/1024, T_s = 1e-3 / (14 · 2^μ) s (normal cyclic prefix, TS 38.211 §4.3.2), and the
overhead OH = 0.14 (FR1 DL), 0.18 (FR2 DL), 0.08 (FR1 UL), 0.10 (FR2 UL). The rate counts every
symbol of every slot: a TDD cell's directional capacity is this rate times the share of symbols in
that direction (:mod:`factory5g.net.tdd`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from factory5g.net.errors import BandwidthError, CapacityError

__all__ = [
    "FR2_BANDS",
    "MODULATION_ORDER",
    "N_PRB",
    "OVERHEAD",
    "R_MAX",
    "SCALING_FACTORS",
    "Carrier",
    "Direction",
    "FrequencyRange",
    "allowed_bandwidths",
    "frequency_range",
    "n_prb",
    "numerology",
    "peak_rate_mbps",
    "symbol_duration_s",
]

Direction = Literal["DL", "UL"]
FrequencyRange = Literal["FR1", "FR2"]

R_MAX = 948 / 1024  # TS 38.306 §4.1.2: maximum LDPC code rate
SCALING_FACTORS = (1.0, 0.8, 0.75, 0.4)  # TS 38.306 §4.1.2: f signalled per band
MODULATION_ORDER: dict[str, int] = {  # Q_m, TS 38.211 §5.1
    "QPSK": 2,
    "16QAM": 4,
    "64QAM": 6,
    "256QAM": 8,
    "1024QAM": 10,
}
OVERHEAD: dict[tuple[FrequencyRange, Direction], float] = {  # TS 38.306 §4.1.2
    ("FR1", "DL"): 0.14,
    ("FR2", "DL"): 0.18,
    ("FR1", "UL"): 0.08,
    ("FR2", "UL"): 0.10,
}

# TS 38.101-1 Table 5.3.2-1 (FR1) and TS 38.101-2 Table 5.3.2-1 (FR2): N_RB per channel bandwidth.
N_PRB: dict[tuple[FrequencyRange, int], dict[float, int]] = {
    ("FR1", 15): {5: 25, 10: 52, 15: 79, 20: 106, 25: 133, 30: 160, 40: 216, 50: 270},
    ("FR1", 30): {
        5: 11,
        10: 24,
        15: 38,
        20: 51,
        25: 65,
        30: 78,
        40: 106,
        50: 133,
        60: 162,
        70: 189,
        80: 217,
        90: 245,
        100: 273,
    },
    ("FR1", 60): {
        10: 11,
        15: 18,
        20: 24,
        25: 31,
        30: 38,
        40: 51,
        50: 65,
        60: 79,
        70: 93,
        80: 107,
        90: 121,
        100: 135,
    },
    ("FR2", 60): {50: 66, 100: 132, 200: 264},
    ("FR2", 120): {50: 32, 100: 66, 200: 132, 400: 264},
}

# TS 38.101-2 Table 5.2-1: FR2-1 (n257-n262) and FR2-2 (n263).
FR2_BANDS = frozenset({257, 258, 259, 260, 261, 262, 263})
_BAND_RE = re.compile(r"^n([0-9]{1,3})$")


def frequency_range(band: str) -> FrequencyRange:
    """FR1 or FR2 for an NR operating band such as ``n78`` or ``n258``."""
    m = _BAND_RE.match(band)
    if not m:
        raise CapacityError(f"{band!r} is not an NR band such as n78 or n258", what="band")
    return "FR2" if int(m.group(1)) in FR2_BANDS else "FR1"


def numerology(scs_khz: int) -> int:
    """μ with SCS = 15 · 2^μ kHz (TS 38.211 §4.2)."""
    mu = {15: 0, 30: 1, 60: 2, 120: 3, 240: 4}.get(scs_khz)
    if mu is None:
        raise CapacityError(f"{scs_khz} kHz is not an NR subcarrier spacing", what="scs_khz")
    return mu


def symbol_duration_s(scs_khz: int) -> float:
    """T_s = 1e-3 / (14 · 2^μ): the average OFDM symbol duration, normal cyclic prefix."""
    return float(1e-3 / (14 * 2 ** numerology(scs_khz)))


def allowed_bandwidths(scs_khz: int, fr: FrequencyRange) -> tuple[float, ...]:
    return tuple(sorted(N_PRB.get((fr, scs_khz), {})))


def n_prb(bandwidth_mhz: float, scs_khz: int, fr: FrequencyRange = "FR1") -> int:
    """N_PRB of a channel bandwidth at an SCS; BandwidthError names the bandwidths that exist."""
    table = N_PRB.get((fr, scs_khz), {})
    value = table.get(float(bandwidth_mhz))
    if value is None:
        raise BandwidthError(bandwidth_mhz, scs_khz, fr, sorted(table))
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Carrier:
    """One component carrier in one direction, as TS 38.306 §4.1.2 counts it."""

    bandwidth_mhz: float
    scs_khz: int = 30
    fr: FrequencyRange = "FR1"
    layers: int = 1
    modulation: str = "64QAM"
    scaling_factor: float = 1.0
    prb: int | None = None  # N_PRB when it differs from the table (e.g. a partial allocation)

    def __post_init__(self) -> None:
        if self.layers < 1 or self.layers > 8:
            raise CapacityError(f"layers must be 1 to 8, not {self.layers}", what="layers")
        if self.modulation not in MODULATION_ORDER:
            raise CapacityError(
                f"unknown modulation {self.modulation!r}: use " + ", ".join(MODULATION_ORDER),
                what="modulation",
            )
        if self.scaling_factor not in SCALING_FACTORS:
            raise CapacityError(
                f"scaling factor {self.scaling_factor:g} is not one of "
                + ", ".join(f"{f:g}" for f in SCALING_FACTORS)
                + " (TS 38.306 §4.1.2)",
                what="scaling_factor",
            )
        numerology(self.scs_khz)
        if self.prb is not None:
            if self.prb < 1:
                raise CapacityError(f"N_PRB must be positive, not {self.prb}", what="prb")
        else:
            n_prb(self.bandwidth_mhz, self.scs_khz, self.fr)

    @property
    def n_prb(self) -> int:
        return (
            self.prb if self.prb is not None else n_prb(self.bandwidth_mhz, self.scs_khz, self.fr)
        )

    def rate_mbps(self, direction: Direction) -> float:
        """This carrier's term of the TS 38.306 §4.1.2 sum, in Mbit/s."""
        if direction not in ("DL", "UL"):
            raise CapacityError(f"direction must be 'DL' or 'UL', not {direction!r}")
        qm = MODULATION_ORDER[self.modulation]
        oh = OVERHEAD[(self.fr, direction)]
        t_s = symbol_duration_s(self.scs_khz)
        bits_per_s = (
            self.layers * qm * self.scaling_factor * R_MAX * (self.n_prb * 12) / t_s * (1 - oh)
        )
        return float(1e-6 * bits_per_s)


def peak_rate_mbps(
    carriers: Iterable[Carrier],
    direction: Direction,
    *,
    sul: Carrier | None = None,
) -> float:
    """Peak rate over aggregated carriers (carrier aggregation: the sum, TS 38.306 §4.1.2).

    With a supplementary uplink carrier only the higher of UL and SUL counts (TS 38.306 §4.1.2,
    "for the band combination with SUL").
    """
    cs: Sequence[Carrier] = list(carriers)
    if not cs:
        raise CapacityError("no carrier: a cell needs at least one")
    total = math.fsum(c.rate_mbps(direction) for c in cs)
    if sul is not None and direction == "UL":
        total = max(total, sul.rate_mbps("UL"))
    return total
