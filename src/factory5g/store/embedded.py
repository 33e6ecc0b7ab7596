"""The embedded Store: one DuckDB file per site, plus a 1-second rollup for fast aggregates.

``<directory>/samples.duckdb`` holds two tables::

    samples(signal INTEGER, ts BIGINT, value DOUBLE, quality UTINYINT)      every sample as written
    rollup_1s(signal INTEGER, second BIGINT, n BIGINT, sum DOUBLE, min DOUBLE, max DOUBLE,
              last_ts BIGINT, last_value DOUBLE, all_good BOOLEAN)          partial aggregates

Each ``write`` inserts the batch and its per-(signal, second) partial aggregates (computed with
numpy over the samples that are not bad) in one transaction, so a batch is wholly present or
absent. Two batches may both hold samples of the same (signal, second): their partial rows are
merged at query time (sum of sums and of counts, min of mins, max of maxes, ``last`` by the
greatest ``(last_ts, rowid)``, AND of ``all_good``).

An aggregated query whose ``every``, ``start`` and ``end`` are whole seconds is answered from
``rollup_1s`` (about 100 times fewer rows than ``samples`` at 100 Hz); any other one from
``samples``. Both give the same rows (tests/store/test_embedded.py checks it on random data).
Measured by ``bench/store.py``.

Ordering of samples that share a timestamp (see :mod:`factory5g.store.memory`): write order,
which DuckDB keeps in ``rowid`` (row ids are renumbered when deleted rows are vacuumed, but their
order is kept; tests/store/test_embedded.py checks ties across a restart).

Threads: every DuckDB call runs in one dedicated worker thread (``f5g-store``), so the event loop
never blocks and writes are serialised in submission order. The latest sample per signal lives
in numpy arrays indexed by signal id, written by the worker after each commit and read by the
loop under a lock (a copy of a few entries).

Durability:

* ``write`` returns after ``COMMIT``, and DuckDB ``fdatasync``s its write-ahead log
  (``samples.duckdb.wal``) before COMMIT returns (checked with strace on DuckDB 2.0). A
  checkpoint moves the log into the main file (``fdatasync`` again) and deletes the log; the next
  commit creates a new one. DuckDB does not ``fsync`` the directory after creating it, so after
  each commit that finds a new log file this module ``fsync``s the directory, making the new
  directory entry durable too.
* ``kill -9`` (or any crash of the process): every acknowledged batch survives, a batch in flight
  is wholly present or absent, since recovery replays committed transactions only
  (tests/store/test_kill9.py kills a writer mid-stream, checkpoints included).
* Power loss: the same holds as long as the drive honours flush requests (no volatile write cache
  that lies about them); this is what ``fdatasync`` can promise, and it is not tested here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Final, Literal, Self, TypeVar

import duckdb
import numpy as np
from numpy.typing import NDArray

from factory5g.store.base import Agg, StoreClosedError, StoreError, StoreStats
from factory5g.store.memory import (
    NS_PER_S,
    bucket_origin,
    bucket_quality,
    check_query,
    check_signal_ids,
)
from factory5g.stream.batch import Batch, Event, Quality

__all__ = ["DB_FILE", "EmbeddedStore", "rollup_source"]

T = TypeVar("T")

DB_FILE: Final = "samples.duckdb"

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS samples(
        signal INTEGER, ts BIGINT, value DOUBLE, quality UTINYINT)""",
    """CREATE TABLE IF NOT EXISTS rollup_1s(
        signal INTEGER, second BIGINT, n BIGINT, sum DOUBLE, min DOUBLE, max DOUBLE,
        last_ts BIGINT, last_value DOUBLE, all_good BOOLEAN)""",
    # Non-numeric values (strings, Sparkplug DataSets and Templates) as JSON text.
    """CREATE TABLE IF NOT EXISTS events(signal INTEGER, ts BIGINT, data VARCHAR)""",
)


_INSERT_SAMPLES: Final = (
    "INSERT INTO samples SELECT signal, ts, coalesce(value, 'NaN'::DOUBLE), quality "
    "FROM samples_view"
)
_INSERT_ROLLUP: Final = (
    "INSERT INTO rollup_1s SELECT signal, second, n, coalesce(sum, 'NaN'::DOUBLE), "
    "coalesce(min, 'NaN'::DOUBLE), coalesce(max, 'NaN'::DOUBLE), last_ts, "
    "coalesce(last_value, 'NaN'::DOUBLE), all_good FROM rollup_view"
)
_COMMIT_BOTH: Final = f"BEGIN TRANSACTION; {_INSERT_SAMPLES}; {_INSERT_ROLLUP}; COMMIT"
_COMMIT_SAMPLES: Final = f"BEGIN TRANSACTION; {_INSERT_SAMPLES}; COMMIT"


def _limited(sql: str, params: list[int], limit: int | None) -> tuple[str, list[int]]:
    """``sql`` and its parameters, with ``LIMIT ?`` when a limit is given."""
    return (sql, params) if limit is None else (f"{sql} LIMIT ?", [*params, limit])


def _commit_batch(
    con: duckdb.DuckDBPyConnection,
    samples_view: dict[str, NDArray[Any]],
    rollup_view: dict[str, NDArray[Any]] | None,
    events: Sequence[tuple[int, int, str]] = (),
) -> None:
    """Insert a batch and its rollup rows in one transaction.

    DuckDB reads the numpy arrays of a dict in place when a FROM clause names a local variable of
    the calling frame (a "replacement scan"): measured faster than con.register (0.9 vs 1.4 ms
    per 10k rows), and it needs neither pandas nor pyarrow. Hence the parameter names, which are
    what the SQL reads. The numpy scan turns NaN into NULL (pandas' missing-value convention); a
    float64 array cannot hold NULL, so every NULL it yields was a NaN and coalesce() puts it
    back. One execute() for the whole transaction: DuckDB's cost per call (~0.2 ms) is as large
    as the rollup insert itself. Events (rare) take the slower path of one statement each.
    """
    if not events:
        con.execute(_COMMIT_SAMPLES if rollup_view is None else _COMMIT_BOTH)
        return
    con.execute("BEGIN TRANSACTION")
    con.execute(_INSERT_SAMPLES)
    if rollup_view is not None:
        con.execute(_INSERT_ROLLUP)
    con.executemany("INSERT INTO events VALUES (?, ?, ?)", list(events))
    con.execute("COMMIT")


_GOOD: Final = int(Quality.GOOD)
_USABLE: Final = int(Quality.UNCERTAIN)

# Aggregate expressions per source. Ties on the greatest timestamp go to the later write, which
# is the greater rowid (in rollup_1s too: partial rows are inserted in write order).
_ROLLUP_AGG: Final = {
    Agg.MEAN: "sum(sum) / sum(n)",
    Agg.MIN: "min(min)",
    Agg.MAX: "max(max)",
    Agg.LAST: "arg_max(last_value, (last_ts, rowid))",
    Agg.COUNT: "CAST(sum(n) AS DOUBLE)",
}
_SAMPLES_AGG: Final = {
    Agg.MEAN: "sum(value) / count(*)",
    Agg.MIN: "min(value)",
    Agg.MAX: "max(value)",
    Agg.LAST: "arg_max(value, (ts, rowid))",
    Agg.COUNT: "CAST(count(*) AS DOUBLE)",
}

Source = Literal["rollup_1s", "samples"]


def rollup_source(start: int, end: int, every: int) -> Source:
    """The table an aggregated query reads: rollup_1s when its buckets are whole seconds."""
    if every % NS_PER_S == 0 and start % NS_PER_S == 0 and end % NS_PER_S == 0:
        return "rollup_1s"
    return "samples"


def _rollup_1s(batch: Batch) -> dict[str, NDArray[Any]] | None:
    """Per-(signal, second) partial aggregates of the usable samples of ``batch`` (None if none).

    Rows are sorted by (signal, ts), stably, so the last row of a group is the one with the
    greatest ts, written last among equals.
    """
    usable = Quality.is_usable(batch.quality)
    b = batch if bool(usable.all()) else batch.take(usable)
    if len(b) == 0:
        return None
    sig, ts = b.signal, b.ts
    # Batches from decoders usually come sorted already; checking is O(n), sorting is not.
    in_order = (sig[1:] > sig[:-1]) | ((sig[1:] == sig[:-1]) & (ts[1:] >= ts[:-1]))
    if not bool(in_order.all()):
        b = b.take(np.lexsort((ts, sig)))  # lexsort is stable
        sig, ts = b.signal, b.ts
    second = ts // NS_PER_S  # numpy floors, also before 1970
    brk = np.flatnonzero((sig[1:] != sig[:-1]) | (second[1:] != second[:-1])) + 1
    first = np.concatenate(([0], brk))
    last = np.concatenate((brk, [len(b)])) - 1
    v = b.value
    # inf + -inf is NaN and a huge sum overflows to inf: these are the answers, as in SQL.
    with np.errstate(invalid="ignore", over="ignore"):
        total = np.add.reduceat(v, first)
    return {
        "signal": sig[first],
        "second": second[first],
        "n": (last - first + 1).astype(np.int64),
        "sum": total,
        "min": np.fmin.reduceat(v, first),  # as SQL min: NaN only when all are NaN
        "max": np.maximum.reduceat(v, first),  # as SQL max: NaN sorts above +inf
        "last_ts": ts[last],
        "last_value": v[last],
        "all_good": np.logical_and.reduceat(b.quality >= _GOOD, first),
    }


def _column(result: dict[str, Any], name: str, dtype: type[np.generic]) -> NDArray[Any]:
    """A fetched column as a plain array (fetchnumpy gives masked arrays when NULLs occur)."""
    col = result[name]
    if isinstance(col, np.ma.MaskedArray):
        raise StoreError(f"unexpected NULL in column {name!r}")
    return np.asarray(col, dtype=dtype)


class _LatestTable:
    """The latest sample per signal id, in arrays indexed by id.

    Written by the store worker after each commit, read by the event loop; the lock makes a
    reader see each update whole.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known = np.zeros(0, dtype=np.bool_)
        self._ts = np.zeros(0, dtype=np.int64)
        self._value = np.zeros(0, dtype=np.float64)
        self._quality = np.zeros(0, dtype=np.uint8)

    def _grow(self, size: int) -> None:
        old = len(self._known)
        if size <= old:
            return
        new = max(size, 2 * old, 64)
        for name in ("_known", "_ts", "_value", "_quality"):
            arr: NDArray[Any] = getattr(self, name)
            bigger = np.zeros(new, dtype=arr.dtype)
            bigger[:old] = arr
            setattr(self, name, bigger)

    def update(self, last: Batch) -> None:
        """Merge ``last`` (one sample per signal, as Batch.last_per_signal gives)."""
        if len(last) == 0:
            return
        sig = last.signal.astype(np.intp)
        with self._lock:
            self._grow(int(sig.max()) + 1)
            # >=: on equal timestamps the later write wins.
            newer = ~self._known[sig] | (last.ts >= self._ts[sig])
            s = sig[newer]
            self._ts[s] = last.ts[newer]
            self._value[s] = last.value[newer]
            self._quality[s] = last.quality[newer]
            self._known[s] = True

    def forget_before(self, before: int) -> None:
        """Forget signals whose latest sample is older than ``before``: retention removed them."""
        with self._lock:
            self._known &= self._ts >= before

    def get(self, signals: Sequence[int]) -> Batch:
        wanted = np.asarray(signals, dtype=np.int64).reshape(-1)
        with self._lock:
            inside = wanted[(wanted >= 0) & (wanted < len(self._known))]
            ids = inside[self._known[inside]]
            return Batch(ids.astype(np.int32), self._ts[ids], self._value[ids], self._quality[ids])


class EmbeddedStore:
    """The embedded Store. ``async with EmbeddedStore.open(directory) as store: ...``.

    ``threads`` caps DuckDB's own query threads (default: one per core);
    ``checkpoint_threshold_bytes`` is the write-ahead log size that triggers a checkpoint
    (DuckDB's default 16 MiB; smaller means faster recovery, more frequent checkpoints).
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        threads: int | None = None,
        checkpoint_threshold_bytes: int | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.path = self.directory / DB_FILE
        self._wal_path = self.directory / (DB_FILE + ".wal")
        self._threads = threads
        self._checkpoint_threshold = checkpoint_threshold_bytes
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        self._claimed: Path | None = None  # our entry in _open_directories while open
        self._latest = _LatestTable()
        # Touched only by the worker thread:
        self._con: duckdb.DuckDBPyConnection | None = None
        self._samples = 0
        self._wal_identity: tuple[int, int] | None = None
        self._wal_size = 0

    @classmethod
    def open(
        cls,
        directory: Path | str,
        *,
        threads: int | None = None,
        checkpoint_threshold_bytes: int | None = None,
    ) -> EmbeddedStore:
        """The store of ``directory``, to be entered with ``async with``."""
        return cls(
            directory, threads=threads, checkpoint_threshold_bytes=checkpoint_threshold_bytes
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._executor else "new"
        return f"EmbeddedStore({str(self.path)!r}, {state})"

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Open (or create) the database and rebuild the latest values; undone on failure."""
        if self._closed or self._executor is not None:
            raise StoreError(f"{self!r} cannot be started again")
        self._claim_directory()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="f5g-store")
        self._executor = executor
        try:
            await asyncio.wrap_future(executor.submit(self._open_sync))
        except BaseException as exc:
            # Queued behind the open (which may still run if we were cancelled): close what it
            # opened, then stop the worker.
            self._closed = True
            self._release_directory()
            undo = executor.submit(self._close_sync)
            try:
                await asyncio.wrap_future(undo)
            except StoreError as undo_exc:
                exc.add_note(f"closing after the failed start also failed: {undo_exc}")
            finally:
                # Once the undo ran the worker is idle and the join immediate; if we were
                # cancelled again meanwhile, do not block the loop: the worker exits by itself.
                executor.shutdown(wait=undo.done())
            raise

    async def close(self) -> None:
        """Finish queued calls, checkpoint, close the database and stop the worker thread."""
        executor = self._executor
        if self._closed or executor is None:
            self._closed = True
            return
        self._closed = True
        fut = executor.submit(self._close_sync)
        try:
            await asyncio.wrap_future(fut)
        finally:
            self._release_directory()
            # After a normal close the worker is idle and the join is immediate; if we were
            # cancelled, do not block the loop: the worker exits once the close has run.
            executor.shutdown(wait=fut.done())

    # DuckDB shares one database instance between connections to the same file in a process;
    # two stores on one directory would then share data but not their latest tables. Refuse.
    _open_directories: ClassVar[set[Path]] = set()
    _open_directories_lock: ClassVar[threading.Lock] = threading.Lock()

    def _claim_directory(self) -> None:
        key = self.directory.resolve()
        with self._open_directories_lock:
            if key in self._open_directories:
                raise StoreError(f"{self.directory} is already open in this process")
            self._open_directories.add(key)
        self._claimed = key

    def _release_directory(self) -> None:
        key, self._claimed = self._claimed, None
        if key is not None:
            with self._open_directories_lock:
                self._open_directories.discard(key)

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._closed or self._executor is None:
            raise StoreClosedError(f"{self!r} is not open")
        return await asyncio.wrap_future(self._executor.submit(fn))

    # -- Store --------------------------------------------------------------------------------

    async def write(self, batch: Batch) -> None:
        """Store ``batch``; returns once it is committed (see the module docstring)."""
        check_signal_ids(batch)
        if len(batch) == 0 and not batch.events:
            if self._closed or self._executor is None:
                raise StoreClosedError(f"{self!r} is not open")
            return
        await self._run(functools.partial(self._write_sync, batch))

    async def latest(self, signals: Sequence[int]) -> Batch:
        """Per asked signal (in the order asked), its sample with the greatest ts; signals
        without samples are left out. Answered from memory, without a database call."""
        if self._closed or self._executor is None:
            raise StoreClosedError(f"{self!r} is not open")
        return self._latest.get(signals)

    async def query(
        self,
        signal: int,
        start: int,
        end: int,
        every: int | None = None,
        agg: Agg = Agg.MEAN,
        limit: int | None = None,
    ) -> Batch:
        agg = check_query(start, end, every, agg, limit)
        if every is None:
            return await self._run(functools.partial(self._raw_sync, signal, start, end, limit))
        source = rollup_source(start, end, every)
        return await self._run(
            functools.partial(self._aggregate_sync, source, signal, start, end, every, agg, limit)
        )

    async def events(
        self, signal: int, start: int, end: int, limit: int | None = None
    ) -> list[Event]:
        """The events of ``signal`` with ``start <= ts < end``, in time (then write) order."""
        check_query(start, end, None, Agg.MEAN, limit)
        return await self._run(functools.partial(self._events_sync, signal, start, end, limit))

    def _events_sync(self, signal: int, start: int, end: int, limit: int | None) -> list[Event]:
        con = self._connection()
        sql = (
            "SELECT ts, data FROM events WHERE signal = ? AND ts >= ? AND ts < ? ORDER BY ts, rowid"
        )
        try:
            rows = con.execute(*_limited(sql, [signal, start, end], limit)).fetchall()
        except duckdb.Error as exc:
            raise StoreError(f"events query of signal {signal} failed: {exc}") from exc
        return [Event(signal, int(ts), json.loads(data)) for ts, data in rows]

    async def apply_retention(self, before: int) -> int:
        """Delete the samples with ``ts < before``; return how many.

        Rollup rows of whole seconds before ``before`` go with them. When ``before`` falls inside
        a second, that second keeps only part of its samples, so its rollup rows are recomputed
        from the samples left, in the same transaction: both query paths still agree.
        """
        return await self._run(functools.partial(self._retention_sync, before))

    async def stats(self) -> StoreStats:
        return await self._run(self._stats_sync)

    # -- worker thread ------------------------------------------------------------------------

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise StoreClosedError(f"{self!r} is not open")
        return self._con

    def _open_sync(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            config: dict[str, str | bool | int | float | list[str]] = {}
            if self._threads is not None:
                config["threads"] = self._threads
            con = duckdb.connect(str(self.path), config=config)
        except (OSError, duckdb.Error) as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        try:
            if self._checkpoint_threshold is not None:
                con.execute(f"SET checkpoint_threshold = '{int(self._checkpoint_threshold)}B'")
            for ddl in _SCHEMA:
                con.execute(ddl)
            row = con.execute("SELECT count(*) FROM samples").fetchone()
            self._samples = int(row[0]) if row else 0
            self._latest.update(self._latest_from_db(con))
            # Make the database file's directory entry durable (new file, or one a crashed
            # process created without this fsync).
            self._fsync_directory()
        except (OSError, duckdb.Error) as exc:
            con.close()
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        self._con = con
        self._note_wal()

    @staticmethod
    def _latest_from_db(con: duckdb.DuckDBPyConnection) -> Batch:
        """The latest sample per signal: the greatest ts, then the greatest rowid (later write).

        Two cheap passes (max ts per signal, then the rows at that ts) instead of one
        arg_max over (ts, rowid), which costs about 5 times more on a large table.
        """
        r = con.execute(
            "WITH m AS (SELECT signal, max(ts) AS ts FROM samples GROUP BY signal) "
            "SELECT s.signal, s.ts, arg_max(s.value, s.rowid) AS value, "
            "arg_max(s.quality, s.rowid) AS quality "
            "FROM samples s JOIN m ON s.signal = m.signal AND s.ts = m.ts "
            "GROUP BY s.signal, s.ts ORDER BY s.signal"
        ).fetchnumpy()
        return Batch(
            _column(r, "signal", np.int32),
            _column(r, "ts", np.int64),
            _column(r, "value", np.float64),
            _column(r, "quality", np.uint8),
        )

    def _close_sync(self) -> None:
        con, self._con = self._con, None
        if con is None:
            return
        try:
            con.close()  # checkpoints, so the next open need not replay the log
        except duckdb.Error as exc:
            raise StoreError(f"closing {self.path} failed: {exc}") from exc

    def _write_sync(self, batch: Batch) -> None:
        con = self._connection()
        columns: dict[str, NDArray[Any]] = {
            "signal": np.ascontiguousarray(batch.signal),
            "ts": np.ascontiguousarray(batch.ts),
            "value": np.ascontiguousarray(batch.value),
            "quality": np.ascontiguousarray(batch.quality),
        }
        partials = _rollup_1s(batch) if len(batch) else None
        last = None if batch.historical or not len(batch) else batch.last_per_signal()
        events = [(e.signal, e.ts, json.dumps(e.data)) for e in batch.events]
        try:
            _commit_batch(con, columns, partials, events)
        except duckdb.Error as exc:
            self._rollback(con, exc)
            raise StoreError(f"writing {len(batch)} samples failed: {exc}") from exc
        self._samples += len(batch)
        if last is not None:
            self._latest.update(last)
        self._sync_new_wal()

    @staticmethod
    def _rollback(con: duckdb.DuckDBPyConnection, exc: BaseException) -> None:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error as rb_exc:
            # Typically "no transaction is active": a failed COMMIT has already rolled back.
            exc.add_note(f"rollback: {rb_exc}")

    def _raw_sync(self, signal: int, start: int, end: int, limit: int | None) -> Batch:
        con = self._connection()
        sql = (
            "SELECT ts, value, quality FROM samples "
            "WHERE signal = ? AND ts >= ? AND ts < ? ORDER BY ts, rowid"
        )
        try:
            r = con.execute(*_limited(sql, [signal, start, end], limit)).fetchnumpy()
        except duckdb.Error as exc:
            raise StoreError(f"query of signal {signal} failed: {exc}") from exc
        ts = _column(r, "ts", np.int64)
        return Batch(
            np.full(len(ts), signal, dtype=np.int32),
            ts,
            _column(r, "value", np.float64),
            _column(r, "quality", np.uint8),
        )

    def _aggregate_sync(
        self,
        source: Source,
        signal: int,
        start: int,
        end: int,
        every: int,
        agg: Agg,
        limit: int | None,
    ) -> Batch:
        con = self._connection()
        origin = bucket_origin(start, end, every)
        if source == "rollup_1s":
            # All four are whole seconds here (rollup_source), so this is exact.
            sql = (
                f"SELECT (second - ?) // ? AS k, {_ROLLUP_AGG[agg]} AS value, "
                "bool_and(all_good) AS all_good FROM rollup_1s "
                "WHERE signal = ? AND second >= ? AND second < ? GROUP BY k ORDER BY k"
            )
            params = [
                origin // NS_PER_S,
                every // NS_PER_S,
                signal,
                start // NS_PER_S,
                end // NS_PER_S,
            ]
        else:
            sql = (
                f"SELECT (ts - ?) // ? AS k, {_SAMPLES_AGG[agg]} AS value, "
                f"bool_and(quality >= {_GOOD}) AS all_good FROM samples "
                f"WHERE signal = ? AND ts >= ? AND ts < ? AND quality >= {_USABLE} "
                "GROUP BY k ORDER BY k"
            )
            params = [origin, every, signal, start, end]
        try:
            r = con.execute(*_limited(sql, params, limit)).fetchnumpy()
        except duckdb.Error as exc:
            raise StoreError(f"{agg} query of signal {signal} failed: {exc}") from exc
        k = _column(r, "k", np.int64)
        ts = np.maximum(np.int64(origin) + k * np.int64(every), np.int64(start))
        return Batch(
            np.full(len(k), signal, dtype=np.int32),
            ts.astype(np.int64),
            _column(r, "value", np.float64),
            bucket_quality(_column(r, "all_good", np.bool_)),
        )

    def _retention_sync(self, before: int) -> int:
        con = self._connection()
        second, within = divmod(before, NS_PER_S)
        try:
            con.execute("BEGIN TRANSACTION")
            row = con.execute("DELETE FROM samples WHERE ts < ?", [before]).fetchone()
            deleted = int(row[0]) if row else 0
            con.execute("DELETE FROM events WHERE ts < ?", [before])
            if within == 0:
                con.execute("DELETE FROM rollup_1s WHERE second < ?", [second])
            else:
                con.execute("DELETE FROM rollup_1s WHERE second <= ?", [second])
                con.execute(
                    "INSERT INTO rollup_1s SELECT signal, ?, count(*), sum(value), min(value), "
                    "max(value), max(ts), arg_max(value, (ts, rowid)), "
                    f"bool_and(quality >= {_GOOD}) FROM samples "
                    f"WHERE ts >= ? AND ts < ? AND quality >= {_USABLE} GROUP BY signal",
                    [second, before, (second + 1) * NS_PER_S],
                )
            con.execute("COMMIT")
        except duckdb.Error as exc:
            self._rollback(con, exc)
            raise StoreError(f"retention before {before} failed: {exc}") from exc
        self._samples -= deleted
        self._latest.forget_before(before)
        self._sync_new_wal()
        return deleted

    def _stats_sync(self) -> StoreStats:
        self._connection()
        size = 0
        for p in (self.path, self._wal_path):
            with contextlib.suppress(FileNotFoundError):  # no log right after a checkpoint
                size += p.stat().st_size
        return StoreStats(
            backend="duckdb", samples=self._samples, bytes_on_disk=size, path=str(self.path)
        )

    # -- directory durability -----------------------------------------------------------------

    def _note_wal(self) -> bool:
        """Record the log file's identity; True if it is a file we have not seen before."""
        try:
            st = os.stat(self._wal_path)
        except FileNotFoundError:
            self._wal_identity, self._wal_size = None, 0
            return False
        identity = (st.st_dev, st.st_ino)
        # A log only grows while it lives; a different inode or a smaller size is a new file.
        new = identity != self._wal_identity or st.st_size < self._wal_size
        self._wal_identity, self._wal_size = identity, st.st_size
        return new

    def _sync_new_wal(self) -> None:
        if self._note_wal():
            self._fsync_directory()

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
