"""bench/resolve.py --quick runs end to end and prints one JSON line with every figure the
report needs. It needs nginx and wrk (Debian packages ``nginx`` and ``wrk``): without them
this test fails, it does not skip."""

from __future__ import annotations

import shutil

import pytest

from tests.helpers import run_quick_bench

GOALS = ("resolutions_per_s", "p99_ms", "share_of_nginx", "mint_per_s", "errors")


def test_quick_bench_prints_one_json_line() -> None:
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/usr/bin") is None:
            pytest.fail(f"{tool} is missing: run scripts/system-deps, or apt-get install {tool}")
    report, stderr = run_quick_bench("resolve", within_s=110)
    config = report["config"]
    assert config["handles"] == 20_002
    assert config["connections"] == 64
    for name in ("ours", "nginx"):
        r = report[name]
        assert r["resolutions_per_s"] > 0, name
        assert r["requests"] > 0, name
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"], name
        assert r["errors"] == 0, name
    assert report["same_bytes"] is True  # nginx serves exactly what the node answers
    assert report["mint"]["per_s"] > 0
    ratio = report["ratios"]["ours_over_nginx"]
    assert ratio == pytest.approx(
        report["ours"]["resolutions_per_s"] / report["nginx"]["resolutions_per_s"]
    )
    for name in GOALS:
        assert isinstance(report["goals"][name]["pass"], bool), name
    assert report["goals"]["errors"]["pass"] is True
    assert "goals:" in stderr
