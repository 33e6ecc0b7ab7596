"""The ``factory5g`` command: up, check, init, token."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from factory5g import __version__
from factory5g.connect.opcua.cli import app as connect_app
from factory5g.ids.cli import app as ids_app
from factory5g.model import TEMPLATES, Problem, Role, Site, SiteError, load_site, write_template
from factory5g.net.cli import app as net_app

app = typer.Typer(
    name="factory5g",
    help="The 5G fully-connected factory, on premises.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
token_app = typer.Typer(help="API tokens: create, list, revoke.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(connect_app, name="connect", help="Equipment protocols: browse an OPC UA server.")
app.add_typer(net_app, name="net", help="The private 5G network: plan, export, NEF emulator.")
app.add_typer(ids_app, name="ids", help="The identifier node: init, serve, mint, import, export.")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

DEMO_DIR = Path("factory5g-demo")
SiteOption = Annotated[
    Path,
    typer.Option("--site", "-s", help="the site file", envvar="FACTORY5G_SITE"),
]


def _print_problems(problems: tuple[Problem, ...] | list[Problem]) -> None:
    for p in problems:
        where = escape(f"{p.file}:{p.line}" if p.line else p.file)
        err.print(
            f"[bold red]error[/] [cyan]{where}[/] [yellow]{escape(p.path)}[/] {escape(p.message)}",
            end="",
        )
        err.print(f"\n      [dim]hint:[/] {escape(p.hint)}" if p.hint else "")
    err.print(f"[red]{len(problems)} problem{'s' if len(problems) != 1 else ''} found[/]")


def _load_or_exit(path: Path) -> Site:
    try:
        return load_site(path)
    except SiteError as exc:
        _print_problems(exc.problems)
        raise typer.Exit(1) from None


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


@app.command()
def check(site: Annotated[Path, typer.Argument(help="the site file to check")]) -> None:
    """Validate a site file: every problem at once, with line and hint; exit 1 if any."""
    s = _load_or_exit(site)
    out.print(f"[green]ok[/] {site}: {s.summary()}")


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="where to write site.toml")] = Path("."),
    template: Annotated[str, typer.Option("--template", "-t", help="one of: steel")] = "steel",
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing site.toml")] = False,
) -> None:
    """Write a complete, valid site file from a template."""
    if template not in TEMPLATES:
        err.print(f"[red]unknown template {template!r}[/]; available: {', '.join(TEMPLATES)}")
        raise typer.Exit(2)
    try:
        path = write_template(template, directory, overwrite=force)
    except FileExistsError:
        err.print(f"[red]{directory / 'site.toml'} exists[/]; use --force to overwrite it")
        raise typer.Exit(1) from None
    s = load_site(path)
    out.print(f"[green]wrote[/] {path}: {s.summary()}")
    out.print(f"next: [bold]factory5g check {path}[/] then [bold]factory5g up {path}[/]")


@app.command()
def up(
    site: Annotated[Path | None, typer.Argument(help="the site file (default ./site.toml)")] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help=f"run the built-in demo steel plant in ./{DEMO_DIR}/")
    ] = False,
    host: Annotated[str, typer.Option(help="address to listen on (0.0.0.0: every interface)")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port of the API and console")] = 8080,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="data directory (default: the site's [store] path)"),
    ] = None,
    sim_rate: Annotated[float, typer.Option(help="simulator samples per second per signal")] = 10.0,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Start the platform: runtime, API, live feed and console."""
    from factory5g.api import Settings, create_app
    from factory5g.api.tokens import IssuedToken, TokenStore

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # asyncua logs every session event and a traceback per lost connection; our adapter logs
    # what matters (endpoint, node, status) itself.
    logging.getLogger("asyncua").setLevel(max(logging.WARNING, logging.getLogger().level))
    if site is None:
        if demo:
            site = DEMO_DIR / "site.toml"
            if not site.exists():
                write_template("steel", DEMO_DIR)
                out.print(f"wrote the demo site to {site}")
        else:
            site = Path("site.toml")
            if not site.exists():
                err.print(
                    "[red]no site file given and ./site.toml does not exist[/]; "
                    "try [bold]factory5g up --demo[/] or [bold]factory5g init --template steel[/]"
                )
                raise typer.Exit(2)
    s = _load_or_exit(site)
    settings = Settings(site=site, data_dir=data, host=host, port=port, sim_rate_hz=sim_rate)
    data_dir = data or s.store_dir()
    issued: IssuedToken | None = None
    with TokenStore(data_dir / "auth.sqlite") as tokens:
        if demo:
            issued = tokens.create(Role.ADMIN, "demo-admin")
        elif not tokens.list():
            issued = tokens.create(Role.ADMIN, "initial-admin")

    def announce(_: object) -> None:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        url = f"http://{shown}:{port}/"
        out.print(f"[bold green]factory5g is up[/] — {s.summary()}")
        if issued is not None:
            out.print(f"console:     {url}#token={issued.token}")
            out.print(f"admin token: {issued.token}")
            out.print(
                f"try:         curl -H 'Authorization: Bearer {issued.token}' {url}api/v1/site"
            )
        else:
            out.print(f"console:     {url}  (create a token: factory5g token create --site {site})")
        if s.file.ids.enabled:
            out.print(
                f"identifiers: {url}api/handles/{s.file.site.prefix}/…  "
                f"(prefix admin, once: factory5g ids init --site {site})"
            )
        out.print("stop with Ctrl-C")

    from factory5g.ids.api import HandleFastPath

    app_ = create_app(settings, on_ready=announce)
    # Plain public resolutions skip routing (docs/ids.md: the resolution benchmark).
    served = HandleFastPath(app_, lambda: getattr(app_.state, "ids", None))
    code = asyncio.run(_serve(served, host, port, log_level))
    raise typer.Exit(code)


async def _serve(app_: object, host: str, port: int, log_level: str) -> int:
    """Serve until SIGINT/SIGTERM, stop everything, and exit 0 if nothing was left behind.

    uvicorn re-raises the signal after a graceful stop (exit status 130/143); a service that
    stopped cleanly on request should exit 0, so this installs its own handlers instead. A second
    signal forces the exit.
    """
    import contextlib
    import signal

    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    config = uvicorn.Config(
        app_,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        access_log=False,
        # Plain public resolutions answered in the HTTP parser callback (docs/ids.md, Benchmark).
        http="factory5g.ids.protocol:ResolutionProtocol",
    )
    server = _Server(config)
    loop = asyncio.get_running_loop()

    first_signal_at: list[float] = []

    def stop(sig: signal.Signals) -> None:
        # The same Ctrl-C often reaches us twice (terminal process group, `timeout`, make): only
        # a signal a second or more after the first forces the exit.
        now = loop.time()
        if first_signal_at and now - first_signal_at[0] >= 1.0:
            server.force_exit = True
            logging.getLogger(__name__).warning("%s again: forcing the exit", sig.name)
            return
        if not first_signal_at:
            first_signal_at.append(now)
            logging.getLogger(__name__).info("%s received: stopping", sig.name)
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig)
    try:
        await server.serve()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if not server.started:
        err.print("[red]factory5g did not start[/] (see the error above)")
        return 3
    me = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    if left:
        err.print(f"[red]stopped with {len(left)} task(s) left:[/] {[t.get_name() for t in left]}")
        return 4
    out.print("factory5g stopped cleanly: no task left behind")
    return 0


def _site_data_dir(site: Path) -> Path:
    return _load_or_exit(site).store_dir()


@token_app.command("create")
def token_create(
    role: Annotated[Role, typer.Option("--role", "-r", help="viewer, operator, engineer or admin")],
    name: Annotated[str | None, typer.Option("--name", "-n", help="who or what uses it")] = None,
    site: SiteOption = Path("site.toml"),
) -> None:
    """Create an API token; it is printed once and only its hash is stored."""
    from factory5g.api.tokens import TokenStore

    with TokenStore(_site_data_dir(site) / "auth.sqlite") as tokens:
        issued = tokens.create(role, name)
    err.print(
        f"created token {issued.info.id} ({issued.info.name}, role {role.value}); "
        "store it now — it cannot be shown again:"
    )
    out.print(issued.token)


def _when(t: float | None) -> str:
    if t is None:
        return "—"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@token_app.command("list")
def token_list(
    site: SiteOption = Path("site.toml"),
    all_: Annotated[bool, typer.Option("--all", help="include revoked tokens")] = False,
) -> None:
    """List tokens (never their secrets)."""
    from factory5g.api.tokens import TokenStore

    with TokenStore(_site_data_dir(site) / "auth.sqlite") as tokens:
        rows = tokens.list(include_revoked=all_)
    table = Table("id", "name", "role", "created", "last used", "revoked")
    for t in rows:
        table.add_row(
            t.id,
            t.name,
            t.role.value,
            _when(t.created_at),
            _when(t.last_used_at),
            _when(t.revoked_at),
        )
    out.print(table)


@token_app.command("revoke")
def token_revoke(
    ref: Annotated[str, typer.Argument(help="token id or name")],
    site: SiteOption = Path("site.toml"),
) -> None:
    """Revoke a token; requests with it fail from then on."""
    from factory5g.api.tokens import TokenError, TokenStore

    with TokenStore(_site_data_dir(site) / "auth.sqlite") as tokens:
        try:
            t = tokens.revoke(ref)
        except TokenError as exc:
            err.print(f"[red]{exc}[/]")
            raise typer.Exit(1) from None
    out.print(f"revoked {t.id} ({t.name}, role {t.role.value})")


def main() -> None:
    app(prog_name="factory5g")


if __name__ == "__main__":
    main()
