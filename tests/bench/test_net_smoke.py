"""bench/net.py --quick runs end to end and prints one JSON line with every figure."""

from __future__ import annotations

from tests.helpers import run_quick_bench


def test_quick_bench_prints_one_json_line() -> None:
    report, stderr = run_quick_bench("net", within_s=120)
    planner = report["planner"]
    assert planner["devices"] == 10_000
    assert planner["cells"] == 50
    assert planner["flows"] == 10_000
    assert planner["admitted"] + planner["moved"] + planner["rejected"] > 0
    assert planner["plan_s"] > 0
    link = report["linkemu"]
    assert link["proxied"]["received"] >= 0.99 * link["proxied"]["sent"]
    assert link["direct"]["received"] == link["direct"]["sent"]
    assert link["cpu_s_per_s_per_10k_pps"] >= 0
    assert isinstance(report["goals"]["plan_under_1s"]["pass"], bool)
    assert "goals:" in stderr
