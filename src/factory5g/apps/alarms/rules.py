"""Alarm rules of the site file compiled into numpy arrays, one element per rule.

Every rule gets a stable id, ``<signal path>/<kind>`` (``f1.strip_temp/low``), with ``#2``,
``#3``... appended to a further rule of the same signal and kind. Rules are indexed by signal
(CSR: ``first[signal]``, ``count[signal]``) so that a Batch maps onto its rules without a
Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

import numpy as np
from numpy.typing import NDArray

from factory5g.model import Site
from factory5g.model.site import AlarmKind, AlarmRule, Priority

__all__ = ["KIND_CODE", "PRIORITY_RANK", "CompiledRules", "Kind", "compile_rules"]

NS: Final = 1_000_000_000


class Kind(IntEnum):
    HIGH = 0
    LOW = 1
    RATE = 2
    STATE = 3
    STALE = 4
    BAD_QUALITY = 5


KIND_CODE: Final = {
    AlarmKind.HIGH: Kind.HIGH,
    AlarmKind.LOW: Kind.LOW,
    AlarmKind.RATE: Kind.RATE,
    AlarmKind.STATE: Kind.STATE,
    AlarmKind.STALE: Kind.STALE,
    AlarmKind.BAD_QUALITY: Kind.BAD_QUALITY,
}
PRIORITY_RANK: Final = {p: i for i, p in enumerate(Priority)}


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """What is known about one rule besides its arrays (for messages and the API)."""

    id: str
    index: int
    rule: AlarmRule
    signal: int
    path: str
    equipment: str
    unit: str


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRules:
    info: tuple[RuleInfo, ...]
    signal: NDArray[np.int32]
    kind: NDArray[np.int8]
    limit: NDArray[np.float64]  # NaN when the kind has none
    deadband: NDArray[np.float64]
    state: NDArray[np.float64]  # kind=state: the abnormal value as 0.0 / 1.0
    after_ns: NDArray[np.int64]  # kind=stale
    on_ns: NDArray[np.int64]
    off_ns: NDArray[np.int64]
    priority: NDArray[np.int8]  # rank: low 0 ... critical 3
    # CSR index by signal id: rules of signal s are by_signal[first[s] : first[s] + count[s]]
    first: NDArray[np.int64]
    count: NDArray[np.int64]
    by_signal: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.info)

    @property
    def max_per_signal(self) -> int:
        return int(self.count.max()) if len(self.count) else 0


def compile_rules(site: Site, rules: tuple[AlarmRule, ...] | None = None) -> CompiledRules:
    """Compile ``rules`` (default: the site's ``[[alarm]]`` entries) against its signals."""
    rules = site.file.alarm if rules is None else rules
    infos: list[RuleInfo] = []
    seen: dict[str, int] = {}
    for i, r in enumerate(rules):
        sig = site.signals.get(r.signal)
        base = f"{sig.path}/{r.kind.value}"
        seen[base] = seen.get(base, 0) + 1
        rid = base if seen[base] == 1 else f"{base}#{seen[base]}"
        infos.append(RuleInfo(rid, i, r, sig.id, sig.path, sig.equipment, sig.unit))
    n = len(infos)
    signal = np.fromiter((x.signal for x in infos), np.int32, n)
    nan = float("nan")
    n_signals = max(len(site.signals), int(signal.max()) + 1 if n else 0)
    order = np.argsort(signal, kind="stable").astype(np.int64)
    count = np.bincount(signal, minlength=n_signals).astype(np.int64)
    first = np.concatenate(([0], np.cumsum(count)[:-1])).astype(np.int64)
    return CompiledRules(
        info=tuple(infos),
        signal=signal,
        kind=np.fromiter((KIND_CODE[x.rule.kind] for x in infos), np.int8, n),
        limit=np.fromiter(
            (x.rule.limit if x.rule.limit is not None else nan for x in infos), np.float64, n
        ),
        deadband=np.fromiter((x.rule.deadband for x in infos), np.float64, n),
        state=np.fromiter((float(bool(x.rule.state)) for x in infos), np.float64, n),
        after_ns=np.fromiter((round((x.rule.after_s or 0.0) * NS) for x in infos), np.int64, n),
        on_ns=np.fromiter((round(x.rule.on_delay_s * NS) for x in infos), np.int64, n),
        off_ns=np.fromiter((round(x.rule.off_delay_s * NS) for x in infos), np.int64, n),
        priority=np.fromiter((PRIORITY_RANK[x.rule.priority] for x in infos), np.int8, n),
        first=first,
        count=count,
        by_signal=order,
    )
