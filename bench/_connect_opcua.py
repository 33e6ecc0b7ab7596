"""OPC UA subscription benchmark: our adapter into the store, against a bare asyncua client.

The workload: one asyncua server in a subprocess of its own (its CPU is not ours, and is
reported apart from the child's rusage) with ``ITEMS`` Double variables, every one of which
changes every ``PERIOD_MS`` ms (one new value per variable per tick, with a SourceTimestamp;
the value is ``tick * ITEMS + item``, so a client's missed samples are counted exactly).
Both clients monitor every variable with a sampling interval and a publishing interval of
``PERIOD_MS``, so the ideal is ``ITEMS * 1000 / PERIOD_MS`` samples/s (10,000/s).

The two clients, one after the other, against the same server process, in this process:

* ``ours``: the product path — :class:`~factory5g.connect.opcua.OpcUaAdapter` (one Batch per
  Publish response) → ``MemoryBus`` → a writer that stores every Batch in an ``EmbeddedStore``
  (DuckDB, in a temporary directory). Counted: samples whose store write returned.
* ``bare_asyncua``: asyncua's own subscription API, ``Client.create_subscription(period,
  handler)`` and ``subscribe_data_change(nodes, sampling_interval=...)``, with a handler that
  only counts ``datachange_notification`` calls: the library's limit for this workload, with
  nothing stored.

Per client, after a warm-up (connect, subscribe, the first data) that is not counted, over
``seconds`` of wall time: ``samples_per_s``, ``server_changes_per_s`` (what the server
offered: its ticks run late when the machine is loaded), ``lost`` (changes the client never
got), ``cpu_pct`` (this process's CPU time over wall
time: the client, its decoding, for ``ours`` the bus and the store writer's thread too; one
core = 100 %), ``server_cpu_pct`` (the server subprocess over the same window) and
``cpu_us_per_sample``. ``ratio_ours_over_bare`` divides the figures.

``run(quick)`` returns the figures and writes a small table to stderr; nothing on stdout.
``quick=True`` (4 s per client) takes about 15-20 s; the full run (20 s per client) about a
minute. ``python bench/_connect_opcua.py [--quick]`` prints the figures as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ITEMS = 1000
PERIOD_MS = 100.0
SECONDS_QUICK = 4.0
SECONDS_FULL = 20.0
HOST = "127.0.0.1"
NAMESPACE = "urn:factory5g:bench"


def node_id(i: int) -> str:
    return f"ns=2;s=v{i:04d}"


# -- the server (the subprocess) ----------------------------------------------------------------


async def _serve(items: int, period_ms: float) -> None:
    from datetime import UTC, datetime

    from asyncua import ua
    from asyncua.server import Server

    server = Server()
    server.disable_clock()
    await server.init()
    server.set_endpoint(f"opc.tcp://{HOST}:0/bench")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await server.register_namespace(NAMESPACE)
    obj = await server.nodes.objects.add_object(
        ua.NodeId(ua.String("bench"), ua.Int16(ns)), ua.QualifiedName("bench", ns)
    )
    nodes = []
    for i in range(items):
        var = await obj.add_variable(
            ua.NodeId.from_string(node_id(i)),
            ua.QualifiedName(f"v{i:04d}", ns),
            ua.Variant(0.0, ua.VariantType.Double),
        )
        nodes.append(var.nodeid)
    await server.start()
    assert server.bserver is not None
    print(json.dumps({"port": server.bserver.port}), flush=True)

    async def tick() -> None:
        k = 0
        next_at = time.monotonic()
        while True:
            k += 1
            now = datetime.now(UTC)
            for i, nid in enumerate(nodes):
                dv = ua.DataValue(
                    Value=ua.Variant(float(k * items + i), ua.VariantType.Double),
                    SourceTimestamp=now,  # type: ignore[arg-type]
                    ServerTimestamp=now,  # type: ignore[arg-type]
                )
                await server.write_attribute_value(nid, dv)
            next_at += period_ms / 1000
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    ticker = asyncio.create_task(tick())
    await asyncio.to_thread(sys.stdin.read)  # until the parent closes our stdin
    ticker.cancel()
    await asyncio.gather(ticker, return_exceptions=True)
    await server.stop()


class _Server:
    """The server subprocess: ``url`` once it listens; ``cpu_s()`` its CPU seconds so far."""

    def __init__(self, items: int, period_ms: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve", str(items), str(period_ms)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # asyncua's server talks a lot
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise RuntimeError(f"the OPC UA server process exited ({self.proc.returncode})")
        self.url = f"opc.tcp://{HOST}:{json.loads(line)['port']}/bench"

    def cpu_s(self) -> float:
        """CPU seconds of the child so far, from /proc (rusage counts only reaped children)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime

    def stop(self) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc.stdout.close()


# -- the site -----------------------------------------------------------------------------------


def site_text(url: str, items: int, period_ms: float) -> str:
    lines = [
        "[site]",
        'name = "opcua bench"',
        'prefix = "88.1"',
        "",
        "[[opcua]]",
        'id = "bench"',
        f'url = "{url}"',
        f"publishing_ms = {period_ms:g}",
        "",
        "[[equipment]]",
        'id = "bench"',
        'area = "bench"',
        'line = "l"',
    ]
    for i in range(items):
        lines += [
            "  [[equipment.signal]]",
            f'  name = "v{i:04d}"',
            f'  binding = {{ kind = "opcua", endpoint = "bench", node = "{node_id(i)}", '
            f"sampling_ms = {period_ms:g} }}",
        ]
    return "\n".join(lines) + "\n"


# -- the clients --------------------------------------------------------------------------------


class Gaps:
    """Per item, the server ticks a client missed. A value is ``tick * items + item``."""

    def __init__(self, items: int) -> None:
        import numpy as np

        self.items = items
        self.last = np.full(items, -1, np.int64)  # the last tick seen, per item
        self.lost = 0
        self.top = -1  # the latest tick seen

    def add(self, values: Any) -> None:
        """Values of one Batch (vectorised: the adapter's path)."""
        import numpy as np

        f = np.asarray(values, np.float64)
        v = f[np.isfinite(f)].astype(np.int64)  # a bad-quality sample (NaN) is no change
        if not len(v):
            return
        k, i = v // self.items, v % self.items
        order = np.lexsort((k, i))
        k, i = k[order], i[order]
        first = np.concatenate(([True], i[1:] != i[:-1]))
        prev = np.where(first, self.last[i], np.concatenate(([0], k[:-1])))
        self.lost += int(np.clip(np.where(prev >= 0, k - prev - 1, 0), 0, None).sum())
        final = np.concatenate((i[1:] != i[:-1], [True]))
        self.last[i[final]] = k[final]
        self.top = max(self.top, int(k.max()))

    def add_one(self, value: float) -> None:
        """One value (the bare client's handler)."""
        k, i = divmod(int(value), self.items)
        before = int(self.last[i])
        if before >= 0 and k > before + 1:
            self.lost += k - before - 1
        self.last[i] = max(before, k)
        self.top = max(self.top, k)


async def _window(
    server: _Server,
    count: Callable[[], int],
    gaps: Gaps,
    seconds: float,
    warm: Callable[[], bool],
    messages: Callable[[], int] | None = None,
) -> dict[str, Any]:
    """Wait for ``warm()``, then measure ``count()`` (samples), what the client missed,
    ``messages()`` (Publish responses, when known) and the CPU over ``seconds``."""
    deadline = time.monotonic() + 60
    while not warm():
        if time.monotonic() > deadline:
            raise RuntimeError("no data within 60 s")
        await asyncio.sleep(0.05)
    m0 = messages() if messages else 0
    lost0, top0 = gaps.lost, gaps.top
    n0, cpu0, srv0, wall0 = count(), time.process_time(), server.cpu_s(), time.monotonic()
    await asyncio.sleep(seconds)
    n1, cpu1, srv1, wall1 = count(), time.process_time(), server.cpu_s(), time.monotonic()
    m1 = messages() if messages else 0
    wall = wall1 - wall0
    samples = n1 - n0
    extra = {"publish_responses_per_s": round((m1 - m0) / wall, 1)} if messages else {}
    return extra | {
        # what the server offered: its ticks in the window (it may tick late when loaded)
        "server_changes_per_s": round((gaps.top - top0) * gaps.items / wall, 1),
        "lost": gaps.lost - lost0,
        "seconds": round(wall, 2),
        "samples": samples,
        "samples_per_s": round(samples / wall, 1),
        "cpu_pct": round(100 * (cpu1 - cpu0) / wall, 1),
        "cpu_us_per_sample": round(1e6 * (cpu1 - cpu0) / samples, 2) if samples else None,
        "server_cpu_pct": round(100 * (srv1 - srv0) / wall, 1),
    }


async def _ours(server: _Server, items: int, period_ms: float, seconds: float) -> dict[str, Any]:
    import numpy as np

    from factory5g.connect.opcua import OpcUaAdapter
    from factory5g.model import load_text
    from factory5g.store import EmbeddedStore
    from factory5g.stream import MemoryBus, Quality

    site = load_text(site_text(server.url, items, period_ms))
    stored = 0
    with tempfile.TemporaryDirectory(prefix="f5g-opcua-bench-") as tmp:
        async with EmbeddedStore(Path(tmp)) as store, MemoryBus() as bus:
            sub = bus.subscribe("store", maxsize=1024)

            gaps = Gaps(items)

            bad = 0

            async def writer() -> None:
                nonlocal stored, bad
                async for batch in sub:
                    await store.write(batch)
                    stored += len(batch)
                    bad += int(np.count_nonzero(batch.quality != Quality.GOOD))
                    gaps.add(batch.value)

            task = asyncio.create_task(writer())
            try:
                async with OpcUaAdapter(site, bus) as adapter:

                    def notifications() -> int:
                        return int(adapter.stats()["endpoints"][0]["notifications"])

                    figures = await _window(
                        server,
                        lambda: stored,
                        gaps,
                        seconds,
                        lambda: stored >= 2 * items,
                        notifications,
                    )
                    (ep,) = adapter.stats()["endpoints"]
                    figures["bad_items"] = ep["bad_items"]
                    figures["reconnects"] = ep["reconnects"]
                    figures["bad_samples"] = bad  # since the start, warm-up included
            finally:
                bus.close()
                await task
    return figures


async def _bare(server: _Server, items: int, period_ms: float, seconds: float) -> dict[str, Any]:
    from asyncua import ua
    from asyncua.client import Client

    gaps = Gaps(items)

    class Counter:
        n = 0

        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            Counter.n += 1
            gaps.add_one(val)

    async with Client(server.url, timeout=10) as client:
        nodes = [client.get_node(ua.NodeId.from_string(node_id(i))) for i in range(items)]
        sub = await client.create_subscription(period_ms, Counter())
        await sub.subscribe_data_change(nodes, sampling_interval=period_ms)
        figures = await _window(
            server, lambda: Counter.n, gaps, seconds, lambda: Counter.n >= 2 * items
        )
        await sub.delete()
    return figures


async def _measure(items: int, period_ms: float, seconds: float) -> dict[str, Any]:
    server = _Server(items, period_ms)
    try:
        ours = await _ours(server, items, period_ms, seconds)
        bare = await _bare(server, items, period_ms, seconds)
    finally:
        server.stop()
    ideal = items * 1000 / period_ms
    ratio = {
        k: round(ours[k] / bare[k], 2) if bare.get(k) else None
        for k in ("samples_per_s", "cpu_pct", "cpu_us_per_sample")
    }
    return {
        "config": {"items": items, "period_ms": period_ms, "seconds": seconds},
        "ideal_samples_per_s": ideal,
        "ours": ours,
        "bare_asyncua": bare,
        "ratio_ours_over_bare": ratio,
    }


def _table(r: dict[str, Any]) -> str:
    rows = [("", "samples/s", "offered/s", "lost", "CPU %", "µs CPU/sample", "server CPU %")]
    for name in ("ours", "bare_asyncua"):
        f = r[name]
        rows.append(
            (
                name,
                f"{f['samples_per_s']:,.0f}",
                f"{f['server_changes_per_s']:,.0f}",
                f"{f['lost']}",
                f"{f['cpu_pct']:.1f}",
                f"{f['cpu_us_per_sample']}",
                f"{f['server_cpu_pct']:.1f}",
            )
        )
    q = r["ratio_ours_over_bare"]
    rows.append(
        (
            "ours / bare",
            f"{q['samples_per_s']}",
            "",
            "",
            f"{q['cpu_pct']}",
            f"{q['cpu_us_per_sample']}",
            "",
        )
    )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        f"OPC UA: {r['config']['items']} items every {r['config']['period_ms']:g} ms "
        f"(ideal {r['ideal_samples_per_s']:,.0f} samples/s)"
    ]
    lines += [
        "  " + "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    ]
    return "\n".join(lines)


def run(quick: bool) -> dict[str, Any]:
    """The figures of both clients; a table on stderr, nothing on stdout."""
    seconds = SECONDS_QUICK if quick else SECONDS_FULL
    report = asyncio.run(_measure(ITEMS, PERIOD_MS, seconds))
    report["config"]["quick"] = quick
    print(_table(report), file=sys.stderr)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="short run for CI smoke tests")
    parser.add_argument("--serve", nargs=2, metavar=("ITEMS", "PERIOD_MS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(int(args.serve[0]), float(args.serve[1])))
        return 0
    report = {
        "bench": "connect_opcua",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        **run(args.quick),
    }
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
