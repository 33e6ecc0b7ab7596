"""The control store's writer thread: order, group commit, durability, and at most once across
a kill -9 between the durable key and the device write."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from factory5g.apps.control import CommandState, ControlService, ControlStore
from factory5g.apps.control.commands import Command
from factory5g.connect.base import WriteResult, WriteValue
from factory5g.model import load_text
from factory5g.stream import MemoryBus, now_ns
from tests.apps.control import _crash_child as child

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
        futures = [store._insert(command(i), 1) for i in range(50)]  # not awaited
    assert all(f.done() and f.exception() is None for f in futures)
    with ControlStore(tmp_path / "control.sqlite") as again:
        assert again.head_seq == 50
        assert again.verify().ok


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
