"""One-way delay over an NR cell: waiting for the right slot, grant, processing, HARQ, core.

The model (docs/network.md has the derivation, its sources and the comparison with measured
campus networks). Time runs in OFDM symbols of the cell's numerology; a packet arrives at a
uniformly random instant of the TDD period.

Uplink, dynamic grant (TS 38.321 §5.4.4 scheduling request, TS 38.213 §9.2.4):
    SR on the next PUCCH occasion → gNB processing → UL grant on the next PDCCH occasion →
    UE PUSCH preparation N2 (TS 38.214 §6.4) → PUSCH in the next U slot (deferred by slots
    taken by other traffic) → gNB decoding.
Uplink, configured grant (TS 38.321 §5.8.2, type 1/2): the next U slot at least N2 after arrival.
Downlink: gNB scheduling → PDSCH in the next slot with downlink symbols (deferred likewise) →
    UE decoding N1 (TS 38.214 §5.3).
HARQ (TS 38.321 §5.3.2/§5.4.2): each transmission fails with probability ``bler``; a failure costs
    a NACK (DL) or a decode (UL) and a new grant/PDSCH; after ``max_harq_tx`` failures the packet is
    lost (RLC would recover it far beyond any PDB).
Load: each scheduling opportunity is taken by traffic of the same or higher priority with
    probability ρ (the utilisation), so the number of deferrals is geometric.
Core: ``core_ms`` for the UPF (≤ 0.4 ms measured, Rischke et al. 2021), plus an optional
    implementation allowance ``stack_ms`` + uniform ``stack_jitter_ms`` (RLC/PDCP, transport) used
    to match measured campus networks.

The result is exact for the model (a weighted enumeration of arrival instants, deferrals and HARQ
rounds, binned), not a Monte-Carlo estimate, so the far tail (p99.999) is stable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Literal

import numpy as np
import numpy.typing as npt

from factory5g.net.errors import CapacityError
from factory5g.net.nr import numerology
from factory5g.net.tdd import SYMBOLS_PER_SLOT, TddPattern, parse_pattern

__all__ = [
    "N1_SYMBOLS",
    "N2_SYMBOLS",
    "DelayDistribution",
    "LatencyParams",
    "LinkTiming",
    "one_way_delay",
]

F64 = npt.NDArray[np.float64]

# TS 38.214 Table 5.3-1 (N1, PDSCH processing, capability 1, no additional DM-RS) and
# Table 6.4-1 (N2, PUSCH preparation, capability 1), in symbols, by μ.
N1_SYMBOLS = {0: 8, 1: 10, 2: 17, 3: 20}
N2_SYMBOLS = {0: 10, 1: 12, 2: 23, 3: 36}
PDCCH_SYMBOLS = 2  # a CORESET of 2 symbols at the start of the slot
PUCCH_SYMBOLS = 1  # SR / HARQ-ACK on a short PUCCH
MIN_PDSCH_SYMBOLS = 4  # a special slot's DL part carries PDSCH if it has this many symbols


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyParams:
    """Everything the model needs besides the pattern; defaults are an ideal, lightly loaded
    cell with a gNB as fast as a capability-1 UE."""

    scs_khz: int = 30
    ul_grant: Literal["dynamic", "configured"] = "dynamic"
    bler: float = 0.1
    max_harq_tx: int = 4
    load: float = 0.0  # utilisation seen by this flow's priority class, 0..1
    gnb_proc_symbols: float | None = None  # default: N2 of the numerology
    core_ms: float = 0.2
    stack_ms: float = 0.0
    stack_jitter_ms: float = 0.0

    def __post_init__(self) -> None:
        numerology(self.scs_khz)
        if not 0 <= self.bler < 1:
            raise CapacityError(f"BLER must be in [0, 1), not {self.bler}", what="bler")
        if self.max_harq_tx < 1:
            raise CapacityError("max_harq_tx must be at least 1", what="max_harq_tx")
        if not self.load >= 0 or math.isnan(self.load):
            raise CapacityError(f"load must be ≥ 0, not {self.load}", what="load")
        for name in ("core_ms", "stack_ms", "stack_jitter_ms"):
            if getattr(self, name) < 0:
                raise CapacityError(f"{name} must be ≥ 0", what=name)

    @classmethod
    def campus(cls, **kw: object) -> LatencyParams:
        """Calibrated on the measured SA campus figures of the reference (docs/network.md):
        2.8 ms of stack and transport plus up to 3.5 ms of jitter on top of the air interface
        puts 95 % of DDDSU downlink delays within 4.6-10.0 ms (measured: 4-10 ms)."""
        base = cls(stack_ms=2.8, stack_jitter_ms=3.5)
        return replace(base, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class DelayDistribution:
    """A delay distribution on bins of ``bin_ms`` starting at 0, plus a loss probability.

    ``pmf[i]`` is the probability of a delivered packet's delay lying in
    ``[i·bin_ms, (i+1)·bin_ms)``; ``pmf.sum() + loss == 1``.
    """

    pmf: F64
    bin_ms: float
    loss: float = 0.0

    @property
    def cdf(self) -> F64:
        c: F64 = np.cumsum(self.pmf)
        return c

    def quantile(self, q: float) -> float:
        """Delay not exceeded by a share ``q`` of the delivered packets (``loss`` apart)."""
        if not 0 <= q <= 1:
            raise ValueError(f"quantile {q} is not in [0, 1]")
        delivered = float(self.pmf.sum())
        if delivered <= 0:
            return math.inf
        if q <= 0:
            return float(np.flatnonzero(self.pmf)[0]) * self.bin_ms
        cdf = self.cdf / delivered
        i = int(np.searchsorted(cdf, q - 1e-12, side="left"))
        if i >= len(cdf):
            return math.inf
        return (i + 1) * self.bin_ms

    def prob_exceeds(self, delay_ms: float) -> float:
        """P(delay > delay_ms), lost packets included."""
        i = math.floor(delay_ms / self.bin_ms)
        within = float(self.pmf[: max(i, 0)].sum()) if i > 0 else 0.0
        return max(0.0, 1.0 - within)

    @property
    def mean_ms(self) -> float:
        delivered = float(self.pmf.sum())
        if delivered == 0:
            return math.inf
        centres = (np.arange(len(self.pmf)) + 0.5) * self.bin_ms
        return float((self.pmf * centres).sum() / delivered)

    def sample(self, n: int, rng: np.random.Generator) -> F64:
        """``n`` delays in ms; lost packets come out as NaN."""
        u = rng.random(n)
        idx = np.searchsorted(self.cdf, u, side="right")
        out: F64 = (idx + rng.random(n)) * self.bin_ms
        out[idx >= len(self.pmf)] = np.nan
        return out

    def shifted(self, extra_ms: float) -> DelayDistribution:
        k = round(extra_ms / self.bin_ms)
        return DelayDistribution(np.concatenate([np.zeros(k), self.pmf]), self.bin_ms, self.loss)

    def percentiles(self) -> dict[str, float]:
        return {
            "p50": self.quantile(0.5),
            "p99": self.quantile(0.99),
            "p99_999": self.quantile(0.99999),
        }


@dataclass(frozen=True, slots=True)
class LinkTiming:
    """The opportunities of a pattern over one period, in symbols from the period start."""

    pattern: TddPattern
    pdcch: F64  # slot starts with a DL control region
    pdsch_start: F64
    pdsch_end: F64
    pucch: F64  # first UL symbol of slots with UL symbols
    pusch_start: F64  # U slots
    period: float

    @classmethod
    def fdd(cls) -> LinkTiming:
        """Paired spectrum: every slot offers DL control, PDSCH, PUCCH and PUSCH."""
        z = np.array([0.0])
        return cls(
            TddPattern("D", (0, 1, 13)),
            z,
            z,
            np.array([float(SYMBOLS_PER_SLOT)]),
            z,
            z,
            float(SYMBOLS_PER_SLOT),
        )

    @classmethod
    def of(cls, pattern: TddPattern | None) -> LinkTiming:
        if pattern is None:
            return cls.fdd()
        d, g, u = pattern.special
        pdcch, pds, pde, pucch, pus = [], [], [], [], []
        for i, s in enumerate(pattern.slots):
            t0 = float(i * SYMBOLS_PER_SLOT)
            if s == "D":
                pdcch.append(t0)
                pds.append(t0)
                pde.append(t0 + SYMBOLS_PER_SLOT)
            elif s == "S":
                if d >= PDCCH_SYMBOLS:
                    pdcch.append(t0)
                if d >= MIN_PDSCH_SYMBOLS:
                    pds.append(t0)
                    pde.append(t0 + d)
                if u >= PUCCH_SYMBOLS:
                    pucch.append(t0 + d + g)
            else:
                pucch.append(t0)
                pus.append(t0)
        if not pdcch or not pds:
            raise CapacityError(f"pattern {pattern.label()} has no slot for downlink control")
        return cls(
            pattern,
            np.array(pdcch),
            np.array(pds),
            np.array(pde),
            np.array(pucch),
            np.array(pus),
            float(pattern.period_slots * SYMBOLS_PER_SLOT),
        )


def _unroll(base: F64, period: float, periods: int) -> F64:
    out: F64 = (base[None, :] + period * np.arange(periods)[:, None]).ravel()
    return out


class _Next:
    """next opportunity ≥ t (vectorised) over an unrolled timeline."""

    def __init__(self, base: F64, period: float, periods: int) -> None:
        self.times = _unroll(base, period, periods)

    def index(self, t: F64) -> npt.NDArray[np.intp]:
        idx: npt.NDArray[np.intp] = np.searchsorted(self.times, t - 1e-9, side="left")
        return idx

    def at(self, idx: npt.NDArray[np.intp]) -> F64:
        clipped = np.minimum(idx, len(self.times) - 1)
        out: F64 = self.times[clipped]
        return out


def one_way_delay(
    pattern: TddPattern | str | None,
    direction: Literal["UL", "DL"],
    params: LatencyParams | None = None,
    *,
    special: str = "10:2:2",
) -> DelayDistribution:
    """The one-way delay distribution (radio + core) of a packet in ``direction``.

    ``pattern`` None (or "FDD") is a paired-spectrum cell: every slot goes both ways."""
    if direction not in ("UL", "DL"):
        raise CapacityError(f"direction must be 'UL' or 'DL', not {direction!r}")
    p = params or LatencyParams()
    if isinstance(pattern, str) and pattern.upper() == "FDD":
        pattern = None
    tp = parse_pattern(pattern, special) if isinstance(pattern, str) else pattern
    load = min(p.load, 0.98)  # above 1 the queue grows without bound: the planner flags it
    return _cached(tp, direction, replace(p, load=round(load, 3)))


@lru_cache(maxsize=1024)
def _cached(tp: TddPattern | None, direction: str, p: LatencyParams) -> DelayDistribution:
    mu = numerology(p.scs_khz)
    sym_ms = 1.0 / (SYMBOLS_PER_SLOT * 2**mu)
    timing = LinkTiming.of(tp)
    n1 = float(N1_SYMBOLS.get(mu, 20))
    n2 = float(N2_SYMBOLS.get(mu, 36))
    gnb = float(p.gnb_proc_symbols) if p.gnb_proc_symbols is not None else n2

    # Deferrals by load: geometric, truncated where the tail is negligible.
    rho = p.load
    m_max = 0 if rho <= 0 else min(400, math.ceil(math.log(1e-9) / math.log(rho)))
    pm = (1 - rho) * rho ** np.arange(m_max + 1)
    pm[-1] += rho ** (m_max + 1)  # keep the mass

    # Arrival instants: the midpoints of half-symbol steps over one period, equally likely.
    step = 0.5
    arrivals = (np.arange(int(timing.period / step)) + 0.5) * step
    k = len(arrivals)

    opp_per_period = max(1, min(len(timing.pusch_start) or 1, len(timing.pdsch_start)))
    periods = math.ceil((m_max + 4 * (p.max_harq_tx + 2)) / opp_per_period) + 6
    pdcch = _Next(timing.pdcch, timing.period, periods)
    pucch = _Next(timing.pucch, timing.period, periods)
    pusch = _Next(timing.pusch_start, timing.period, periods)
    pdsch = _Next(timing.pdsch_start, timing.period, periods)
    pdsch_end = _unroll(timing.pdsch_end, timing.period, periods)

    t = np.repeat(arrivals[None, :], m_max + 1, axis=0)  # (m, k)
    defer = np.repeat(np.arange(m_max + 1)[:, None], k, axis=1)

    if direction == "UL":
        if p.ul_grant == "configured":
            # Resources reserved every U slot: no request, no deferral by other traffic.
            start = pusch.at(pusch.index(t + n2))
        else:
            sr = pucch.at(pucch.index(t))
            grant = pdcch.at(pdcch.index(sr + PUCCH_SYMBOLS + gnb))
            start = pusch.at(pusch.index(grant + PDCCH_SYMBOLS + n2) + defer)
        done = start + SYMBOLS_PER_SLOT + gnb
        rounds = [done]
        for _ in range(p.max_harq_tx - 1):
            grant = pdcch.at(pdcch.index(done))
            start = pusch.at(pusch.index(grant + PDCCH_SYMBOLS + n2))
            done = start + SYMBOLS_PER_SLOT + gnb
            rounds.append(done)
    else:
        idx = pdsch.index(t + gnb) + defer
        end = pdsch_end[np.minimum(idx, len(pdsch_end) - 1)]
        done = end + n1
        rounds = [done]
        for _ in range(p.max_harq_tx - 1):
            nack = pucch.at(pucch.index(done))
            idx = pdsch.index(nack + PUCCH_SYMBOLS + gnb)
            end = pdsch_end[np.minimum(idx, len(pdsch_end) - 1)]
            done = end + n1
            rounds.append(done)

    pm_used: F64
    if p.ul_grant == "configured" and direction == "UL":
        pm_used = np.zeros(m_max + 1)
        pm_used[0] = 1.0
    else:
        pm_used = pm.astype(np.float64)
    bin_ms = sym_ms / 4
    core_bins = p.core_ms + p.stack_ms
    total_bins = 0
    values: list[F64] = []
    weights: list[F64] = []
    for r, done_r in enumerate(rounds):
        w_r = (p.bler**r) * (1 - p.bler)
        delay_ms = (done_r - t) * sym_ms + core_bins
        values.append(delay_ms.ravel())
        weights.append((pm_used[:, None] * np.full((1, k), w_r / k)).ravel())
    v = np.concatenate(values)
    w = np.concatenate(weights)
    bins = np.floor(v / bin_ms).astype(np.int64)
    total_bins = int(bins.max()) + 1
    pmf = np.bincount(bins, weights=w, minlength=total_bins).astype(np.float64)
    if p.stack_jitter_ms > 0:
        width = max(1, round(p.stack_jitter_ms / bin_ms))
        pmf = np.convolve(pmf, np.full(width, 1.0 / width))
    loss = p.bler**p.max_harq_tx
    pmf *= (1 - loss) / pmf.sum() if pmf.sum() > 0 else 0.0
    return DelayDistribution(pmf, bin_ms, loss)
