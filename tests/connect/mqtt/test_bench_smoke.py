"""bench/mqtt.py --quick runs and prints one JSON line with every figure the report needs."""

from __future__ import annotations

from tests.helpers import run_quick_bench

PARSE = (
    "publish_2kb_qos0_packets_per_s",
    "publish_200b_qos0_packets_per_s",
    "publish_2kb_qos1_packets_per_s",
)


def test_quick_bench_prints_one_json_line() -> None:
    report, stderr = run_quick_bench("mqtt", within_s=60)
    for figure in PARSE:
        assert report["parse"][figure] > 0, figure
    goal = report["goals"]["publish_2kb_qos0_packets_per_s"]
    assert goal["value"] == report["parse"]["publish_2kb_qos0_packets_per_s"]
    assert isinstance(goal["pass"], bool)
    for broker in ("ours", "mosquitto"):  # the tests need mosquitto anyway
        e2e = report["end_to_end"][broker]
        assert e2e["delivered"] == report["config"]["messages"], broker
        assert e2e["lost"] == 0
        assert e2e["msgs_per_s"] > 0
        assert e2e["cpu_us_per_message"] > 0
    assert "goal: 2 KB QoS 0 parse" in stderr
