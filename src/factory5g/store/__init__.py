"""Where Batches rest: the Store protocol, an in-memory store for tests and the embedded store.

``async with open_store(directory) as store:`` is the default on one machine.
"""

from pathlib import Path

from factory5g.store.base import (
    Agg,
    Store,
    StoreClosedError,
    StoreError,
    StoreQueryError,
    StoreStats,
)
from factory5g.store.embedded import EmbeddedStore
from factory5g.store.memory import MemoryStore

__all__ = [
    "Agg",
    "EmbeddedStore",
    "MemoryStore",
    "Store",
    "StoreClosedError",
    "StoreError",
    "StoreQueryError",
    "StoreStats",
    "open_store",
]


def open_store(directory: Path) -> EmbeddedStore:
    """The embedded store kept in ``directory``; enter it with ``async with``."""
    return EmbeddedStore.open(directory)
