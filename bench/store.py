"""Store benchmark: ours (DuckDB + 1 s rollup) side by side with SQLite and Parquet partitions.

Prints ONE JSON line on stdout (a human table goes to stderr).

Data: one signal sampled at 100 Hz, like a furnace temperature: a slow process drift (two sines,
periods 2 h and 11 min, amplitudes 15 and 2.5 around 850) plus Gaussian measurement noise
(sigma 0.05), rounded to the sensor resolution 0.01, quality GOOD. ``--samples`` of it (default
10 M = 27.8 h) are written in batches of ``--batch`` samples (default 10 k = 100 s), the unit a
connector hands to the store. Every backend gets the same arrays.

Figures per backend:

* ``write_samples_per_s``: samples / wall time from the first write until the data is on disk
  and the store closed. Ours and SQLite commit every batch with an fsync'ed log (SQLite in WAL
  mode with ``synchronous=FULL``, the same promise ours makes); Parquet can only buffer ~1 M
  samples per file, so an acknowledged batch is not durable there: its figure is an upper bound.
* ``query_ms``: median of ``--runs`` runs (after one warm-up) of 1-minute means over the whole
  time range of that signal, the same range for every backend.
* ``bytes_per_sample``: bytes of the backend's files after close / samples.

Ours also reports the same query through its raw path (``query_ms_samples_path``: the start is
shifted by 1 ms, so the rollup cannot answer it) and ``write_samples_per_s_1hz_10k_signals``: the
worst case for the rollup, batches of 10 k signals sampled once per second, where the rollup
holds one row per sample.

Usage: ``python bench/store.py [--samples N] [--batch N] [--runs N] [--threads N] [--quick]``.
``--quick`` (CI smoke) shrinks everything to a few seconds; the full run takes about a minute on
2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from factory5g.store import Agg, EmbeddedStore
from factory5g.stream import Batch, Quality

NS = 1_000_000_000
T0 = 1_700_000_000 * NS  # 2023-11-14T22:13:20Z
RATE_HZ = 100
SIGNAL = 1
EVERY = 60 * NS
GOAL_WRITE = 2_000_000.0  # samples/s
GOAL_QUERY_MS = 50.0
GOAL_BYTES = 4.0  # per sample
PARQUET_FILE_SAMPLES = 1_000_000
PARQUET_SIGNALS_PER_PARTITION = 1_000
DAY_NS = 86_400 * NS


# -- data ---------------------------------------------------------------------------------------


def sensor_series(n: int, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """(ts, value) of a 100 Hz process value; see the module docstring."""
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(n, dtype=np.int64) * (NS // RATE_HZ)
    t_s = np.arange(n) / RATE_HZ
    drift = 850 + 15 * np.sin(2 * np.pi * t_s / 7_200) + 2.5 * np.sin(2 * np.pi * t_s / 660)
    return ts, np.round(drift + rng.normal(0, 0.05, n), 2)


def batches_of(ts: np.ndarray, value: np.ndarray, size: int) -> list[Batch]:
    signal = np.full(len(ts), SIGNAL, dtype=np.int32)
    quality = np.full(len(ts), int(Quality.GOOD), dtype=np.uint8)
    return [
        Batch(signal[i : i + size], ts[i : i + size], value[i : i + size], quality[i : i + size])
        for i in range(0, len(ts), size)
    ]


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def median_ms(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    result = fn()  # warm-up (page cache, dataset discovery, query plans)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), result


# -- ours ---------------------------------------------------------------------------------------


async def bench_ours(
    root: Path, batches: list[Batch], start: int, end: int, runs: int, threads: int | None
) -> tuple[dict[str, Any], np.ndarray]:
    d = root / "ours"
    n = sum(len(b) for b in batches)
    async with EmbeddedStore.open(d, threads=threads) as store:
        t = time.perf_counter()
        for b in batches:
            await store.write(b)
    write_s = time.perf_counter() - t  # includes the checkpoint at close
    size = dir_bytes(d)
    async with EmbeddedStore.open(d, threads=threads) as store:

        async def timed(lo: int) -> tuple[float, Batch]:
            result = await store.query(SIGNAL, lo, end, every=EVERY, agg=Agg.MEAN)
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                result = await store.query(SIGNAL, lo, end, every=EVERY, agg=Agg.MEAN)
                times.append((time.perf_counter() - t) * 1e3)
            return statistics.median(times), result

        query_ms, result = await timed(start)
        raw_ms, raw_result = await timed(start + 1_000_000)
    # The raw path answers a range 1 ms shorter: same buckets, nearly the same means.
    assert len(raw_result) == len(result)
    return {
        "write_samples_per_s": n / write_s,
        "query_ms": query_ms,
        "query_ms_samples_path": raw_ms,
        "bytes_per_sample": size / n,
        "buckets": len(result),
    }, result.value


async def bench_ours_many_signals(root: Path, seconds: int, threads: int | None) -> float:
    """Write rate with batches of 10 k signals at 1 Hz: one rollup row per sample."""
    d = root / "ours_1hz"
    signals = np.arange(10_000, dtype=np.int32)
    rng = np.random.default_rng(1)
    level = rng.uniform(0, 100, len(signals))
    batches = [
        Batch(
            signals,
            T0 + k * NS + (signals.astype(np.int64) % 1000) * 1_000_000,  # spread over the second
            np.round(level + rng.normal(0, 0.05, len(signals)), 2),
            np.full(len(signals), int(Quality.GOOD), dtype=np.uint8),
        )
        for k in range(seconds)
    ]
    async with EmbeddedStore.open(d, threads=threads) as store:
        t = time.perf_counter()
        for b in batches:
            await store.write(b)
    return len(signals) * seconds / (time.perf_counter() - t)


# -- SQLite -------------------------------------------------------------------------------------


def bench_sqlite(
    root: Path, batches: list[Batch], start: int, end: int, runs: int
) -> tuple[dict[str, Any], np.ndarray]:
    path = root / "sqlite" / "samples.db"
    path.parent.mkdir()
    n = sum(len(b) for b in batches)
    t = time.perf_counter()
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")  # fsync the log at each commit, as ours does
    con.execute(
        "CREATE TABLE samples(signal INTEGER NOT NULL, ts INTEGER NOT NULL, "
        "value REAL NOT NULL, quality INTEGER NOT NULL)"
    )
    con.execute("CREATE INDEX samples_signal_ts ON samples(signal, ts)")
    for b in batches:
        con.execute("BEGIN")
        con.executemany(
            "INSERT INTO samples VALUES (?, ?, ?, ?)",
            zip(
                b.signal.tolist(), b.ts.tolist(), b.value.tolist(), b.quality.tolist(), strict=True
            ),
        )
        con.execute("COMMIT")
    con.close()  # checkpoints the WAL into the database file
    write_s = time.perf_counter() - t
    size = dir_bytes(path.parent)
    con = sqlite3.connect(path)
    origin = start - start % EVERY

    def query() -> np.ndarray:
        rows = con.execute(
            "SELECT (ts - ?) / ? AS k, avg(value) FROM samples "
            "WHERE signal = ? AND ts >= ? AND ts < ? AND quality >= 64 GROUP BY k ORDER BY k",
            (origin, EVERY, SIGNAL, start, end),
        ).fetchall()
        return np.array([r[1] for r in rows], dtype=np.float64)

    query_ms, result = median_ms(query, runs)
    con.close()
    return {
        "write_samples_per_s": n / write_s,
        "query_ms": query_ms,
        "bytes_per_sample": size / n,
        "buckets": len(result),
    }, result


# -- Parquet partitions -------------------------------------------------------------------------


class ParquetPartitions:
    """Batches buffered into Parquet files of ~1 M samples (zstd), hive-partitioned by signal
    range and UTC day: ``signal_range=<signal // 1000>/day=<days since epoch>/part-N.parquet``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._buffer: list[Batch] = []
        self._buffered = 0
        self._files = 0

    def write(self, batch: Batch) -> None:
        self._buffer.append(batch)
        self._buffered += len(batch)
        if self._buffered >= PARQUET_FILE_SAMPLES:
            self.flush()

    def flush(self) -> None:
        if not self._buffered:
            return
        b = Batch.concat(self._buffer)
        self._buffer, self._buffered = [], 0
        part = b.signal // PARQUET_SIGNALS_PER_PARTITION
        day = b.ts // DAY_NS
        for p, dd in sorted(set(zip(part.tolist(), day.tolist(), strict=True))):
            sel = (part == p) & (day == dd)
            folder = self.root / f"signal_range={p}" / f"day={dd}"
            folder.mkdir(parents=True, exist_ok=True)
            table = pa.table(
                {
                    "signal": b.signal[sel],
                    "ts": b.ts[sel],
                    "value": b.value[sel],
                    "quality": b.quality[sel],
                }
            )
            pq.write_table(table, folder / f"part-{self._files:05d}.parquet", compression="zstd")
            self._files += 1

    def query_means(self, signal: int, start: int, end: int, every: int) -> np.ndarray:
        dataset = pads.dataset(self.root, format="parquet", partitioning="hive")
        filt = (
            (pc.field("signal_range") == signal // PARQUET_SIGNALS_PER_PARTITION)
            & (pc.field("day") >= start // DAY_NS)
            & (pc.field("day") <= (end - 1) // DAY_NS)
            & (pc.field("signal") == signal)
            & (pc.field("ts") >= start)
            & (pc.field("ts") < end)
            & (pc.field("quality") >= 64)
        )
        table = dataset.to_table(columns=["ts", "value"], filter=filt)
        ts = table.column("ts").to_numpy()
        value = table.column("value").to_numpy()
        k = (ts - (start - start % every)) // every
        sums = np.bincount(k, weights=value)
        counts = np.bincount(k)
        return sums[counts > 0] / counts[counts > 0]


def bench_parquet(
    root: Path, batches: list[Batch], start: int, end: int, runs: int
) -> tuple[dict[str, Any], np.ndarray]:
    store = ParquetPartitions(root / "parquet")
    n = sum(len(b) for b in batches)
    t = time.perf_counter()
    for b in batches:
        store.write(b)
    store.flush()
    write_s = time.perf_counter() - t
    size = dir_bytes(store.root)
    query_ms, result = median_ms(lambda: store.query_means(SIGNAL, start, end, EVERY), runs)
    return {
        "write_samples_per_s": n / write_s,
        "query_ms": query_ms,
        "bytes_per_sample": size / n,
        "buckets": len(result),
    }, result


# -- report -------------------------------------------------------------------------------------


def goals(ours: dict[str, Any]) -> dict[str, Any]:
    return {
        "write_samples_per_s": {
            "goal": f">= {GOAL_WRITE:.0f}",
            "value": ours["write_samples_per_s"],
            "pass": ours["write_samples_per_s"] >= GOAL_WRITE,
        },
        "query_ms": {
            "goal": f"<= {GOAL_QUERY_MS:g}",
            "value": ours["query_ms"],
            "pass": ours["query_ms"] <= GOAL_QUERY_MS,
        },
        "bytes_per_sample": {
            "goal": f"<= {GOAL_BYTES:g}",
            "value": ours["bytes_per_sample"],
            "pass": ours["bytes_per_sample"] <= GOAL_BYTES,
        },
    }


def table_lines(backends: dict[str, dict[str, Any]], gs: dict[str, Any]) -> Iterator[str]:
    yield f"{'backend':<10} {'write Msamples/s':>17} {'1-min means ms':>15} {'B/sample':>9}"
    for name, r in backends.items():
        yield (
            f"{name:<10} {r['write_samples_per_s'] / 1e6:>17.2f} {r['query_ms']:>15.1f} "
            f"{r['bytes_per_sample']:>9.2f}"
        )
    verdict = ", ".join(
        f"{k} {'PASS' if g['pass'] else 'FAIL'} ({g['goal']})" for k, g in gs.items()
    )
    yield f"goals (ours): {verdict}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--samples", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5, help="timed query runs (median)")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (all cores)")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (temporary)")
    parser.add_argument("--quick", action="store_true", help="tiny run for CI smoke tests")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.runs = min(args.samples, 100_000), 2
    many_signal_seconds = 5 if args.quick else 100

    began = time.perf_counter()
    ts, value = sensor_series(args.samples)
    batches = batches_of(ts, value, args.batch)
    start = int(ts[0]) - int(ts[0]) % NS
    end = int(ts[-1]) - int(ts[-1]) % NS + NS  # whole seconds covering every sample
    root = Path(tempfile.mkdtemp(prefix="f5g-bench-store-", dir=args.dir))
    try:
        ours, ours_means = asyncio.run(
            bench_ours(root, batches, start, end, args.runs, args.threads)
        )
        ours["write_samples_per_s_1hz_10k_signals"] = asyncio.run(
            bench_ours_many_signals(root, many_signal_seconds, args.threads)
        )
        sqlite, sqlite_means = bench_sqlite(root, batches, start, end, args.runs)
        parquet, parquet_means = bench_parquet(root, batches, start, end, args.runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    agree = all(
        len(m) == len(ours_means) and np.allclose(m, ours_means, rtol=1e-9, atol=1e-9)
        for m in (sqlite_means, parquet_means)
    )
    backends = {"ours": ours, "sqlite": sqlite, "parquet": parquet}
    gs = goals(ours)
    ratios = {
        alt: {
            key: ours[key] / backends[alt][key]
            for key in ("write_samples_per_s", "query_ms", "bytes_per_sample")
        }
        for alt in ("sqlite", "parquet")
    }
    report = {
        "bench": "store",
        "config": {
            "samples": args.samples,
            "batch": args.batch,
            "rate_hz": RATE_HZ,
            "every_s": EVERY // NS,
            "buckets": ours["buckets"],
            "runs": args.runs,
            "quick": args.quick,
            "duckdb_threads": args.threads or os.cpu_count(),
            "cpus": os.cpu_count(),
        },
        "backends": backends,
        "goals": gs,
        "ratios_ours_over": ratios,
        "results_agree": bool(agree),
        "total_s": time.perf_counter() - began,
        "versions": {
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "sqlite": sqlite3.sqlite_version,
            "pyarrow": pa.__version__,
            "numpy": np.__version__,
        },
    }
    for line in table_lines(backends, gs):
        print(line, file=sys.stderr)
    print(
        f"ours: samples path {ours['query_ms_samples_path']:.1f} ms, "
        f"1 Hz x 10k signals {ours['write_samples_per_s_1hz_10k_signals'] / 1e6:.2f} Msamples/s; "
        f"results agree: {agree}; {report['total_s']:.0f} s",
        file=sys.stderr,
    )
    print(json.dumps(report, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
