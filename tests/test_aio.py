"""cancel_and_wait: a task that lost its cancellation (Python 3.11's wait_for) still ends."""

from __future__ import annotations

import asyncio
import logging

import pytest

from factory5g.aio import cancel_and_wait


async def _loses_cancellations(n: int, ended: list[str]) -> None:
    """Goes on after its first ``n`` cancellations, as a poll loop does when a library's
    wait_for swallowed them."""
    lost = 0
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if lost == n:
                ended.append("cancelled")
                raise
            lost += 1


async def test_a_task_that_loses_cancellations_is_cancelled_until_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ended: list[str] = []
    stubborn = asyncio.create_task(_loses_cancellations(2, ended), name="stubborn-poller")
    plain = asyncio.create_task(asyncio.sleep(3600), name="plain")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="factory5g.aio"):
        await asyncio.wait_for(cancel_and_wait({stubborn, plain}, what="test adapter"), 10)
    assert stubborn.cancelled()
    assert plain.cancelled()
    assert ended == ["cancelled"]
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "test adapter: stubborn-poller ignored a cancellation; cancelling again",
        "test adapter: stubborn-poller ignored a cancellation; cancelling again",
    ]


async def test_done_and_failed_tasks_are_collected_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fail() -> None:
        raise RuntimeError("boom")

    failed = asyncio.create_task(fail())
    done = asyncio.create_task(asyncio.sleep(0))
    await asyncio.wait([failed, done])  # both ended before the stop
    with caplog.at_level(logging.WARNING, logger="factory5g.aio"):
        await cancel_and_wait([failed, done])
    assert isinstance(failed.exception(), RuntimeError)  # retrieved, not "never retrieved"
    assert caplog.records == []
