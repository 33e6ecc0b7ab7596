"""Standardized 5QI values — TS 23.501 §5.7.4, Table 5.7.4-1.

A leaf module: the site-file schema imports it to reject unknown 5QIs. Each row gives the resource
type, the default priority level, the packet delay budget (PDB), the packet error rate (PER) and,
for delay-critical GBR, the default maximum data burst volume (MDBV) and averaging window.
5QIs 86-90 (V2X, motion tracking, split rendering) changed across releases and are left out:
check the TS 23.501 edition your core implements before adding them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from factory5g.net.errors import FiveQIError

__all__ = ["CATALOGUE", "FiveQI", "ResourceType", "five_qi"]


class ResourceType(StrEnum):
    GBR = "GBR"
    NON_GBR = "Non-GBR"
    DELAY_CRITICAL_GBR = "Delay-critical GBR"

    @property
    def guaranteed(self) -> bool:
        return self is not ResourceType.NON_GBR


@dataclass(frozen=True, slots=True, kw_only=True)
class FiveQI:
    value: int
    resource_type: ResourceType
    priority: int
    pdb_ms: float
    per: float
    mdbv_bytes: int | None = None
    averaging_window_ms: int | None = None
    example: str = ""

    @property
    def guaranteed(self) -> bool:
        return self.resource_type.guaranteed


def _rows() -> dict[int, FiveQI]:
    g, n, dc = ResourceType.GBR, ResourceType.NON_GBR, ResourceType.DELAY_CRITICAL_GBR
    rows = [
        # GBR (averaging window 2000 ms, TS 23.501 Table 5.7.4-1)
        FiveQI(value=1, resource_type=g, priority=20, pdb_ms=100, per=1e-2, example="voice"),
        FiveQI(value=2, resource_type=g, priority=40, pdb_ms=150, per=1e-3, example="video call"),
        FiveQI(
            value=3,
            resource_type=g,
            priority=30,
            pdb_ms=50,
            per=1e-3,
            example="real-time gaming, V2X, process automation monitoring",
        ),
        FiveQI(
            value=4, resource_type=g, priority=50, pdb_ms=300, per=1e-6, example="buffered video"
        ),
        FiveQI(
            value=65, resource_type=g, priority=7, pdb_ms=75, per=1e-2, example="MC push-to-talk"
        ),
        FiveQI(value=66, resource_type=g, priority=20, pdb_ms=100, per=1e-2, example="non-MC PTT"),
        FiveQI(value=67, resource_type=g, priority=15, pdb_ms=100, per=1e-3, example="MC video"),
        FiveQI(
            value=71,
            resource_type=g,
            priority=56,
            pdb_ms=150,
            per=1e-6,
            example="live UL streaming",
        ),
        FiveQI(
            value=72,
            resource_type=g,
            priority=56,
            pdb_ms=300,
            per=1e-4,
            example="live UL streaming",
        ),
        FiveQI(
            value=73,
            resource_type=g,
            priority=56,
            pdb_ms=300,
            per=1e-8,
            example="live UL streaming",
        ),
        FiveQI(
            value=74,
            resource_type=g,
            priority=56,
            pdb_ms=500,
            per=1e-8,
            example="live UL streaming",
        ),
        FiveQI(
            value=76,
            resource_type=g,
            priority=56,
            pdb_ms=500,
            per=1e-4,
            example="live uplink streaming, e.g. cameras",
        ),
        # Non-GBR
        FiveQI(
            value=5, resource_type=n, priority=10, pdb_ms=100, per=1e-6, example="IMS signalling"
        ),
        FiveQI(
            value=6,
            resource_type=n,
            priority=60,
            pdb_ms=300,
            per=1e-6,
            example="buffered video, TCP",
        ),
        FiveQI(
            value=7, resource_type=n, priority=70, pdb_ms=100, per=1e-3, example="voice, live video"
        ),
        FiveQI(value=8, resource_type=n, priority=80, pdb_ms=300, per=1e-6, example="TCP, premium"),
        FiveQI(
            value=9,
            resource_type=n,
            priority=90,
            pdb_ms=300,
            per=1e-6,
            example="default best effort",
        ),
        FiveQI(value=69, resource_type=n, priority=5, pdb_ms=60, per=1e-6, example="MC signalling"),
        FiveQI(value=70, resource_type=n, priority=55, pdb_ms=200, per=1e-6, example="MC data"),
        FiveQI(value=79, resource_type=n, priority=65, pdb_ms=50, per=1e-2, example="V2X messages"),
        FiveQI(
            value=80,
            resource_type=n,
            priority=68,
            pdb_ms=10,
            per=1e-6,
            example="low-latency eMBB, AR",
        ),
        # Delay-critical GBR (averaging window 2000 ms)
        FiveQI(
            value=82,
            resource_type=dc,
            priority=19,
            pdb_ms=10,
            per=1e-4,
            mdbv_bytes=255,
            averaging_window_ms=2000,
            example="discrete automation",
        ),
        FiveQI(
            value=83,
            resource_type=dc,
            priority=22,
            pdb_ms=10,
            per=1e-4,
            mdbv_bytes=1354,
            averaging_window_ms=2000,
            example="discrete automation",
        ),
        FiveQI(
            value=84,
            resource_type=dc,
            priority=24,
            pdb_ms=30,
            per=1e-5,
            mdbv_bytes=1354,
            averaging_window_ms=2000,
            example="intelligent transport systems",
        ),
        FiveQI(
            value=85,
            resource_type=dc,
            priority=21,
            pdb_ms=5,
            per=1e-5,
            mdbv_bytes=255,
            averaging_window_ms=2000,
            example="electricity distribution, high voltage",
        ),
    ]
    out: dict[int, FiveQI] = {}
    for r in rows:
        if r.resource_type is ResourceType.GBR:
            r = FiveQI(
                value=r.value,
                resource_type=r.resource_type,
                priority=r.priority,
                pdb_ms=r.pdb_ms,
                per=r.per,
                averaging_window_ms=2000,
                example=r.example,
            )
        out[r.value] = r
    return dict(sorted(out.items()))


CATALOGUE: dict[int, FiveQI] = _rows()


def five_qi(value: int) -> FiveQI:
    """The standardized characteristics of a 5QI; FiveQIError for one not in the table."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise FiveQIError(value, f"a 5QI is an integer, not {value!r}")
    row = CATALOGUE.get(value)
    if row is None:
        raise FiveQIError(
            value,
            f"5QI {value} is not a standardized 5QI (TS 23.501 Table 5.7.4-1); known: "
            + ", ".join(str(v) for v in CATALOGUE),
        )
    return row
