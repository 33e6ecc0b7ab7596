"""The latest value of every signal, in numpy arrays fed from the bus.

Interlocks are checked on live values at execution time (IEC 61784-3's "timeliness" applies
to the permissives too), so the control app keeps this table instead of asking the store per
command: one vectorised update per Batch, one array lookup per interlock. Read-back
confirmation waits on it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np

from factory5g.stream import Batch

__all__ = ["LatestValues"]


class LatestValues:
    """value / ts / quality / arrival time (ns) of every signal id; NaN and 0 until seen."""

    def __init__(self, n: int = 0) -> None:
        self.value = np.full(n, np.nan)
        self.ts = np.full(n, np.iinfo(np.int64).min, np.int64)
        self.quality = np.zeros(n, np.uint8)
        self.arrived = np.zeros(n, np.int64)
        self._changed = asyncio.Event()

    def _grow(self, n: int) -> None:
        old = self.value.shape[0]
        if n <= old:
            return
        n = max(n, 2 * old)
        self.value = np.concatenate((self.value, np.full(n - old, np.nan)))
        self.ts = np.concatenate((self.ts, np.full(n - old, np.iinfo(np.int64).min, np.int64)))
        self.quality = np.concatenate((self.quality, np.zeros(n - old, np.uint8)))
        self.arrived = np.concatenate((self.arrived, np.zeros(n - old, np.int64)))

    def update(self, batch: Batch, now_ns: int) -> None:
        """Take the newest sample of each signal of ``batch`` (historical batches are not live;
        a sample older than the one held is ignored)."""
        if batch.historical or len(batch) == 0:
            return
        last = batch.last_per_signal()
        sig = last.signal[last.signal >= 0]
        if sig.shape[0] != last.signal.shape[0]:
            last = last.take(last.signal >= 0)
        self._grow(int(sig.max()) + 1)
        newer = last.ts >= self.ts[sig]
        s = sig[newer]
        self.value[s] = last.value[newer]
        self.ts[s] = last.ts[newer]
        self.quality[s] = last.quality[newer]
        self.arrived[s] = now_ns
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def get(self, signal: int) -> tuple[float, int, int, int] | None:
        """(value, ts, quality, arrival) of ``signal``, or None if never seen."""
        if signal >= self.value.shape[0] or self.arrived[signal] == 0:
            return None
        return (
            float(self.value[signal]),
            int(self.ts[signal]),
            int(self.quality[signal]),
            int(self.arrived[signal]),
        )

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until ``predicate()`` holds after an update (or now); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return predicate()
        return True
