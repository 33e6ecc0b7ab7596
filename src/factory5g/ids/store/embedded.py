"""The embedded HandleStore: one SQLite file in WAL mode with ``synchronous=FULL``.

Why SQLite and not DuckDB (which the sample store uses): resolution is a point lookup by
primary key and registration a small transaction, the workload of a row store with a B-tree;
DuckDB is a column store built for scans, slower at both. SQLite in WAL mode lets many
readers — also in other processes, such as the second worker of ``factory5g ids serve
--workers 2`` — read while one writes, whereas a DuckDB file is locked by one process.

Schema::

    handles(handle TEXT PRIMARY KEY, record BLOB, plain INTEGER, version INTEGER) WITHOUT ROWID
    search(type TEXT, value TEXT, handle TEXT)           reverse lookup of selected types
    counters(scope TEXT PRIMARY KEY, next INTEGER)      identifier sequences (minting)
    progress(job TEXT PRIMARY KEY, offset, count, done) resumable imports

Threads: reads run on the caller's thread with a read-only connection per thread (a primary-key
lookup takes microseconds; handing it to a thread would cost more than it saves). Writes run
in one dedicated thread (``f5g-ids-store``) with one connection, so the event loop never waits
for an ``fsync``; across processes they are serialised by ``BEGIN IMMEDIATE``.

Change stamp: :meth:`EmbeddedHandleStore.change_stamp_sync` returns the first copy of the
WAL-index header (the first 48 bytes of the ``-shm`` file, read through a read-only ``mmap``;
https://www.sqlite.org/walformat.html §2.1). Every committed write transaction, in any process,
rewrites it before ``COMMIT`` returns (its change counter ``iChange``, last frame ``mxFrame`` and
checksum change; a checkpoint that restarts the WAL changes the salts), so "the stamp is what it
was" means "nothing was committed since" — the check behind the resolution answer cache of
:class:`factory5g.ids.api.HandleFastPath`, at 0.1 µs where ``PRAGMA data_version`` costs 3.5 µs,
as much as the lookup it would save. The file is mapped only once a reader connection of this
store holds it (SQLite never truncates or unlinks the ``-shm`` while a connection has it open),
and unmapped before the readers close; anything unexpected (no ``-shm``, another header
version) disables the stamp (None), never the store.

Durability: with ``synchronous=FULL`` a transaction is in the WAL and ``fsync``ed before
``COMMIT`` returns, so a kill -9 (or a power loss, if the drive honours flushes) keeps every
acknowledged write and no partial one (tests/ids/test_transfer.py kills an import mid-way).
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import sqlite3
import struct
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from factory5g.ids.store.base import ImportProgress, NewRecord, StoredRecord, key_range

__all__ = ["EmbeddedHandleStore"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS handles (
    handle TEXT PRIMARY KEY, record BLOB NOT NULL, plain INTEGER NOT NULL,
    version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS search (type TEXT NOT NULL, value TEXT NOT NULL, handle TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS search_value ON search (type, value);
CREATE INDEX IF NOT EXISTS search_handle ON search (handle);
CREATE TABLE IF NOT EXISTS counters (scope TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS progress (
    job TEXT PRIMARY KEY, offset INTEGER NOT NULL, count INTEGER NOT NULL, done INTEGER NOT NULL
);
"""


def _require_wal(conn: sqlite3.Connection, path: Path) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        raise RuntimeError(f"{path}: cannot use WAL journal mode (got {mode})")


# The WAL-index header (walformat.html §2.1): iVersion, padding, iChange, isInit, ... 48 bytes.
_WAL_INDEX_HEADER = 48
_WAL_INDEX_VERSION = 3007000


def _like(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


class EmbeddedHandleStore:
    """``async with EmbeddedHandleStore(path) as store``: the SQLite handle store."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._writer: sqlite3.Connection | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._shm: mmap.mmap | None = None
        self._shm_tried = False

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.open_sync()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close_sync()  # joins the writer thread: a commit in flight finishes first

    def open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="f5g-ids-store")
        try:
            self._writer = pool.submit(self._connect_writer).result()
        except BaseException:
            pool.shutdown(wait=True)
            raise
        self._pool = pool

    def _connect_writer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            _require_wal(conn, self.path)
            conn.execute("PRAGMA synchronous = FULL")
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    def close_sync(self) -> None:
        self._closed = True
        with self._readers_lock:
            if self._shm is not None:  # before the readers: they keep the -shm file alive
                self._shm.close()
                self._shm = None
        if self._pool is not None:
            if self._writer is not None:
                self._pool.submit(self._writer.close).result()
            self._pool.shutdown(wait=True)
            self._pool = None
            self._writer = None
        with self._readers_lock:
            for conn in self._readers:
                with contextlib.suppress(sqlite3.ProgrammingError):
                    conn.close()
            self._readers.clear()

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed or self._pool is None:
                raise RuntimeError("the handle store is closed")
            conn = sqlite3.connect(
                f"file:{self.path}?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA busy_timeout = 30000")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._pool is None or self._writer is None:
            raise RuntimeError("the handle store is closed")
        writer = self._writer
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, writer)

    # -- reads --------------------------------------------------------------------------------

    def get_sync(self, key: str) -> StoredRecord | None:
        row = (
            self._reader()
            .execute("SELECT record, plain, version FROM handles WHERE handle = ?", (key,))
            .fetchone()
        )
        if row is None:
            return None
        return StoredRecord(key, row[0], bool(row[1]), row[2])

    def get_blob_sync(self, key: str) -> tuple[bytes, int] | None:
        """(values, plain) without building objects: the resolution fast path."""
        row: tuple[bytes, int] | None = (
            self._reader()
            .execute("SELECT record, plain FROM handles WHERE handle = ?", (key,))
            .fetchone()
        )
        return row

    async def get(self, key: str) -> StoredRecord | None:
        return self.get_sync(key)

    def change_stamp_sync(self) -> bytes | None:
        """Bytes that differ after any write transaction committed to the file by any
        connection of any process (see the module docstring); None when unavailable."""
        shm = self._shm
        if shm is None:
            if self._shm_tried:
                return None
            shm = self._map_shm()
            if shm is None:
                return None
        return shm[:_WAL_INDEX_HEADER]

    def _map_shm(self) -> mmap.mmap | None:
        with self._readers_lock:
            if self._shm_tried or self._closed:
                return self._shm
            self._shm_tried = True
        # A read through a reader connection maps the -shm file for SQLite and keeps it open
        # (and un-truncated) for as long as that connection lives, which outlives our map.
        self._reader().execute("SELECT 1 FROM handles LIMIT 1").fetchall()
        try:
            with open(f"{self.path}-shm", "rb") as f:
                shm = mmap.mmap(f.fileno(), _WAL_INDEX_HEADER, prot=mmap.PROT_READ)
        except (OSError, ValueError):
            return None
        version, _, _, is_init = struct.unpack_from("=IIIB", shm)
        if version != _WAL_INDEX_VERSION or not is_init:
            shm.close()
            return None
        with self._readers_lock:
            if self._closed:
                shm.close()
                return None
            self._shm = shm
        return shm

    async def get_many(self, keys: Sequence[str]) -> dict[str, StoredRecord]:
        out: dict[str, StoredRecord] = {}
        conn = self._reader()
        for i in range(0, len(keys), 500):
            chunk = list(keys[i : i + 500])
            marks = ",".join("?" * len(chunk))
            for key, record, plain, version in conn.execute(
                f"SELECT handle, record, plain, version FROM handles WHERE handle IN ({marks})",
                chunk,
            ):
                out[key] = StoredRecord(key, record, bool(plain), version)
        return out

    async def progress(self, job: str) -> ImportProgress | None:
        row = (
            self._reader()
            .execute("SELECT offset, count, done FROM progress WHERE job = ?", (job,))
            .fetchone()
        )
        return None if row is None else ImportProgress(job, row[0], row[1], bool(row[2]))

    async def list_keys(self, prefix_key: str, offset: int, limit: int) -> tuple[int, list[str]]:
        lo, hi = key_range(prefix_key)
        conn = self._reader()
        total = conn.execute(
            "SELECT count(*) FROM handles WHERE handle >= ? AND handle < ?", (lo, hi)
        ).fetchone()[0]
        keys = [
            r[0]
            for r in conn.execute(
                "SELECT handle FROM handles WHERE handle >= ? AND handle < ? "
                "ORDER BY handle LIMIT ? OFFSET ?",
                (lo, hi, limit, offset),
            )
        ]
        return total, keys

    async def scan(
        self, prefix_key: str | None, after: str | None, limit: int
    ) -> list[StoredRecord]:
        lo, hi = key_range(prefix_key) if prefix_key is not None else ("", None)
        if after is not None and after >= lo:
            cond, args = "handle > ?", [after]
        else:
            cond, args = "handle >= ?", [lo]
        if hi is not None:
            cond += " AND handle < ?"
            args.append(hi)
        rows = self._reader().execute(
            f"SELECT handle, record, plain, version FROM handles WHERE {cond} "
            "ORDER BY handle LIMIT ?",
            [*args, limit],
        )
        return [StoredRecord(k, r, bool(p), v) for k, r, p, v in rows]

    async def search(self, type_: str, pattern: str, limit: int) -> list[str]:
        rows = self._reader().execute(
            "SELECT DISTINCT handle FROM search WHERE type = ? AND value LIKE ? ESCAPE '\\' "
            "ORDER BY handle LIMIT ?",
            (type_, _like(pattern), limit),
        )
        return [r[0] for r in rows]

    async def count(self) -> int:
        return int(self._reader().execute("SELECT count(*) FROM handles").fetchone()[0])

    # -- writes -------------------------------------------------------------------------------

    @staticmethod
    def _tx(conn: sqlite3.Connection, body: Callable[[], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    @staticmethod
    def _index(conn: sqlite3.Connection, key: str, record: NewRecord, fresh: bool) -> None:
        if not fresh:
            conn.execute("DELETE FROM search WHERE handle = ?", (key,))
        if record.search:
            conn.executemany(
                "INSERT INTO search (type, value, handle) VALUES (?, ?, ?)",
                [(t, v, key) for t, v in record.search],
            )

    async def put(self, key: str, record: NewRecord, *, expect: int | None) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            def body() -> bool:
                if expect is None:
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO handles (handle, record, plain, version) "
                        "VALUES (?, ?, ?, 1)",
                        (key, record.values, int(record.plain)),
                    )
                else:
                    cur = conn.execute(
                        "UPDATE handles SET record = ?, plain = ?, version = version + 1 "
                        "WHERE handle = ? AND version = ?",
                        (record.values, int(record.plain), key, expect),
                    )
                if cur.rowcount != 1:
                    return False
                self._index(conn, key, record, fresh=expect is None)
                return True

            return self._tx(conn, body)

        return await self._write(run)

    async def delete(self, key: str, *, expect: int) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            def body() -> bool:
                cur = conn.execute(
                    "DELETE FROM handles WHERE handle = ? AND version = ?", (key, expect)
                )
                if cur.rowcount != 1:
                    return False
                conn.execute("DELETE FROM search WHERE handle = ?", (key,))
                return True

            return self._tx(conn, body)

        return await self._write(run)

    async def put_many(
        self,
        rows: Sequence[tuple[str, NewRecord]],
        *,
        overwrite: bool = False,
        progress: ImportProgress | None = None,
    ) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            def body() -> list[str]:
                before = conn.total_changes
                if overwrite:
                    conn.executemany("DELETE FROM search WHERE handle = ?", [(k,) for k, _ in rows])
                    conn.executemany(
                        "INSERT INTO handles (handle, record, plain, version) VALUES (?,?,?,1) "
                        "ON CONFLICT (handle) DO UPDATE SET record = excluded.record, "
                        "plain = excluded.plain, version = version + 1",
                        [(k, r.values, int(r.plain)) for k, r in rows],
                    )
                    skipped: list[str] = []
                else:
                    conn.executemany(
                        "INSERT OR IGNORE INTO handles (handle, record, plain, version) "
                        "VALUES (?, ?, ?, 1)",
                        [(k, r.values, int(r.plain)) for k, r in rows],
                    )
                    skipped = []
                    if conn.total_changes - before != len(rows):
                        # Rare: some exist. Find which, row by row (the fast path above is
                        # one executemany; this one is only for the conflicting chunk).
                        conn.execute("ROLLBACK")
                        conn.execute("BEGIN IMMEDIATE")
                        for k, r in rows:
                            cur = conn.execute(
                                "INSERT OR IGNORE INTO handles (handle, record, plain, version) "
                                "VALUES (?, ?, ?, 1)",
                                (k, r.values, int(r.plain)),
                            )
                            if cur.rowcount != 1:
                                skipped.append(k)
                done = set(skipped)
                search = [(t, v, k) for k, r in rows if k not in done for t, v in r.search]
                if search:
                    conn.executemany(
                        "INSERT INTO search (type, value, handle) VALUES (?, ?, ?)", search
                    )
                if progress is not None:
                    conn.execute(
                        "INSERT INTO progress (job, offset, count, done) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (job) DO UPDATE SET offset = excluded.offset, "
                        "count = excluded.count, done = excluded.done",
                        (progress.job, progress.offset, progress.count, int(progress.done)),
                    )
                return skipped

            return self._tx(conn, body)

        return await self._write(run)

    async def reserve(self, scope: str, count: int) -> int:
        if count < 1:
            raise ValueError("reserve at least one number")

        def run(conn: sqlite3.Connection) -> int:
            def body() -> int:
                row = conn.execute(
                    "INSERT INTO counters (scope, next) VALUES (?, 1 + ?) "
                    "ON CONFLICT (scope) DO UPDATE SET next = next + ? RETURNING next",
                    (scope, count, count),
                ).fetchone()
                return int(row[0]) - count

            return self._tx(conn, body)

        return await self._write(run)

    def __repr__(self) -> str:
        return f"EmbeddedHandleStore({str(self.path)!r})"
