"""Shared fixtures. Every test must leave no task and no thread behind (pymodbus' habit)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.helpers import steel_text

# These machines are shared and noisy (2 cores, CI runners): a hypothesis example that takes
# longer than usual is not a failure. Tests that care about time measure it in bench/.
settings.register_profile("factory5g", deadline=None)
settings.load_profile("factory5g")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield
    # Give threads that are already finishing a moment to be joined, then complain.
    deadline = 50
    while deadline:
        leaked = [
            t
            for t in threading.enumerate()
            if t.ident not in before and t.is_alive() and not t.daemon
        ]
        if not leaked:
            return
        threading.Event().wait(0.02)
        deadline -= 1
    pytest.fail(f"test leaked threads: {[t.name for t in leaked]}")


@pytest.fixture(autouse=True)
async def _loop_executor_joined(_no_leaked_threads: None) -> AsyncIterator[None]:
    """The event loop's default executor (asyncio.to_thread, getaddrinfo...) keeps its worker
    threads until the loop closes, which is after the thread check: join them first (asyncua's
    Server.init fills its address space with asyncio.to_thread). Set up after
    _no_leaked_threads, so torn down before it."""
    yield
    await asyncio.get_running_loop().shutdown_default_executor()


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> None:
    """Fails an async test that leaves tasks running on its loop."""
    yield  # type: ignore[misc]
    current = asyncio.current_task()
    for _ in range(20):
        others = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        if not others:
            return
        await asyncio.sleep(0)
    pytest.fail(f"test leaked tasks: {[t.get_name() for t in others]}")


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def steel_site(tmp_path: Path) -> Path:
    """A fresh copy of the steel template in a temporary directory (demo ports free)."""
    p = tmp_path / "site.toml"
    p.write_text(steel_text(), encoding="utf-8")
    return p


@pytest.fixture
def steel_sim_site(tmp_path: Path) -> Path:
    """The steel template with every signal simulated straight onto the bus (no Sparkplug)."""
    from tests.helpers import steel_sim_text

    p = tmp_path / "site.toml"
    p.write_text(steel_sim_text(), encoding="utf-8")
    return p
