"""Import and export handle records as JSON lines or CSV, streaming, resumable.

JSON lines (``.jsonl``): one handle per line, values as in the REST API::

    {"handle": "88.118.8/P0001", "values": [{"index": 1, "type": "URL", "data": ...}, ...]}

CSV (``.csv``): a header, then one row per value; the rows of a handle are consecutive::

    handle,index,type,format,data,ttl,timestamp,permissions
    88.118.8/P0001,1,URL,string,https://...,86400,2024-05-01T08:00:00Z,1110

``data`` is the value itself for the string, base64 and hex formats, and its JSON for admin,
vlist and site. Timestamps are kept on import (they say when a value last changed);
HS_SECKEY data is hashed on import unless it already is (an export holds the hashes).

Constant memory: records are read and written in chunks (``chunk`` handles). Resumable:

* **import** commits each chunk together with its progress (bytes of the file consumed, handles
  written) in one transaction, under a job named after the file's size and a hash of its first
  MiB. Killed at any moment, the store holds exactly the chunks committed, and the next run of
  the same import continues after the last of them (tests/ids/test_transfer.py does it with
  kill -9). Existing handles are skipped (``overwrite=False``) or replaced.
* **export** writes ``FILE.part`` and renames it to ``FILE`` when complete; a new run finds the
  last complete handle in ``FILE.part``, cuts anything after it, and continues after it, in
  key order.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from factory5g.ids.errors import IdsError, ServerNotResponsible
from factory5g.ids.records import HandleValue, decode_values, format_timestamp
from factory5g.ids.service import IdsService
from factory5g.ids.store.base import ImportProgress, NewRecord
from factory5g.ids.syntax import canonical_prefix, parse_handle, parse_prefix

__all__ = [
    "CSV_COLUMNS",
    "ExportReport",
    "ImportFormatError",
    "ImportReport",
    "export_file",
    "file_format",
    "import_file",
]

Format = Literal["jsonl", "csv"]
CSV_COLUMNS = ("handle", "index", "type", "format", "data", "ttl", "timestamp", "permissions")
_TEXT_FORMATS = ("string", "base64", "hex")
Progress = Callable[[int, int], Awaitable[None] | None]  # (bytes or handles done, total)


class ImportFormatError(ValueError):
    """A record of an import file that cannot be read: where and why."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ImportReport:
    job: str
    written: int  # handles written by this run
    skipped: int  # handles that existed (overwrite=False), by this run
    total: int  # handles written by the job, all runs together
    resumed_at: int  # bytes of the file already consumed when this run started
    already_done: bool


@dataclass(frozen=True, slots=True)
class ExportReport:
    path: Path
    written: int  # handles written by this run
    total: int  # handles in the file
    resumed: bool


def file_format(path: Path, given: str | None = None) -> Format:
    fmt = (given or path.suffix.lstrip(".")).lower()
    if fmt in ("jsonl", "ndjson", "json"):
        return "jsonl"
    if fmt == "csv":
        return "csv"
    raise ValueError(f"{path}: say --format csv or jsonl (unknown suffix {path.suffix!r})")


def _job_of(path: Path) -> str:
    size = path.stat().st_size
    h = hashlib.sha256()
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
    return f"import:{size}:{h.hexdigest()[:32]}"


# -- reading ------------------------------------------------------------------------------------


def _jsonl_records(
    f: io.BufferedReader, start: int, path: Path
) -> Iterator[tuple[str, list[Any], int, int]]:
    """(handle, raw values, byte offset after the record, line number)."""
    offset = start
    line_no = 0
    for line in f:
        line_no += 1
        offset += len(line)
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ImportFormatError(path, line_no, f"not JSON: {exc}") from None
        if (
            not isinstance(obj, dict)
            or not isinstance(obj.get("handle"), str)
            or not isinstance(obj.get("values"), list)
        ):
            raise ImportFormatError(path, line_no, 'expected {"handle": "...", "values": [...]}')
        yield obj["handle"], obj["values"], offset, line_no


def _csv_value(row: list[str], path: Path, line_no: int) -> dict[str, Any]:
    if len(row) < 5:
        raise ImportFormatError(path, line_no, f"{len(row)} columns; at least {CSV_COLUMNS[:5]}")
    _, index, type_, fmt, data, *rest = row
    value: dict[str, Any] = {"index": index.strip(), "type": type_}
    fmt = fmt or "string"
    if fmt in _TEXT_FORMATS:
        value["data"] = {"format": fmt, "value": data}
    else:
        try:
            value["data"] = {"format": fmt, "value": orjson.loads(data)}
        except orjson.JSONDecodeError:
            raise ImportFormatError(path, line_no, f"{fmt} data is not JSON") from None
    if len(rest) > 0 and rest[0]:
        value["ttl"] = int(rest[0]) if rest[0].isdigit() else rest[0]
    if len(rest) > 1 and rest[1]:
        value["timestamp"] = rest[1]
    if len(rest) > 2 and rest[2]:
        value["permissions"] = rest[2]
    return value


def _csv_records(
    f: io.BufferedReader, start: int, path: Path
) -> Iterator[tuple[str, list[Any], int, int]]:
    """Rows grouped by handle. A row may span lines (quoted newlines): physical lines are
    joined until the quotes balance, so byte offsets stay exact."""
    offset = start
    line_no = 0
    current: str | None = None
    values: list[Any] = []
    first_line = 0
    while True:
        row_start = offset
        raw = f.readline()
        if not raw:
            break
        line_no += 1
        offset += len(raw)
        while raw.count(b'"') % 2:
            more = f.readline()
            if not more:
                raise ImportFormatError(path, line_no, "unterminated quoted field")
            raw += more
            offset += len(more)
            line_no += 1
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportFormatError(path, line_no, f"not UTF-8 (byte {exc.start})") from None
        row = next(csv.reader([text]))
        if not row or not row[0]:
            raise ImportFormatError(path, line_no, "no handle in the first column")
        if row[0] != current:
            if current is not None:
                yield current, values, row_start, first_line
            current, values, first_line = row[0], [], line_no
        values.append(_csv_value(row, path, line_no))
    if current is not None:
        yield current, values, offset, first_line


async def import_file(
    svc: IdsService,
    path: Path,
    *,
    fmt: Format | None = None,
    overwrite: bool = False,
    resume: bool = True,
    chunk: int = 5000,
    on_progress: Progress | None = None,
) -> ImportReport:
    """Import ``path`` into the service's store (local handles only; see module doc)."""
    # Plain blocking reads of a local file, buffered: an import is a command of its own, not
    # something a serving event loop runs.
    fmt = fmt or file_format(path)
    size = path.stat().st_size  # noqa: ASYNC240
    job = _job_of(path)
    prior = await svc.store.progress(job) if resume else None
    if prior is not None and prior.done:
        return ImportReport(job, 0, 0, prior.count, prior.offset, True)
    start, total = (prior.offset, prior.count) if prior is not None else (0, 0)
    resumed_at = start
    written = skipped = 0
    with path.open("rb") as f:
        if fmt == "csv":
            header = f.readline()
            cols = next(csv.reader([header.decode("utf-8", "replace")]), [])
            if [c.strip() for c in cols[:5]] != list(CSV_COLUMNS[:5]):
                raise ImportFormatError(path, 1, f"the header must start {','.join(CSV_COLUMNS)}")
            start = max(start, len(header))
        f.seek(start)
        reader = _csv_records(f, start, path) if fmt == "csv" else _jsonl_records(f, start, path)
        rows: list[tuple[str, NewRecord]] = []
        seen: set[str] = set()
        end = start

        async def commit(done: bool) -> None:
            nonlocal written, skipped, total, rows
            skipped_now = await svc.store.put_many(
                rows,
                overwrite=overwrite,
                progress=ImportProgress(job, end, total + len(rows), done),
            )
            written += len(rows) - len(skipped_now)
            skipped += len(skipped_now)
            total += len(rows)
            rows = []
            seen.clear()
            if on_progress is not None:
                r = on_progress(end, size)
                if r is not None:
                    await r

        for handle_text, raw_values, end_, line_no in reader:
            try:
                h = parse_handle(handle_text)
                if not svc.is_local(h):
                    raise ServerNotResponsible(h.text, svc.prefixes)
                values = [
                    HandleValue.from_json(v, now=int(svc.clock()), keep_timestamp=True)
                    for v in raw_values
                ]
                record = await svc.record_of(values)
            except IdsError as exc:
                raise ImportFormatError(path, line_no, exc.message) from None
            key = svc.key(h)
            if key in seen:  # the same handle twice in a chunk: the last one wins
                rows = [r for r in rows if r[0] != key]
            seen.add(key)
            rows.append((key, record))
            end = end_
            if len(rows) >= chunk:
                await commit(False)
        end = size
        await commit(True)
    return ImportReport(job, written, skipped, total, resumed_at, False)


# -- writing ------------------------------------------------------------------------------------


def _csv_rows(key: str, values: list[HandleValue]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    for v in values:
        data = v.data if v.format in _TEXT_FORMATS else orjson.dumps(v.data).decode("utf-8")
        w.writerow(
            [
                key,
                v.index,
                v.type,
                v.format,
                data,
                v.ttl,
                format_timestamp(v.timestamp),
                v.permissions.to_text(),
            ]
        )
    return out.getvalue()


def _resume_point(part: Path, fmt: Format) -> tuple[int, str | None, int]:
    """(bytes to keep, last complete handle, handles kept) of a partial export."""
    keep, last, count = 0, None, 0
    with part.open("rb") as f:
        if fmt == "jsonl":
            offset = 0
            for line in f:
                if not line.endswith(b"\n"):
                    break
                offset += len(line)
                try:
                    last = orjson.loads(line)["handle"]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    break
                keep, count = offset, count + 1
            return keep, last, count
        header = f.readline()
        offset = len(header)
        keep = offset if header.endswith(b"\n") else 0
        current: str | None = None
        for first in f:
            line = first
            while line.count(b'"') % 2:  # a quoted field with a newline: one row, many lines
                more = f.readline()
                if not more:
                    break
                line += more
            if not line.endswith(b"\n") or line.count(b'"') % 2:
                break
            handle = next(csv.reader([line.decode("utf-8", "replace")]), [""])[0]
            if handle != current:
                if current is not None:
                    keep, last, count = offset, current, count + 1
                current = handle
            offset += len(line)
    # The last group may be incomplete: it is cut and written again.
    return keep, last, count


async def export_file(
    svc: IdsService,
    path: Path,
    *,
    fmt: Format | None = None,
    prefix: str | None = None,
    resume: bool = True,
    chunk: int = 2000,
    on_progress: Progress | None = None,
) -> ExportReport:
    """Export the records (of one prefix, or all) in key order to ``path``."""
    fmt = fmt or file_format(path)
    prefix_key = canonical_prefix(parse_prefix(prefix)) if prefix else None
    part = path.with_name(path.name + ".part")
    after: str | None = None
    count = 0
    resumed = False
    if resume and part.exists():
        keep, after, count = _resume_point(part, fmt)
        with part.open("r+b") as f:
            f.truncate(keep)
        resumed = keep > 0
    mode = "ab" if resumed else "wb"
    total_expected = await svc.store.count()
    written = 0
    with part.open(mode) as f:
        if (not resumed and fmt == "csv") or (resumed and fmt == "csv" and f.tell() == 0):
            f.write((",".join(CSV_COLUMNS) + "\n").encode("utf-8"))
        while True:
            records = await svc.store.scan(prefix_key, after, chunk)
            if not records:
                break
            buf = bytearray()
            for rec in records:
                if fmt == "jsonl":
                    buf += b'{"handle":' + orjson.dumps(rec.key) + b',"values":'
                    buf += rec.values + b"}\n"
                else:
                    buf += _csv_rows(rec.key, decode_values(rec.values)).encode("utf-8")
            f.write(buf)
            written += len(records)
            after = records[-1].key
            if on_progress is not None:
                r = on_progress(count + written, max(total_expected, count + written))
                if r is not None:
                    await r
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)
    return ExportReport(path, written, count + written, resumed)
