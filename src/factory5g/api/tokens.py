"""API tokens with roles, stored hashed in ``<data dir>/auth.sqlite``.

A token looks like ``f5g_<id>_<secret>``: the 8-hex ``id`` names it (in lists, logs and
``token revoke``), the secret is 256 random bits. Only SHA-256 of the whole token is stored — a
fast hash is right for random secrets of this size (there is no password to brute-force), and
comparison is constant-time. The CLI and a running server share the file; revocation takes effect
on the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from factory5g.model.site import Role

__all__ = ["IssuedToken", "TokenError", "TokenInfo", "TokenStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL,
    last_used_at REAL
)
"""
_LAST_USED_RESOLUTION_S = 60.0  # do not write the database on every request


class TokenError(Exception):
    """A token operation that cannot be done (unknown token, ambiguous name...)."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: str
    name: str
    role: Role
    created_at: float
    revoked_at: float | None
    last_used_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    info: TokenInfo
    token: str  # shown once, never stored


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Create, list, revoke and verify tokens. Thread-safe; one SQLite connection per store."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute(_SCHEMA)
        except sqlite3.Error:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def create(self, role: Role, name: str | None = None) -> IssuedToken:
        tid = secrets.token_hex(4)
        token = f"f5g_{tid}_{secrets.token_urlsafe(32)}"
        now = time.time()
        name = name or f"{role.value}-{tid}"
        with self._lock:
            self._db.execute(
                "INSERT INTO tokens(id, name, role, hash, created_at) VALUES (?, ?, ?, ?, ?)",
                (tid, name, role.value, _hash(token), now),
            )
        return IssuedToken(TokenInfo(tid, name, role, now, None, None), token)

    def list(self, *, include_revoked: bool = False) -> list[TokenInfo]:
        sql = "SELECT id, name, role, created_at, revoked_at, last_used_at FROM tokens"
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created_at").fetchall()
        return [TokenInfo(r[0], r[1], Role(r[2]), r[3], r[4], r[5]) for r in rows]

    def revoke(self, ref: str) -> TokenInfo:
        """Revoke by id or by name (a name must be unique among active tokens)."""
        active = self.list()
        hits = [t for t in active if t.id == ref] or [t for t in active if t.name == ref]
        if not hits:
            raise TokenError(f"no active token with id or name {ref!r}")
        if len(hits) > 1:
            ids = ", ".join(t.id for t in hits)
            raise TokenError(f"{len(hits)} active tokens are named {ref!r} ({ids}); revoke by id")
        now = time.time()
        with self._lock:
            self._db.execute("UPDATE tokens SET revoked_at = ? WHERE id = ?", (now, hits[0].id))
        t = hits[0]
        return TokenInfo(t.id, t.name, t.role, t.created_at, now, t.last_used_at)

    def verify(self, token: str) -> TokenInfo | None:
        """The active token's info, or None for an unknown, malformed or revoked token."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "f5g" or len(parts[1]) != 8:
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT id, name, role, hash, created_at, revoked_at, last_used_at "
                "FROM tokens WHERE id = ?",
                (parts[1],),
            ).fetchone()
        if row is None or not hmac.compare_digest(row[3], _hash(token)) or row[5] is not None:
            return None
        now = time.time()
        if row[6] is None or now - row[6] > _LAST_USED_RESOLUTION_S:
            with self._lock:
                self._db.execute("UPDATE tokens SET last_used_at = ? WHERE id = ?", (now, row[0]))
        return TokenInfo(row[0], row[1], Role(row[2]), row[4], row[5], now)
