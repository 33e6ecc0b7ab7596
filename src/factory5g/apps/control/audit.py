"""The control store: commands (idempotency keys) and the audit log, one SQLite file.

``<data dir>/control.sqlite``, WAL with ``synchronous=FULL``: when :meth:`ControlStore.accept`
returns, the command and its idempotency key are on disk — before anything is sent to the
device. That is what makes execution at most once across restarts.

The audit log is append-only and tamper-evident: each entry carries the SHA-256 of the previous
entry's hash and its own canonical content (a hash chain), so changing, inserting or removing an
entry breaks every hash after it; :func:`verify` walks the chain. Triggers refuse UPDATE and
DELETE on the table; the chain catches whoever drops them. Removing the *newest* entries leaves
a valid shorter chain: keep the published head (``/api/v1/audit/head``) elsewhere to detect it.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from factory5g.apps.control.commands import Command, CommandState

__all__ = ["GENESIS", "AuditEntry", "ControlStore", "Verification", "verify"]

GENESIS: Final = "0" * 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    session TEXT NOT NULL,
    seq INTEGER NOT NULL,
    user TEXT NOT NULL,
    role TEXT NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    reason_code TEXT,
    reason TEXT,
    result TEXT,
    received_ns INTEGER NOT NULL,
    deadline_ns INTEGER NOT NULL,
    finished_ns INTEGER,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX IF NOT EXISTS commands_received ON commands (received_ns);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    user TEXT NOT NULL,
    role TEXT NOT NULL,
    session TEXT,
    command_seq INTEGER,
    command TEXT,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    latency_ms REAL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

_COMMAND_COLS: Final = [
    "id",
    "user_id",
    "idempotency_key",
    "fingerprint",
    "session",
    "seq",
    "user",
    "role",
    "target",
    "kind",
    "payload",
    "state",
    "reason_code",
    "reason",
    "result",
    "received_ns",
    "deadline_ns",
    "finished_ns",
]
_AUDIT_COLS: Final = [
    "seq",
    "ts",
    "user",
    "role",
    "session",
    "command_seq",
    "command",
    "target",
    "kind",
    "payload",
    "state",
    "reason",
    "latency_ms",
    "prev",
    "hash",
]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    ts: int
    user: str
    role: str
    session: str | None
    command_seq: int | None
    command: str | None
    target: str
    kind: str
    payload: str  # canonical JSON
    state: str
    reason: str | None
    latency_ms: float | None
    prev: str
    hash: str

    def content(self) -> list[Any]:
        return [
            self.seq,
            self.ts,
            self.user,
            self.role,
            self.session,
            self.command_seq,
            self.command,
            self.target,
            self.kind,
            self.payload,
            self.state,
            self.reason,
            self.latency_ms,
        ]

    def to_dict(self) -> dict[str, Any]:
        d = {c: getattr(self, c) for c in _AUDIT_COLS}
        d["payload"] = json.loads(self.payload)
        return d


def chain_hash(prev: str, content: list[Any]) -> str:
    body = json.dumps(content, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(f"{prev}\n{body}".encode()).hexdigest()


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False, default=str)


def _latency(ms: float | None) -> float | None:
    return None if ms is None or not math.isfinite(ms) else round(ms, 3)


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    entries: int
    head: str
    first_bad: int | None = None
    why: str | None = None


def verify(rows: Iterator[AuditEntry]) -> Verification:
    """Walk the chain: contiguous sequence numbers, each ``prev`` the hash before, each hash
    the hash of its content."""
    prev = GENESIS
    n = 0
    for e in rows:
        n += 1
        if e.seq != n:
            return Verification(False, n - 1, prev, e.seq, f"entry {n} is missing (found {e.seq})")
        if e.prev != prev:
            return Verification(False, n - 1, prev, e.seq, "does not link to the entry before")
        if chain_hash(prev, e.content()) != e.hash:
            return Verification(False, n - 1, prev, e.seq, "content does not match its hash")
        prev = e.hash
    return Verification(True, n, prev)


class ControlStore:
    """``with ControlStore(path) as store``: commands and audit, on the caller's thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self.head_seq = 0
        self.head = GENESIS
        self._pending = (0, GENESIS)  # the head a transaction in progress will leave

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        except BaseException:
            db.close()
            raise
        if row is not None:
            self.head_seq, self.head = int(row[0]), str(row[1])
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
            raise RuntimeError("the control store is not open")
        return self._db

    # -- writes -------------------------------------------------------------------------------

    def _append(self, cmd: Command, ts: int) -> None:
        """Append the audit entry of ``cmd`` in its current state (inside a transaction)."""
        seq = self.head_seq + 1
        entry = AuditEntry(
            seq,
            ts,
            cmd.user,
            cmd.role,
            cmd.session,
            cmd.seq,
            cmd.id,
            cmd.target,
            cmd.kind,
            _json(cmd.payload),
            cmd.state.value,
            cmd.reason,
            _latency(cmd.latency_ms),
            self.head,
            "",
        )
        digest = chain_hash(self.head, entry.content())
        self.db.execute(
            f"INSERT INTO audit ({', '.join(_AUDIT_COLS)}) VALUES ({', '.join('?' * 15)})",
            [*entry.content(), entry.prev, digest],
        )
        self._pending = (seq, digest)

    def _txn(self, *steps: tuple[str, list[Any]], audit: Command | None, ts: int) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, args in steps:
                db.execute(sql, args)
            if audit is not None:
                self._append(audit, ts)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        if audit is not None:
            self.head_seq, self.head = self._pending

    def _row(self, cmd: Command) -> list[Any]:
        return [
            cmd.id,
            cmd.user_id,
            cmd.idempotency_key,
            cmd.fingerprint,
            cmd.session,
            cmd.seq,
            cmd.user,
            cmd.role,
            cmd.target,
            cmd.kind,
            _json(cmd.payload),
            cmd.state.value,
            cmd.reason_code,
            cmd.reason,
            _json(cmd.result),
            cmd.received_ns,
            cmd.deadline_ns,
            cmd.finished_ns,
        ]

    def insert(self, cmd: Command, ts: int) -> None:
        """Store a new command (and its idempotency key) with its audit entry; durable on
        return. Raises sqlite3.IntegrityError if the key is already used."""
        self._txn(
            (
                f"INSERT INTO commands ({', '.join(_COMMAND_COLS)}) "
                f"VALUES ({', '.join('?' * len(_COMMAND_COLS))})",
                self._row(cmd),
            ),
            audit=cmd,
            ts=ts,
        )

    def finish(self, cmd: Command, ts: int) -> None:
        """Store the outcome of ``cmd`` with its audit entry."""
        self._txn(
            (
                "UPDATE commands SET state=?, reason_code=?, reason=?, result=?, finished_ns=? "
                "WHERE id=?",
                [
                    cmd.state.value,
                    cmd.reason_code,
                    cmd.reason,
                    _json(cmd.result),
                    cmd.finished_ns,
                    cmd.id,
                ],
            ),
            audit=cmd,
            ts=ts,
        )

    def audit_only(self, cmd: Command, ts: int) -> None:
        """An audit entry for something that is not a stored command (a refused key reuse)."""
        self._txn(audit=cmd, ts=ts)

    def recover(self, ts: int) -> list[Command]:
        """Commands a stop interrupted (accepted, never finished): failed, never re-executed."""
        rows = self.db.execute(
            f"SELECT {', '.join(_COMMAND_COLS)} FROM commands WHERE state IN (?, ?)",
            [CommandState.ACCEPTED.value, CommandState.EXECUTING.value],
        ).fetchall()
        out = []
        for row in rows:
            cmd = _command(row)
            cmd.state = CommandState.FAILED
            cmd.reason_code = "interrupted"
            cmd.reason = (
                "interrupted: the process stopped before the outcome was recorded; the write "
                "may or may not have reached the device, and is not executed again"
            )
            cmd.finished_ns = ts
            self.finish(cmd, ts)
            out.append(cmd)
        return out

    # -- reads --------------------------------------------------------------------------------

    def by_key(self, user_id: str, key: str) -> Command | None:
        row = self.db.execute(
            f"SELECT {', '.join(_COMMAND_COLS)} FROM commands "
            "WHERE user_id = ? AND idempotency_key = ?",
            [user_id, key],
        ).fetchone()
        return _command(row) if row else None

    def get(self, command_id: str) -> Command | None:
        row = self.db.execute(
            f"SELECT {', '.join(_COMMAND_COLS)} FROM commands WHERE id = ?", [command_id]
        ).fetchone()
        return _command(row) if row else None

    def commands(self, *, limit: int = 100, target: str | None = None) -> list[Command]:
        sql = f"SELECT {', '.join(_COMMAND_COLS)} FROM commands"
        args: list[Any] = []
        if target is not None:
            sql += " WHERE target = ?"
            args.append(target)
        sql += " ORDER BY received_ns DESC LIMIT ?"
        return [_command(r) for r in self.db.execute(sql, [*args, limit])]

    def audit(
        self,
        *,
        start: int | None = None,
        end: int | None = None,
        user: str | None = None,
        target: str | None = None,
        after_seq: int = 0,
        limit: int = 1000,
    ) -> list[AuditEntry]:
        where = ["seq > ?"]
        args: list[Any] = [after_seq]
        for cond, value in (("ts >= ?", start), ("ts < ?", end), ("user = ?", user)):
            if value is not None:
                where.append(cond)
                args.append(value)
        if target is not None:
            where.append("target = ?")
            args.append(target)
        sql = (
            f"SELECT {', '.join(_AUDIT_COLS)} FROM audit WHERE {' AND '.join(where)} "
            "ORDER BY seq LIMIT ?"
        )
        return [AuditEntry(*row) for row in self.db.execute(sql, [*args, limit])]

    def verify(self) -> Verification:
        rows = self.db.execute(f"SELECT {', '.join(_AUDIT_COLS)} FROM audit ORDER BY seq")
        return verify(AuditEntry(*row) for row in rows)


def _command(row: tuple[Any, ...]) -> Command:
    d = dict(zip(_COMMAND_COLS, row, strict=True))
    return Command(
        id=d["id"],
        session=d["session"],
        seq=d["seq"],
        user_id=d["user_id"],
        user=d["user"],
        role=d["role"],
        target=d["target"],
        kind=d["kind"],
        payload=json.loads(d["payload"]),
        idempotency_key=d["idempotency_key"],
        fingerprint=d["fingerprint"],
        received_ns=d["received_ns"],
        deadline_ns=d["deadline_ns"],
        state=CommandState(d["state"]),
        reason_code=d["reason_code"],
        reason=d["reason"],
        result=json.loads(d["result"]) if d["result"] is not None else None,
        finished_ns=d["finished_ns"],
    )
