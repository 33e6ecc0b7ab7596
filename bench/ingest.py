"""Sparkplug B ingest benchmark: edge nodes → Mosquitto → our host → embedded store, end to end.

Prints ONE JSON line on stdout (a human table goes to stderr).

The workload: ``--nodes`` edge nodes (:class:`~factory5g.connect.sparkplug.edge.EdgeNode`, one
device of 100 Double metrics with aliases), each in its own process (spawned, so publishing does
not share the host's event loop), publish ``--messages`` DDATA each (built by
:class:`~factory5g.connect.sparkplug.edge.DataEncoder`) through a real Mosquitto, as fast as they
can or at ``--rate`` messages/s in total. Every metric carries the publish time (ms) as its
timestamp; metric 0 (``counter``) carries the message's number, so loss and duplicates are
counted exactly.

The runs, one after the other, on the same broker with the same publishers (fresh processes
each time):

* ``raw_broker`` (the broker limit): a subscriber that only counts messages (our ``MqttClient``
  ``batches()``, no decoding): messages/s from the first publish to the last message received.
  On 2 cores the publishers themselves take most of a core: this limit is the broker's *and*
  theirs (compare ``publish_s`` with ``elapsed_s``).
* ``ours``: the product path — ``Runtime`` with a ``[sparkplug]`` url pointing at the broker:
  ``SparkplugHost`` (bulk decoding) → ``MemoryBus`` → the store writer → ``EmbeddedStore``
  (DuckDB). A store write returning is "queryable"; per written sample, latency = write return
  (wall clock) - its metric timestamp (ms, so up to 1 ms too high). Throughput is counted from
  the first publish to the return of the write that stored the last sample. Then loss is
  verified by querying: the store API answers the raw samples of every node's ``counter`` (each
  must be exactly 0 … messages-1, once), and the store file, after close, the number of good
  samples (must equal messages x nodes x 100). ``store_write_busy_s`` is the time the store
  spent in writes: next to ``elapsed_s`` it says whether the store was the stage that limited.
* ``raw_broker`` and ``ours`` alternate ``--repeat`` times (this machine is shared: a noisy
  neighbour then hits both alike); the report holds the median run of each, and every run's rate.
* ``ours_at_rate``: ``ours`` once more with the publishers paced at ``--latency-rate`` messages/s
  in total (default: the goal, 10,000 messages/s = 1,000,000 metrics/s), publishing what is due
  every 5 ms: the publish → queryable latency at that load, not behind a backlog.
* ``influxdb``: the same points (same values, same publish times) written to InfluxDB 1.x
  (``influxd`` of the Debian package, started here with a generated config: temporary
  directories, 127.0.0.1 only, ``reporting-disabled``) as line protocol, one point per metric
  (``spb,edge=<node>,metric=<name> value=<v> <ts>``), POST ``/write`` in batches of
  ``--influx-batch`` points by ``--influx-writers`` concurrent connections; then a
  ``count(value)`` query checks the loss. The line protocol is formatted before the clock
  starts, and no MQTT or decoding is involved: InfluxDB's figure is an upper bound of what a
  Telegraf-like bridge would reach. Timestamps are written in µs: publish ms x 1000 + (counter
  mod 1000), because InfluxDB keeps one point per series and timestamp (a later one overwrites),
  and a node publishes several messages within one ms.

The broker runs with ``max_queued_messages 0`` (no limit): QoS 0 messages to a subscriber that
lags are then queued rather than dropped (Mosquitto's default drops them beyond 1000), so a host
slower than the publishers shows as latency, not as loss. Publishing flat out, the p99 latency
is therefore mostly the backlog of the run; ``ours_at_rate`` gives the latency at a given load.

CPU seconds per component come from ``/proc/<pid>/stat`` (and ``/proc/self/task/<tid>/stat``
per thread of our process: the event loop, the store worker, DuckDB's own threads).

Goals (2 cores): ours >= 1,000,000 metrics/s with zero loss, and >= 50 % of the raw broker
message rate. For scale: ThingsBoard publishes 30,000 messages/s on 8 vCPU and three Cassandra
nodes.

Usage: ``python bench/ingest.py [--nodes N] [--messages N] [--rate MSGS_PER_S] [--repeat N]
[--latency-rate MSGS_PER_S] [--quick]``; the full run takes about a minute, ``--quick`` (CI
smoke: 2 nodes x 500 messages, one repeat) about 6 s. Mosquitto (``/usr/sbin/mosquitto``) and
influxd (``/usr/bin/influxd``) must be installed: without them the benchmark fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import http.client
import json
import multiprocessing as mp
import os
import platform
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from factory5g.connect.mqtt import MqttClient, MqttOptions
from factory5g.connect.sparkplug import fastdecode
from factory5g.connect.sparkplug.edge import DataEncoder, EdgeNode, MetricSpec
from factory5g.connect.sparkplug.host import SparkplugHost, equipment_id, signal_name
from factory5g.connect.sparkplug.topic import NAMESPACE
from factory5g.model import load_text
from factory5g.runtime import Runtime
from factory5g.store import Agg, EmbeddedStore
from factory5g.store.base import StoreStats
from factory5g.stream import Batch, Quality

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"
GROUP = "bench"
DEVICE = "dev"
HOST_ID = "bench"
METRICS = 100
ALIAS_BASE = 1000  # aliases 1000..1099: one varint length, as DataEncoder needs
NAMES = ("counter", *(f"v{j:02d}" for j in range(1, METRICS)))
VALUE_ROWS = 64  # distinct rows of values, cycled
GOAL_METRICS = 1_000_000.0  # metrics/s
GOAL_RAW_SHARE = 0.5  # ours / raw broker messages/s
PACING_TICK_S = 0.005  # a paced publisher publishes what is due every 5 ms
START_WITHIN_S = 15.0
STALL_S = 15.0  # no progress for this long after the publishers finished: the rest is lost
NS_PER_MS = 1_000_000
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def value_table() -> np.ndarray:
    """VALUE_ROWS x METRICS process values (a slow random walk, 2 decimals)."""
    rng = np.random.default_rng(7)
    level = rng.uniform(10, 1000, METRICS)
    steps = rng.normal(0, 0.5, (VALUE_ROWS, METRICS)).cumsum(axis=0)
    table: np.ndarray = np.round(level + steps, 2)
    return table


# -- CPU time from /proc ------------------------------------------------------------------------


def cpu_s(pid: int, tid: int | None = None) -> float:
    """utime + stime of a process (or one of its threads), in seconds; 0 if it is gone."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid is not None else f"/proc/{pid}/stat"
    try:
        text = Path(path).read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 onwards
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 utime, 15 stime


def thread_cpu() -> dict[int, float]:
    """CPU seconds per thread of this process."""
    out = {}
    for entry in Path("/proc/self/task").iterdir():
        tid = int(entry.name)
        out[tid] = cpu_s(os.getpid(), tid)
    return out


def thread_kinds() -> dict[int, str]:
    """Our Python threads by role; the rest (DuckDB's own workers) are 'duckdb_threads'."""
    kinds = {}
    for t in threading.enumerate():
        if t.native_id is None:
            continue
        if t is threading.main_thread():
            kinds[t.native_id] = "event_loop"
        elif t.name.startswith("f5g-store"):
            kinds[t.native_id] = "store_worker"
        else:
            kinds[t.native_id] = "helper_threads"
    return kinds


def thread_cpu_delta(before: dict[int, float]) -> dict[str, float]:
    after = thread_cpu()
    kinds = thread_kinds()
    out = {"event_loop": 0.0, "store_worker": 0.0, "duckdb_threads": 0.0, "helper_threads": 0.0}
    for tid, t in after.items():
        out[kinds.get(tid, "duckdb_threads")] += t - before.get(tid, 0.0)
    return {k: round(v, 3) for k, v in out.items()}


# -- the peers: Mosquitto and influxd -----------------------------------------------------------


def wait_listening(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_WITHIN_S
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                text = log.read_text(errors="replace") if log.exists() else ""
                raise RuntimeError(
                    f"{what} did not start on port {port}:\n{text[-2000:]}"
                ) from None
            time.sleep(0.02)  # polling a deadline


@contextlib.contextmanager
def running(
    argv: list[str], port: int, directory: Path, what: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A peer process, listening on ``port`` when this yields; SIGTERM (then SIGKILL) at exit."""
    log = directory / f"{what}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        try:
            wait_listening(port, proc, what, log)
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def mosquitto(directory: Path, port: int) -> contextlib.AbstractContextManager[Any]:
    conf = directory / "mosquitto.conf"
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "persistence false",
        # QoS 0 to a lagging subscriber: queue (no limit) rather than drop beyond 1000 (default).
        "max_queued_messages 0",
        "max_queued_bytes 0",
        "log_dest stdout",
        "log_type error",
        "log_type warning",
    ]
    if os.geteuid() == 0:
        lines.append("user root")  # else it switches to 'mosquitto', who cannot read our dir
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return running([MOSQUITTO, "-c", str(conf)], port, directory, "mosquitto")


def influxd(
    directory: Path, http_port: int, rpc_port: int
) -> contextlib.AbstractContextManager[Any]:
    root = directory / "influxdb"
    for sub in ("meta", "data", "wal"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = root / "influxdb.conf"
    conf.write_text(
        f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{root}/meta"
  logging-enabled = false

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  wal-fsync-delay = "0s"
  index-version = "inmem"
  query-log-enabled = false

[retention]
  enabled = false

[shard-precreation]
  enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = false
  log-enabled = false

[logging]
  level = "warn"

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false
""",
        encoding="utf-8",
    )
    return running([INFLUXD, "run", "-config", str(conf)], http_port, root, "influxd")


def first_line(argv: list[str]) -> str:
    """The first line a command prints (its version, here)."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else "?"


# -- publishers: one process per edge node ------------------------------------------------------


@dataclass(frozen=True)
class PublisherJob:
    port: int
    index: int
    messages: int
    rate_per_s: float  # 0: as fast as possible

    @property
    def edge(self) -> str:
        return f"n{self.index:02d}"


def publisher_main(job: PublisherJob, ready: Any, go: Any, stop: Any, results: Any) -> None:
    """Entry point of a publisher process."""
    asyncio.run(_publish(job, ready, go, stop, results))


async def _publish(job: PublisherJob, ready: Any, go: Any, stop: Any, results: Any) -> None:
    specs = [MetricSpec(name, alias=ALIAS_BASE + j) for j, name in enumerate(NAMES)]
    encoder = DataEncoder([ALIAS_BASE + j for j in range(METRICS)])
    table = value_table()
    ts_ms = np.zeros(job.messages, np.int64)
    options = MqttOptions(host="127.0.0.1", port=job.port, client_id=f"bench-{job.edge}")
    async with EdgeNode(options, GROUP, job.edge, devices={DEVICE: specs}) as node:
        await node.wait_born(START_WITHIN_S)
        ready.put(job.index)
        if not await asyncio.to_thread(go.wait, 120):
            return
        cpu = time.process_time()
        t_first = time.time()
        start = time.perf_counter()
        values = np.empty(METRICS)
        for c in range(job.messages):
            if job.rate_per_s:
                # Ahead of the schedule by a tick or more: sleep. One wake-up per tick, not per
                # message (a wake-up costs more CPU than a publish, and this CPU is the host's).
                ahead = start + c / job.rate_per_s - time.perf_counter()
                if ahead >= PACING_TICK_S:
                    await asyncio.sleep(ahead)
            values[:] = table[c % VALUE_ROWS]
            values[0] = c
            ts = int(time.time() * 1000)
            ts_ms[c] = ts
            await node.publish_raw(DEVICE, functools.partial(encoder.encode, values, ts))
        t_last = time.time()
        cpu = time.process_time() - cpu
        results.put(
            {"index": job.index, "t_first": t_first, "t_last": t_last, "cpu_s": cpu, "ts_ms": ts_ms}
        )
        # Stay connected until told: our NDEATH must not land inside the measured window.
        await asyncio.to_thread(stop.wait, 300)


class Publishers:
    """``nodes`` publisher processes: started, born, then released together by :meth:`go`."""

    def __init__(self, port: int, nodes: int, messages: int, rate_per_s: float) -> None:
        ctx = mp.get_context("spawn")
        self._ready = ctx.Queue()
        self._results = ctx.Queue()
        self._go = ctx.Event()
        self._stop = ctx.Event()
        per_node = rate_per_s / nodes if rate_per_s else 0.0
        self.jobs = [PublisherJob(port, i, messages, per_node) for i in range(nodes)]
        self.procs = [
            ctx.Process(
                target=publisher_main,
                args=(job, self._ready, self._go, self._stop, self._results),
                name=f"bench-{job.edge}",
                daemon=True,
            )
            for job in self.jobs
        ]
        self.results: list[dict[str, Any]] = []

    async def start(self) -> None:
        for p in self.procs:
            p.start()
        for _ in self.procs:
            try:
                await asyncio.to_thread(self._ready.get, True, 60)
            except queue.Empty:
                raise RuntimeError(f"publishers did not start: {self.exit_codes()}") from None

    def exit_codes(self) -> list[int | None]:
        return [p.exitcode for p in self.procs]

    def go(self) -> None:
        self._go.set()

    async def collect(self) -> list[dict[str, Any]]:
        """Each publisher's figures (once it has published everything)."""
        while len(self.results) < len(self.procs):
            try:
                self.results.append(await asyncio.to_thread(self._results.get, True, 1.0))
            except queue.Empty:  # they stay until close(): one that exited failed
                if any(code is not None for code in self.exit_codes()):
                    raise RuntimeError(f"a publisher failed: {self.exit_codes()}") from None
        self.results.sort(key=lambda r: r["index"])
        return self.results

    def cpu_now(self) -> float:
        return sum(cpu_s(p.pid) for p in self.procs if p.pid is not None)

    def close(self) -> None:
        self._go.set()  # not started yet: let them return
        self._stop.set()
        for p in self.procs:
            p.join(15)
            if p.is_alive():
                p.terminate()
                p.join(5)


def publish_span(results: list[dict[str, Any]]) -> tuple[float, float]:
    return min(r["t_first"] for r in results), max(r["t_last"] for r in results)


async def wait_until_done(
    done: asyncio.Event, count: Callable[[], int], publishers_done: asyncio.Task[Any]
) -> None:
    """Until ``done``, or no progress for STALL_S after the publishers finished."""
    last, since = count(), time.monotonic()
    while not done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.5)
        if publishers_done.done():
            failure = publishers_done.exception()
            if failure is not None:
                raise failure
        now = count()
        if now != last or not publishers_done.done():
            last, since = now, time.monotonic()
        elif time.monotonic() - since > STALL_S:
            return


# -- (a) the raw broker limit -------------------------------------------------------------------


@dataclass(frozen=True)
class Broker:
    port: int
    pid: int


async def run_raw(broker: Broker, nodes: int, messages: int, rate: float) -> dict[str, Any]:
    """A subscriber that only counts: the broker's (and the publishers') limit."""
    births = 2 * nodes  # NBIRTH + DBIRTH per node, published before the clock starts
    target = nodes * messages + births
    received = 0
    t_end = 0.0
    done = asyncio.Event()
    port = broker.port
    options = MqttOptions(host="127.0.0.1", port=port, client_id="bench-raw-counter")
    async with MqttClient(options) as sub:
        await sub.subscribe([(f"{NAMESPACE}/{GROUP}/#", 1)])  # not STATE: it may be retained

        async def count() -> None:
            nonlocal received, t_end
            async for batch in sub.batches():
                received += len(batch)
                if received >= target and not done.is_set():
                    t_end = time.time()
                    done.set()

        counter = asyncio.create_task(count(), name="bench-raw-count")
        pubs = Publishers(port, nodes, messages, rate)
        try:
            await pubs.start()
            cpu_pub, cpu_broker, cpu_self = pubs.cpu_now(), cpu_s(broker.pid), time.process_time()
            pubs.go()
            collected = asyncio.create_task(pubs.collect(), name="bench-raw-collect")
            await wait_until_done(done, lambda: received, collected)
            results = await collected
            cpu = {
                "subscriber": round(time.process_time() - cpu_self, 3),
                "mosquitto": round(cpu_s(broker.pid) - cpu_broker, 3),
                "publishers": round(pubs.cpu_now() - cpu_pub, 3),
            }
        finally:
            pubs.close()
            counter.cancel()
            await asyncio.gather(counter, return_exceptions=True)
    t_first, t_last_pub = publish_span(results)
    data = max(received - births, 0)
    elapsed = (t_end or time.time()) - t_first
    return {
        "messages_per_s": data / elapsed,
        "metrics_per_s": data * METRICS / elapsed,
        "published": nodes * messages,
        "received": data,
        "loss": nodes * messages - data,
        "elapsed_s": elapsed,
        "publish_s": t_last_pub - t_first,
        "publish_cpu_s": round(sum(r["cpu_s"] for r in results), 3),
        "cpu_s": cpu,
    }


# -- ours: the product path ---------------------------------------------------------------------


class TimedStore:
    """The embedded store as the runtime's store, timing every write: returned = queryable."""

    def __init__(self, inner: EmbeddedStore) -> None:
        self.inner = inner
        self.since_ns = 2**62  # data samples: timestamped at or after the go
        self.target = 0
        self.stored = 0
        self.t_done = 0.0
        self.done = asyncio.Event()
        self.hist = np.zeros(4096, np.int64)  # samples per ms of latency
        self.busy_s = 0.0  # time spent in writes (the store works on one at a time)
        self.writes = 0

    async def write(self, batch: Batch) -> None:
        t = time.perf_counter()
        await self.inner.write(batch)
        self.busy_s += time.perf_counter() - t
        self.writes += 1
        now_ns = time.time_ns()
        data = (batch.ts >= self.since_ns) & (batch.quality == Quality.GOOD)
        ts = batch.ts[data]
        if len(ts) == 0:
            return
        # A message's 100 samples share one timestamp and arrive in one write, one after the
        # other: every 100th sample stands for its message (this measuring must stay cheap).
        latency_ms = (now_ns - ts[::METRICS]) // NS_PER_MS  # up to 1 ms high: ts is in ms
        counts = np.bincount(np.clip(latency_ms, 0, None)) * METRICS
        if len(counts) > len(self.hist):
            grow = np.zeros(len(counts) - len(self.hist), np.int64)
            self.hist = np.concatenate((self.hist, grow))
        self.hist[: len(counts)] += counts
        self.stored += len(ts)
        if self.stored >= self.target and not self.done.is_set():
            self.t_done = now_ns / 1e9
            self.done.set()

    def percentile_ms(self, q: float) -> float | None:
        total = int(self.hist.sum())
        if not total:
            return None
        return float(np.searchsorted(np.cumsum(self.hist), q * total))

    async def latest(self, signals: Any) -> Batch:
        return await self.inner.latest(signals)

    async def query(
        self,
        signal: int,
        start: int,
        end: int,
        every: int | None = None,
        agg: Agg = Agg.MEAN,
        limit: int | None = None,
    ) -> Batch:
        return await self.inner.query(signal, start, end, every, agg, limit)

    async def apply_retention(self, before: int) -> int:
        return await self.inner.apply_retention(before)

    async def stats(self) -> StoreStats:
        return await self.inner.stats()


SITE = """
[site]
name = "bench-ingest"
prefix = "88.1"

[sparkplug]
url = "mqtt://127.0.0.1:{port}"
host_id = "{host_id}"
"""


def births_seen(host: SparkplugHost, edges: list[str]) -> bool:
    """The host learned every node's device (its 100 aliases) from the births."""
    devices = {
        n["edge"]: {d["device"]: d["signals"] for d in n["devices"]}
        for n in host.stats()["nodes"]
        if n["group"] == GROUP
    }
    return all(devices.get(edge, {}).get(DEVICE) == METRICS for edge in edges)


async def run_ours(
    broker: Broker, nodes: int, messages: int, rate: float, store_dir: Path
) -> dict[str, Any]:
    port = broker.port
    site = load_text(SITE.format(port=port, host_id=HOST_ID))
    expected = nodes * messages * METRICS
    async with EmbeddedStore.open(store_dir) as inner:
        store = TimedStore(inner)
        store.target = expected
        async with Runtime(site, data_dir=store_dir, store=store) as rt:
            host = rt.sparkplug
            assert host is not None
            async with asyncio.timeout(START_WITHIN_S):
                await host.client.wait_connected()
            pubs = Publishers(port, nodes, messages, rate)
            try:
                await pubs.start()
                # The host must know every device's aliases before DATA flows.
                deadline = time.monotonic() + START_WITHIN_S
                while not births_seen(host, [job.edge for job in pubs.jobs]):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the host did not see every birth")
                    await asyncio.sleep(0.01)  # polling a deadline
                store.since_ns = int(time.time() * 1000) * NS_PER_MS
                cpu_threads = thread_cpu()
                cpu_pub, cpu_broker = pubs.cpu_now(), cpu_s(broker.pid)
                pubs.go()
                collected = asyncio.create_task(pubs.collect(), name="bench-ours-collect")
                await wait_until_done(store.done, lambda: store.stored, collected)
                results = await collected
                cpu: dict[str, Any] = {
                    "host": thread_cpu_delta(cpu_threads),
                    "mosquitto": round(cpu_s(broker.pid) - cpu_broker, 3),
                    "publishers": round(pubs.cpu_now() - cpu_pub, 3),
                }
                t_end = store.t_done or time.time()
                counters = await check_counters(store, site, pubs.jobs, messages, store.since_ns)
                host_stats = host.stats()
            finally:
                pubs.close()
    # The store is closed: count what it holds.
    with duckdb.connect(str(store_dir / "samples.duckdb"), read_only=True) as con:
        row = con.execute(
            "SELECT count(*) FROM samples WHERE quality = ? AND ts >= ?",
            [int(Quality.GOOD), store.since_ns],
        ).fetchone()
    in_store = int(row[0]) if row else 0
    shutil.rmtree(store_dir, ignore_errors=True)
    t_first, t_last_pub = publish_span(results)
    elapsed = t_end - t_first
    gaps = sum(n["gaps"] for n in host_stats["nodes"])
    cpu["host"]["total"] = round(sum(cpu["host"].values()), 3)
    return {
        "metrics_per_s": min(store.stored, expected) / elapsed,
        "messages_per_s": min(store.stored, expected) / METRICS / elapsed,
        "published_metrics": expected,
        "stored_metrics": in_store,
        "loss": expected - in_store,
        "extra": max(in_store - expected, 0),
        "counters_exact": counters["exact"],
        "counter_problems": counters["problems"],
        "sequence_gaps": gaps,
        "rebirths": sum(n["rebirths"] for n in host_stats["nodes"]),
        "latency_ms": {
            "p50": store.percentile_ms(0.50),
            "p99": store.percentile_ms(0.99),
            "max": float(np.flatnonzero(store.hist)[-1]) if store.hist.any() else None,
        },
        "elapsed_s": elapsed,
        "publish_s": t_last_pub - t_first,
        "publish_cpu_s": round(sum(r["cpu_s"] for r in results), 3),
        "cpu_s": cpu,
        "cpu_us_per_metric": (cpu["host"]["total"] / expected * 1e6),
        "mqtt_read_pauses": host_stats["mqtt"]["read_pauses"],
        "store_writes": store.writes,
        "store_write_busy_s": store.busy_s,
        "ts_ms": [r["ts_ms"] for r in results],
    }


async def check_counters(
    store: TimedStore, site: Any, jobs: list[PublisherJob], messages: int, since_ns: int
) -> dict[str, Any]:
    """Through the store's query API: every node's counter holds 0..messages-1, each once."""
    problems = []
    end = time.time_ns() + 10**9
    for job in jobs:
        path = f"{equipment_id(GROUP, job.edge, DEVICE)}.{signal_name(NAMES[0])}"
        sid = site.signals.get(path).id
        got = await store.query(sid, since_ns, end)
        values = np.sort(got.value[got.quality == Quality.GOOD])
        if not np.array_equal(values, np.arange(messages, dtype=np.float64)):
            missing = messages - len(np.unique(values))
            problems.append({"edge": job.edge, "samples": len(values), "missing": missing})
    return {"exact": not problems, "problems": problems}


# -- (b) InfluxDB -------------------------------------------------------------------------------


def line_protocol(ts_ms: list[np.ndarray], batch_points: int) -> list[bytes]:
    """The points of every node as line-protocol bodies of about ``batch_points`` points each,
    interleaved across nodes (as they were published)."""
    table = value_table()
    per_message = max(batch_points // METRICS, 1)
    per_node: list[list[bytes]] = []
    for i, stamps in enumerate(ts_ms):
        prefix = [f"spb,edge=n{i:02d},metric={name} value=" for name in NAMES]
        rows = [
            [prefix[j] + repr(float(table[r, j])) for j in range(1, METRICS)]
            for r in range(VALUE_ROWS)
        ]
        bodies = []
        chunk: list[str] = []
        for c, ts in enumerate(stamps.tolist()):
            sep = f" {ts * 1000 + c % 1000}\n"
            chunk.append(prefix[0] + repr(float(c)) + sep + sep.join(rows[c % VALUE_ROWS]) + sep)
            if len(chunk) == per_message:
                bodies.append("".join(chunk).encode())
                chunk = []
        if chunk:
            bodies.append("".join(chunk).encode())
        per_node.append(bodies)
    out: list[bytes] = []
    for k in range(max(len(b) for b in per_node)):
        out.extend(b[k] for b in per_node if k < len(b))
    return out


def influx_request(
    con: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None
) -> tuple[int, bytes]:
    con.request(method, path, body=body)
    resp = con.getresponse()
    return resp.status, resp.read()


def run_influx(
    port: int, pid: int, ts_ms: list[np.ndarray], batch_points: int, writers: int
) -> dict[str, Any]:
    bodies = line_protocol(ts_ms, batch_points)
    points = sum(len(t) for t in ts_ms) * METRICS
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    status, text = influx_request(con, "POST", "/query?q=CREATE+DATABASE+bench")
    if status != 200:
        raise RuntimeError(f"influxd: CREATE DATABASE answered {status}: {text!r}")
    write_path = "/write?db=bench&precision=u"
    lock = threading.Lock()
    queue = iter(range(len(bodies)))
    latencies: list[float] = []
    errors: list[str] = []

    def writer() -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while True:
                with lock:
                    k = next(queue, None)
                if k is None:
                    return
                t = time.perf_counter()
                st, reply = influx_request(c, "POST", write_path, bodies[k])
                lat = time.perf_counter() - t
                with lock:
                    latencies.append(lat)
                    if st != 204:
                        errors.append(f"{st}: {reply[:200]!r}")
                        return
        finally:
            c.close()

    cpu_server, cpu_client = cpu_s(pid), time.process_time()
    t = time.perf_counter()
    threads = [threading.Thread(target=writer, name=f"influx-writer-{i}") for i in range(writers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t
    cpu = {
        "influxd": round(cpu_s(pid) - cpu_server, 3),
        "client": round(time.process_time() - cpu_client, 3),
    }
    if errors:
        raise RuntimeError(f"influxd refused a write: {errors[0]}")
    q = urllib.parse.quote("SELECT count(value) FROM spb")
    status, text = influx_request(con, "GET", f"/query?db=bench&q={q}")
    con.close()
    series = json.loads(text)["results"][0].get("series") or []
    stored = int(series[0]["values"][0][1]) if series else 0
    lat_ms = np.asarray(latencies) * 1e3
    return {
        "points_per_s": points / elapsed,
        "points": points,
        "stored_points": stored,
        "loss": points - stored,
        "batch_points": batch_points,
        "writers": writers,
        "requests": len(bodies),
        "write_ms": {
            "p50": float(np.percentile(lat_ms, 50)),
            "p99": float(np.percentile(lat_ms, 99)),
            "max": float(lat_ms.max()),
        },
        "elapsed_s": elapsed,
        "line_protocol_bytes": sum(len(b) for b in bodies),
        "cpu_s": cpu,
        "cpu_us_per_point": (cpu["influxd"] / points * 1e6),
    }


# -- report -------------------------------------------------------------------------------------


def goal(text: str, value: float, ok: bool) -> dict[str, Any]:
    return {"goal": text, "value": value, "pass": bool(ok)}


def table_lines(report: dict[str, Any]) -> Iterator[str]:
    ours, raw, flux = report["ours"], report["raw_broker"], report["influxdb"]
    yield f"{'run':<11} {'metrics/s':>12} {'msgs/s':>9} {'loss':>6} {'p99 ms':>8} {'CPU s':>7}"
    yield (
        f"{'raw broker':<11} {raw['metrics_per_s']:>12,.0f} {raw['messages_per_s']:>9,.0f} "
        f"{raw['loss']:>6} {'-':>8} {raw['cpu_s']['subscriber']:>7.2f}"
    )
    yield (
        f"{'ours':<11} {ours['metrics_per_s']:>12,.0f} {ours['messages_per_s']:>9,.0f} "
        f"{ours['loss']:>6} {ours['latency_ms']['p99'] or 0:>8.0f} "
        f"{ours['cpu_s']['host']['total']:>7.2f}"
    )
    yield (
        f"{'influxdb':<11} {flux['points_per_s']:>12,.0f} {'-':>9} {flux['loss']:>6} "
        f"{flux['write_ms']['p99']:>8.0f} {flux['cpu_s']['influxd']:>7.2f}"
    )
    paced = report["ours_at_rate"]
    if paced is not None:
        yield (
            f"{'ours paced':<11} {paced['metrics_per_s']:>12,.0f} {paced['messages_per_s']:>9,.0f} "
            f"{paced['loss']:>6} {paced['latency_ms']['p99'] or 0:>8.0f} "
            f"{paced['cpu_s']['host']['total']:>7.2f}"
        )
    host = ours["cpu_s"]["host"]
    yield (
        "ours CPU s: "
        + ", ".join(f"{k} {v:.2f}" for k, v in host.items())
        + f"; mosquitto {ours['cpu_s']['mosquitto']:.2f}, "
        f"publishers {ours['cpu_s']['publishers']:.2f}"
    )
    verdict = ", ".join(
        f"{k} {'PASS' if g['pass'] else 'FAIL'} ({g['goal']})" for k, g in report["goals"].items()
    )
    yield f"goals: {verdict}"


def median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run with the median ``key`` (the lower one of an even count)."""
    return sorted(runs, key=lambda r: r[key])[(len(runs) - 1) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--nodes", type=int, default=4, help="edge nodes (one process each)")
    parser.add_argument("--messages", type=int, default=25_000, help="DDATA per node")
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s in total (0: max)")
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=GOAL_METRICS / METRICS,
        help="messages/s in total of the paced run that measures latency (0: no such run)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="raw/ours runs (median)")
    parser.add_argument("--influx-batch", type=int, default=5_000, help="points per POST")
    parser.add_argument("--influx-writers", type=int, default=2, help="concurrent POSTs")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (temporary)")
    parser.add_argument("--quick", action="store_true", help="tiny run for CI smoke tests")
    args = parser.parse_args(argv)
    if args.quick:
        args.nodes, args.messages, args.repeat = min(args.nodes, 2), min(args.messages, 500), 1
    for path, package in ((MOSQUITTO, "mosquitto"), (INFLUXD, "influxdb")):
        if not Path(path).exists():
            print(f"{path} is missing: apt-get install {package}", file=sys.stderr)
            return 2

    began = time.perf_counter()
    load_before = os.getloadavg()  # this machine is shared: how busy it was before we started
    warm_s = fastdecode.warm_up()
    work = Path(tempfile.mkdtemp(prefix="f5g-bench-ingest-", dir=args.dir))
    n, m = args.nodes, args.messages
    raws: list[dict[str, Any]] = []
    ourses: list[dict[str, Any]] = []
    paced: dict[str, Any] | None = None
    try:
        port = free_port()
        with mosquitto(work, port) as proc:
            broker = Broker(port, proc.pid)
            for k in range(args.repeat):  # alternated: a noisy neighbour hits both alike
                raws.append(asyncio.run(run_raw(broker, n, m, args.rate)))
                ourses.append(asyncio.run(run_ours(broker, n, m, args.rate, work / f"ours-{k}")))
                print(
                    f"run {k + 1}/{args.repeat}: raw {raws[-1]['messages_per_s']:,.0f} msgs/s, "
                    f"ours {ourses[-1]['messages_per_s']:,.0f} msgs/s",
                    file=sys.stderr,
                )
            if args.latency_rate:
                paced = asyncio.run(run_ours(broker, n, m, args.latency_rate, work / "paced"))
                paced.pop("ts_ms")
        raw = median_run(raws, "messages_per_s")
        ours = median_run(ourses, "metrics_per_s")
        ts_ms = ours["ts_ms"]
        for r in ourses:
            r.pop("ts_ms")
        http_port = free_port()
        with influxd(work, http_port, free_port()) as server:
            flux = run_influx(http_port, server.pid, ts_ms, args.influx_batch, args.influx_writers)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    raw["runs_messages_per_s"] = [r["messages_per_s"] for r in raws]
    ours["runs_metrics_per_s"] = [r["metrics_per_s"] for r in ourses]
    ours["loss_all_runs"] = sum(r["loss"] for r in ourses)
    lossless = all(r["loss"] == 0 and r["counters_exact"] for r in ourses)
    payload_bytes = len(
        DataEncoder(np.arange(ALIAS_BASE, ALIAS_BASE + METRICS)).encode(
            value_table()[0], int(time.time() * 1000), 0
        )
    )
    share = ours["messages_per_s"] / raw["messages_per_s"]
    report: dict[str, Any] = {
        "bench": "ingest",
        "config": {
            "nodes": n,
            "messages_per_node": m,
            "metrics_per_message": METRICS,
            "payload_bytes": payload_bytes,
            "rate_msgs_per_s": args.rate or None,
            "latency_rate_msgs_per_s": args.latency_rate or None,
            "repeat": args.repeat,
            "broker": "mosquitto, max_queued_messages 0 (QoS 0 queued, not dropped)",
            "influx_batch_points": args.influx_batch,
            "influx_writers": args.influx_writers,
            "quick": args.quick,
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "numba_warm_up_s": round(warm_s, 3),
        },
        "ours": ours,
        "ours_at_rate": paced,
        "raw_broker": raw,
        "influxdb": flux,
        "ratios": {
            "ours_over_raw_messages": share,
            "ours_over_influx_points": ours["metrics_per_s"] / flux["points_per_s"],
        },
        "goals": {
            "metrics_per_s": goal(
                f">= {GOAL_METRICS:.0f}",
                ours["metrics_per_s"],
                ours["metrics_per_s"] >= GOAL_METRICS,
            ),
            "loss": goal("== 0 (every run)", ours["loss_all_runs"], lossless),
            "share_of_raw_broker": goal(f">= {GOAL_RAW_SHARE:g}", share, share >= GOAL_RAW_SHARE),
        },
        "total_s": time.perf_counter() - began,
        "versions": {
            "python": platform.python_version(),
            "mosquitto": first_line([MOSQUITTO, "-h"]),
            "influxdb": first_line([INFLUXD, "version"]),
            "duckdb": duckdb.__version__,
            "numpy": np.__version__,
            "numba_jit": fastdecode.jit_enabled(),
        },
    }
    for line in table_lines(report):
        print(line, file=sys.stderr)
    print(json.dumps(report, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
