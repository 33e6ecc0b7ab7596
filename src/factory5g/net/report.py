"""The plan, three ways: rich terminal tables, JSON for machines, and an HTML page with charts.

The HTML embeds plotly.js inline (``include_plotlyjs=True``): the page works in an air-gapped
plant, with no CDN.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

import numpy as np
from rich.console import Group
from rich.table import Table
from rich.text import Text

from factory5g.net.plan import Plan

__all__ = ["plan_html", "plan_json", "plan_tables"]

_VERDICT_STYLE = {
    "ok": "green",
    "marginal": "yellow",
    "fail": "bold red",
    "overloaded": "bold red",
    "no-traffic": "dim",
}
_STATUS_STYLE = {
    "admitted": "green",
    "moved": "yellow",
    "rejected": "bold red",
    "best-effort": "dim",
}


def _ms(v: float) -> str:
    return "∞" if not math.isfinite(v) else f"{v:.2f}"


def _mbps(v: float) -> str:
    return f"{v:,.1f}" if v >= 10 else f"{v:.3g}"


def plan_json(plan: Plan) -> str:
    return json.dumps(plan.to_dict(), ensure_ascii=False, allow_nan=False, default=_no_inf)


def _no_inf(v: Any) -> Any:  # pragma: no cover - json calls it only for unknown types
    raise TypeError(f"cannot encode {type(v).__name__}")


def plan_tables(plan: Plan, *, max_flows: int = 200) -> Group:
    """Cells (with every alternative pattern), slices, admission and latency per flow."""
    cells = Table(title=f"Cells of {plan.site} — capacity in Mbit/s", title_justify="left")
    for col in (
        "cell",
        "band",
        "pattern",
        "DL cap",
        "UL cap",
        "DL demand",
        "UL demand",
        "UL load",
        "GBR UL",
        "recommended",
    ):
        cells.add_column(col, justify="right" if col not in ("cell", "band", "pattern") else "left")
    for c in plan.cells:
        load_style = "red" if c.load_ul >= 1 or c.load_dl >= 1 else ""
        rec = c.recommended_pattern
        cells.add_row(
            c.id,
            f"{c.band} {c.scs_khz} kHz",
            f"{c.pattern} ({c.special})",
            _mbps(c.capacity_dl_mbps),
            _mbps(c.capacity_ul_mbps),
            _mbps(c.demand_dl_mbps),
            _mbps(c.demand_ul_mbps),
            Text(f"{c.load_ul:.0%}", style=load_style),
            _mbps(c.gbr_ul_mbps),
            Text(rec, style="green" if rec == c.pattern else "yellow"),
        )
    alts = Table(title="Capacity by TDD pattern (DL / UL Mbit/s)", title_justify="left")
    alts.add_column("cell")
    patterns: list[str] = []
    for c in plan.cells:
        for a in c.alternatives:
            if a.pattern not in patterns:
                patterns.append(a.pattern)
    for p in patterns:
        alts.add_column(p, justify="right")
    for c in plan.cells:
        by = {a.pattern: a for a in c.alternatives}
        alts.add_row(
            c.id,
            *(
                f"{_mbps(by[p].dl_mbps)} / {_mbps(by[p].ul_mbps)}" if p in by else "–"
                for p in patterns
            ),
        )
    slices = Table(title="Slices — demand vs capacity of the cells they use", title_justify="left")
    for col in (
        "slice",
        "S-NSSAI",
        "devices",
        "DL demand",
        "UL demand",
        "GBR UL",
        "UL cap",
        "UL share",
    ):
        slices.add_column(col, justify="left" if col in ("slice", "S-NSSAI") else "right")
    for s in plan.slices:
        share = s.demand_ul_mbps / s.capacity_ul_mbps if s.capacity_ul_mbps else 0.0
        slices.add_row(
            s.name,
            f"{s.sst}/{s.sd or '-'}",
            str(s.devices),
            _mbps(s.demand_dl_mbps),
            _mbps(s.demand_ul_mbps),
            _mbps(s.gbr_ul_mbps),
            _mbps(s.capacity_ul_mbps),
            f"{share:.0%}",
        )
    flows = Table(
        title="Flows — admission and one-way delay (ms) against the 5QI budget",
        title_justify="left",
    )
    for col in (
        "device",
        "flow",
        "5QI",
        "cell",
        "UL",
        "DL",
        "admission",
        "UL p50/p99/p99.999",
        "DL p50/p99/p99.999",
        "PDB",
        "verdict",
    ):
        flows.add_column(col, justify="right" if col in ("5QI", "UL", "DL", "PDB") else "left")
    for f in plan.flows[:max_flows]:
        lat = {
            d: "/".join(_ms(f.latency[d][k]) for k in ("p50", "p99", "p99_999")) for d in f.latency
        }
        flows.add_row(
            f.device,
            f.name,
            str(f.five_qi),
            f.moved_to or f.cell,
            _mbps(f.ul_mbps),
            _mbps(f.dl_mbps),
            Text(
                f.status + (f" → {f.moved_to}" if f.moved_to else ""), style=_STATUS_STYLE[f.status]
            ),
            lat.get("UL", "–"),
            lat.get("DL", "–"),
            f"{f.pdb_ms:g}",
            Text(f.verdict, style=_VERDICT_STYLE[f.verdict]),
        )
    d = plan.to_dict()["summary"]
    more = (
        f" ({len(plan.flows) - max_flows} more flows in --json)"
        if len(plan.flows) > max_flows
        else ""
    )
    summary = Text(
        f"{d['flows']} flows, {d['gbr_flows']} GBR: {d['admitted']} admitted, {d['moved']} moved, "
        f"{d['rejected']} rejected; {d['latency_fail']} miss their delay budget. "
        f"Cells: {len(plan.cells)} configured, {plan.recommended_cells} recommended.{more}"
    )
    return Group(cells, alts, slices, flows, summary)


# -- HTML ------------------------------------------------------------------------------------


def _figures(plan: Plan) -> list[Any]:
    import plotly.graph_objects as go

    figs: list[Any] = []
    # 1. capacity by pattern, per cell
    fig = go.Figure()
    for c in plan.cells:
        fig.add_bar(
            name=f"{c.id} DL",
            x=[a.pattern for a in c.alternatives],
            y=[round(a.dl_mbps, 1) for a in c.alternatives],
        )
        fig.add_bar(
            name=f"{c.id} UL",
            x=[a.pattern for a in c.alternatives],
            y=[round(a.ul_mbps, 1) for a in c.alternatives],
        )
    fig.update_layout(
        title="Capacity by TDD pattern",
        barmode="group",
        yaxis_title="Mbit/s",
        xaxis_title="pattern",
    )
    figs.append(fig)
    # 2. demand vs capacity per slice
    names = [s.name for s in plan.slices]
    fig = go.Figure()
    fig.add_bar(name="UL demand", x=names, y=[round(s.demand_ul_mbps, 3) for s in plan.slices])
    fig.add_bar(name="UL GBR", x=names, y=[round(s.gbr_ul_mbps, 3) for s in plan.slices])
    fig.add_bar(name="UL capacity", x=names, y=[round(s.capacity_ul_mbps, 1) for s in plan.slices])
    fig.add_bar(name="DL demand", x=names, y=[round(s.demand_dl_mbps, 3) for s in plan.slices])
    fig.add_bar(name="DL capacity", x=names, y=[round(s.capacity_dl_mbps, 1) for s in plan.slices])
    fig.update_layout(
        title="Demand vs capacity per slice",
        barmode="group",
        yaxis_title="Mbit/s",
        yaxis_type="log",
    )
    figs.append(fig)
    # 3. latency: complementary CDF (log) per cell, direction and class
    fig = go.Figure()
    for (cell, direction, cls), dist in sorted(plan.distributions.items()):
        cdf = dist.cdf / max(float(dist.pmf.sum()), 1e-300)
        x = (np.arange(len(cdf)) + 1) * dist.bin_ms
        ccdf = np.clip(1 - cdf, 1e-7, 1)
        keep = np.r_[True, np.diff(ccdf) != 0]
        fig.add_scatter(
            name=f"{cell} {direction} {cls}",
            x=np.round(x[keep], 3).tolist(),
            y=ccdf[keep].tolist(),
            mode="lines",
            line_shape="hv",
        )
    fig.update_layout(
        title="One-way delay: P(delay > x)",
        xaxis_title="ms",
        yaxis_type="log",
        yaxis_title="probability",
        yaxis_range=[-6, 0],
    )
    figs.append(fig)
    return figs


def plan_html(plan: Plan) -> str:
    """A self-contained HTML page: tables and three charts, plotly.js inline."""
    import plotly.io as pio

    parts = []
    for i, fig in enumerate(_figures(plan)):
        parts.append(
            pio.to_html(
                fig, full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False}
            )
        )
    esc = html.escape

    def table(head: list[str], rows: list[list[str]]) -> str:
        th = "".join(f"<th>{esc(h)}</th>" for h in head)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"

    cells = table(
        [
            "cell",
            "band",
            "pattern",
            "DL cap Mbit/s",
            "UL cap Mbit/s",
            "DL demand",
            "UL demand",
            "recommended",
        ],
        [
            [
                c.id,
                c.band,
                f"{c.pattern} ({c.special})",
                _mbps(c.capacity_dl_mbps),
                _mbps(c.capacity_ul_mbps),
                _mbps(c.demand_dl_mbps),
                _mbps(c.demand_ul_mbps),
                c.recommended_pattern,
            ]
            for c in plan.cells
        ],
    )
    flows = table(
        [
            "device",
            "flow",
            "5QI",
            "cell",
            "admission",
            "UL p50/p99/p99.999 ms",
            "DL p50/p99/p99.999 ms",
            "PDB ms",
            "verdict",
        ],
        [
            [
                f.device,
                f.name,
                str(f.five_qi),
                f.moved_to or f.cell,
                f.status,
                "/".join(_ms(f.latency["UL"][k]) for k in ("p50", "p99", "p99_999"))
                if "UL" in f.latency
                else "–",
                "/".join(_ms(f.latency["DL"][k]) for k in ("p50", "p99", "p99_999"))
                if "DL" in f.latency
                else "–",
                f"{f.pdb_ms:g}",
                f.verdict,
            ]
            for f in plan.flows[:2000]
        ],
    )
    summary = plan.to_dict()["summary"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{esc(plan.site)} — private 5G plan</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f0f0f0; }}
td:first-child, td:nth-child(2) {{ text-align: left; }}
</style></head><body>
<h1>{esc(plan.site)} — private 5G plan</h1>
<p>{summary["flows"]} flows ({summary["gbr_flows"]} GBR): {summary["admitted"]} admitted,
{summary["moved"]} moved, {summary["rejected"]} rejected; {summary["latency_fail"]} miss their
delay budget. {len(plan.cells)} cells configured, {plan.recommended_cells} recommended.</p>
<h2>Cells</h2>{cells}
{parts[0]}{parts[1]}
<h2>Flows</h2>{flows}
{parts[2]}
<p><small>Capacity: TS 38.306 §4.1.2 × TDD share; 5QI: TS 23.501 Table 5.7.4-1; delay model:
docs/network.md.</small></p>
</body></html>
"""
