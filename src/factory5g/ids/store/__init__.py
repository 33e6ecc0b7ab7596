"""Handle record storage: the :class:`HandleStore` protocol and its two implementations."""

from factory5g.ids.store.base import HandleStore, ImportProgress, NewRecord, StoredRecord
from factory5g.ids.store.embedded import EmbeddedHandleStore

__all__ = [
    "EmbeddedHandleStore",
    "HandleStore",
    "ImportProgress",
    "NewRecord",
    "PostgresHandleStore",
    "StoredRecord",
]


def __getattr__(name: str) -> object:
    # psycopg loads only for nodes that use PostgreSQL.
    if name == "PostgresHandleStore":
        from factory5g.ids.store.postgres import PostgresHandleStore

        return PostgresHandleStore
    raise AttributeError(name)
