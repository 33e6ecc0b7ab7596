"""bench/connect.py --quick runs end to end and prints one JSON line with both comparisons."""

from __future__ import annotations

import pytest

from tests.helpers import run_quick_bench


def test_quick_bench_prints_one_json_line() -> None:
    report, stderr = run_quick_bench("connect", within_s=150)
    assert report["bench"] == "connect"

    opcua = report["opcua"]
    ours, bare = opcua["ours"], opcua["bare_asyncua"]
    items = opcua["config"]["items"]
    for run in (ours, bare):
        assert run["samples"] > items  # more than one round of every item arrived
        assert run["samples_per_s"] > 0
        assert run["cpu_pct"] > 0
    assert ours["bad_items"] == 0
    assert ours["bad_samples"] == 0
    ratio = opcua["ratio_ours_over_bare"]
    assert ratio["cpu_us_per_sample"] == pytest.approx(
        ours["cpu_us_per_sample"] / bare["cpu_us_per_sample"], rel=0.02
    )

    modbus = report["modbus"]
    coalesced, single = modbus["coalesced"], modbus["uncoalesced"]
    assert single["requests_per_cycle"] == modbus["config"]["signals"]  # one per signal
    assert coalesced["requests_per_cycle"] < single["requests_per_cycle"]
    assert coalesced["registers_read_per_cycle"] >= modbus["config"]["registers"]
    for run in (coalesced, single):
        assert run["bad_samples"] == 0
        assert 0 < run["cycle_ms_p50"] <= run["cycle_ms_p99"]
    assert modbus["ratio_uncoalesced_over_coalesced"]["requests_per_cycle"] == pytest.approx(
        single["requests_per_cycle"] / coalesced["requests_per_cycle"]
    )
    assert "OPC UA" in stderr
    assert "modbus" in stderr
