"""End to end: `factory5g up --demo` in a subprocess, HTTP and WebSocket with a token, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from ..helpers import FactoryProcess, wait_until_sync


@pytest.fixture
def demo(tmp_path: Path, free_port: int) -> Iterator[tuple[FactoryProcess, int]]:
    proc = FactoryProcess(["up", "--demo", "--port", str(free_port)], tmp_path)
    try:
        yield proc, free_port
    finally:
        proc.stop()


def test_up_demo_serves_live_data_and_stops_cleanly_on_sigterm(
    demo: tuple[FactoryProcess, int],
) -> None:
    proc, port = demo
    token = proc.find(r"admin token: (f5g_\S+)").group(1)
    assert (
        proc.find(r"console:\s+(http://127\.0\.0\.1:\d+/#token=f5g_\S+)").group(1).endswith(token)
    )
    base = f"http://127.0.0.1:{port}"
    h = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=h, timeout=5) as c:
        assert httpx.get(base + "/api/v1/health").json()["status"] == "ok"
        assert httpx.get(base + "/api/v1/site").status_code == 401
        tree = c.get("/api/v1/site").json()
        assert tree["name"].startswith("Demo Steel")

        def has_value() -> bool:
            return c.get("/api/v1/signals/f1.speed/latest").status_code == 200

        wait_until_sync(has_value, 15, "a stored f1.speed sample")
        hist = c.get("/api/v1/signals/f1.speed/history", params={"start": "-1m"}).json()
        assert hist["count"] >= 1

    async def live() -> list[dict[str, object]]:
        url = f"ws://127.0.0.1:{port}/api/v1/live?token={token}"
        got: list[dict[str, object]] = []
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"subscribe": ["f1.roll_force", "substation.active_power"]}))
            async with asyncio.timeout(10):
                while len([m for m in got if m["type"] == "samples"]) < 3:
                    got.append(json.loads(await ws.recv()))
        return got

    # The identifier node answers on the same port, with Handle.Net codes, and `ids init` on the
    # running site creates the prefix admin that it then resolves.
    r = httpx.get(f"{base}/api/handles/88.118.8/admin")
    assert (r.status_code, r.json()["responseCode"]) == (404, 100)
    init = subprocess.run(
        [sys.executable, "-m", "factory5g", "ids", "init", "--site", "factory5g-demo/site.toml"],
        cwd=proc.cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    assert "88.118.8/admin" in init.stdout
    r = httpx.get(f"{base}/api/handles/88.118.8/admin")
    assert (r.status_code, r.json()["responseCode"]) == (200, 1), r.text
    assert "HS_ADMIN" in {v["type"] for v in r.json()["values"]}

    msgs = asyncio.run(live())
    subscribed = next(m for m in msgs if m["type"] == "subscribed")
    ids = {s["id"] for s in subscribed["signals"]}  # type: ignore[attr-defined]
    assert len(ids) == 2
    samples = [m for m in msgs if m["type"] == "samples"]
    seen = {s for m in samples for s in m["signal"]}  # type: ignore[attr-defined]
    assert seen == ids  # both signals stream, and nothing else
    assert all(isinstance(v, float) for m in samples for v in m["value"])  # type: ignore[attr-defined]

    proc.p.send_signal(signal.SIGTERM)
    assert proc.p.wait(10) == 0, proc.output
    assert "stopped cleanly: no task left behind" in proc.output


def test_up_demo_stops_on_sigint_and_keeps_data(tmp_path: Path, free_port: int) -> None:
    args = ["up", "--demo", "--port", str(free_port)]
    first = FactoryProcess(args, tmp_path)
    try:
        token = first.find(r"admin token: (f5g_\S+)").group(1)
        h = {"Authorization": f"Bearer {token}"}
        url = f"http://127.0.0.1:{free_port}/api/v1/health"

        def stored() -> bool:
            return int(httpx.get(url, headers=h).json()["store"]["written_samples"]) > 100

        wait_until_sync(stored, 15, "samples written")
        first.p.send_signal(signal.SIGINT)
        assert first.p.wait(10) == 0, first.output
    finally:
        first.stop()
    second = FactoryProcess(args, tmp_path)
    try:
        token = second.find(r"admin token: (f5g_\S+)").group(1)
        r = httpx.get(
            f"http://127.0.0.1:{free_port}/api/v1/store",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.json()["samples"] > 100  # what the first run stored is still there
        second.p.send_signal(signal.SIGTERM)
        assert second.p.wait(10) == 0, second.output
    finally:
        second.stop()


def test_up_with_a_bad_site_exits_1_with_problems(tmp_path: Path) -> None:
    bad = tmp_path / "site.toml"
    bad.write_text('[site]\nname = "x"\nprefix = "88.1"\ntimezone = "Mars/Olympus"\n')
    r = subprocess.run(
        [sys.executable, "-m", "factory5g", "up", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 1
    assert "unknown time zone" in r.stderr
