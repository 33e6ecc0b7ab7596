"""Write batches to an EmbeddedStore until killed, printing ``ack <k>`` after each write returns.

Used by test_kill9.py, which sends SIGKILL mid-stream. Batch ``k`` is a pure function of ``k``
(:func:`batch_of`), so the test can tell a whole batch from a partial one.

    python kill9_writer.py DIRECTORY FIRST_K
"""

from __future__ import annotations

import asyncio
import sys
from typing import Final

import numpy as np

from factory5g.store import EmbeddedStore
from factory5g.stream import Batch

SIGNALS: Final = 4
PER_SIGNAL: Final = 1_000
SPACING_NS: Final = 10_000_000_000  # batch k covers [T0 + k*10 s, T0 + k*10 s + 1 s)
T0: Final = 1_700_000_000_000_000_000
# A small log threshold: checkpoints every few batches, so some kills land inside one.
CHECKPOINT_BYTES: Final = 256 * 1024


def batch_of(k: int) -> Batch:
    i = np.arange(SIGNALS * PER_SIGNAL)
    return Batch.of(
        i % SIGNALS,
        T0 + k * SPACING_NS + (i // SIGNALS) * 1_000_000,
        k + (i // SIGNALS) / PER_SIGNAL,
        0xC0,
    )


async def main(directory: str, first: int) -> None:
    async with EmbeddedStore.open(directory, checkpoint_threshold_bytes=CHECKPOINT_BYTES) as store:
        print("ready", flush=True)
        k = first
        while True:
            await store.write(batch_of(k))
            print(f"ack {k}", flush=True)
            k += 1


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
