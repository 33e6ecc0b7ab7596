"""Ready-made site files: ``factory5g init --template NAME DIR``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

TEMPLATES = ("steel",)


def template_text(name: str) -> str:
    if name not in TEMPLATES:
        raise KeyError(name)
    return (
        resources.files("factory5g.model").joinpath("templates", f"{name}.toml").read_text("utf-8")
    )


def write_template(name: str, directory: Path, *, overwrite: bool = False) -> Path:
    """Write ``DIR/site.toml`` from template ``name``; refuse to overwrite unless asked."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "site.toml"
    if target.exists() and not overwrite:
        raise FileExistsError(target)
    target.write_text(template_text(name), encoding="utf-8")
    return target
