"""bench/store.py --quick runs and prints one JSON line with every figure the report needs."""

from __future__ import annotations

from tests.helpers import run_quick_bench

BACKENDS = ("ours", "sqlite", "parquet")
FIGURES = ("write_samples_per_s", "query_ms", "bytes_per_sample")


def test_quick_bench_prints_one_json_line() -> None:
    report, stderr = run_quick_bench("store", within_s=60)
    for name in BACKENDS:
        for figure in FIGURES:
            assert report["backends"][name][figure] > 0, (name, figure)
    assert report["backends"]["ours"]["query_ms_samples_path"] > 0
    assert report["backends"]["ours"]["write_samples_per_s_1hz_10k_signals"] > 0
    for figure in FIGURES:
        goal = report["goals"][figure]
        assert isinstance(goal["pass"], bool)
        assert goal["value"] == report["backends"]["ours"][figure]
        for alt in ("sqlite", "parquet"):
            ratio = report["ratios_ours_over"][alt][figure]
            want = report["backends"]["ours"][figure] / report["backends"][alt][figure]
            assert abs(ratio - want) <= 1e-9 * want
    # Three backends, same data, same question: same answer.
    assert report["results_agree"] is True
    assert "goals (ours)" in stderr  # the human table
