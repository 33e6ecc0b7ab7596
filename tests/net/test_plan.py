"""The planner: capacity per pattern (reference numbers), demand, admission, recommendation."""

from __future__ import annotations

import math

import pytest

from factory5g.model import Site, SiteError, load_text
from factory5g.model.site import Flow, FlowKind
from factory5g.net.errors import DemandError
from factory5g.net.plan import HEADER_BYTES, PlanOptions, flow_demand_mbps, plan_site
from tests.net.conftest import HEAD, vision_site


def test_steel_capacity_is_the_reference_tdd_figures(steel: Site) -> None:
    plan = plan_site(steel)
    runout = plan.cell("cell-runout")
    # 100 MHz, 30 kHz, 2-layer 256QAM UL: DDDSU 285.7, DDSUU 535.7, DSUUU 785.7 Mbit/s
    assert runout.capacity_ul_mbps == pytest.approx(785.7, abs=0.05)
    by = {a.pattern: a for a in runout.alternatives}
    assert by["DDDSU"].ul_mbps == pytest.approx(285.7, abs=0.05)
    assert by["DDSUU"].ul_mbps == pytest.approx(535.7, abs=0.05)
    # 4-layer 256QAM DL = 2337.0 Mbit/s x DL share 0.7429
    mill = plan.cell("cell-mill")
    assert mill.peak_dl_mbps == pytest.approx(2337.0, abs=0.05)
    assert mill.capacity_dl_mbps == pytest.approx(2337.0 * 0.742857, abs=0.1)
    assert plan.recommended_cells == 2
    assert {f.status for f in plan.flows if f.gbr} == {"admitted"}
    assert plan.to_dict()["summary"]["rejected"] == 0


def test_demand_counts_cyclic_packets_with_headers() -> None:
    plc = Flow(kind=FlowKind.PLC, period_ms=2, payload_bytes=40, direction="both")
    ul, dl = flow_demand_mbps(plc)
    expected = (40 + HEADER_BYTES) * 8 / 2e-3 / 1e6  # bytes per 2 ms in Mbit/s
    assert ul == pytest.approx(expected)
    assert dl == pytest.approx(expected)
    cam = Flow(kind=FlowKind.CAMERA, ul_mbps=25)
    assert flow_demand_mbps(cam) == (25, 0)


def test_negative_demand_is_a_clear_error() -> None:
    bad = Flow.model_construct(
        kind=FlowKind.CAMERA,
        ul_mbps=-5.0,
        dl_mbps=0.0,
        period_ms=None,
        payload_bytes=None,
        direction="ul",
        qos=None,
        name=None,
    )
    with pytest.raises(DemandError, match="cannot be negative"):
        flow_demand_mbps(bad, "cam-1")
    half = Flow(kind=FlowKind.PLC, period_ms=2)
    with pytest.raises(DemandError, match="needs both period_ms and payload_bytes"):
        flow_demand_mbps(half, "plc-1")


def test_admission_fills_a_cell_then_moves_then_rejects() -> None:
    # cell-a DDDSU: 285.7 UL x 0.8 GBR share = 228.6 -> two 100 Mbit/s stations.
    # cell-b DSUUU: 785.7 x 0.8 = 628.6 -> six stations.
    plan = plan_site(vision_site(stations_a=10))
    status = [f.status for f in plan.flows]
    assert status.count("admitted") == 2
    assert status.count("moved") == 6
    assert status.count("rejected") == 2
    assert {f.moved_to for f in plan.flows if f.status == "moved"} == {"cell-b"}
    rejected = [f for f in plan.flows if f.status == "rejected"]
    assert all(f.verdict == "fail" and "GBR left" in f.reason for f in rejected)
    a = plan.cell("cell-a")
    assert a.gbr_ul_mbps == pytest.approx(200)
    assert not a.configured_fits
    assert a.recommended_pattern == "DSUUU"  # the uplink-heavy frame fits most
    # 1000 Mbit/s of GBR fits two DSUUU cells (2 x 628.6); 1400 does not
    assert plan.recommended_cells == 2
    assert plan_site(vision_site(stations_a=14)).recommended_cells == 3


def test_more_important_flows_are_admitted_first() -> None:
    extra = """
[[device]]
id = "plc-1"
imsi = "001010000099999"
slice = "control"
qos = "plc"
cell = "cell-a"
carries = [{ kind = "plc", period_ms = 2, payload_bytes = 40 }]
"""
    site = vision_site(stations_a=3, extra=extra)
    opts = PlanOptions(max_gbr_share=0.71)  # 202.8 Mbit/s: 2 stations, or 1 PLC + 2 stations
    plan = plan_site(site, opts)
    by = {f.device: f for f in plan.flows}
    assert by["plc-1"].status == "admitted"  # ARP 1 before ARP 5
    assert by["plc-1"].five_qi == 82


def test_latency_verdicts_against_the_5qi_budget(steel: Site) -> None:
    plan = plan_site(steel)
    by = {(f.device, f.name): f for f in plan.flows}
    plc = by[("ue-f1-plc", "plc")]
    assert plc.pdb_ms == 10
    assert set(plc.latency) == {"UL", "DL"}
    for pct in plc.latency.values():
        assert pct["p50"] <= pct["p99"] <= pct["p99_999"]
    assert plc.verdict == "ok"  # configured grant on cell-mill, BLER 1 %
    # the table PLC sits on cell-runout with dynamic grants and BLER 10 %: the far tail
    # exceeds the 10 ms budget of 5QI 82
    assert by[("ue-table-plc", "plc")].verdict in ("marginal", "fail")
    cam = by[("ue-surface-cam", "overview-4k")]
    assert set(cam.latency) == {"UL"}  # no downlink traffic, no downlink verdict


def test_overloaded_cell_is_flagged() -> None:
    extra = """
[[device]]
id = "bulk"
imsi = "001010000088888"
slice = "video"
cell = "cell-a"
carries = [{ kind = "other", ul_mbps = 400 }]
"""
    plan = plan_site(vision_site(stations_a=0, extra=extra))
    bulk = next(f for f in plan.flows if f.device == "bulk")
    assert bulk.status == "best-effort"
    assert bulk.verdict == "overloaded"
    assert plan.cell("cell-a").load_ul > 1


def test_devices_without_a_cell_are_spread() -> None:
    text = HEAD + "".join(
        f"""
[[device]]
id = "cam-{i}"
imsi = "00101000007{i:04d}"
slice = "video"
carries = [{{ kind = "camera", ul_mbps = 25 }}]
"""
        for i in range(8)
    )
    plan = plan_site(load_text(text))
    cells = {f.cell for f in plan.flows}
    assert cells == {"cell-a", "cell-b"}
    assert not math.isnan(plan.cell("cell-a").load_ul)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("five_qi = 4", "five_qi = 11", "5QI 11 is not a standardized 5QI"),
        ('tdd_pattern = "DDDSU"', 'tdd_pattern = "DDDDD"', "has no uplink slot (U)"),
        (
            'scs_khz = 30\ntdd_pattern = "DDDSU"',
            'scs_khz = 15\ntdd_pattern = "DDDSU"',
            "100 MHz is not a channel bandwidth defined for 15 kHz SCS",
        ),
        ("ul_mbps = 100", "ul_mbps = -100", "greater than or equal to 0"),
    ],
)
def test_bad_inputs_in_the_site_file_are_clear_errors(old: str, new: str, message: str) -> None:
    base = (
        HEAD
        + """
[[device]]
id = "vision-1"
imsi = "001010000000001"
slice = "video"
qos = "vision"
cell = "cell-a"
carries = [{ kind = "vision", ul_mbps = 100 }]
"""
    )
    assert old in base
    with pytest.raises(SiteError) as e:
        load_text(base.replace(old, new, 1))
    assert message in str(e.value)
