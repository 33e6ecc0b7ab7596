"""A real Mosquitto for connector tests: started per test on a free port, persistence on.

The tests need the Debian package ``mosquitto`` (``scripts/system-deps`` installs it). Without
it they fail with a message saying so: a test that needs a peer must not pass by skipping.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
START_WITHIN_S = 10.0
STOP_WITHIN_S = 10.0


class Mosquitto:
    """``mosquitto -c <generated conf>`` listening on ``host:port``.

    ``persistence true`` with the database in ``directory``: a ``stop()`` (SIGTERM) saves
    retained messages and the persistent sessions with their queued QoS 1 messages, and the
    next ``start()`` loads them, as a plant broker restarted by its operator would.
    """

    host = "127.0.0.1"

    def __init__(self, directory: Path, port: int, extra: Sequence[str] = ()) -> None:
        self.directory = directory
        self.port = port
        self.conf = directory / "mosquitto.conf"
        self.log = directory / "mosquitto.log"
        self._proc: asyncio.subprocess.Process | None = None
        self._log_file: IO[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {port} {self.host}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {directory}/",
            # Tests queue thousands of QoS 1 messages for an offline or slow session.
            "max_queued_messages 100000",
            "log_type all",
            *extra,  # more settings for this listener, e.g. certfile/keyfile for TLS
        ]
        if os.geteuid() == 0:
            # Run as root, mosquitto would switch to the 'mosquitto' user, which cannot write
            # pytest's private temporary directory.
            lines.append("user root")
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        if self.running:
            raise AssertionError("mosquitto is already running")
        self._log_file = self.log.open("ab")
        self._proc = await asyncio.create_subprocess_exec(
            MOSQUITTO,
            "-c",
            str(self.conf),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_WITHIN_S
        while True:
            if self._proc.returncode is not None:
                code = self._proc.returncode
                await self.stop()
                pytest.fail(f"mosquitto exited with {code} at start:\n{self.log_text()}")
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                if time.monotonic() > deadline:
                    await self.stop()
                    pytest.fail(
                        f"mosquitto did not listen on {self.port} within {START_WITHIN_S} s:\n"
                        f"{self.log_text()}"
                    )
                await asyncio.sleep(0.01)  # polling a deadline, not waiting for state
                continue
            writer.close()
            await writer.wait_closed()
            return

    async def stop(self) -> None:
        """SIGTERM (mosquitto saves its database), wait for the exit, SIGKILL if it hangs."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_WITHIN_S):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no log)"


def require_mosquitto() -> None:
    if not Path(MOSQUITTO).exists():
        pytest.fail(
            f"mosquitto is not installed ({MOSQUITTO} missing): run scripts/system-deps, "
            "or: sudo apt-get install mosquitto"
        )


@asynccontextmanager
async def running_mosquitto(
    directory: Path, port: int, extra: Sequence[str] = ()
) -> AsyncIterator[Mosquitto]:
    require_mosquitto()
    broker = Mosquitto(directory, port, extra)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


@pytest.fixture
async def mosquitto(tmp_path: Path, free_port: int) -> AsyncIterator[Mosquitto]:
    """A running Mosquitto with ``host``, ``port``, ``restart()``, ``stop()``, ``start()``."""
    async with running_mosquitto(tmp_path / "mosquitto", free_port) as broker:
        yield broker
