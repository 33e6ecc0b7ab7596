"""``factory5g connect browse URL``: look into an OPC UA server from the command line.

The tree goes to stdout; with ``--snippet`` the site-file snippet goes to stdout instead (the
tree to stderr), so ``... --snippet >> site.toml`` works. Progress and errors go to stderr.
The password of ``--user`` comes from the environment variable ``F5G_OPCUA_PASSWORD``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Final

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn

from factory5g.connect.opcua.browse import (
    NO_NONE_ENDPOINT,
    OBJECTS,
    BrowsedNode,
    BrowseProgress,
    browse,
    render_tree,
    save_server_cert,
    site_snippet,
)
from factory5g.connect.opcua.errors import OpcUaError, OpcUaSecurityError
from factory5g.model.site import ID_RE

__all__ = ["PASSWORD_ENV", "app", "browse_command"]

PASSWORD_ENV: Final = "F5G_OPCUA_PASSWORD"

app = typer.Typer(
    help="OPC UA tools: browse a server, write its site-file snippet, save its certificate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error[/] {escape(message)}")
    return typer.Exit(1)


@app.command("browse")
def browse_command(
    url: Annotated[str, typer.Argument(help="the server, e.g. opc.tcp://10.0.0.5:4840")],
    node: Annotated[str, typer.Option("--node", help="start here instead of Objects")] = OBJECTS,
    depth: Annotated[int, typer.Option("--depth", min=0, max=50, help="levels to walk")] = 3,
    snippet: Annotated[
        bool, typer.Option("--snippet", help="print the site-file snippet (tree to stderr)")
    ] = False,
    endpoint: Annotated[
        str | None,
        typer.Option("--endpoint", help="bind the snippet to this opcua endpoint id, else the URL"),
    ] = None,
    save_cert: Annotated[
        Path | None,
        typer.Option("--save-cert", help="save the server certificate here (.der or .pem)"),
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", help=f"user name; password from ${PASSWORD_ENV}")
    ] = None,
    standard: Annotated[
        bool, typer.Option("--standard", help="include namespace 0 (the Server object...)")
    ] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="seconds per request")] = 4.0,
) -> None:
    """Walk a server's address space and show it; optionally write the site-file snippet that
    binds its variables, and save its certificate for an endpoint's trust list."""
    # asyncua warns about negotiated parameters (session timeout...) that are no news here.
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    if not url.startswith("opc.tcp://"):
        raise _fail(f"{url!r} is not an opc.tcp:// URL")
    if endpoint is not None and not re.fullmatch(ID_RE, endpoint):
        raise _fail(f"{endpoint!r} is not an endpoint id (lower-case letters, digits, _ and -)")
    password = os.environ.get(PASSWORD_ENV) if user is not None else None
    if user is not None and password is None:
        err.print(f"[yellow]warning[/] ${PASSWORD_ENV} is not set: no password is sent")
    try:
        if save_cert is not None:
            cert = asyncio.run(save_server_cert(url, save_cert, timeout_s=timeout))
            err.print(
                f"saved the server certificate [bold]{cert.thumbprint}[/] "
                f"({escape(cert.subject)}, valid until {cert.not_after:%Y-%m-%d}) "
                f"to {escape(str(save_cert))}"
            )
        root = _browse(url, node, depth, user, password, standard, timeout)
    except OpcUaSecurityError as exc:
        if save_cert is not None and exc.reason == NO_NONE_ENDPOINT:
            # The usual reason to fetch a certificate: a server that requires security.
            err.print(f"[yellow]not browsed[/]: {escape(exc.reason)}")
            return
        raise _fail(str(exc)) from None
    except OpcUaError as exc:
        raise _fail(str(exc)) from None
    except ValueError as exc:  # a malformed --node
        raise _fail(f"--node {node!r}: {exc}") from None
    except OSError as exc:  # --save-cert cannot be written
        raise _fail(f"{exc.strerror or exc}: {exc.filename or save_cert}") from None
    tree = render_tree(root)
    if snippet:
        err.print(tree)
        text = site_snippet(root, url=url, endpoint=endpoint, browsed_at=datetime.now(UTC))
        out.print(text, end="", markup=False, highlight=False)
    else:
        out.print(tree)


def _browse(
    url: str,
    node: str,
    depth: int,
    user: str | None,
    password: str | None,
    standard: bool,
    timeout: float,
) -> BrowsedNode:
    def run(progress: Callable[[BrowseProgress], None] | None = None) -> BrowsedNode:
        return asyncio.run(
            browse(
                url,
                node=node,
                depth=depth,
                progress=progress,
                username=user,
                password=password,
                timeout_s=timeout,
                include_standard=standard,
            )
        )

    if not err.is_terminal:  # no spinner in a pipe or a log file
        return run()
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), console=err, transient=True
    ) as bar:
        task = bar.add_task(f"connecting to {escape(url)}", total=None)

        def progress(p: BrowseProgress) -> None:
            bar.update(
                task,
                description=f"browsed {p.visited} nodes, {p.queued} to go: {escape(p.node)}",
            )

        return run(progress)
