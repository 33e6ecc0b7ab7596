"""Modbus TCP polling benchmark: our coalesced poll plan against one request per signal.

The workload: ``DEVICES`` devices of ``REGISTERS_PER_DEVICE`` holding registers each (10 x 1000 =
10,000 registers), every register bound to a signal in a mix of types — uint16, int16 with a
scale, float32 (ABCD and CDAB), uint32, int32, float64, and two bit fields sharing a register —
so there are fewer signals than registers. All are polled every second (one poll group per
device) by :class:`~factory5g.connect.modbus.ModbusAdapter` over loopback TCP.

The devices are plain pymodbus TCP servers (one event loop, ``DEVICES`` listening sockets) in a
subprocess of their own, started afresh for each plan: their CPU is not ours, and is reported
apart (``server_cpu_ms_per_cycle``, from the child's rusage).

The two plans, one after the other:

* ``coalesced``: the adapter's plan (``request_cost`` 16, ``max_registers`` 125): a few requests
  of up to 125 registers per device, never splitting a value;
* ``uncoalesced``: ``ModbusAdapter(coalesce=False)``, one request per signal — a naive poller.

Per plan, over ``cycles`` cycles after a first one (connections, warm-up) that is not counted:
``requests_per_cycle`` (all devices), ``cycle_ms_p50`` / ``p99`` / ``max`` (the poll cycles of
every device, pooled: a device's cycle is the time from its tick to its Batch on the bus),
``overruns`` (cycles longer than the 1 s interval), ``client_cpu_ms_per_cycle`` (this process:
the adapter, pymodbus' client side, the bus), ``bad_samples`` (samples not GOOD: 0 expected).
``ratio_uncoalesced_over_coalesced`` divides the figures.

``run(quick)`` returns the figures and writes a small table to stderr; nothing on stdout.
``quick=True`` (3 cycles per plan) takes about 10-15 s; the full run (30 cycles) about a minute
and a half. ``python bench/_connect_modbus.py [--quick]`` prints the figures as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DEVICES = 10
REGISTERS_PER_DEVICE = 1000
INTERVAL_MS = 1000.0
CYCLES_QUICK = 3
CYCLES_FULL = 30
HOST = "127.0.0.1"

# (type and layout, registers it takes); a bit-field entry binds two signals to one register.
PATTERN: list[tuple[str, int]] = [
    ('type = "uint16"', 1),
    ('type = "int16", scale = 0.1', 1),
    ('type = "float32"', 2),
    ('type = "float32", word_order = "little"', 2),
    ('type = "uint32"', 2),
    ("bits", 1),
    ('type = "int32", word_order = "little"', 2),
    ('type = "float64"', 4),
    ('type = "uint16", scale = 0.01, offset = -50.0', 1),
]


# -- the devices (the subprocess) ---------------------------------------------------------------


async def _serve(devices: int, registers: int) -> None:
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    rng = random.Random(7)
    servers = []
    for _ in range(devices):
        values = [rng.randrange(0, 0x10000) for _ in range(registers)]
        device = SimDevice(1, [SimData(0, values=values, datatype=DataType.REGISTERS)])
        server = ModbusTcpServer(device, address=(HOST, 0))
        await server.serve_forever(background=True)
        servers.append(server)
    ports = [s.transport.sockets[0].getsockname()[1] for s in servers]  # type: ignore[union-attr]
    print(json.dumps({"ports": ports}), flush=True)
    await asyncio.to_thread(sys.stdin.read)  # until the parent closes our stdin
    for s in servers:
        await s.shutdown()


class _Devices:
    """The device subprocess: ``ports`` once it listens; ``stop()`` returns its CPU seconds."""

    def __init__(self, devices: int, registers: int) -> None:
        self._before = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--serve",
                str(devices),
                str(registers),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise RuntimeError(f"the Modbus device process exited ({self.proc.returncode})")
        self.ports: list[int] = json.loads(line)["ports"]

    def stop(self) -> float:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc.stdout.close()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime + after.ru_stime) - (self._before.ru_utime + self._before.ru_stime)


# -- the site -----------------------------------------------------------------------------------


def site_text(ports: list[int], registers: int) -> tuple[str, int]:
    """The bench site and its number of signals."""
    lines = ["[site]", 'name = "modbus bench"', 'prefix = "88.1"']
    signals = 0
    for d, port in enumerate(ports):
        lines += ["", "[[modbus]]", f'id = "plc{d}"', f'host = "{HOST}"', f"port = {port}"]
        lines += ["timeout_ms = 2000", "retries = 1"]
    for d in range(len(ports)):
        lines += ["", "[[equipment]]", f'id = "eq{d}"', 'area = "bench"', 'line = "l"']
        address, k = 0, 0
        while True:
            kind, size = PATTERN[k % len(PATTERN)]
            if address + size > registers:
                kind, size = 'type = "uint16"', 1
                if address + size > registers:
                    break
            binds = [f'type = "bool", bit = {b}' for b in (0, 1)] if kind == "bits" else [kind]
            for spec in binds:
                name = f"s{signals}"
                lines += ["  [[equipment.signal]]", f'  name = "{name}"']
                lines.append(
                    f'  binding = {{ kind = "modbus", device = "plc{d}", address = {address}, '
                    f"{spec}, poll_ms = {INTERVAL_MS:g} }}"
                )
                signals += 1
            address += size
            k += 1
    return "\n".join(lines) + "\n", signals


# -- one plan -----------------------------------------------------------------------------------


async def _measure(text: str, *, coalesce: bool, cycles: int) -> dict[str, Any]:
    from factory5g.connect.modbus import ModbusAdapter
    from factory5g.model import load_text
    from factory5g.stream import MemoryBus, Quality, SlowConsumerPolicy

    site = load_text(text)
    bus = MemoryBus()
    sub = bus.subscribe("bench", maxsize=100_000, policy=SlowConsumerPolicy.DROP_OLDEST)
    samples = bad = 0
    counting = False

    async def consume() -> None:
        nonlocal samples, bad
        async for batch in sub:
            if counting:
                samples += len(batch)
                bad += int((batch.quality != Quality.GOOD).sum())

    consumer = asyncio.create_task(consume())
    try:
        async with ModbusAdapter(site, bus, coalesce=coalesce) as adapter:

            def done(n: int) -> bool:
                return all(
                    g["cycles"] >= n for d in adapter.stats()["devices"] for g in d["groups"]
                )

            deadline = time.monotonic() + 30 + cycles * 10
            await _until(lambda: done(1), deadline)  # connections, warm-up: not counted
            counting = True
            cpu0, wall0 = time.process_time(), time.monotonic()
            await _until(lambda: done(1 + cycles), deadline)
            cpu = time.process_time() - cpu0
            wall = time.monotonic() - wall0
            await asyncio.sleep(0)  # let the consumer take the last batches
            counting = False
            stats = adapter.stats()
            durations = [
                ms
                for history in adapter.cycle_ms().values()
                for ms in history[1 : 1 + cycles]  # the counted cycles of every device
            ]
    finally:
        bus.close()
        await consumer
    groups = [g for d in stats["devices"] for g in d["groups"]]
    registers_read = sum(
        r.count for plan in adapter.plans.values() for g in plan.groups for r in g.reads
    )
    arr = np.asarray(durations)
    return {
        "requests_per_cycle": sum(g["requests_per_cycle"] for g in groups),
        "registers_read_per_cycle": registers_read,
        "cycle_ms_p50": float(np.percentile(arr, 50)),
        "cycle_ms_p99": float(np.percentile(arr, 99)),
        "cycle_ms_max": float(arr.max()),
        "cycles_measured": len(durations),
        "overruns": sum(g["overruns"] for g in groups),
        "client_cpu_ms_per_cycle": cpu * 1e3 / cycles,
        "client_cpu_share": cpu / wall if wall else 0.0,
        "samples": samples,
        "bad_samples": bad,
        "timeouts": sum(d["timeouts"] for d in stats["devices"]),
    }


async def _until(condition: Any, deadline: float) -> None:
    """Poll ``condition()`` every 10 ms until true; fail at ``deadline`` (monotonic s)."""
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise RuntimeError("the poll cycles did not complete in time")
        await asyncio.sleep(0.01)


def _plan(text_for: Any, *, coalesce: bool, cycles: int) -> dict[str, Any]:
    devices = _Devices(DEVICES, REGISTERS_PER_DEVICE)
    try:
        text, signals = text_for(devices.ports)
        result = asyncio.run(_measure(text, coalesce=coalesce, cycles=cycles))
    finally:
        server_cpu_s = devices.stop()
    # the device process ran through warm-up and the counted cycles: spread over all of them
    result["server_cpu_ms_per_cycle"] = server_cpu_s * 1e3 / (cycles + 1)
    result["signals"] = signals
    return result


def run(quick: bool) -> dict[str, Any]:
    """Both plans; the figures as a dict (see the module docstring). Nothing on stdout."""
    cycles = CYCLES_QUICK if quick else CYCLES_FULL

    def text_for(ports: list[int]) -> tuple[str, int]:
        return site_text(ports, REGISTERS_PER_DEVICE)

    coalesced = _plan(text_for, coalesce=True, cycles=cycles)
    uncoalesced = _plan(text_for, coalesce=False, cycles=cycles)
    ratio = {
        k: (uncoalesced[k] / coalesced[k] if coalesced[k] else None)
        for k in (
            "requests_per_cycle",
            "cycle_ms_p50",
            "cycle_ms_p99",
            "client_cpu_ms_per_cycle",
            "server_cpu_ms_per_cycle",
        )
    }
    signals = coalesced.pop("signals")
    uncoalesced.pop("signals")
    report = {
        "config": {
            "quick": quick,
            "devices": DEVICES,
            "registers": DEVICES * REGISTERS_PER_DEVICE,
            "signals": signals,
            "interval_ms": INTERVAL_MS,
            "cycles": cycles,
            "request_cost": 16,
            "max_registers": 125,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "pymodbus": _pymodbus_version(),
        },
        "coalesced": coalesced,
        "uncoalesced": uncoalesced,
        "ratio_uncoalesced_over_coalesced": ratio,
    }
    _table(report)
    return report


def _pymodbus_version() -> str:
    import pymodbus

    return str(pymodbus.__version__)


def _table(report: dict[str, Any]) -> None:
    c = report["config"]
    out = sys.stderr
    print(
        f"modbus: {c['devices']} devices, {c['registers']} registers, {c['signals']} signals, "
        f"every {c['interval_ms']:g} ms, {c['cycles']} cycles per plan",
        file=out,
    )
    rows = [
        ("requests/cycle", "requests_per_cycle", "{:.0f}"),
        ("cycle p50 ms", "cycle_ms_p50", "{:.1f}"),
        ("cycle p99 ms", "cycle_ms_p99", "{:.1f}"),
        ("overruns", "overruns", "{:.0f}"),
        ("our CPU ms/cycle", "client_cpu_ms_per_cycle", "{:.1f}"),
        ("device CPU ms/cycle", "server_cpu_ms_per_cycle", "{:.1f}"),
        ("bad samples", "bad_samples", "{:.0f}"),
    ]
    print(f"  {'':22}{'coalesced':>12}{'per signal':>12}{'ratio':>9}", file=out)
    for label, key, fmt in rows:
        ratio = report["ratio_uncoalesced_over_coalesced"].get(key)
        r = f"{ratio:.1f}x" if isinstance(ratio, float) else ""
        print(
            f"  {label:22}{fmt.format(report['coalesced'][key]):>12}"
            f"{fmt.format(report['uncoalesced'][key]):>12}{r:>9}",
            file=out,
        )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        asyncio.run(_serve(int(sys.argv[2]), int(sys.argv[3])))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--quick", action="store_true")
        print(json.dumps(run(parser.parse_args().quick)))
