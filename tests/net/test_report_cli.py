"""``factory5g net plan``: the terminal tables, --json and the offline --html report."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from factory5g.model import template_text
from factory5g.net.cli import app

runner = CliRunner()


def _site(tmp_path: Path) -> Path:
    p = tmp_path / "site.toml"
    p.write_text(template_text("steel"), encoding="utf-8")
    return p


def test_plan_json(tmp_path: Path) -> None:
    r = runner.invoke(app, ["plan", str(_site(tmp_path)), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    runout = next(c for c in d["cells"] if c["id"] == "cell-runout")
    assert abs(runout["capacity_ul_mbps"] - 785.7) < 0.05  # reference: DSUUU 785.7 Mbit/s
    assert {a["pattern"] for a in runout["alternatives"]} >= {"DDDSU", "DDSUU", "DSUUU"}
    assert d["summary"]["gbr_flows"] == 5
    flow = next(f for f in d["flows"] if f["device"] == "ue-f1-plc")
    assert set(flow["latency"]["UL"]) >= {"p50", "p99", "p99_999", "loss"}
    assert flow["verdict"] in ("ok", "marginal", "fail")


def test_plan_table_and_html(tmp_path: Path) -> None:
    html = tmp_path / "plan.html"
    r = runner.invoke(
        app, ["plan", str(_site(tmp_path)), "--html", str(html)], env={"COLUMNS": "220"}
    )
    assert r.exit_code == 0, r.output
    assert "cell-runout" in r.stdout
    assert "DSUUU" in r.stdout
    assert "admitted" in r.stdout
    page = html.read_text(encoding="utf-8")
    # plotly.js is inline: no script is loaded from anywhere
    assert not re.search(r"<script[^>]+src=", page)
    assert "Plotly.newPlot" in page
    assert len(page) > 1_000_000  # the library itself
    for title in ("Capacity by TDD pattern", "Demand vs capacity per slice", "One-way delay"):
        assert title in page


def test_plan_bad_site_exits_1(tmp_path: Path) -> None:
    p = tmp_path / "site.toml"
    p.write_text(template_text("steel").replace("five_qi = 82", "five_qi = 11"), encoding="utf-8")
    r = runner.invoke(app, ["plan", str(p)])
    assert r.exit_code == 1
    assert "5QI 11 is not a standardized 5QI" in r.stderr


def test_plan_without_cells(tmp_path: Path) -> None:
    p = tmp_path / "site.toml"
    p.write_text('[site]\nname = "x"\nprefix = "88.1"\n', encoding="utf-8")
    r = runner.invoke(app, ["plan", str(p)])
    assert r.exit_code == 1
    assert "no [[network.cell]]" in r.stderr
