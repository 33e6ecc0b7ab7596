"""TDD slot patterns: a string of D, S and U slots, the special slot split D:G:U symbols.

A leaf module (standard library only): the site-file schema imports it to check patterns.

    DL share = (14·#D + S_d·#S) / (14·len)        UL share = (14·#U + S_u·#S) / (14·len)

(14 OFDM symbols per slot, normal cyclic prefix — TS 38.211 §4.3.2; the pattern is what
``tdd-UL-DL-ConfigurationCommon`` signals, TS 38.331, with its slot format per TS 38.213 §11.1.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from factory5g.net.errors import TddPatternError

__all__ = [
    "ALTERNATIVES",
    "SYMBOLS_PER_SLOT",
    "TddPattern",
    "parse_pattern",
    "parse_special",
]

SYMBOLS_PER_SLOT = 14  # TS 38.211 §4.3.2, normal cyclic prefix

# Patterns the planner compares against the configured one: DL-heavy to UL-heavy.
ALTERNATIVES: tuple[str, ...] = ("DDDSU", "DDSUU", "DSUUU", "DDDDDDDSUU")

_SPECIAL_RE = re.compile(r"^\s*(\d{1,2})\s*:\s*(\d{1,2})\s*:\s*(\d{1,2})\s*$")
_MAX_SLOTS = 320  # 10 ms at 480 kHz... far beyond any configured period (TS 38.213 §11.1)


def parse_special(split: str) -> tuple[int, int, int]:
    """``"10:2:2"`` -> (DL, guard, UL) symbols of the special slot."""
    m = _SPECIAL_RE.match(split)
    if not m:
        raise TddPatternError(
            split, f"special slot {split!r} is not DL:GP:UL symbols such as 10:2:2"
        )
    d, g, u = (int(x) for x in m.groups())
    if d + g + u != SYMBOLS_PER_SLOT:
        raise TddPatternError(
            split, f"special slot {split} has {d + g + u} symbols; a slot has {SYMBOLS_PER_SLOT}"
        )
    if g < 1:
        # The guard period absorbs the DL-to-UL switching and the timing advance.
        raise TddPatternError(split, f"special slot {split} needs at least 1 guard symbol")
    return d, g, u


@dataclass(frozen=True, slots=True)
class TddPattern:
    slots: str
    special: tuple[int, int, int] = (10, 2, 2)

    @property
    def period_slots(self) -> int:
        return len(self.slots)

    @property
    def n_dl(self) -> int:
        return self.slots.count("D")

    @property
    def n_ul(self) -> int:
        return self.slots.count("U")

    @property
    def n_special(self) -> int:
        return self.slots.count("S")

    @property
    def dl_share(self) -> float:
        d = self.special[0]
        return (SYMBOLS_PER_SLOT * self.n_dl + d * self.n_special) / (
            SYMBOLS_PER_SLOT * self.period_slots
        )

    @property
    def ul_share(self) -> float:
        u = self.special[2]
        return (SYMBOLS_PER_SLOT * self.n_ul + u * self.n_special) / (
            SYMBOLS_PER_SLOT * self.period_slots
        )

    @property
    def guard_share(self) -> float:
        return self.special[1] * self.n_special / (SYMBOLS_PER_SLOT * self.period_slots)

    def share(self, direction: str) -> float:
        return self.dl_share if direction == "DL" else self.ul_share

    def symbols(self) -> str:
        """The pattern symbol by symbol: 'D', 'G' (guard) or 'U'."""
        d, g, u = self.special
        special = "D" * d + "G" * g + "U" * u
        return "".join(special if s == "S" else s * SYMBOLS_PER_SLOT for s in self.slots)

    def label(self) -> str:
        return f"{self.slots} ({':'.join(str(x) for x in self.special)})"


def parse_pattern(pattern: str, special: str | tuple[int, int, int] = "10:2:2") -> TddPattern:
    """Check and parse a pattern string; every error says what is wrong and how to fix it."""
    split = parse_special(special) if isinstance(special, str) else special
    if isinstance(special, tuple):
        parse_special(":".join(str(x) for x in special))
    p = pattern.strip().upper()
    if not p:
        raise TddPatternError(pattern, "the TDD pattern is empty: use slots D, S, U as in DDDSU")
    if len(p) > _MAX_SLOTS:
        raise TddPatternError(pattern, f"the TDD pattern has {len(p)} slots, at most {_MAX_SLOTS}")
    bad = sorted(set(p) - set("DSU"))
    if bad:
        raise TddPatternError(
            pattern, f"TDD pattern {pattern!r} has {', '.join(map(repr, bad))}: use only D, S, U"
        )
    if "U" not in p:
        raise TddPatternError(
            pattern,
            f"TDD pattern {pattern!r} has no uplink slot (U): the cell could not carry "
            "uplink data; try DDDSU, DDSUU or DSUUU",
        )
    if "D" not in p and not ("S" in p and split[0] > 0):
        raise TddPatternError(
            pattern, f"TDD pattern {pattern!r} has no downlink symbol for control and grants"
        )
    # A switch from downlink to uplink needs the guard period of a special slot (the pattern
    # repeats, so the last slot is followed by the first).
    for i, s in enumerate(p):
        if s == "D" and p[(i + 1) % len(p)] == "U":
            raise TddPatternError(
                pattern,
                f"TDD pattern {pattern!r} switches from D to U at slot {i + 1} without a "
                "special slot (S) for the guard period; put an S between them",
            )
    return TddPattern(p, split)
