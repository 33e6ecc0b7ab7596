"""The planner: capacity per cell and pattern, demand per flow and slice, GBR admission, latency.

``plan_site(site)`` turns the site file's ``[network]`` and ``[[device]]`` into a :class:`Plan`:

1. every cell's DL/UL capacity (TS 38.306 §4.1.2 × TDD share) for its configured pattern and the
   alternatives (:data:`factory5g.net.tdd.ALTERNATIVES`);
2. every flow's demand: its rate, plus cyclic traffic (payload + :data:`HEADER_BYTES` per period);
3. admission of GBR flows (GBR and delay-critical GBR 5QIs), most important first (ARP priority
   level, then 5QI priority level): a flow is admitted when its guaranteed rate still fits in
   ``max_gbr_share`` of its cell's capacity in both directions; otherwise it is moved to the cell
   with the most room if one fits it, else rejected;
4. per flow, the one-way delay distribution for its cell, direction and the load of its priority
   class (:mod:`factory5g.net.latency`), checked against its 5QI's packet delay budget;
5. per cell the recommended pattern, and the cell count the site's demand needs.

Arrays (numpy) carry the per-flow figures, so 10,000 devices over 50 cells plan in well under a
second; the admission walk is one pass in priority order.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from factory5g.model.load import Site
from factory5g.model.site import Cell, Device, Flow
from factory5g.net.errors import DemandError, PlanError
from factory5g.net.fiveqi import FiveQI, five_qi
from factory5g.net.latency import DelayDistribution, LatencyParams, one_way_delay
from factory5g.net.nr import Carrier, frequency_range, peak_rate_mbps
from factory5g.net.tdd import ALTERNATIVES, TddPattern, parse_pattern

__all__ = [
    "HEADER_BYTES",
    "Admission",
    "CellPlan",
    "FlowPlan",
    "PatternCapacity",
    "Plan",
    "PlanOptions",
    "SlicePlan",
    "cell_capacity",
    "flow_demand_mbps",
    "plan_site",
]

HEADER_BYTES = 40  # IPv4 (20) + UDP/TCP (8-20) + PDCP/RLC/MAC headers: per cyclic packet
DEFAULT_5QI = 9  # TS 23.501 §5.7.4: the default non-GBR bearer

Verdict = Literal["ok", "marginal", "fail", "overloaded", "no-traffic"]
Status = Literal["admitted", "moved", "rejected", "best-effort"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanOptions:
    max_gbr_share: float = 0.8  # of a cell's capacity that GBR flows may reserve
    target_utilisation: float = 0.8  # for the cell count
    alternatives: tuple[str, ...] = ALTERNATIVES
    latency: LatencyParams = field(default_factory=LatencyParams)
    with_latency: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.max_gbr_share <= 1:
            raise PlanError("max_gbr_share must be in (0, 1]")
        if not 0 < self.target_utilisation <= 1:
            raise PlanError("target_utilisation must be in (0, 1]")


@dataclass(frozen=True, slots=True)
class PatternCapacity:
    pattern: str
    special: str
    dl_mbps: float
    ul_mbps: float
    dl_share: float
    ul_share: float


@dataclass(slots=True)
class CellPlan:
    id: str
    band: str
    fr: str
    scs_khz: int
    pattern: str
    special: str
    peak_dl_mbps: float
    peak_ul_mbps: float
    capacity_dl_mbps: float
    capacity_ul_mbps: float
    alternatives: list[PatternCapacity]
    demand_dl_mbps: float = 0.0
    demand_ul_mbps: float = 0.0
    gbr_dl_mbps: float = 0.0  # reserved by admitted GBR flows
    gbr_ul_mbps: float = 0.0
    load_gbr_dl: float = 0.0
    load_gbr_ul: float = 0.0
    load_dl: float = 0.0
    load_ul: float = 0.0
    recommended_pattern: str = ""
    configured_fits: bool = True
    devices: int = 0


@dataclass(slots=True)
class SlicePlan:
    name: str
    sst: int
    sd: str | None
    demand_dl_mbps: float
    demand_ul_mbps: float
    gbr_dl_mbps: float
    gbr_ul_mbps: float
    capacity_dl_mbps: float  # of the cells its devices use
    capacity_ul_mbps: float
    devices: int


@dataclass(slots=True)
class FlowPlan:
    device: str
    name: str
    kind: str
    slice: str
    qos: str | None
    five_qi: int
    arp: int
    gbr: bool
    cell: str
    ul_mbps: float
    dl_mbps: float
    reserved_ul_mbps: float
    reserved_dl_mbps: float
    status: Status
    moved_to: str | None
    pdb_ms: float
    per: float
    latency: dict[str, dict[str, float]]  # "UL"/"DL" -> p50, p99, p99_999, loss
    verdict: Verdict
    reason: str = ""


@dataclass(slots=True)
class Plan:
    site: str
    cells: list[CellPlan]
    slices: list[SlicePlan]
    flows: list[FlowPlan]
    recommended_cells: int
    options: PlanOptions
    distributions: dict[tuple[str, str, str], DelayDistribution] = field(
        default_factory=dict, repr=False
    )  # (cell, direction, class) -> distribution, for reports and the link emulator

    @property
    def admitted(self) -> list[FlowPlan]:
        return [f for f in self.flows if f.status == "admitted"]

    @property
    def rejected(self) -> list[FlowPlan]:
        return [f for f in self.flows if f.status == "rejected"]

    def cell(self, cell_id: str) -> CellPlan:
        for c in self.cells:
            if c.id == cell_id:
                return c
        raise PlanError(f"no cell {cell_id!r} in the plan")

    def to_dict(self) -> dict[str, Any]:
        def fields(obj: Any, skip: str = "") -> dict[str, Any]:
            return {k: getattr(obj, k) for k in obj.__slots__ if k != skip}

        def cell(c: CellPlan) -> dict[str, Any]:
            d = fields(c, "alternatives")
            d["alternatives"] = [_pc(a) for a in c.alternatives]
            out: dict[str, Any] = _rounded(d)
            return out

        return {
            "site": self.site,
            "recommended_cells": self.recommended_cells,
            "cells": [cell(c) for c in self.cells],
            "slices": [_rounded(fields(s)) for s in self.slices],
            "flows": [_rounded(fields(f)) for f in self.flows],
            "summary": {
                "flows": len(self.flows),
                "gbr_flows": sum(f.gbr for f in self.flows),
                "admitted": sum(f.status == "admitted" for f in self.flows),
                "moved": sum(f.status == "moved" for f in self.flows),
                "rejected": sum(f.status == "rejected" for f in self.flows),
                "latency_fail": sum(f.verdict in ("fail", "overloaded") for f in self.flows),
            },
        }


def _pc(a: PatternCapacity) -> dict[str, Any]:
    return {
        "pattern": a.pattern,
        "special": a.special,
        "dl_mbps": a.dl_mbps,
        "ul_mbps": a.ul_mbps,
        "dl_share": a.dl_share,
        "ul_share": a.ul_share,
    }


def _rounded(v: Any) -> Any:
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, float):
        v = float(v)
        return v if not math.isfinite(v) else round(v, 4)
    if isinstance(v, dict):
        return {k: _rounded(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_rounded(x) for x in v]
    return v


# -- capacity ----------------------------------------------------------------------------------


def _carriers(cell: Cell, direction: Literal["DL", "UL"]) -> list[Carrier]:
    fr = frequency_range(cell.band)
    out = [
        Carrier(
            bandwidth_mhz=cell.bandwidth_mhz,
            scs_khz=cell.scs_khz,
            fr=fr,
            layers=cell.layers_dl if direction == "DL" else cell.layers_ul,
            modulation=cell.max_modulation_dl if direction == "DL" else cell.max_modulation_ul,
            scaling_factor=cell.scaling_factor,
        )
    ]
    for c in cell.carrier:
        out.append(
            Carrier(
                bandwidth_mhz=c.bandwidth_mhz,
                scs_khz=c.scs_khz or cell.scs_khz,
                fr=frequency_range(c.band or cell.band),
                layers=(c.layers_dl or cell.layers_dl)
                if direction == "DL"
                else (c.layers_ul or cell.layers_ul),
                modulation=(c.max_modulation_dl or cell.max_modulation_dl)
                if direction == "DL"
                else (c.max_modulation_ul or cell.max_modulation_ul),
                scaling_factor=cell.scaling_factor,
            )
        )
    return out


def _sul(cell: Cell) -> Carrier | None:
    if cell.sul is None:
        return None
    s = cell.sul
    return Carrier(
        bandwidth_mhz=s.bandwidth_mhz,
        scs_khz=s.scs_khz,
        fr=frequency_range(s.band),
        layers=s.layers,
        modulation=s.max_modulation,
        scaling_factor=cell.scaling_factor,
    )


def cell_capacity(cell: Cell, pattern: str | None = None) -> PatternCapacity:
    """DL and UL capacity of a cell with ``pattern`` (default: its own), in Mbit/s.

    Direction capacity = peak rate of that direction (all symbols) × its TDD share. A SUL carrier
    has every slot in uplink; only the higher of UL and SUL counts (TS 38.306 §4.1.2).
    """
    peak_dl = peak_rate_mbps(_carriers(cell, "DL"), "DL")
    peak_ul = peak_rate_mbps(_carriers(cell, "UL"), "UL")
    if cell.duplex == "fdd":
        dl_share = ul_share = 1.0
        label = "FDD"
    else:
        tp = parse_pattern(pattern or cell.tdd_pattern, cell.special_slot)
        dl_share, ul_share = tp.dl_share, tp.ul_share
        label = tp.slots
    ul = peak_ul * ul_share
    sul = _sul(cell)
    if sul is not None:
        ul = max(ul, sul.rate_mbps("UL"))
    return PatternCapacity(label, cell.special_slot, peak_dl * dl_share, ul, dl_share, ul_share)


# -- demand --------------------------------------------------------------------------------------


def flow_demand_mbps(flow: Flow, device: str = "") -> tuple[float, float]:
    """(UL, DL) Mbit/s of a flow: its rates plus its cyclic packets with headers."""
    if flow.ul_mbps < 0 or flow.dl_mbps < 0:
        raise DemandError(
            f"device {device!r}: a flow's demand cannot be negative "
            f"(ul_mbps={flow.ul_mbps}, dl_mbps={flow.dl_mbps})",
            device=device,
            field="ul_mbps" if flow.ul_mbps < 0 else "dl_mbps",
        )
    ul, dl = flow.ul_mbps, flow.dl_mbps
    if flow.period_ms is not None and flow.payload_bytes is not None:
        cyclic = (flow.payload_bytes + HEADER_BYTES) * 8 / (flow.period_ms * 1000)
        if flow.direction in ("ul", "both"):
            ul += cyclic
        if flow.direction in ("dl", "both"):
            dl += cyclic
    elif (flow.period_ms is None) != (flow.payload_bytes is None):
        raise DemandError(
            f"device {device!r}: cyclic traffic needs both period_ms and payload_bytes",
            device=device,
            field="period_ms" if flow.period_ms is None else "payload_bytes",
        )
    return ul, dl


# -- admission state (also the NEF emulator's) --------------------------------------------------


class Admission:
    """Guaranteed bit rate reserved per cell and direction; the planner's and the NEF's ledger."""

    def __init__(self, capacity: dict[str, tuple[float, float]], max_gbr_share: float) -> None:
        # cell -> (dl, ul) capacity in Mbit/s
        self.capacity = dict(capacity)
        self.max_gbr_share = max_gbr_share
        self.factor = dict.fromkeys(capacity, 1.0)
        self.reserved: dict[str, list[float]] = {c: [0.0, 0.0] for c in capacity}

    def limit(self, cell: str) -> tuple[float, float]:
        dl, ul = self.capacity[cell]
        f = self.factor[cell] * self.max_gbr_share
        return dl * f, ul * f

    def room(self, cell: str) -> tuple[float, float]:
        ldl, lul = self.limit(cell)
        rdl, rul = self.reserved[cell]
        return ldl - rdl, lul - rul

    def fits(self, cell: str, dl: float, ul: float) -> bool:
        room_dl, room_ul = self.room(cell)
        return dl <= room_dl + 1e-9 and ul <= room_ul + 1e-9

    def reserve(self, cell: str, dl: float, ul: float) -> None:
        r = self.reserved[cell]
        r[0] += dl
        r[1] += ul

    def release(self, cell: str, dl: float, ul: float) -> None:
        r = self.reserved[cell]
        r[0] = max(0.0, r[0] - dl)
        r[1] = max(0.0, r[1] - ul)

    def overbooked(self, cell: str) -> bool:
        room_dl, room_ul = self.room(cell)
        return room_dl < -1e-9 or room_ul < -1e-9

    def best_cell(self, dl: float, ul: float, exclude: str | None = None) -> str | None:
        best, best_room = None, -math.inf
        for c in self.capacity:
            if c == exclude or not self.fits(c, dl, ul):
                continue
            room_dl, room_ul = self.room(c)
            ldl, lul = self.limit(c)
            score = min(room_dl / ldl if ldl else 0.0, room_ul / lul if lul else 0.0)
            if score > best_room:
                best, best_room = c, score
        return best


# -- the plan ----------------------------------------------------------------------------------


def plan_site(site: Site, options: PlanOptions | None = None) -> Plan:
    opts = options or PlanOptions()
    net = site.file.network
    if not net.cell:
        raise PlanError("the site file has no [[network.cell]]: nothing to plan")
    cells = list(net.cell)
    cell_index = {c.id: i for i, c in enumerate(cells)}
    profiles = {q.name: q for q in net.qos}
    slices = {s.name: s for s in net.slice}

    cell_plans: list[CellPlan] = []
    for c in cells:
        cap = cell_capacity(c)
        peak_dl = peak_rate_mbps(_carriers(c, "DL"), "DL")
        peak_ul = peak_rate_mbps(_carriers(c, "UL"), "UL")
        alts: list[PatternCapacity] = []
        if c.duplex == "tdd":
            seen: set[str] = set()
            for pat in (c.tdd_pattern, *opts.alternatives):
                if pat in seen:
                    continue
                seen.add(pat)
                alts.append(cell_capacity(c, pat))
        else:
            alts.append(cap)
        cell_plans.append(
            CellPlan(
                id=c.id,
                band=c.band,
                fr=frequency_range(c.band),
                scs_khz=c.scs_khz,
                pattern=cap.pattern,
                special=c.special_slot,
                peak_dl_mbps=peak_dl,
                peak_ul_mbps=peak_ul,
                capacity_dl_mbps=cap.dl_mbps,
                capacity_ul_mbps=cap.ul_mbps,
                alternatives=alts,
            )
        )

    # -- flows as arrays
    rows: list[tuple[Device, int, Flow, FiveQI, int, str | None]] = []
    for d in site.file.device:
        profile_name = d.qos
        for j, f in enumerate(d.carries):
            qname = f.qos or profile_name
            prof = profiles.get(qname) if qname else None
            fq = five_qi(prof.five_qi if prof else DEFAULT_5QI)
            arp = prof.arp_priority if prof else 15
            rows.append((d, j, f, fq, arp, qname))
    n = len(rows)
    ul = np.zeros(n)
    dl = np.zeros(n)
    res_ul = np.zeros(n)
    res_dl = np.zeros(n)
    gbr = np.zeros(n, dtype=bool)
    prio = np.zeros((n, 2), dtype=np.int64)
    cell_of = np.full(n, -1, dtype=np.int64)
    for i, (d, _j, f, fq, arp, qname) in enumerate(rows):
        u, w = flow_demand_mbps(f, d.id)
        ul[i], dl[i] = u, w
        gbr[i] = fq.guaranteed
        prof = profiles.get(qname) if qname else None
        if gbr[i]:
            res_ul[i] = max(u, prof.gbr_ul_mbps or 0.0) if prof else u
            res_dl[i] = max(w, prof.gbr_dl_mbps or 0.0) if prof else w
        prio[i] = (arp, fq.priority)
        if d.cell is not None:
            cell_of[i] = cell_index[d.cell]

    # Devices without a cell: onto the least loaded cell (uplink), one device at a time.
    caps = np.array([[cp.capacity_dl_mbps, cp.capacity_ul_mbps] for cp in cell_plans])
    if (cell_of < 0).any():
        used_ul = np.bincount(cell_of[cell_of >= 0], weights=ul[cell_of >= 0], minlength=len(cells))
        dev_rows: dict[str, list[int]] = defaultdict(list)
        for row in np.flatnonzero(cell_of < 0).tolist():
            dev_rows[rows[row][0].id].append(row)
        for idx in dev_rows.values():
            # the cell whose uplink load would stay lowest
            after = (used_ul + ul[idx].sum()) / np.maximum(caps[:, 1], 1e-9)
            target = int(np.argmin(after))
            cell_of[idx] = target
            used_ul[target] += ul[idx].sum()

    # -- admission, most important first: ARP priority level, then 5QI priority level
    adm = Admission(
        {cp.id: (cp.capacity_dl_mbps, cp.capacity_ul_mbps) for cp in cell_plans}, opts.max_gbr_share
    )
    status: list[Status] = ["best-effort"] * n
    moved_to: list[str | None] = [None] * n
    final_cell = cell_of.copy()
    order = np.lexsort((prio[:, 1], prio[:, 0]))
    cell_ids = [cp.id for cp in cell_plans]
    for i in order[gbr[order]]:
        c = cell_ids[cell_of[i]]
        if adm.fits(c, res_dl[i], res_ul[i]):
            adm.reserve(c, res_dl[i], res_ul[i])
            status[i] = "admitted"
            continue
        other = adm.best_cell(res_dl[i], res_ul[i], exclude=c)
        if other is not None:
            adm.reserve(other, res_dl[i], res_ul[i])
            status[i] = "moved"
            moved_to[i] = other
            final_cell[i] = cell_index[other]
        else:
            status[i] = "rejected"

    # -- load per cell and direction: admitted GBR, and everything carried
    carried = np.array([s != "rejected" for s in status])
    ncell = len(cells)
    g_mask = gbr & carried
    dem_dl = np.bincount(final_cell[carried], weights=dl[carried], minlength=ncell)
    dem_ul = np.bincount(final_cell[carried], weights=ul[carried], minlength=ncell)
    gdem_dl = np.bincount(final_cell[g_mask], weights=dl[g_mask], minlength=ncell)
    gdem_ul = np.bincount(final_cell[g_mask], weights=ul[g_mask], minlength=ncell)
    all_dl = np.bincount(cell_of, weights=dl, minlength=ncell)
    all_ul = np.bincount(cell_of, weights=ul, minlength=ncell)
    all_gbr_dl = np.bincount(cell_of[gbr], weights=res_dl[gbr], minlength=ncell)
    all_gbr_ul = np.bincount(cell_of[gbr], weights=res_ul[gbr], minlength=ncell)
    dev_per_cell: dict[int, set[str]] = defaultdict(set)
    for i in range(n):
        dev_per_cell[int(final_cell[i])].add(rows[i][0].id)

    for k, cp in enumerate(cell_plans):
        cp.demand_dl_mbps = float(dem_dl[k])
        cp.demand_ul_mbps = float(dem_ul[k])
        cp.gbr_dl_mbps, cp.gbr_ul_mbps = adm.reserved[cp.id]
        cp.load_dl = _ratio(dem_dl[k], cp.capacity_dl_mbps)
        cp.load_ul = _ratio(dem_ul[k], cp.capacity_ul_mbps)
        cp.load_gbr_dl = _ratio(gdem_dl[k], cp.capacity_dl_mbps)
        cp.load_gbr_ul = _ratio(gdem_ul[k], cp.capacity_ul_mbps)
        cp.devices = len(dev_per_cell.get(k, ()))
        # Keep the configured pattern if everything fits (a pattern change is a site-wide
        # re-synchronisation, TS 38.331 tdd-UL-DL-ConfigurationCommon); otherwise the fitting
        # pattern that leaves the most headroom; if none fits, the one closest to fitting.
        best, best_score = cp.pattern, -math.inf
        for alt in cp.alternatives:
            fits = bool(
                all_dl[k] <= alt.dl_mbps * opts.target_utilisation
                and all_ul[k] <= alt.ul_mbps * opts.target_utilisation
                and all_gbr_dl[k] <= alt.dl_mbps * opts.max_gbr_share
                and all_gbr_ul[k] <= alt.ul_mbps * opts.max_gbr_share
            )
            score = min(1 - _ratio(all_dl[k], alt.dl_mbps), 1 - _ratio(all_ul[k], alt.ul_mbps)) + (
                2.0 if fits else 0.0
            )
            if alt.pattern == cp.pattern:
                cp.configured_fits = fits
                if fits:
                    score += 10.0
            if score > best_score:
                best, best_score = alt.pattern, score
        cp.recommended_pattern = best

    # -- cell count: the whole site's demand over one cell's capacity with its best pattern
    best_caps = []
    for cp in cell_plans:
        alt = next(a for a in cp.alternatives if a.pattern == cp.recommended_pattern)
        best_caps.append((alt.dl_mbps, alt.ul_mbps))
    mean_dl = float(np.mean([b[0] for b in best_caps]))
    mean_ul = float(np.mean([b[1] for b in best_caps]))
    need = max(
        math.ceil(float(dl.sum()) / (mean_dl * opts.target_utilisation)) if mean_dl else 0,
        math.ceil(float(ul.sum()) / (mean_ul * opts.target_utilisation)) if mean_ul else 0,
        math.ceil(float(res_dl.sum()) / (mean_dl * opts.max_gbr_share)) if mean_dl else 0,
        math.ceil(float(res_ul.sum()) / (mean_ul * opts.max_gbr_share)) if mean_ul else 0,
    )
    recommended_cells = max(len(cells), need)

    # -- slices
    slice_plans: list[SlicePlan] = []
    slice_of = np.array(
        [list(slices).index(r[0].slice) if r[0].slice in slices else -1 for r in rows]
    )
    for s_i, s in enumerate(slices.values()):
        m = slice_of == s_i
        used_cells = sorted(set(final_cell[m].tolist()))
        devs = {rows[i][0].id for i in np.flatnonzero(m)}
        devs |= {d.id for d in site.file.device if d.slice == s.name}
        slice_plans.append(
            SlicePlan(
                name=s.name,
                sst=s.sst,
                sd=s.sd,
                demand_dl_mbps=float(dl[m].sum()),
                demand_ul_mbps=float(ul[m].sum()),
                gbr_dl_mbps=float(res_dl[m & gbr].sum()),
                gbr_ul_mbps=float(res_ul[m & gbr].sum()),
                capacity_dl_mbps=float(sum(cell_plans[c].capacity_dl_mbps for c in used_cells)),
                capacity_ul_mbps=float(sum(cell_plans[c].capacity_ul_mbps for c in used_cells)),
                devices=len(devs),
            )
        )

    # -- latency per flow
    dists: dict[tuple[str, str, str], DelayDistribution] = {}

    def dist(k: int, direction: Literal["UL", "DL"], cls: str) -> DelayDistribution:
        cp = cell_plans[k]
        key = (cp.id, direction, cls)
        if key not in dists:
            c = cells[k]
            if cls == "gbr":
                load = cp.load_gbr_ul if direction == "UL" else cp.load_gbr_dl
            else:
                load = cp.load_ul if direction == "UL" else cp.load_dl
            params = LatencyParams(
                scs_khz=c.scs_khz,
                ul_grant=c.ul_grant,
                bler=c.bler,
                max_harq_tx=c.max_harq_tx,
                load=load,
                gnb_proc_symbols=opts.latency.gnb_proc_symbols,
                core_ms=opts.latency.core_ms,
                stack_ms=opts.latency.stack_ms,
                stack_jitter_ms=opts.latency.stack_jitter_ms,
            )
            pattern: TddPattern | None = (
                parse_pattern(c.tdd_pattern, c.special_slot) if c.duplex == "tdd" else None
            )
            dists[key] = one_way_delay(pattern, direction, params)  # None: FDD
        return dists[key]

    flow_plans: list[FlowPlan] = []
    pct_cache: dict[tuple[int, str, str], dict[str, float]] = {}
    late_cache: dict[tuple[tuple[int, str, str], float], float] = {}
    for i, (d, j, f, fq, arp, qname) in enumerate(rows):
        k = int(final_cell[i])
        cp = cell_plans[k]
        cls = "gbr" if gbr[i] else "best-effort"
        lat: dict[str, dict[str, float]] = {}
        verdict: Verdict = "no-traffic"
        reason = ""
        if opts.with_latency and status[i] != "rejected":
            verdicts: list[Verdict] = []
            for direction, rate in (("UL", ul[i]), ("DL", dl[i])):
                if rate <= 0:
                    continue
                load = (
                    (cp.load_gbr_ul if direction == "UL" else cp.load_gbr_dl)
                    if gbr[i]
                    else (cp.load_ul if direction == "UL" else cp.load_dl)
                )
                dd = dist(k, direction, cls)  # type: ignore[arg-type]
                key = (k, direction, cls)
                if key not in pct_cache:
                    pct_cache[key] = dd.percentiles()
                pct = pct_cache[key]
                if (key, fq.pdb_ms) not in late_cache:
                    late_cache[(key, fq.pdb_ms)] = dd.prob_exceeds(fq.pdb_ms)
                lat[direction] = {**pct, "loss": dd.loss, "late": late_cache[(key, fq.pdb_ms)]}
                if load >= 1:
                    verdicts.append("overloaded")
                elif pct["p99_999"] <= fq.pdb_ms and dd.loss <= fq.per * (1 + 1e-9):
                    verdicts.append("ok")
                elif pct["p99"] <= fq.pdb_ms:
                    verdicts.append("marginal")
                else:
                    verdicts.append("fail")
            if verdicts:
                rank = {"ok": 0, "marginal": 1, "fail": 2, "overloaded": 3}
                verdict = max(verdicts, key=lambda v: rank[v])
            if verdict == "marginal":
                reason = (
                    f"p99.999 or loss beyond the {fq.pdb_ms:g} ms / {fq.per:g} of 5QI {fq.value}"
                )
            elif verdict == "fail":
                reason = f"p99 beyond the {fq.pdb_ms:g} ms budget of 5QI {fq.value}"
            elif verdict == "overloaded":
                reason = f"cell {cp.id} is loaded beyond its capacity"
        elif status[i] == "rejected":
            verdict = "fail"
            reason = f"no cell has {res_ul[i]:.3g}/{res_dl[i]:.3g} Mbit/s UL/DL of GBR left"
        flow_plans.append(
            FlowPlan(
                device=d.id,
                name=f.name
                or (f"{f.kind.value}" if len(d.carries) == 1 else f"{f.kind.value}-{j}"),
                kind=f.kind.value,
                slice=d.slice,
                qos=qname,
                five_qi=fq.value,
                arp=arp,
                gbr=bool(gbr[i]),
                cell=cell_ids[cell_of[i]],
                ul_mbps=float(ul[i]),
                dl_mbps=float(dl[i]),
                reserved_ul_mbps=float(res_ul[i]),
                reserved_dl_mbps=float(res_dl[i]),
                status=status[i],
                moved_to=moved_to[i],
                pdb_ms=fq.pdb_ms,
                per=fq.per,
                latency=lat,
                verdict=verdict,
                reason=reason,
            )
        )

    return Plan(
        site=site.name,
        cells=cell_plans,
        slices=slice_plans,
        flows=flow_plans,
        recommended_cells=recommended_cells,
        options=opts,
        distributions=dists,
    )


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else (math.inf if a > 0 else 0.0)
