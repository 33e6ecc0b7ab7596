"""``factory5g ids …`` (mounted by the main CLI; here through ``python -m factory5g.ids.cli``
and typer's runner): init, mint, delegate, export/import, serve with two workers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from typer.testing import CliRunner

from factory5g.ids.cli import app
from tests.helpers import wait_until_sync
from tests.ids.conftest import free_tcp_port

runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_init_mint_delegate_export_import_with_a_site_file(steel_site: Path) -> None:
    site = ["--site", str(steel_site)]
    text = steel_site.read_text()
    prefix = re.search(r'prefix = "([^"]+)"', text)
    assert prefix is not None
    p = prefix.group(1)
    out = invoke("init", *site, "--url", "http://127.0.0.1:8080")
    user = re.search(r"user:\s+(\S+)", out)
    secret = re.search(r"secret:\s+(\S+)", out)
    assert user is not None
    assert secret is not None
    assert user.group(1) == f"300:{p}/admin"
    assert len(secret.group(1)) >= 24
    again = runner.invoke(app, ["init", *site])
    assert again.exit_code == 1
    assert "already exists" in again.output

    listing = steel_site.parent / "minted.txt"
    out = invoke(
        "mint",
        "batch",
        "-n",
        "3",
        "--line",
        "HSM",
        "--date",
        "2025-03-01",
        *site,
        "--out",
        str(listing),
    )
    assert "minted 3 batch identifiers" in out
    assert listing.read_text().splitlines() == [f"{p}/BHSM20250301{i:04d}" for i in (1, 2, 3)]
    invoke("delegate", f"{p}.7", "http://10.0.0.7:8000", *site)
    bad = runner.invoke(app, ["delegate", "99.1", "http://x:1", *site])
    assert bad.exit_code == 1
    assert "not derived" in bad.output

    export = steel_site.parent / "out.jsonl"
    assert "exported 6 handles" in invoke("export", str(export), *site)
    db = steel_site.parent / "copy.sqlite"
    out = invoke("import", str(export), "--db", str(db), "--prefix", p)
    assert "imported 6 handles, skipped 0" in out
    assert "imported already" in invoke("import", str(export), "--db", str(db), "--prefix", p)
    bad = runner.invoke(app, ["import", str(export), "--db", str(db)])
    assert bad.exit_code == 2
    assert "--prefix" in bad.output
    wrong = steel_site.parent / "x.txt"
    wrong.write_text("x")
    bad = runner.invoke(app, ["import", str(wrong), "--db", str(db), "--prefix", p])
    assert bad.exit_code == 2
    assert "--format" in bad.output


def test_serve_with_two_workers(tmp_path: Path) -> None:
    db, port = tmp_path / "ids.sqlite", free_tcp_port()
    out = invoke("init", "--db", str(db), "--prefix", "88.118.8")
    secret = re.search(r"secret:\s+(\S+)", out)
    assert secret is not None
    invoke(
        "mint", "part", "-n", "10", "--db", str(db), "--prefix", "88.118.8", "--date", "2025-01-02"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "factory5g.ids.cli",
            "serve",
            "--db",
            str(db),
            "--prefix",
            "88.118.8",
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/api/handles/88.118.8/admin").status_code == 200
        except httpx.HTTPError:
            return proc.poll() is not None

    try:
        wait_until_sync(up, 30, "the node to answer")
        assert proc.poll() is None
        auth = ("300%3A88.118.8/admin", secret.group(1))
        # Writes through one worker are seen by the other (one store, WAL, no stale cache).
        for i in range(20):
            r = httpx.put(
                f"{base}/api/handles/88.118.8/w{i}",
                auth=auth,
                json=[{"index": 1, "type": "URL", "data": f"u{i}"}],
            )
            assert r.status_code == 201, r.text
            got = httpx.get(f"{base}/api/handles/88.118.8/w{i}").json()
            assert got["values"][0]["data"]["value"] == f"u{i}"
        r = httpx.get(f"{base}/api/handles/88.118.8/T2025010200000010")
        assert r.json()["responseCode"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        finally:
            assert proc.stderr is not None
            err = proc.stderr.read().decode()
            proc.stderr.close()
    assert proc.returncode == 0, err
