"""The factory5g command: init, check, token — run through typer's runner on real files."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from factory5g.api.tokens import TokenStore
from factory5g.cli import app
from factory5g.model import Role, load_site

runner = CliRunner()


def test_init_writes_a_valid_steel_site(tmp_path: Path) -> None:
    r = runner.invoke(app, ["init", "--template", "steel", str(tmp_path / "plant")])
    assert r.exit_code == 0, r.output
    site = load_site(tmp_path / "plant" / "site.toml")
    assert site.file.site.name.startswith("Demo Steel")
    assert {e.kind for e in site.file.equipment} >= {"rolling_stand", "conveyor"}
    # refuses to overwrite, unless forced
    r = runner.invoke(app, ["init", str(tmp_path / "plant")])
    assert r.exit_code == 1
    assert "exists" in r.output
    assert runner.invoke(app, ["init", "--force", str(tmp_path / "plant")]).exit_code == 0


def test_init_unknown_template(tmp_path: Path) -> None:
    r = runner.invoke(app, ["init", "--template", "bakery", str(tmp_path)])
    assert r.exit_code == 2
    assert "steel" in r.output


def test_check_good_site(steel_site: Path) -> None:
    r = runner.invoke(app, ["check", str(steel_site)])
    assert r.exit_code == 0, r.output
    assert r.output.count("\n") == 1  # one-line summary
    assert "27 signals" in r.output


def test_check_bad_site_reports_every_problem(steel_site: Path) -> None:
    text = steel_site.read_text(encoding="utf-8")
    text = text.replace('slice = "embb-video"', 'slice = "embb-vdeo"', 1)
    text = text.replace('unit = "MN"', 'unit = "Mn"', 1)
    load = 'device = "table-plc", table = "input", address = 1'
    assert load in text
    text = text.replace(f'{{ kind = "modbus", {load}', f'{{ kind = "opc", {load}')
    steel_site.write_text(text, encoding="utf-8")
    r = runner.invoke(app, ["check", str(steel_site)])
    assert r.exit_code == 1
    out = r.output
    assert "3 problems found" in out
    assert re.search(r"site\.toml:\d+ device\[3\]\.slice slice 'embb-vdeo' does not exist", out)
    assert "did you mean 'embb-video'" in out
    assert "unknown unit 'Mn'" in out
    assert "unknown binding kind 'opc'" in out
    assert "did you mean 'opcua'" in out


def test_check_missing_file(tmp_path: Path) -> None:
    r = runner.invoke(app, ["check", str(tmp_path / "nope.toml")])
    assert r.exit_code == 1
    assert "cannot read the site file" in r.output


def test_token_create_list_revoke(steel_site: Path) -> None:
    site = ["--site", str(steel_site)]
    r = runner.invoke(app, ["token", "create", "--role", "operator", "--name", "hmi-3", *site])
    assert r.exit_code == 0, r.output
    token = r.stdout.strip().splitlines()[-1]
    assert token.startswith("f5g_")
    data = load_site(steel_site).store_dir()
    with TokenStore(data / "auth.sqlite") as store:
        info = store.verify(token)
        assert info is not None
        assert info.role is Role.OPERATOR
    r = runner.invoke(app, ["token", "list", *site])
    assert r.exit_code == 0
    assert "hmi-3" in r.output
    assert "operator" in r.output
    assert token not in r.output
    r = runner.invoke(app, ["token", "revoke", "hmi-3", *site])
    assert r.exit_code == 0, r.output
    with TokenStore(data / "auth.sqlite") as store:
        assert store.verify(token) is None
    assert "hmi-3" not in runner.invoke(app, ["token", "list", *site]).output
    assert "hmi-3" in runner.invoke(app, ["token", "list", "--all", *site]).output
    r = runner.invoke(app, ["token", "revoke", "hmi-3", *site])
    assert r.exit_code == 1
    assert "no active token" in r.output


def test_token_create_bad_role(steel_site: Path) -> None:
    r = runner.invoke(app, ["token", "create", "--role", "god", "--site", str(steel_site)])
    assert r.exit_code == 2
    assert "viewer" in r.output


def test_up_without_site_says_what_to_do(tmp_path: Path, monkeypatch: object) -> None:
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        r = runner.invoke(app, ["up"])
    finally:
        os.chdir(cwd)
    assert r.exit_code == 2
    assert "--demo" in r.output
