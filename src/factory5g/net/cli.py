"""``factory5g net``: plan the private 5G network, export subscribers, run the NEF emulator.

The lead mounts :data:`app` as ``factory5g net``; ``python -m factory5g.net.cli`` runs it alone.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from factory5g.model import Site, SiteError, load_site
from factory5g.net.errors import NetError
from factory5g.net.latency import LatencyParams
from factory5g.net.plan import PlanOptions, plan_site

__all__ = ["app"]

app = typer.Typer(
    help="The private 5G network: plan, export subscribers, NEF emulator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

SiteArg = Annotated[Path, typer.Argument(help="the site file")]


def _site(path: Path) -> Site:
    try:
        return load_site(path)
    except SiteError as exc:
        for p in exc.problems:
            err.print(f"[bold red]error[/] {escape(str(p))}")
        raise typer.Exit(1) from None


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[bold red]error[/] {escape(str(exc))}")
    return typer.Exit(1)


@app.command()
def plan(
    site: SiteArg,
    json_out: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
    html: Annotated[
        Path | None, typer.Option("--html", help="write an HTML report with charts here")
    ] = None,
    max_gbr_share: Annotated[
        float, typer.Option(help="share of a cell's capacity GBR flows may reserve")
    ] = 0.8,
    campus: Annotated[
        bool,
        typer.Option(help="add the stack delay measured on SA campus networks (docs/network.md)"),
    ] = False,
) -> None:
    """Capacity per cell and TDD pattern, demand per slice, GBR admission, latency per flow."""
    s = _site(site)
    try:
        opts = PlanOptions(
            max_gbr_share=max_gbr_share,
            latency=LatencyParams.campus() if campus else LatencyParams(),
        )
        p = plan_site(s, opts)
    except NetError as exc:
        raise _fail(exc) from None
    from factory5g.net.report import plan_html, plan_json, plan_tables

    if html is not None:
        html.write_text(plan_html(p), encoding="utf-8")
        err.print(f"[green]wrote[/] {escape(str(html))}")
    if json_out:
        sys.stdout.write(plan_json(p) + "\n")
    else:
        out.print(plan_tables(p))


@app.command()
def export(
    site: SiteArg,
    format: Annotated[str, typer.Option("--format", "-f", help="open5gs or free5gc")] = "open5gs",
    secrets: Annotated[
        Path,
        typer.Option(
            "--secrets",
            help="TOML file with each subscriber's K and OPc (never in the site file)",
            envvar="FACTORY5G_SECRETS",
        ),
    ] = Path("secrets.toml"),
    output: Annotated[
        Path | None, typer.Option("--out", "-o", help="write here instead of stdout")
    ] = None,
    mongo: Annotated[
        str | None, typer.Option("--mongo", help="upsert into Open5GS' MongoDB at this URL")
    ] = None,
    free5gc: Annotated[
        str | None, typer.Option("--free5gc", help="push to the free5GC web console at this URL")
    ] = None,
) -> None:
    """Subscriber documents for Open5GS (JSON lines for mongoimport) or free5GC (SubsData)."""
    import factory5g.net.provision as provision

    s = _site(site)
    if format not in ("open5gs", "free5gc"):
        err.print(f"[bold red]error[/] unknown format {escape(format)!r}: use open5gs or free5gc")
        raise typer.Exit(2)
    try:
        keys = provision.load_secrets(secrets)
        if format == "open5gs":
            docs = provision.open5gs_documents(s, keys)
            if mongo:
                n = provision.upsert_open5gs(docs, provision.mongo_collection(mongo))
                err.print(f"[green]upserted[/] {n} subscribers into MongoDB")
                return
        else:
            docs = provision.free5gc_bodies(s, keys)
            if free5gc:
                n = provision.push_free5gc_sync(docs, free5gc, keys.free5gc_login)
                err.print(f"[green]pushed[/] {n} subscribers to the free5GC web console")
                return
    except NetError as exc:
        raise _fail(exc) from None
    text = provision.json_lines(docs)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        err.print(f"[green]wrote[/] {len(docs)} subscribers to {escape(str(output))}")
    else:
        sys.stdout.write(text)


@app.command()
def nef(
    site: SiteArg,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0: any free one)")] = 8090,
) -> None:
    """Serve the NEF emulator (AsSessionWithQoS, MonitoringEvent, TrafficInfluence)."""
    import uvicorn

    from factory5g.net.nef.emulator import create_nef_app

    s = _site(site)
    try:
        nef_app = create_nef_app(s)
    except NetError as exc:
        raise _fail(exc) from None
    err.print(
        f"NEF emulator for {escape(s.name)} on http://{host}:{port} "
        "(/3gpp-as-session-with-qos/v1, /3gpp-monitoring-event/v1, /3gpp-traffic-influence/v1, "
        "/nef-emulator/v1)"
    )
    uvicorn.run(nef_app, host=host, port=port, log_level="warning")


if __name__ == "__main__":  # pragma: no cover
    app()
