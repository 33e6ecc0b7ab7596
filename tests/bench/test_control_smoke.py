"""bench/control.py --quick runs end to end and prints one JSON line with every figure."""

from __future__ import annotations

from tests.helpers import run_quick_bench


def test_quick_bench_prints_one_json_line() -> None:
    report, stderr = run_quick_bench("control", within_s=90)
    cmds = report["commands"]
    n = cmds["commands_per_protocol"]
    for proto in ("modbus", "opcua"):
        for part in ("api", "runtime", "inproc"):
            d = cmds[part][proto]
            assert d["states"] == {"confirmed": n + 20}, (part, proto, d)
            assert 0 < d["p50"] <= d["p99"] <= d["max"]
        bare = cmds["bare"][proto]
        assert 0 < bare["p50"] <= bare["p99"]
        # the app adds work to the bare write (checks, fsyncs, audit): never less
        assert cmds["inproc"][proto]["p50"] > bare["p50"]
    refused = cmds["api"]["refused"]
    assert 0 < refused["p50"] <= refused["p99"]
    for proto in ("modbus", "opcua"):
        goal = report["goals"][f"{proto}_p99_2x_bare"]
        assert goal["floor_p50_ms"] > cmds["bare"][proto]["p50"]
    alarms = report["alarms"]
    assert alarms["rules"] == 1000
    assert alarms["samples_per_s"] > 0
    assert alarms["transitions"] > 0
    for name, goal in report["goals"].items():
        assert isinstance(goal["pass"], bool), name
    assert "goals:" in stderr
