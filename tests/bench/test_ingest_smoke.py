"""bench/ingest.py --quick runs end to end and prints one JSON line with every figure the report
needs. It needs Mosquitto and InfluxDB (Debian packages ``mosquitto`` and ``influxdb``): without
them this test fails, it does not skip."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import run_quick_bench

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"
GOALS = ("metrics_per_s", "loss", "share_of_raw_broker")


def test_quick_bench_prints_one_json_line() -> None:
    for path, package in ((MOSQUITTO, "mosquitto"), (INFLUXD, "influxdb")):
        if not Path(path).exists():
            pytest.fail(f"{path} is missing: run scripts/system-deps, or apt-get install {package}")
    report, stderr = run_quick_bench("ingest", within_s=120)
    config = report["config"]

    ours = report["ours"]
    published = config["nodes"] * config["messages_per_node"] * config["metrics_per_message"]
    assert ours["published_metrics"] == published
    assert ours["stored_metrics"] == published
    assert ours["loss"] == 0
    assert ours["counters_exact"] is True
    assert ours["metrics_per_s"] > 0
    assert ours["messages_per_s"] > 0
    latency = ours["latency_ms"]
    assert 0 <= latency["p50"] <= latency["p99"] <= latency["max"]
    assert ours["cpu_s"]["host"]["total"] > 0

    raw = report["raw_broker"]
    assert raw["loss"] == 0
    assert raw["received"] == config["nodes"] * config["messages_per_node"]
    assert raw["messages_per_s"] > 0

    influx = report["influxdb"]
    assert influx["points"] == published
    assert influx["stored_points"] == published
    assert influx["loss"] == 0
    assert influx["points_per_s"] > 0

    ratio = report["ratios"]["ours_over_raw_messages"]
    assert ratio == pytest.approx(ours["messages_per_s"] / raw["messages_per_s"])
    for name in GOALS:
        assert isinstance(report["goals"][name]["pass"], bool), name
    assert report["goals"]["loss"]["pass"] is True
    assert "goals:" in stderr  # the human table
