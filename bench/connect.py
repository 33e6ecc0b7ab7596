"""Equipment protocol benchmark: OPC UA subscriptions and Modbus TCP polling, each vs its limit.

Prints ONE JSON line on stdout (a human summary of each part goes to stderr).

Figures:

* ``opcua``: 1,000 monitored items at 100 ms from one asyncua server in a subprocess (every
  value changes every 100 ms): samples/s that reach the store through our ``OpcUaAdapter``,
  and this process's CPU %, side by side in the same run with a bare asyncua subscription
  client that only counts its data change notifications (the library's own limit). Ratios
  ours / bare. Details: ``bench/_connect_opcua.py``.
* ``modbus``: 10,000 registers over 10 pymodbus servers (in a subprocess) polled every second:
  requests per cycle and cycle time p50/p99 of our coalesced poll plan against the uncoalesced
  plan (one request per signal). Details: ``bench/_connect_modbus.py``.

Usage: ``python bench/connect.py [--quick] [--only opcua|modbus]``; ``--quick`` (CI smoke) runs
in well under a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _connect_modbus
import _connect_opcua


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="short run for CI smoke tests")
    parser.add_argument("--only", choices=("opcua", "modbus"), help="run one part only")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    report: dict[str, Any] = {
        "bench": "connect",
        "config": {
            "quick": args.quick,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
    }
    if args.only in (None, "opcua"):
        report["opcua"] = _connect_opcua.run(args.quick)
    if args.only in (None, "modbus"):
        report["modbus"] = _connect_modbus.run(args.quick)
    report["elapsed_s"] = round(time.perf_counter() - began, 1)
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
