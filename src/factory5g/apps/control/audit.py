"""The control store: commands (idempotency keys) and the audit log, one SQLite file.

``<data dir>/control.sqlite`` in WAL mode. Every write is committed in the order it was
submitted, by one writer at a time (a lock), so that the hash chain is built in one place. Two
durabilities:

* **durable** (:meth:`ControlStore.ainsert`, a new command with its idempotency key): committed
  with ``synchronous=FULL`` — the WAL is fsynced before the call returns, i.e. before anything
  is sent to the device. That is what makes execution at most once across restarts, power loss
  included.
* **recorded** (:meth:`ControlStore.afinish`, an outcome; :meth:`ControlStore.aaudit_only`):
  committed with ``synchronous=NORMAL`` — in the OS page cache when the call returns, so it
  survives the process being killed, and on disk with the next durable commit or checkpoint
  (the WAL is appended in order, so that fsync covers it). A power loss or kernel crash before
  then loses it: the command is back to ``accepted``, which the next start marks
  ``failed(interrupted)`` (never re-executed), and the chain ends at the last entry that
  reached the disk — it stays valid (SQLite discards a torn WAL tail whole-transaction-wise).

Group commit on the event loop: the ``a…`` methods queue their write and the first of them
schedules one flush at the end of the loop's current round (``call_soon``), which commits every
write queued by then in one transaction (each in its own savepoint, so that one refused key does
not undo the others), with one fsync if any of them is durable. A burst of commands shares one
fsync; a lone command pays one commit and no thread hop. The flush runs on the loop's thread:
the loop waits for that fsync (about 0.15 ms here, the disk's flush), which is cheaper than
handing the write to a thread and back (two wake-ups, about 0.25 ms per write on this VM) and
bounded to one commit per loop round however many commands arrive. The blocking
:meth:`insert` / :meth:`finish` (start-up recovery, tools) commit on the caller's thread.
WAL checkpoints run on a thread of their own, never inside a command's commit.

The audit log is append-only and tamper-evident: each entry carries the SHA-256 of the previous
entry's hash and its own canonical content (a hash chain), so changing, inserting or removing an
entry breaks every hash after it; :func:`verify` walks the chain. Triggers refuse UPDATE and
DELETE on the table; the chain catches whoever drops them. Removing the *newest* entries leaves
a valid shorter chain: keep the published head (``/api/v1/audit/head``) elsewhere to detect it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from factory5g.apps.control.commands import Command, CommandState

__all__ = ["GENESIS", "AuditEntry", "ControlStore", "Verification", "verify"]

log = logging.getLogger(__name__)

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


def verify(rows: Iterator[AuditEntry], after: tuple[int, str] = (0, GENESIS)) -> Verification:
    """Walk the chain: contiguous sequence numbers, each ``prev`` the hash before, each hash
    the hash of its content. ``after`` is where the walk starts: (seq, hash) of an entry already
    verified — the genesis by default; ``rows`` are the entries after it."""
    n, prev = after
    walked = 0
    for e in rows:
        n += 1
        if e.seq != n:
            return Verification(False, walked, prev, e.seq, f"entry {n} is missing (found {e.seq})")
        if e.prev != prev:
            return Verification(False, walked, prev, e.seq, "does not link to the entry before")
        if chain_hash(prev, e.content()) != e.hash:
            return Verification(False, walked, prev, e.seq, "content does not match its hash")
        prev = e.hash
        walked += 1
    return Verification(True, walked, prev)


CHECKPOINT_EVERY: Final = 64  # commits between two WAL checkpoints (about 500 pages)
WAL_MAX_FRAMES: Final = 8192  # a WAL the checkpointer cannot catch up with: one inline


@dataclass(frozen=True, slots=True)
class _Write:
    """One write: a statement and/or an audit entry (its content without seq, prev and hash,
    which the commit fills in from the chain head)."""

    sql: str | None
    args: list[Any]
    audit: list[Any] | None
    durable: bool


class ControlStore:
    """``with ControlStore(path) as store``: commands and audit; see the module docstring.

    ``await store.ainsert(...)`` from the event loop (group commit), ``store.insert(...)``
    (blocking) from anywhere else. Reads (:meth:`by_key`, :meth:`audit`...) run on the
    caller's thread on a connection of their own, which sees committed writes only.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._read: sqlite3.Connection | None = None
        self._head: tuple[int, str] = (0, GENESIS)
        self._sync = ""
        self._lock = threading.Lock()  # one commit at a time: the chain head is its state
        self._queued: list[tuple[_Write, asyncio.Future[None]]] = []
        self._flush_at: asyncio.Handle | None = None
        self._checkpointer: threading.Thread | None = None
        self._checkpoint = threading.Event()
        self._closing = False
        self.checkpoints = 0  # WAL checkpoints run by the checkpointer thread
        self.inline_checkpoints = 0  # run by a commit: the checkpointer could not catch up
        self._wal_frames = 0  # in the WAL at the last checkpoint
        self.commits = 0  # transactions committed (a group commit counts once)
        self.durable_commits = 0

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            # Checkpoints off the commit path (CHECKPOINT_EVERY): see _checkpoints.
            db.execute("PRAGMA wal_autocheckpoint=0")
            db.executescript(_SCHEMA)
            row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            read = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except BaseException:
            db.close()
            raise
        if row is not None:
            self._head = (int(row[0]), str(row[1]))
        self._db, self._read, self._sync = db, read, "FULL"
        self._closing = False
        self._checkpointer = threading.Thread(
            target=self._checkpoints,
            args=(self._checkpoint,),
            name=f"f5g-control-checkpoint-{self.path.name}",
            daemon=True,
        )
        self._checkpointer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._flush_at is not None:
            self._flush_at.cancel()
        if self._db is not None:
            self._flush()  # every write already submitted
        if self._checkpointer is not None:
            self._closing = True
            self._checkpoint.set()
            self._checkpointer.join()
            self._checkpointer = None
        for conn in (self._read, self._db):
            if conn is not None:
                conn.close()
        self._db = self._read = None

    @property
    def db(self) -> sqlite3.Connection:
        """The writer's connection (for tools and tests; not while a commit runs)."""
        if self._db is None:
            raise RuntimeError("the control store is not open")
        return self._db

    @property
    def reader(self) -> sqlite3.Connection:
        if self._read is None:
            raise RuntimeError("the control store is not open")
        return self._read

    @property
    def head_seq(self) -> int:
        return self._head[0]

    @property
    def head(self) -> str:
        return self._head[1]

    @property
    def head_entry(self) -> tuple[int, str]:
        """(seq, hash) of the newest committed entry, read at once."""
        return self._head

    # -- commits ------------------------------------------------------------------------------

    def _write(
        self, sql: str | None, args: list[Any], cmd: Command | None, ts: int, *, durable: bool
    ) -> _Write:
        if self._db is None:
            raise RuntimeError("the control store is not open")
        # The content is taken now: the command may change after.
        audit = _audit_content(cmd, ts) if cmd is not None else None
        return _Write(sql, args, audit, durable)

    def _queue(self, w: _Write) -> asyncio.Future[None]:
        """Queue ``w`` for the flush at the end of this loop round (scheduled by the first)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queued.append((w, done))
        if self._flush_at is None:
            self._flush_at = loop.call_soon(self._flush)
        return done

    def _flush(self) -> None:
        self._flush_at = None
        queued, self._queued = self._queued, []
        if not queued:
            return
        outcome = self._commit([w for w, _ in queued])
        for (_, done), error in zip(queued, outcome, strict=True):
            if done.done():  # its caller was cancelled: the write is committed all the same
                continue
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

    def _commit_one(self, w: _Write) -> None:
        (error,) = self._commit([w])
        if error is not None:
            raise error

    def _commit(self, batch: list[_Write]) -> list[BaseException | None]:
        """Commit ``batch`` in one transaction; each write's error, or None."""
        with self._lock:
            return self._commit_locked(batch)

    def _commit_locked(self, batch: list[_Write]) -> list[BaseException | None]:
        db = self.db
        level = "FULL" if any(w.durable for w in batch) else "NORMAL"
        head = self._head
        outcome: list[BaseException | None] = []
        try:
            if level != self._sync:
                db.execute(f"PRAGMA synchronous={level}")
                self._sync = level
            # A savepoint per write when there are several: one refused key undoes only itself.
            alone = len(batch) == 1
            db.execute("BEGIN IMMEDIATE")
            try:
                for w in batch:
                    if not alone:
                        db.execute("SAVEPOINT w")
                    try:
                        if w.sql is not None:
                            db.execute(w.sql, w.args)
                        if w.audit is not None:
                            head = self._append(w.audit, head)
                    except Exception as exc:  # handed to this write's caller
                        if alone:
                            raise
                        db.execute("ROLLBACK TO w")
                        outcome.append(exc)
                    else:
                        outcome.append(None)
                    if not alone:
                        db.execute("RELEASE w")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except Exception as exc:  # the batch failed (disk full, I/O error; a lone write's key)
            return [exc] * len(batch)
        self._head = head
        self.commits += 1
        self.durable_commits += level == "FULL"
        if self.commits % CHECKPOINT_EVERY == 0:
            if self._wal_frames > WAL_MAX_FRAMES:
                # Commands never paused long enough for a passive checkpoint to reach the end
                # of the WAL, which the next commit would then restart: this commit checkpoints
                # with the write lock held, so that it does reach the end.
                self._wal_frames = 0
                self.inline_checkpoints += 1
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            else:
                self._checkpoint.set()
        return outcome

    def _checkpoints(self, wake: threading.Event) -> None:
        """The checkpointer thread: copies the WAL into the database every CHECKPOINT_EVERY
        commits, on a connection of its own, while commands go on committing (PASSIVE: it never
        waits for the writer, nor the writer for it). SQLite's automatic checkpoint would run
        inside the commit that crosses its threshold — one command in a hundred would wait for
        a thousand pages to be copied and two fsyncs: the p99."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            while True:
                wake.wait()
                wake.clear()
                if self._closing:
                    return
                try:
                    _busy, frames, _done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # retried at the next signal; the WAL just grows
                    log.warning("control store checkpoint failed: %s", exc)
                    continue
                self._wal_frames = int(frames)
                self.checkpoints += 1
        finally:
            conn.close()

    def _append(self, content: list[Any], head: tuple[int, str]) -> tuple[int, str]:
        """Append an audit entry after ``head`` (inside the writer's transaction)."""
        seq, prev = head[0] + 1, head[1]
        full = [seq, *content]
        digest = chain_hash(prev, full)
        self.db.execute(
            f"INSERT INTO audit ({', '.join(_AUDIT_COLS)}) VALUES ({', '.join('?' * 15)})",
            [*full, prev, digest],
        )
        return seq, digest

    # -- writes -------------------------------------------------------------------------------

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

    def _insert(self, cmd: Command, ts: int) -> _Write:
        sql = (
            f"INSERT INTO commands ({', '.join(_COMMAND_COLS)}) "
            f"VALUES ({', '.join('?' * len(_COMMAND_COLS))})"
        )
        return self._write(sql, self._row(cmd), cmd, ts, durable=True)

    def _finish(self, cmd: Command, ts: int) -> _Write:
        sql = (
            "UPDATE commands SET state=?, reason_code=?, reason=?, result=?, finished_ns=? "
            "WHERE id=?"
        )
        args = [
            cmd.state.value,
            cmd.reason_code,
            cmd.reason,
            _json(cmd.result),
            cmd.finished_ns,
            cmd.id,
        ]
        return self._write(sql, args, cmd, ts, durable=False)

    async def ainsert(self, cmd: Command, ts: int) -> None:
        """Store a new command (and its idempotency key) with its audit entry; on disk
        (fsync) on return. Raises sqlite3.IntegrityError if the key is already used."""
        await self._queue(self._insert(cmd, ts))

    async def afinish(self, cmd: Command, ts: int) -> None:
        """Store the outcome of ``cmd`` with its audit entry: committed on return, on disk with
        the next durable commit (see the module docstring for what a power loss loses)."""
        await self._queue(self._finish(cmd, ts))

    async def aaudit_only(self, cmd: Command, ts: int) -> None:
        """An audit entry for something that is not a stored command (a refused key reuse)."""
        await self._queue(self._write(None, [], cmd, ts, durable=False))

    def insert(self, cmd: Command, ts: int) -> None:
        """:meth:`ainsert`, committed on the calling thread (not for the event loop's)."""
        self._commit_one(self._insert(cmd, ts))

    def finish(self, cmd: Command, ts: int) -> None:
        """:meth:`afinish`, committed on the calling thread."""
        self._commit_one(self._finish(cmd, ts))

    def recover(self, ts: int) -> list[Command]:
        """Commands a stop interrupted (accepted, never finished): failed, never re-executed."""
        rows = self.reader.execute(
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
        # Recorded, not durable: lost to a power loss, they are marked again at the next start.
        return out

    # -- reads --------------------------------------------------------------------------------

    def by_key(self, user_id: str, key: str) -> Command | None:
        row = self.reader.execute(
            f"SELECT {', '.join(_COMMAND_COLS)} FROM commands "
            "WHERE user_id = ? AND idempotency_key = ?",
            [user_id, key],
        ).fetchone()
        return _command(row) if row else None

    def get(self, command_id: str) -> Command | None:
        row = self.reader.execute(
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
        return [_command(r) for r in self.reader.execute(sql, [*args, limit])]

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
        return [AuditEntry(*row) for row in self.reader.execute(sql, [*args, limit])]

    def verify(self, anchor: tuple[int, str] | None = None) -> Verification:
        """Walk the whole chain, or only what follows ``anchor``: the (seq, hash) of a head
        recorded elsewhere earlier (``/api/v1/audit/head``). That entry must still be there,
        with that hash and a content matching it; then the entries after it are walked — the
        cost of the check is what was added since, and a log cut below the anchor is caught."""
        cols = ", ".join(_AUDIT_COLS)
        if anchor is None:
            rows = self.reader.execute(f"SELECT {cols} FROM audit ORDER BY seq")
            return verify(AuditEntry(*row) for row in rows)
        seq, digest = anchor
        if seq > 0:
            row = self.reader.execute(f"SELECT {cols} FROM audit WHERE seq = ?", [seq]).fetchone()
            if row is None:
                return Verification(
                    False, 0, digest, seq, f"the anchor, entry {seq}, is gone: the log was cut"
                )
            e = AuditEntry(*row)
            if e.hash != digest:
                return Verification(
                    False, 0, digest, seq, f"entry {seq} no longer has the anchored hash"
                )
            if chain_hash(e.prev, e.content()) != e.hash:
                return Verification(False, 0, digest, seq, "content does not match its hash")
        elif digest != GENESIS:
            return Verification(False, 0, digest, 0, "the anchor of entry 0 is the genesis hash")
        rows = self.reader.execute(f"SELECT {cols} FROM audit WHERE seq > ? ORDER BY seq", [seq])
        return verify((AuditEntry(*row) for row in rows), (seq, digest))


def _audit_content(cmd: Command, ts: int) -> list[Any]:
    """The audit content of ``cmd`` in its current state, without its seq (the chain's)."""
    return [
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
    ]


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
