"""asyncio helpers shared by the adapters and the apps."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, Final

__all__ = ["RECANCEL_S", "cancel_and_wait"]

log = logging.getLogger(__name__)

RECANCEL_S: Final = 0.5  # a task still running this long after its cancellation is cancelled again


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], *, what: str = "tasks") -> None:
    """Cancel ``tasks`` and return once every one of them has ended.

    A cancellation can be lost: Python 3.11's ``asyncio.wait_for`` swallows one that arrives as
    the future it waits for completes (CPython gh-86296, fixed in 3.12), and pymodbus and asyncua
    wait with it. A task that lost its cancellation goes on — a poll loop polls again — and a
    stop that only gathered it would wait forever (seen: ``factory5g up`` not stopping on
    SIGTERM once in a few dozen stops). A task still running RECANCEL_S after its cancellation is
    cancelled again, until it ends.
    """
    everyone = list(tasks)
    pending = {t for t in everyone if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_S)
        if pending:
            names = ", ".join(sorted(t.get_name() for t in pending))
            log.warning("%s: %s ignored a cancellation; cancelling again", what, names)
    await asyncio.gather(*everyone, return_exceptions=True)  # their exceptions, retrieved
