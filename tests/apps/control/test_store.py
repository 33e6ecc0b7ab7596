"""The control store's writer thread: order, group commit, durability, and at most once across
a kill -9 between the durable key and the device write."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from factory5g.apps.control import CommandState, ControlService, ControlStore
from factory5g.apps.control.commands import Command
from factory5g.connect.base import WriteResult, WriteValue
from factory5g.model import load_text
from factory5g.stream import MemoryBus, now_ns
from tests.apps.control import _crash_child as child
from tests.helpers import wait_until

REPO = Path(__file__).resolve().parents[3]


def command(i: int, key: str | None = None) -> Command:
    t = now_ns()
    return Command(
        id=f"c{i:04d}",
        session="s",
        seq=i,
        user_id="tok-op",
        user="olga",
        role="operator",
        target="table.speed_setpoint",
        kind="write",
        payload=float(i),
        idempotency_key=key or f"k{i}",
        fingerprint="f",
        received_ns=t,
        deadline_ns=t + 10**9,
    )


async def test_writes_commit_in_submission_order_and_group(tmp_path: Path) -> None:
    with ControlStore(tmp_path / "control.sqlite") as store:
        cmds = [command(i) for i in range(200)]
        # all submitted before the writer can take them one by one: they group
        await asyncio.gather(*(store.ainsert(c, c.received_ns) for c in cmds))
        for c in cmds:
            c.state, c.finished_ns = CommandState.CONFIRMED, now_ns()
        await asyncio.gather(*(store.afinish(c, c.finished_ns or 0) for c in cmds))
        assert store.commits < 400  # group commit: fewer transactions than writes
        entries = store.audit(limit=1000)
        assert [(e.command, e.state) for e in entries] == [(c.id, "accepted") for c in cmds] + [
            (c.id, "confirmed") for c in cmds
        ]
        v = store.verify()
        assert (v.ok, v.entries, v.head) == (True, 400, store.head)
        assert store.head_entry == (400, v.head)


async def test_a_refused_key_in_a_group_undoes_only_itself(tmp_path: Path) -> None:
    with ControlStore(tmp_path / "control.sqlite") as store:
        await store.ainsert(command(0, "dup"), 1)
        results = await asyncio.gather(
            *(store.ainsert(command(i, "dup" if i == 5 else None), 2) for i in range(1, 10)),
            return_exceptions=True,
        )
        assert [isinstance(r, sqlite3.IntegrityError) for r in results] == [
            i == 5 for i in range(1, 10)
        ]
        assert store.get("c0005") is None
        assert store.get("c0006") is not None
        v = store.verify()
        assert (v.ok, v.entries) == (True, 9)


async def test_the_key_is_committed_durably_and_the_outcome_is_not(tmp_path: Path) -> None:
    with ControlStore(tmp_path / "control.sqlite") as store:
        c = command(1)
        await store.ainsert(c, 1)
        assert (store.commits, store.durable_commits) == (1, 1)
        c.state, c.finished_ns = CommandState.CONFIRMED, now_ns()
        await store.afinish(c, 2)
        assert (store.commits, store.durable_commits) == (2, 1)
        # committed: a reader (another connection) sees it on return
        got = store.get(c.id)
        assert got is not None
        assert got.state is CommandState.CONFIRMED


async def test_writes_submitted_before_close_are_committed(tmp_path: Path) -> None:
    store = ControlStore(tmp_path / "control.sqlite")
    with store:
        # queued for the flush at the end of this loop round, which has not come yet
        futures = [store._queue(store._insert(command(i), 1)) for i in range(50)]
        assert not any(f.done() for f in futures)
    assert all(f.done() and f.exception() is None for f in futures)
    with ControlStore(tmp_path / "control.sqlite") as again:
        assert again.head_seq == 50
        assert again.verify().ok


async def test_a_lone_write_is_one_commit_and_a_burst_shares_one_fsync(tmp_path: Path) -> None:
    with ControlStore(tmp_path / "control.sqlite") as store:
        await store.ainsert(command(0), 1)
        assert (store.commits, store.durable_commits) == (1, 1)
        # ten commands arriving in one loop round: one transaction, one fsync
        await asyncio.gather(*(store.ainsert(command(i), 2) for i in range(1, 11)))
        assert (store.commits, store.durable_commits) == (2, 2)
        assert store.verify().entries == 11


async def test_a_cancelled_caller_does_not_undo_its_queued_write(tmp_path: Path) -> None:
    with ControlStore(tmp_path / "control.sqlite") as store:
        task = asyncio.create_task(store.ainsert(command(1), 1))
        await asyncio.sleep(0)  # queued
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.ainsert(command(2), 2)
        assert store.get("c0001") is not None  # committed all the same: the key is used
        assert store.verify().entries == 2


def test_a_blocking_insert_commits_on_the_calling_thread(tmp_path: Path) -> None:
    with ControlStore(tmp_path / "control.sqlite") as store:
        store.insert(command(1), 1)
        with pytest.raises(sqlite3.IntegrityError):
            store.insert(command(2, "k1"), 2)  # the same key
        assert (store.commits, store.head_seq) == (1, 1)


class CountingAdapter:
    name = "modbus"

    def __init__(self) -> None:
        self.writes = 0

    async def write(self, signal: int, value: WriteValue) -> WriteResult:
        self.writes += 1
        return WriteResult(signal, True, "ok")

    def stats(self) -> dict[str, Any]:
        return {}


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
async def test_kill_9_after_the_durable_key_never_executes_the_command_again(
    tmp_path: Path,
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.apps.control._crash_child",
        str(tmp_path),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line == b"writing\n"
    finally:
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
    site = load_text(child.SITE)
    adapter = CountingAdapter()
    async with (
        MemoryBus() as bus,
        ControlService(site, bus, {"modbus": adapter}, data_dir=tmp_path) as c,
    ):
        again = await c.submit(child.REQUEST, child.WHO)  # the client retries the same key
        assert again.replayed
        assert (again.state, again.reason_code) == (CommandState.FAILED, "interrupted")
        assert adapter.writes == 0  # never executed again
        v = c.store.verify()
        assert v.ok
        assert [e.state for e in c.store.audit()] == ["accepted", "failed"]


async def test_checkpoints_run_off_the_commit_path_and_keep_the_wal_bounded(
    tmp_path: Path,
) -> None:
    from factory5g.apps.control.audit import CHECKPOINT_EVERY

    with ControlStore(tmp_path / "control.sqlite") as store:
        auto = store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert auto == 0  # no checkpoint inside a commit
        for n in range(1, 7):  # commands with pauses: the checkpointer catches up
            for i in range(CHECKPOINT_EVERY):
                await store.ainsert(command(n * 1000 + i), 1)
            await wait_until(lambda n=n: store.checkpoints >= n, 10, "a checkpoint")
        # the WAL restarts after each checkpoint: it does not grow with the log
        wal = (tmp_path / "control.sqlite-wal").stat().st_size
        assert wal < 2 * CHECKPOINT_EVERY * 8 * 4096, wal
        assert store.inline_checkpoints == 0
    with ControlStore(tmp_path / "control.sqlite") as again:
        assert again.verify().entries == CHECKPOINT_EVERY * 6


async def test_a_wal_the_checkpointer_cannot_catch_up_with_is_checkpointed_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from factory5g.apps.control import audit

    monkeypatch.setattr(audit, "WAL_MAX_FRAMES", 100)
    with ControlStore(tmp_path / "control.sqlite") as store:
        # the checkpointer is held up (a long reader, say): commits must bound the WAL
        woken = store._checkpoint
        store._checkpoint = _Never()
        store._wal_frames = 101
        try:
            for i in range(audit.CHECKPOINT_EVERY):
                await store.ainsert(command(i), 1)
        finally:
            store._checkpoint = woken  # the one the thread waits on, set to stop it
        assert (store.inline_checkpoints, store.checkpoints) == (1, 0)
        assert store._wal_frames == 0


class _Never(threading.Event):
    def set(self) -> None:  # the checkpointer is never woken
        pass
