"""Alarm history and current states in SQLite (``<data dir>/alarms.sqlite``).

WAL with ``synchronous=FULL``: a change is on disk when :meth:`AlarmHistory.record` returns, so
an unacknowledged alarm survives a crash and the restart shows it again (ISA-18.2 requires an
alarm to stay unacknowledged until someone acknowledges it). One transaction per batch of
changes.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from factory5g.apps.alarms.lifecycle import AlarmChange, AlarmState

__all__ = ["AlarmHistory", "StoredState"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alarm_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    alarm TEXT NOT NULL,
    action TEXT NOT NULL,
    before TEXT NOT NULL,
    after TEXT NOT NULL,
    active INTEGER NOT NULL,
    value REAL,
    priority TEXT NOT NULL,
    user TEXT,
    comment TEXT,
    shelved_until INTEGER
);
CREATE INDEX IF NOT EXISTS alarm_events_alarm_ts ON alarm_events (alarm, ts);
CREATE INDEX IF NOT EXISTS alarm_events_ts ON alarm_events (ts);
CREATE TABLE IF NOT EXISTS alarm_state (
    alarm TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    active INTEGER NOT NULL,
    since INTEGER NOT NULL,
    value REAL,
    shelved_until INTEGER,
    acked_by TEXT,
    ack_comment TEXT,
    raised_at INTEGER
);
"""

StoredState = tuple[
    AlarmState, bool, int, float | None, int | None, str | None, str | None, int | None
]


class AlarmHistory:
    """``with AlarmHistory(path) as h``: record changes, read states and events back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(alarm_state)")}
            if "raised_at" not in columns:  # a file of a version before raised_at
                db.execute("ALTER TABLE alarm_state ADD COLUMN raised_at INTEGER")
        except BaseException:
            db.close()
            raise
        self._db = db
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the alarm history is not open")
        return self._db

    def record(self, changes: Sequence[AlarmChange], states: Sequence[StoredRow]) -> None:
        """Append ``changes`` and upsert the alarms' ``states``, in one transaction."""
        if not changes and not states:
            return
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO alarm_events (ts, alarm, action, before, after, active, value, "
                "priority, user, comment, shelved_until) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        c.ts,
                        c.alarm,
                        c.action.value,
                        c.before.value,
                        c.after.value,
                        int(c.active),
                        _real(c.value),
                        c.priority,
                        c.user,
                        c.comment,
                        c.shelved_until,
                    )
                    for c in changes
                ],
            )
            db.executemany(
                "INSERT INTO alarm_state (alarm, state, active, since, value, shelved_until, "
                "acked_by, ack_comment, raised_at) VALUES (?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (alarm) DO UPDATE "
                "SET state=excluded.state, active=excluded.active, since=excluded.since, "
                "value=excluded.value, shelved_until=excluded.shelved_until, "
                "acked_by=excluded.acked_by, ack_comment=excluded.ack_comment, "
                "raised_at=excluded.raised_at",
                states,
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def states(self) -> dict[str, StoredState]:
        rows = self.db.execute(
            "SELECT alarm, state, active, since, value, shelved_until, acked_by, ack_comment, "
            "raised_at FROM alarm_state"
        ).fetchall()
        out: dict[str, StoredState] = {}
        for alarm, state, active, since, value, until, by, comment, raised in rows:
            try:
                st = AlarmState(state)
            except ValueError:
                continue  # written by a newer version: start that alarm afresh
            out[alarm] = (st, bool(active), since, value, until, by, comment, raised)
        return out

    def events(
        self,
        *,
        alarm: str | None = None,
        start: int | None = None,
        end: int | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Changes, newest first."""
        where: list[str] = []
        args: list[Any] = []
        if alarm is not None:
            where.append("alarm = ?")
            args.append(alarm)
        if start is not None:
            where.append("ts >= ?")
            args.append(start)
        if end is not None:
            where.append("ts < ?")
            args.append(end)
        sql = (
            "SELECT seq, ts, alarm, action, before, after, active, value, priority, user, "
            "comment, shelved_until FROM alarm_events"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY ts DESC, seq DESC LIMIT ?"
        )
        cols = [
            "seq",
            "ts",
            "alarm",
            "action",
            "before",
            "after",
            "active",
            "value",
            "priority",
            "user",
            "comment",
            "shelved_until",
        ]
        out = []
        for row in self.db.execute(sql, [*args, limit]):
            d = dict(zip(cols, row, strict=True))
            d["active"] = bool(d["active"])
            out.append(d)
        return out


StoredRow = tuple[str, str, int, int, float | None, int | None, str | None, str | None, int | None]


def _real(v: float | None) -> float | None:
    return None if v is None or math.isnan(v) or math.isinf(v) else v
