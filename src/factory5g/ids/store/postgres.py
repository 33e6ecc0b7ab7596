"""The PostgreSQL HandleStore (psycopg 3, asyncio), for nodes that share one database or
outgrow one machine.

Tables (created if missing, in the connection's ``search_path``)::

    ids_handles(handle TEXT COLLATE "C" PRIMARY KEY, record BYTEA, plain BOOLEAN, version BIGINT)
    ids_search(type TEXT, value TEXT, handle TEXT COLLATE "C")
    ids_counters(scope TEXT PRIMARY KEY, next BIGINT)
    ids_progress(job TEXT PRIMARY KEY, "offset" BIGINT, count BIGINT, done BOOLEAN)

``COLLATE "C"`` makes key order byte order, as in SQLite, so that a prefix is a key range.
Bulk creation goes through ``COPY`` into a temporary table and one ``INSERT ... SELECT ... ON
CONFLICT``. Compare-and-set writes are single statements guarded by ``version``. Connections:
a small pool of its own (``pool_size``), each used by one task at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Self

import psycopg

from factory5g.ids.store.base import ImportProgress, NewRecord, StoredRecord, key_range

__all__ = ["PostgresHandleStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ids_handles (
    handle TEXT COLLATE "C" PRIMARY KEY, record BYTEA NOT NULL, plain BOOLEAN NOT NULL,
    version BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS ids_search (
    type TEXT NOT NULL, value TEXT NOT NULL, handle TEXT COLLATE "C" NOT NULL
);
CREATE INDEX IF NOT EXISTS ids_search_value ON ids_search (type, lower(value));
CREATE INDEX IF NOT EXISTS ids_search_handle ON ids_search (handle);
CREATE TABLE IF NOT EXISTS ids_counters (scope TEXT PRIMARY KEY, next BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS ids_progress (
    job TEXT PRIMARY KEY, "offset" BIGINT NOT NULL, count BIGINT NOT NULL, done BOOLEAN NOT NULL
);
"""


def _like(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


class PostgresHandleStore:
    """``async with PostgresHandleStore(dsn) as store``."""

    def __init__(self, dsn: str, *, pool_size: int = 4, connect_timeout_s: float = 10.0) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self.connect_timeout_s = connect_timeout_s
        self._idle: asyncio.Queue[psycopg.AsyncConnection] = asyncio.Queue()
        self._all: list[psycopg.AsyncConnection] = []

    async def __aenter__(self) -> Self:
        try:
            for _ in range(self.pool_size):
                conn = await psycopg.AsyncConnection.connect(
                    self.dsn, autocommit=True, connect_timeout=int(self.connect_timeout_s)
                )
                self._all.append(conn)
                self._idle.put_nowait(conn)
            # Serialise schema creation between nodes starting at once.
            async with self._conn() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(2026050601)")
                await conn.execute(_SCHEMA)
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        for conn in self._all:
            with contextlib.suppress(psycopg.Error):
                await conn.close()
        self._all.clear()

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[psycopg.AsyncConnection]:
        if not self._all:
            raise RuntimeError("the handle store is closed")
        conn = await self._idle.get()
        try:
            yield conn
        finally:
            self._idle.put_nowait(conn)

    # -- reads --------------------------------------------------------------------------------

    async def get(self, key: str) -> StoredRecord | None:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT record, plain, version FROM ids_handles WHERE handle = %s", (key,)
            )
            row = await cur.fetchone()
        return None if row is None else StoredRecord(key, bytes(row[0]), row[1], row[2])

    async def get_many(self, keys: Sequence[str]) -> dict[str, StoredRecord]:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT handle, record, plain, version FROM ids_handles WHERE handle = ANY(%s)",
                (list(keys),),
            )
            rows = await cur.fetchall()
        return {k: StoredRecord(k, bytes(r), p, v) for k, r, p, v in rows}

    async def progress(self, job: str) -> ImportProgress | None:
        async with self._conn() as conn:
            cur = await conn.execute(
                'SELECT "offset", count, done FROM ids_progress WHERE job = %s', (job,)
            )
            row = await cur.fetchone()
        return None if row is None else ImportProgress(job, row[0], row[1], row[2])

    async def list_keys(self, prefix_key: str, offset: int, limit: int) -> tuple[int, list[str]]:
        lo, hi = key_range(prefix_key)
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM ids_handles WHERE handle >= %s AND handle < %s", (lo, hi)
            )
            row = await cur.fetchone()
            total = int(row[0]) if row else 0
            cur = await conn.execute(
                "SELECT handle FROM ids_handles WHERE handle >= %s AND handle < %s "
                "ORDER BY handle LIMIT %s OFFSET %s",
                (lo, hi, limit, offset),
            )
            keys = [r[0] for r in await cur.fetchall()]
        return total, keys

    async def scan(
        self, prefix_key: str | None, after: str | None, limit: int
    ) -> list[StoredRecord]:
        lo, hi = key_range(prefix_key) if prefix_key is not None else ("", None)
        if after is not None and after >= lo:
            cond, args = "handle > %s", [after]
        else:
            cond, args = "handle >= %s", [lo]
        if hi is not None:
            cond += " AND handle < %s"
            args.append(hi)
        async with self._conn() as conn:
            cur = await conn.execute(
                f"SELECT handle, record, plain, version FROM ids_handles WHERE {cond} "
                "ORDER BY handle LIMIT %s",
                [*args, limit],
            )
            rows = await cur.fetchall()
        return [StoredRecord(k, bytes(r), p, v) for k, r, p, v in rows]

    async def search(self, type_: str, pattern: str, limit: int) -> list[str]:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT handle FROM ids_search WHERE type = %s "
                "AND lower(value) LIKE lower(%s) ORDER BY handle LIMIT %s",
                (type_, _like(pattern), limit),
            )
            return [r[0] for r in await cur.fetchall()]

    async def count(self) -> int:
        async with self._conn() as conn:
            cur = await conn.execute("SELECT count(*) FROM ids_handles")
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # -- writes -------------------------------------------------------------------------------

    async def put(self, key: str, record: NewRecord, *, expect: int | None) -> bool:
        async with self._conn() as conn, conn.transaction():
            if expect is None:
                cur = await conn.execute(
                    "INSERT INTO ids_handles (handle, record, plain, version) "
                    "VALUES (%s, %s, %s, 1) ON CONFLICT (handle) DO NOTHING",
                    (key, record.values, record.plain),
                )
            else:
                cur = await conn.execute(
                    "UPDATE ids_handles SET record = %s, plain = %s, version = version + 1 "
                    "WHERE handle = %s AND version = %s",
                    (record.values, record.plain, key, expect),
                )
            if cur.rowcount != 1:
                return False
            if expect is not None:
                await conn.execute("DELETE FROM ids_search WHERE handle = %s", (key,))
            if record.search:
                async with conn.cursor() as c:
                    await c.executemany(
                        "INSERT INTO ids_search (type, value, handle) VALUES (%s, %s, %s)",
                        [(t, v, key) for t, v in record.search],
                    )
            return True

    async def delete(self, key: str, *, expect: int) -> bool:
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute(
                "DELETE FROM ids_handles WHERE handle = %s AND version = %s", (key, expect)
            )
            if cur.rowcount != 1:
                return False
            await conn.execute("DELETE FROM ids_search WHERE handle = %s", (key,))
            return True

    async def put_many(
        self,
        rows: Sequence[tuple[str, NewRecord]],
        *,
        overwrite: bool = False,
        progress: ImportProgress | None = None,
    ) -> list[str]:
        async with self._conn() as conn, conn.transaction():
            await conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS ids_load "
                '(handle TEXT COLLATE "C", record BYTEA, plain BOOLEAN) ON COMMIT DELETE ROWS'
            )
            async with conn.cursor() as cur:
                async with cur.copy("COPY ids_load (handle, record, plain) FROM STDIN") as copy:
                    for k, r in rows:
                        await copy.write_row((k, r.values, r.plain))
                if overwrite:
                    await cur.execute(
                        "DELETE FROM ids_search WHERE handle IN (SELECT handle FROM ids_load)"
                    )
                    await cur.execute(
                        "INSERT INTO ids_handles (handle, record, plain, version) "
                        "SELECT handle, record, plain, 1 FROM ids_load "
                        "ON CONFLICT (handle) DO UPDATE SET record = excluded.record, "
                        "plain = excluded.plain, version = ids_handles.version + 1 "
                        "RETURNING handle"
                    )
                else:
                    await cur.execute(
                        "INSERT INTO ids_handles (handle, record, plain, version) "
                        "SELECT handle, record, plain, 1 FROM ids_load "
                        "ON CONFLICT (handle) DO NOTHING RETURNING handle"
                    )
                written = {r[0] for r in await cur.fetchall()}
                skipped = [k for k, _ in rows if k not in written]
                search = [(t, v, k) for k, r in rows if k in written for t, v in r.search]
                if search:
                    async with cur.copy("COPY ids_search (type, value, handle) FROM STDIN") as cp:
                        for row in search:
                            await cp.write_row(row)
                if progress is not None:
                    await cur.execute(
                        'INSERT INTO ids_progress (job, "offset", count, done) '
                        "VALUES (%s, %s, %s, %s) ON CONFLICT (job) DO UPDATE SET "
                        '"offset" = excluded."offset", count = excluded.count, '
                        "done = excluded.done",
                        (progress.job, progress.offset, progress.count, progress.done),
                    )
        return skipped

    async def reserve(self, scope: str, count: int) -> int:
        if count < 1:
            raise ValueError("reserve at least one number")
        async with self._conn() as conn:
            cur = await conn.execute(
                "INSERT INTO ids_counters (scope, next) VALUES (%s, 1 + %s) "
                "ON CONFLICT (scope) DO UPDATE SET next = ids_counters.next + %s RETURNING next",
                (scope, count, count),
            )
            row = await cur.fetchone()
        assert row is not None
        return int(row[0]) - count

    def __repr__(self) -> str:
        return "PostgresHandleStore(...)"
