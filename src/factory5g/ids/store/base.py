"""The ``HandleStore`` protocol: where handle records live, behind a small interface.

Records are stored as their JSON value array (:func:`factory5g.ids.records.encode_values`) under
the handle's canonical key (:meth:`factory5g.ids.syntax.Handle.key`), with a ``version`` that
every write increments. Writes are *compare-and-set*: a writer reads a record (and its version),
decides — authorisation included, which may need other records — and writes only if the version
is still the one it read; otherwise it reads again and retries. That is how concurrent writers of
one handle lose no value, whatever the backend and however many processes share it.

Keys of one prefix are exactly the keys in ``[P/, P0)`` (``/`` is 0x2F, ``0`` is 0x30), so a
prefix listing is a range scan of the primary key in byte order; no extra index is needed.

Implementations: :class:`~factory5g.ids.store.embedded.EmbeddedHandleStore` (SQLite, the default)
and :class:`~factory5g.ids.store.postgres.PostgresHandleStore`; the same contract tests run
against both (tests/ids/store/test_contract.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

__all__ = ["HandleStore", "ImportProgress", "NewRecord", "StoredRecord", "key_range"]


@dataclass(frozen=True, slots=True)
class StoredRecord:
    key: str
    values: bytes  # JSON array of the values, ordered by index
    plain: bool  # every value is publicly readable: ``values`` can be served as is
    version: int


@dataclass(frozen=True, slots=True)
class NewRecord:
    values: bytes
    plain: bool
    search: tuple[tuple[str, str], ...] = ()  # (TYPE, value) pairs for reverse lookup


@dataclass(frozen=True, slots=True)
class ImportProgress:
    """Where a resumable import stands: ``offset`` bytes of the file consumed and committed,
    ``count`` handles written so far, ``done`` once the file was consumed to its end."""

    job: str
    offset: int
    count: int
    done: bool


def key_range(prefix_key: str) -> tuple[str, str]:
    """Keys of handles under a prefix (canonical form) lie in ``[P/, P0)``."""
    return f"{prefix_key}/", f"{prefix_key}0"


@runtime_checkable
class HandleStore(Protocol):
    """Durable storage of handle records. Every method is safe to call concurrently."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def get(self, key: str) -> StoredRecord | None:
        """The record of ``key``, or None."""
        ...

    async def get_many(self, keys: Sequence[str]) -> dict[str, StoredRecord]:
        """The records of those ``keys`` that exist."""
        ...

    async def put(self, key: str, record: NewRecord, *, expect: int | None) -> bool:
        """Write ``record`` if the stored version is ``expect`` (None: if there is no record).
        True if written, False if someone else wrote first."""
        ...

    async def delete(self, key: str, *, expect: int) -> bool:
        """Delete the record if its version is ``expect``; False if it changed (or is gone)."""
        ...

    async def put_many(
        self,
        rows: Sequence[tuple[str, NewRecord]],
        *,
        overwrite: bool = False,
        progress: ImportProgress | None = None,
    ) -> list[str]:
        """Create many records in one transaction; return the keys *not* written because they
        exist (none when ``overwrite``). ``progress`` is saved in the same transaction, so that
        an import killed at any moment resumes exactly after its last committed chunk."""
        ...

    async def progress(self, job: str) -> ImportProgress | None: ...

    async def reserve(self, scope: str, count: int) -> int:
        """Reserve ``count`` consecutive sequence numbers of ``scope`` (durably); return the
        first. The first number of a new scope is 1."""
        ...

    async def list_keys(self, prefix_key: str, offset: int, limit: int) -> tuple[int, list[str]]:
        """(total, keys[offset:offset + limit]) of the handles under a prefix, in key order."""
        ...

    async def scan(
        self, prefix_key: str | None, after: str | None, limit: int
    ) -> list[StoredRecord]:
        """Up to ``limit`` records after key ``after`` (exclusive), in key order."""
        ...

    async def search(self, type_: str, pattern: str, limit: int) -> list[str]:
        """Keys having a searchable value of ``type_`` (upper case) matching ``pattern``
        (``*`` is a wildcard; case-insensitive), in key order."""
        ...

    async def count(self) -> int: ...
