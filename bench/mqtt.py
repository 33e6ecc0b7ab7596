"""MQTT benchmark: our PacketReader's parse rate, and messages/s end to end through a broker.

Prints ONE JSON line on stdout (a human summary goes to stderr).

Figures:

* ``parse``: PUBLISH packets parsed per second by ``PacketReader.feed`` on one core, fed the
  way a socket delivers them: 64 KiB chunks, packets split across chunk boundaries. Three
  shapes: 2 KB QoS 0 (the goal: >= 200,000/s, i.e. 20x the 10,000 messages/s a Sparkplug host
  must ingest), 200 B QoS 0, and 2 KB QoS 1. Best of ``--runs``.
* ``end_to_end``: 2 KB QoS 0 messages/s from one MqttClient publishing as fast as it can to one
  MqttClient consuming ``batches()``, through our in-process MqttBroker (all three in this
  process, one core) and through a Mosquitto subprocess when it is installed (null otherwise).
  ``cpu_us_per_message`` is this process's CPU time per message delivered (publisher and
  subscriber clients, plus our broker in the ``ours`` run); ``lost`` counts what never arrived
  (0 expected: Mosquitto runs with ``max_queued_messages 1000000``, as its default of 1000
  drops QoS 0 messages for a subscriber that falls 1000 behind).

Usage: ``python bench/mqtt.py [--packets N] [--messages N] [--runs N] [--quick]``; ``--quick``
(CI smoke) runs in about a second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from factory5g.connect.mqtt import MqttBroker, MqttClient, MqttOptions
from factory5g.connect.mqtt.packets import PacketReader, Publish

GOAL_PARSE = 200_000.0  # 2 KB QoS 0 PUBLISH packets/s on one core
CHUNK = 65_536
TOPIC = "spBv1.0/plant/DDATA/edge-01/press-07"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


# -- parse --------------------------------------------------------------------------------------


def parse_rate(payload_bytes: int, qos: int, packets: int, runs: int) -> float:
    one = Publish(TOPIC, bytes(payload_bytes), qos, packet_id=1 if qos else 0).encode()
    stream = one * packets
    chunks = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]
    best = 0.0
    for _ in range(runs):
        reader = PacketReader()
        n = 0
        t = time.perf_counter()
        for c in chunks:
            n += len(reader.feed(c))
        rate = n / (time.perf_counter() - t)
        assert n == packets, (n, packets)
        best = max(best, rate)
    return best


# -- end to end ---------------------------------------------------------------------------------


async def end_to_end(port: int, messages: int) -> dict[str, float]:
    payload = bytes(2000)
    async with (
        MqttClient(MqttOptions(host="127.0.0.1", port=port, client_id="bench-sub")) as sub,
        MqttClient(MqttOptions(host="127.0.0.1", port=port, client_id="bench-pub")) as pub,
    ):
        await sub.subscribe([("bench/#", 0)])
        got = 0
        last = 0.0

        async def consume() -> None:
            nonlocal got, last
            async for batch in sub.batches():
                got += len(batch)
                last = time.perf_counter()
                if got >= messages:
                    return

        consumer = asyncio.create_task(consume())
        cpu = time.process_time()
        t = time.perf_counter()
        for _ in range(messages):
            await pub.publish("bench/x", payload)
        with contextlib.suppress(TimeoutError):  # a broker that drops QoS 0 never gets there
            async with asyncio.timeout(max(10.0, messages / 2_000)):
                await consumer
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        cpu = time.process_time() - cpu
    return {
        "msgs_per_s": got / (last - t) if got else 0.0,
        "cpu_us_per_message": cpu / max(got, 1) * 1e6,
        "delivered": got,
        "lost": messages - got,
    }


async def bench_ours(messages: int) -> dict[str, float]:
    async with MqttBroker() as broker:
        return await end_to_end(broker.port, messages)


@contextlib.contextmanager
def running_mosquitto() -> Iterator[int | None]:
    """A Mosquitto on a free port (None when it is not installed)."""
    if not Path(MOSQUITTO).exists():
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with tempfile.TemporaryDirectory(prefix="f5g-bench-mqtt-") as d:
        conf = Path(d) / "mosquitto.conf"
        # Mosquitto's default max_queued_messages (1000) drops QoS 0 messages for a subscriber
        # that falls 1000 behind, even a connected one: a plant broker for Sparkplug needs more.
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n",
            encoding="utf-8",
        )
        proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("mosquitto did not start") from None
                    time.sleep(0.01)
            yield port
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


def bench_mosquitto(messages: int) -> dict[str, float] | None:
    with running_mosquitto() as port:
        if port is None:
            return None
        return asyncio.run(end_to_end(port, messages))


# -- report -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--packets", type=int, default=200_000, help="packets per parse run")
    parser.add_argument("--messages", type=int, default=100_000, help="end-to-end messages")
    parser.add_argument("--runs", type=int, default=5, help="parse runs (best)")
    parser.add_argument("--quick", action="store_true", help="tiny run for CI smoke tests")
    args = parser.parse_args(argv)
    if args.quick:
        args.packets, args.messages, args.runs = 20_000, 2_000, 2

    began = time.perf_counter()
    parse = {
        "publish_2kb_qos0_packets_per_s": parse_rate(2000, 0, args.packets, args.runs),
        "publish_200b_qos0_packets_per_s": parse_rate(200, 0, args.packets, args.runs),
        "publish_2kb_qos1_packets_per_s": parse_rate(2000, 1, args.packets, args.runs),
    }
    e2e = {
        "ours": asyncio.run(bench_ours(args.messages)),
        "mosquitto": bench_mosquitto(args.messages),
    }
    value = parse["publish_2kb_qos0_packets_per_s"]
    report: dict[str, Any] = {
        "bench": "mqtt",
        "config": {
            "packets": args.packets,
            "messages": args.messages,
            "runs": args.runs,
            "chunk_bytes": CHUNK,
            "quick": args.quick,
            "cpus": os.cpu_count(),
        },
        "parse": parse,
        "end_to_end": e2e,
        "goals": {
            "publish_2kb_qos0_packets_per_s": {
                "goal": f">= {GOAL_PARSE:.0f}",
                "value": value,
                "pass": value >= GOAL_PARSE,
            }
        },
        "total_s": time.perf_counter() - began,
        "versions": {"python": platform.python_version()},
    }
    print(
        "parse (packets/s): "
        + ", ".join(f"{k.removesuffix('_packets_per_s')} {v:,.0f}" for k, v in parse.items()),
        file=sys.stderr,
    )
    for name, r in e2e.items():
        shown = (
            "not installed"
            if r is None
            else (f"{r['msgs_per_s']:,.0f} msgs/s, {r['cpu_us_per_message']:.1f} µs CPU/msg")
        )
        print(f"end to end via {name}: {shown}", file=sys.stderr)
    verdict = "PASS" if value >= GOAL_PARSE else "FAIL"
    print(f"goal: 2 KB QoS 0 parse >= {GOAL_PARSE:,.0f}/s {verdict}", file=sys.stderr)
    print(json.dumps(report, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
