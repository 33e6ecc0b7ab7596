"""``factory5g ids …``: the identifier node from the command line.

    init      create the prefix handle and its admin handle; print the credentials once
    serve     run the node alone (Handle REST API), optionally with several worker processes
    mint      mint identifiers from a template, in bulk, with a progress bar
    import    load records from CSV or JSON lines (streaming, resumable)
    export    write records to CSV or JSON lines (streaming, resumable)
    delegate  give a derived prefix to another node (HS_SITE in 0.NA/<prefix>)

The node comes from the site file (``[site] prefix`` and ``[ids]``), or, without one, from
``--db FILE --prefix P`` (an embedded store) or ``--dsn DSN --prefix P`` (PostgreSQL).
Mounted by the main CLI as ``factory5g ids``; also ``python -m factory5g.ids.cli``.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from factory5g.ids.errors import IdsError
from factory5g.ids.service import NodeConfig
from factory5g.ids.wiring import IdsAppSettings, open_service

__all__ = ["app"]

app = typer.Typer(
    help="The identifier node (Handle-compatible): init, serve, mint, import, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

SiteOpt = Annotated[
    Path, typer.Option("--site", "-s", help="the site file", envvar="FACTORY5G_SITE")
]
DataOpt = Annotated[
    Path | None, typer.Option("--data", help="data directory (default: the site's [store] path)")
]
DbOpt = Annotated[
    Path | None, typer.Option("--db", help="embedded store file, instead of the site's")
]
DsnOpt = Annotated[
    str | None,
    typer.Option("--dsn", help="PostgreSQL DSN, instead of the site's", envvar="FACTORY5G_IDS_DSN"),
]
PrefixOpt = Annotated[
    list[str] | None,
    typer.Option("--prefix", "-p", help="prefix served (with --db/--dsn; repeatable)"),
]


def _settings(
    site: Path, data: Path | None, db: Path | None, dsn: str | None, prefix: list[str] | None
) -> IdsAppSettings:
    if db is not None or dsn is not None:
        if not prefix:
            err.print("[red]--db/--dsn need --prefix[/] (the prefix this node serves)")
            raise typer.Exit(2)
        try:
            node = NodeConfig(prefixes=tuple(prefix))
        except IdsError as exc:
            err.print(f"[red]{escape(exc.message)}[/]")
            raise typer.Exit(2) from None
        if dsn is not None:
            return IdsAppSettings(node=node, backend="postgres", dsn=dsn)
        return IdsAppSettings(node=node, path=db)
    from factory5g.ids.wiring import settings_from_site
    from factory5g.model import SiteError, load_site

    try:
        s = load_site(site)
    except SiteError as exc:
        for p in exc.problems:
            err.print(f"[red]error[/] {escape(str(p))}")
        raise typer.Exit(1) from None
    try:
        return settings_from_site(s, data)
    except RuntimeError as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1) from None


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def _run(coro: object) -> None:
    try:
        asyncio.run(coro)  # type: ignore[arg-type]
    except IdsError as exc:
        err.print(f"[red]error[/] (responseCode {int(exc.code)}): {escape(exc.message)}")
        raise typer.Exit(1) from None


@app.command()
def init(
    url: Annotated[
        list[str] | None,
        typer.Option("--url", help="how other nodes reach this one (HS_SITE); repeatable"),
    ] = None,
    site: SiteOpt = Path("site.toml"),
    data: DataOpt = None,
    db: DbOpt = None,
    dsn: DsnOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Create 0.NA/<prefix> and <prefix>/admin; print the admin credentials (once)."""
    settings = _settings(site, data, db, dsn, prefix)
    urls = list(url or ([settings.public_url] if settings.public_url else []))

    async def go() -> None:
        async with open_service(settings) as svc:
            for p in settings.node.prefixes:
                creds = await svc.init_prefix(p, urls=urls)
                err.print(
                    f"[green]initialised[/] {p}: 0.NA/{p} and {p}/admin. "
                    "Store the secret now — it cannot be shown again:"
                )
                out.print(f"user:   {creds.user}")
                out.print(f"secret: {creds.secret}")
                basic = creds.user.replace(":", "%3A", 1)
                err.print(f"[dim]curl -u '{basic}:{creds.secret}' …/api/handles/{p}/…[/]")

    _run(go())


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="worker processes")] = 1,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
    site: SiteOpt = Path("site.toml"),
    data: DataOpt = None,
    db: DbOpt = None,
    dsn: DsnOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Serve the Handle REST API alone (/api/handles, /hrls/handles)."""
    import uvicorn

    from factory5g.ids.protocol import PROTOCOL

    settings = _settings(site, data, db, dsn, prefix)
    os.environ["FACTORY5G_IDS_SETTINGS"] = settings.to_json()
    err.print(
        f"[bold green]identifier node[/] for {', '.join(settings.node.prefixes)} on "
        f"http://{host}:{port}/api/handles/ ({workers} worker{'s' if workers > 1 else ''})"
    )
    uvicorn.run(
        "factory5g.ids.api:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        # Plain resolutions answered in the HTTP parser callback (docs/ids.md, benchmark).
        http=PROTOCOL,
    )


@app.command()
def mint(
    kind: Annotated[str, typer.Argument(help="object kind: product, part, batch, equipment…")],
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=1_000_000)] = 1,
    line: Annotated[str | None, typer.Option(help="ISA-95 line")] = None,
    area: Annotated[str | None, typer.Option(help="ISA-95 area")] = None,
    cell: Annotated[str | None, typer.Option(help="ISA-95 work cell")] = None,
    equipment: Annotated[str | None, typer.Option(help="equipment id")] = None,
    batch: Annotated[str | None, typer.Option(help="batch identifier")] = None,
    date: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="for {date}; default today")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--out", "-o", help="write the identifiers here, one a line")
    ] = None,
    site: SiteOpt = Path("site.toml"),
    data: DataOpt = None,
    db: DbOpt = None,
    dsn: DsnOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Mint identifiers in bulk from the kind's template (as the local administrator)."""
    settings = _settings(site, data, db, dsn, prefix)
    node_prefix = settings.node.prefixes[0]

    async def go() -> None:
        async with open_service(settings) as svc:
            with _progress() as bar:
                task = bar.add_task(f"minting {kind}", total=count)
                t0 = time.perf_counter()
                result = await svc.mint(
                    node_prefix,
                    kind,
                    count,
                    None,
                    trusted=True,
                    fields={
                        "line": line,
                        "area": area,
                        "cell": cell,
                        "equipment": equipment,
                        "batch": batch,
                    },
                    date=date.replace(tzinfo=UTC) if date else None,
                    on_progress=lambda n: bar.update(task, completed=n),
                )
                elapsed = time.perf_counter() - t0
        if output is not None:
            with output.open("w", encoding="utf-8") as f:
                for h in result.handles:
                    f.write(h + "\n")
        rate = len(result.handles) / elapsed if elapsed > 0 else 0.0
        err.print(
            f"[green]minted[/] {len(result.handles)} {kind} identifiers in {elapsed:.2f} s "
            f"({rate:,.0f}/s)"
        )
        if output is None:
            out.print(f"first: {result.handles[0]}")
            out.print(f"last:  {result.handles[-1]}")
        else:
            out.print(f"wrote {output}")

    _run(go())


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or JSON lines")],
    format_: Annotated[str | None, typer.Option("--format", help="csv or jsonl")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace handles that exist")] = False,
    resume: Annotated[bool, typer.Option(help="continue an interrupted import")] = True,
    chunk: Annotated[int, typer.Option(min=1, max=1_000_000, help="handles per commit")] = 5000,
    site: SiteOpt = Path("site.toml"),
    data: DataOpt = None,
    db: DbOpt = None,
    dsn: DsnOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Import records (streaming; a killed import resumes where it stopped)."""
    from factory5g.ids.transfer import ImportFormatError, file_format, import_file

    settings = _settings(site, data, db, dsn, prefix)
    try:
        fmt = file_format(file, format_)
    except ValueError as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2) from None

    async def go() -> None:
        async with open_service(settings) as svc:
            with _progress() as bar:
                task = bar.add_task(f"importing {file.name}", total=file.stat().st_size)
                report = await import_file(
                    svc,
                    file,
                    fmt=fmt,
                    overwrite=overwrite,
                    resume=resume,
                    chunk=chunk,
                    on_progress=lambda done, total: bar.update(task, completed=done),
                )
        if report.already_done:
            out.print(f"{file} was imported already ({report.total} handles); nothing to do")
            return
        resumed = f", resumed at byte {report.resumed_at}" if report.resumed_at else ""
        out.print(f"imported {report.written} handles, skipped {report.skipped} existing{resumed}")

    try:
        _run(go())
    except ImportFormatError as exc:
        err.print(f"[red]error[/] {escape(str(exc))}")
        err.print("[dim]everything before it is stored; fix the file and run again[/]")
        raise typer.Exit(1) from None


@app.command()
def export(
    file: Annotated[Path, typer.Argument(dir_okay=False, help="CSV or JSON lines to write")],
    format_: Annotated[str | None, typer.Option("--format", help="csv or jsonl")] = None,
    only: Annotated[str | None, typer.Option("--only", help="only this prefix")] = None,
    resume: Annotated[bool, typer.Option(help="continue an interrupted export")] = True,
    site: SiteOpt = Path("site.toml"),
    data: DataOpt = None,
    db: DbOpt = None,
    dsn: DsnOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Export records in key order (streaming; FILE.part until complete)."""
    from factory5g.ids.transfer import export_file, file_format

    settings = _settings(site, data, db, dsn, prefix)
    try:
        fmt = file_format(file, format_)
    except ValueError as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2) from None

    async def go() -> None:
        async with open_service(settings) as svc:
            with _progress() as bar:
                task = bar.add_task(f"exporting {file.name}", total=None)
                report = await export_file(
                    svc,
                    file,
                    fmt=fmt,
                    prefix=only,
                    resume=resume,
                    on_progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
        more = " (resumed)" if report.resumed else ""
        out.print(f"exported {report.total} handles to {report.path}{more}")

    _run(go())


@app.command()
def delegate(
    derived: Annotated[str, typer.Argument(help="the derived prefix, e.g. 88.118.8")],
    url: Annotated[list[str], typer.Argument(help="base URLs of the node serving it")],
    site: SiteOpt = Path("site.toml"),
    data: DataOpt = None,
    db: DbOpt = None,
    dsn: DsnOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Delegate a derived prefix to another node: write 0.NA/<derived> with its HS_SITE."""
    from factory5g.ids.hierarchy import site_data
    from factory5g.ids.records import DEFAULT_TTL, HandleValue
    from factory5g.ids.syntax import parse_handle, prefix_handle

    settings = _settings(site, data, db, dsn, prefix)

    async def go() -> None:
        async with open_service(settings) as svc:
            h = parse_handle(prefix_handle(derived))
            if not svc.is_local(h):
                err.print(f"[red]{derived} is not derived from {', '.join(svc.prefixes)}[/]")
                raise typer.Exit(1)
            now = int(svc.clock())
            value = HandleValue(
                1,
                "HS_SITE",
                site_data(url, description=f"node of {derived}"),
                "site",
                DEFAULT_TTL,
                False,
                now,
            )
            await svc.put_trusted(h, [value])
        out.print(f"delegated {derived} to {', '.join(url)}")

    _run(go())


if __name__ == "__main__":
    app()
