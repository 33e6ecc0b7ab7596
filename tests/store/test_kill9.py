"""Durability: a writer killed by SIGKILL loses no acknowledged batch and leaves no partial one."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import numpy as np

from factory5g.store import EmbeddedStore
from tests.store.kill9_writer import PER_SIGNAL, SIGNALS, SPACING_NS, T0, batch_of

WRITER = Path(__file__).with_name("kill9_writer.py")
TIMEOUT_S = 60.0
# Acks to wait for before each kill; 0 kills during the first write. Different counts land the
# kill at different points of a write or a checkpoint.
ROUNDS = (0, 1, 3, 8, 21, 55)


async def present_batches(store: EmbeddedStore, upto: int) -> set[int]:
    """The batches found in the store, each checked to be exactly what batch_of(k) wrote."""
    per_signal: list[set[int]] = []
    for s in range(SIGNALS):
        got = await store.query(s, T0, T0 + (upto + 1) * SPACING_NS)
        ks = (got.ts - T0) // SPACING_NS
        found = set(np.unique(ks).tolist())
        for k in found:
            mine = got.take(ks == k)
            want = batch_of(k).for_signals([s])
            assert len(mine) == PER_SIGNAL, f"batch {k} holds {len(mine)} samples of signal {s}"
            assert mine.equals(want), f"batch {k} differs from what was written"
        per_signal.append(found)
    # A batch spans every signal: present for one means present for all.
    assert all(p == per_signal[0] for p in per_signal), per_signal
    return per_signal[0]


async def run_writer_until_killed(directory: Path, first: int, acks_before_kill: int) -> list[int]:
    """Start the writer, SIGKILL it after `acks_before_kill` acks; return every ack it printed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WRITER),
        str(directory),
        str(first),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    lines: list[bytes] = []
    try:
        ready = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT_S)
        if ready != b"ready\n":
            raise AssertionError(f"writer did not start: {ready!r}")
        while len(lines) < acks_before_kill:
            lines.append(await asyncio.wait_for(proc.stdout.readline(), TIMEOUT_S))
    finally:
        proc.send_signal(signal.SIGKILL)
        rest, err = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    # Acks printed between our last read and the kill are still in the pipe: count them too.
    lines += rest.splitlines(keepends=True)
    acks = []
    for line in lines:
        word, k = line.split()
        assert word == b"ack", line
        acks.append(int(k))
    assert acks == list(range(first, first + len(acks)))
    return acks


async def test_sigkill_keeps_acked_batches_whole(tmp_path: Path) -> None:
    acked: set[int] = set()
    in_flight: set[int] = set()  # the one batch per round that may have been committed unacked
    first = 0
    for acks_before_kill in ROUNDS:
        acks = await run_writer_until_killed(tmp_path, first, acks_before_kill)
        assert len(acks) >= acks_before_kill
        acked.update(acks)
        maybe = first + len(acks)
        in_flight.add(maybe)
        async with EmbeddedStore.open(tmp_path) as store:
            present = await present_batches(store, maybe)
            assert acked <= present, f"acked batches lost: {sorted(acked - present)}"
            assert present <= acked | in_flight, f"never written: {present - acked - in_flight}"
            stats = await store.stats()
            assert stats.samples == len(present) * SIGNALS * PER_SIGNAL
        first = maybe + 1
    assert len(acked) >= sum(ROUNDS)
    # The store still takes writes after all this.
    async with EmbeddedStore.open(tmp_path) as store:
        await store.write(batch_of(first))
        present = await present_batches(store, first)
        assert first in present
        assert acked <= present
