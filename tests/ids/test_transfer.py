"""Import and export: round trips in both formats, resumable export, clear errors, and an
import killed with SIGKILL that leaves a consistent store the resumed import completes."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import orjson
import pytest

from factory5g.ids.records import HandleValue
from factory5g.ids.service import IdsService, NodeConfig
from factory5g.ids.store import EmbeddedHandleStore
from factory5g.ids.syntax import parse_handle
from factory5g.ids.transfer import ImportFormatError, export_file, import_file
from tests.helpers import wait_until
from tests.ids.conftest import PREFIX, Node

ODD = [
    HandleValue(1, "URL", 'https://x/"quoted", with comma', timestamp=1_600_000_000),
    HandleValue(2, "DESC", "two\nlines — ü", timestamp=1_600_000_001, ttl=60),
    HandleValue(3, "BLOB", "AAEC", "base64", timestamp=1_600_000_002),
    HandleValue(
        4, "HS_VLIST", [{"handle": "88.118.8/g", "index": 1}], "vlist", timestamp=1_600_000_003
    ),
]


async def snapshot(svc: IdsService) -> dict[str, bytes]:
    return {r.key: r.values for r in await svc.store.scan(None, None, 1_000_000)}


async def fill(node: Node, n: int = 300) -> None:
    await node.service.mint(PREFIX, "part", n, None, trusted=True)
    await node.service.put_trusted(parse_handle(f"{PREFIX}/odd"), ODD)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_round_trip(node: Node, tmp_path: Path, fmt: str) -> None:
    await fill(node)
    out = tmp_path / f"all.{fmt}"
    report = await export_file(node.service, out)
    before = await snapshot(node.service)
    assert report.total == len(before)
    assert out.exists()
    assert not (tmp_path / f"all.{fmt}.part").exists()
    async with (
        EmbeddedHandleStore(tmp_path / "copy.sqlite") as st,
        IdsService(st, NodeConfig(prefixes=(PREFIX,))) as copy,
    ):
        imported = await import_file(copy, out, chunk=64)
        assert (imported.written, imported.skipped, imported.total) == (len(before), 0, len(before))
        assert await snapshot(copy) == before  # secrets stay hashed; timestamps are kept
        again = await import_file(copy, out)
        assert again.already_done
        fresh = await import_file(copy, out, resume=False)
        assert (fresh.written, fresh.skipped) == (0, len(before))


async def test_export_of_one_prefix_and_resume(node: Node, tmp_path: Path) -> None:
    await fill(node, 500)
    full = tmp_path / "full.jsonl"
    await export_file(node.service, full, prefix=PREFIX)
    lines = full.read_bytes().splitlines(keepends=True)
    assert all(orjson.loads(line)["handle"].startswith(f"{PREFIX}/") for line in lines)
    # A run killed mid-write leaves full.jsonl.part with a torn last line.
    out = tmp_path / "out.jsonl"
    torn = b"".join(lines[:123]) + lines[123][:17]
    (tmp_path / "out.jsonl.part").write_bytes(torn)
    report = await export_file(node.service, out, prefix=PREFIX, chunk=50)
    assert report.resumed
    assert report.written == len(lines) - 123
    assert out.read_bytes() == full.read_bytes()

    csv_full, csv_out = tmp_path / "full.csv", tmp_path / "out.csv"
    await export_file(node.service, csv_full)
    data = csv_full.read_bytes()
    cut = data.index(b"88.118.8/T", len(data) // 2) + 5  # mid-row
    (tmp_path / "out.csv.part").write_bytes(data[:cut])
    report = await export_file(node.service, csv_out, chunk=40)
    assert report.resumed
    assert csv_out.read_bytes() == data


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "bad.jsonl",
            b'{"handle": "88.118.8/a", "values": []}\nnot json\n',
            "bad.jsonl:2: not JSON",
        ),
        ("bad.jsonl", b'{"handle": "88.118.8/a"}\n', "expected"),
        ("bad.jsonl", b'{"handle": "99/a", "values": []}\n', "not responsible"),
        ("bad.jsonl", b'{"handle": "88.118.8/", "values": []}\n', "empty suffix"),
        ("bad.jsonl", b'{"handle": "88.118.8/a", "values": [{"index": 0}]}\n', "reserved"),
        ("bad.csv", b"handle,index\n", "header"),
        (
            "bad.csv",
            b'handle,index,type,format,data\n88.118.8/a,1,URL,string,"open\n',
            "unterminated",
        ),
        ("bad.csv", b"handle,index,type,format,data\n88.118.8/a,1,X,admin,{nope\n", "not JSON"),
    ],
)
async def test_bad_files_say_where(
    node: Node, tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImportFormatError, match=message):
        await import_file(node.service, path)


N_KILL = 40_000
CHUNK = 1_000


def write_import_file(path: Path) -> list[bytes]:
    lines = []
    for i in range(N_KILL):
        values = [
            {
                "index": 1,
                "type": "URL",
                "data": {"format": "string", "value": f"https://p/{i}"},
                "ttl": 86400,
                "timestamp": "2024-01-01T00:00:00Z",
            },
            {
                "index": 2,
                "type": "F5G_BATCH",
                "data": {"format": "string", "value": f"B{i % 7}"},
                "ttl": 86400,
                "timestamp": "2024-01-01T00:00:00Z",
            },
        ]
        lines.append(orjson.dumps({"handle": f"{PREFIX}/K{i:06d}", "values": values}) + b"\n")
    path.write_bytes(b"".join(lines))
    return lines


def committed(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            row = conn.execute("SELECT count FROM progress").fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0]) if row else 0


async def test_kill9_during_import_then_resume(tmp_path: Path) -> None:
    src = tmp_path / "big.jsonl"
    lines = write_import_file(src)
    db = tmp_path / "ids.sqlite"
    cmd = [
        sys.executable,
        "-m",
        "factory5g.ids.cli",
        "import",
        str(src),
        "--db",
        str(db),
        "--prefix",
        PREFIX,
        "--chunk",
        str(CHUNK),
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        await wait_until(
            lambda: committed(db) >= 5 * CHUNK or proc.returncode is not None,
            60,
            "five chunks to be committed",
        )
        assert proc.returncode is None, "the import finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == -signal.SIGKILL

    async with EmbeddedHandleStore(db) as st:
        progress = next(
            iter([p for p in [await st.progress(j) for j in _jobs(db)] if p is not None])
        )
        assert not progress.done
        assert progress.count % CHUNK == 0
        records = await st.scan(None, None, N_KILL + 10)
        # Exactly the committed chunks, each record whole and exact; nothing else.
        assert len(records) == progress.count < N_KILL
        for i, r in enumerate(records):
            assert r.key == f"{PREFIX}/K{i:06d}"
            assert orjson.loads(r.values) == orjson.loads(lines[i])["values"]
        assert progress.offset == sum(len(x) for x in lines[: progress.count])

    resumed = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(resumed.communicate(), 90)
    assert resumed.returncode == 0, stderr.decode()
    assert f"resumed at byte {progress.offset}" in stdout.decode()
    async with EmbeddedHandleStore(db) as st:
        records = await st.scan(None, None, N_KILL + 10)
        assert [r.key for r in records] == [f"{PREFIX}/K{i:06d}" for i in range(N_KILL)]
        assert all(
            orjson.loads(r.values) == orjson.loads(lines[i])["values"]
            for i, r in enumerate(records)
        )
        assert await st.search("F5G_BATCH", "B3", N_KILL) == [
            f"{PREFIX}/K{i:06d}" for i in range(N_KILL) if i % 7 == 3
        ]


def _jobs(db: Path) -> list[str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return [r[0] for r in conn.execute("SELECT job FROM progress")]
