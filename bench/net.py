"""Private 5G benchmark: the planner on a large plant, and the link emulator's CPU cost.

Prints ONE JSON line on stdout (a human table goes to stderr).

* **planner**: a generated site of ``--devices`` devices (cameras, vision stations, PLCs,
  sensors) over ``--cells`` cells; the figure is the time of ``plan_site`` (capacity for five
  patterns per cell, GBR admission, latency per flow), best of ``--repeat``. Goal: < 1 s for
  10,000 devices over 50 cells.
* **link emulator**: ``--pps`` UDP datagrams per second (64 bytes) for ``--duration`` seconds,
  sent to a receiver once directly and once through a :class:`LinkProxy` applying a modelled
  delay distribution; the process CPU time of the second minus the first is the emulator's cost,
  reported per 10,000 packets/s (the sender and receiver share the process and the 2 cores).

Usage: ``python bench/net.py [--devices N] [--cells N] [--pps N] [--duration S] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from typing import Any

from factory5g.model import load_text
from factory5g.net.latency import LatencyParams, _cached, one_way_delay
from factory5g.net.linkemu import ConstantDelay, LinkProfile, LinkProxy
from factory5g.net.plan import plan_site


def site_text(devices: int, cells: int) -> str:
    out = ['[site]\nname = "bench plant"\nprefix = "88.118.8"\n']
    patterns = ["DDDSU", "DDSUU", "DSUUU"]
    for c in range(cells):
        out.append(
            f'[[network.cell]]\nid = "cell-{c}"\nband = "n78"\nbandwidth_mhz = 100\n'
            f'tdd_pattern = "{patterns[c % 3]}"\nlayers_ul = 2\nmax_modulation_ul = "256QAM"\n'
        )
    out.append('[[network.slice]]\nname = "video"\nsst = 1\nsd = "000001"\n')
    out.append('[[network.slice]]\nname = "control"\nsst = 2\nsd = "000002"\n')
    out.append(
        '[[network.qos]]\nname = "vision"\nfive_qi = 4\narp_priority = 5\ngbr_ul_mbps = 100\n'
    )
    out.append('[[network.qos]]\nname = "cam"\nfive_qi = 76\narp_priority = 7\ngbr_ul_mbps = 25\n')
    out.append('[[network.qos]]\nname = "plc"\nfive_qi = 82\narp_priority = 1\ngbr_ul_mbps = 1\n')
    kinds = [
        ("video", "cam", '{ kind = "camera", ul_mbps = 25 }'),
        ("video", "vision", '{ kind = "vision", ul_mbps = 100 }'),
        ("control", "plc", '{ kind = "plc", period_ms = 2, payload_bytes = 40 }'),
        ("control", None, '{ kind = "sensor", ul_mbps = 0.1, direction = "ul" }'),
    ]
    weights = [3, 1, 4, 12]
    seq = [k for k, w in zip(kinds, weights, strict=True) for _ in range(w)]
    for i in range(devices):
        sl, q, flow = seq[i % len(seq)]
        qos = f'qos = "{q}"\n' if q else ""
        out.append(
            f'[[device]]\nid = "ue-{i}"\nimsi = "00101{i:010d}"\nslice = "{sl}"\n{qos}'
            f'cell = "cell-{i % cells}"\ncarries = [{flow}]\n'
        )
    return "\n".join(out)


def bench_planner(devices: int, cells: int, repeat: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    site = load_text(site_text(devices, cells))
    load_s = time.perf_counter() - t0
    times = []
    plan = None
    for _ in range(repeat):
        _cached.cache_clear()  # cold: every delay distribution computed again
        t = time.perf_counter()
        plan = plan_site(site)
        times.append(time.perf_counter() - t)
    assert plan is not None
    s = plan.to_dict()["summary"]
    return {
        "devices": devices,
        "cells": cells,
        "flows": s["flows"],
        "plan_s": round(min(times), 4),
        "plan_s_all": [round(t, 4) for t in times],
        "site_load_s": round(load_s, 3),
        "admitted": s["admitted"],
        "moved": s["moved"],
        "rejected": s["rejected"],
    }


class _Count(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.n = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.n += 1


async def _blast(port: int, pps: int, duration: float) -> int:
    loop = asyncio.get_running_loop()
    client, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=("127.0.0.1", port)
    )
    payload = b"x" * 64
    sent = 0
    start = loop.time()
    tick = 0.005
    per_tick = max(1, round(pps * tick))
    try:
        while loop.time() - start < duration:
            for _ in range(per_tick):
                client.sendto(payload)
            sent += per_tick
            next_at = start + (sent / pps)
            await asyncio.sleep(max(0.0, next_at - loop.time()))
    finally:
        client.close()
    return sent


async def _run(pps: int, duration: float, proxied: bool) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    transport, counter = await loop.create_datagram_endpoint(_Count, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    dist = one_way_delay("DDDSU", "UL", LatencyParams(bler=0.1))
    try:
        if proxied:
            profile = LinkProfile(dl=dist, ul=ConstantDelay(0))
            async with LinkProxy("127.0.0.1", 0, "127.0.0.1", port, profile, protocol="udp") as p:
                c0 = time.process_time()
                sent = await _blast(p.port, pps, duration)
                deadline = loop.time() + 2
                while counter.n + p.stats["dl"].dropped < sent and loop.time() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                cpu = time.process_time() - c0
        else:
            c0 = time.process_time()
            sent = await _blast(port, pps, duration)
            deadline = loop.time() + 2
            while counter.n < sent and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            cpu = time.process_time() - c0
    finally:
        transport.close()
    return {"sent": sent, "received": counter.n, "cpu_s": round(cpu, 4)}


def bench_linkemu(pps: int, duration: float) -> dict[str, Any]:
    direct = asyncio.run(_run(pps, duration, proxied=False))
    proxied = asyncio.run(_run(pps, duration, proxied=True))
    extra = max(0.0, proxied["cpu_s"] - direct["cpu_s"])
    per_10k = extra / duration * (10_000 / pps)
    return {
        "pps": pps,
        "duration_s": duration,
        "direct": direct,
        "proxied": proxied,
        "cpu_s_per_s_per_10k_pps": round(per_10k, 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--cells", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pps", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="CI smoke: well under 30 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.duration, args.pps = 2, 1.0, 5_000
    planner = bench_planner(args.devices, args.cells, args.repeat)
    link = bench_linkemu(args.pps, args.duration)
    report = {
        "bench": "net",
        "config": {
            "quick": args.quick,
            "devices": args.devices,
            "cells": args.cells,
            "pps": args.pps,
            "duration_s": args.duration,
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "planner": planner,
        "linkemu": link,
        "goals": {
            "plan_under_1s": {
                "value": planner["plan_s"],
                "goal": 1.0,
                "pass": planner["plan_s"] < 1.0,
            },
        },
    }
    print(
        f"planner: {planner['devices']} devices / {planner['cells']} cells / {planner['flows']} "
        f"flows in {planner['plan_s']:.3f} s (site load {planner['site_load_s']:.2f} s)\n"
        f"link emulator: {link['pps']} pkt/s, extra CPU {link['cpu_s_per_s_per_10k_pps']:.3f} "
        f"core-s per s per 10,000 pkt/s\n"
        f"goals: plan < 1 s: {'pass' if report['goals']['plan_under_1s']['pass'] else 'FAIL'}",
        file=sys.stderr,
    )
    print(json.dumps(report, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
