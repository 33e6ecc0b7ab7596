"""Small helpers shared by tests."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any


async def wait_until(predicate: Callable[[], bool], within: float = 10.0, what: str = "") -> None:
    """Poll ``predicate`` until true; fail after ``within`` seconds (a deadline, not a sleep)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what or predicate}")
        await asyncio.sleep(0.01)


def wait_until_sync(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.01)


class FactoryProcess:
    """``python -m factory5g ARGS`` in a subprocess, its output collected on a thread."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.cwd = cwd
        if "--demo" in args and not (cwd / "factory5g-demo" / "site.toml").exists():
            # The demo's simulated OPC UA server and Modbus device on free ports, not the
            # template's fixed ones: a test must not collide with a running demo.
            (cwd / "factory5g-demo").mkdir(parents=True, exist_ok=True)
            (cwd / "factory5g-demo" / "site.toml").write_text(steel_text(), encoding="utf-8")
        # Wide enough that rich never wraps a URL or a token.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "240"}
        self.p = subprocess.Popen(
            [sys.executable, "-m", "factory5g", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, name="factory5g-out", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def find(self, pattern: str, within: float = 30) -> re.Match[str]:
        """The first match of ``pattern`` in the output; fails if the process exits first."""
        found: list[re.Match[str]] = []

        def seen() -> bool:
            m = re.search(pattern, self.output)
            if m:
                found.append(m)
            return bool(m) or self.p.poll() is not None

        wait_until_sync(seen, within, f"{pattern!r} in the output:\n{self.output}")
        assert found, f"process exited ({self.p.returncode}) before {pattern!r}:\n{self.output}"
        return found[0]

    def stop(self) -> None:
        """Kill the process if it still runs and release its pipe."""
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(10)
        self._reader.join(10)
        if self.p.stdout is not None:
            self.p.stdout.close()


def steel_text() -> str:
    """The steel template with its simulated OPC UA server and Modbus device on free ports."""
    from factory5g.model import template_text

    text = template_text("steel")
    opcua, modbus = "opc.tcp://127.0.0.1:4840/", "port = 5020\n"
    assert opcua in text, "the template's OPC UA demo port moved"
    assert modbus in text, "the template's Modbus demo port moved"
    text = text.replace(opcua, f"opc.tcp://127.0.0.1:{_free_port()}/")
    return text.replace(modbus, f"port = {_free_port()}\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def steel_sim_text() -> str:
    """The steel template with every signal simulated straight onto the bus (``kind = "sim"``)
    instead of through its protocol (Sparkplug, OPC UA, Modbus): for tests of the model and the
    simulator."""
    from factory5g.model import template_text

    out: list[str] = []
    for line in template_text("steel").splitlines():
        stripped = line.strip()
        if stripped.startswith('binding = { kind = "'):
            continue
        m = re.match(r'^(\s*)sim = \{ model = "(\w+)", output = "(\w+)" \}$', line)
        if m:
            indent, model, output = m.groups()
            line = f'{indent}binding = {{ kind = "sim", model = "{model}", output = "{output}" }}'
        out.append(line)
    text = "\n".join(out) + "\n"
    start = text.index("[sparkplug]")
    end = text.index("# ----", start)
    return text[:start] + text[end:]


def run_quick_bench(name: str, within_s: float = 120) -> tuple[dict[str, Any], str]:
    """Run ``bench/<name>.py --quick``; check it printed exactly one JSON line; return it and
    what the bench wrote to stderr (its human table)."""
    done = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"),
            "--quick",
        ],
        capture_output=True,
        text=True,
        timeout=within_s,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    report: dict[str, Any] = json.loads(lines[0])
    assert report["bench"] == name
    assert report["config"]["quick"] is True
    return report, done.stderr


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 10.0, what: str = ""
) -> None:
    """Await ``check()`` until it is true; fail after ``within`` seconds (a deadline)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what or check}")
        await asyncio.sleep(0.01)
