"""``[ids]`` in the site file: validated with the rest, and turned into the node's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory5g.ids.wiring import settings_from_site
from factory5g.model import SiteError, load_text


def test_ids_section_becomes_node_settings(steel_site: Path, tmp_path: Path) -> None:
    text = steel_site.read_text() + (
        '\n[ids]\nprefixes = ["88.118.9"]\nrecursive = true\n'
        'upstream = ["http://10.0.0.1:8000/"]\nsearch_types = ["url", "F5G_BATCH"]\n'
        'templates = { coil = "{prefix}/C{date:%y}{seq:05d}" }\n'
    )
    site = load_text(text, "site.toml", path=tmp_path / "site.toml")
    s = settings_from_site(site, tmp_path / "data")
    assert s.node.prefixes == ("88.118.8", "88.118.9")
    assert s.node.recursive
    assert s.node.upstream == ("http://10.0.0.1:8000",)
    assert s.node.search_types == frozenset({"URL", "F5G_BATCH"})
    assert s.node.templates["coil"] == "{prefix}/C{date:%y}{seq:05d}"
    assert "product" in s.node.templates  # the defaults stay
    assert s.path == tmp_path / "data" / "ids.sqlite"
    assert type(s).from_json(s.to_json()) == s


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ('templates = { coil = "{prefix}/{serial}" }', "unknown field"),
        ('templates = { coil = "C{seq}" }', "must start"),
        ('backend = "postgres"', "dsn_env"),
        ('upstream = ["ftp://x"]', "http(s)://"),
        ('prefixes = ["88 1"]', "dot-separated"),
    ],
)
def test_bad_ids_sections_are_located(steel_site: Path, ids: str, message: str) -> None:
    with pytest.raises(SiteError) as info:
        load_text(steel_site.read_text() + f"\n[ids]\n{ids}\n", "site.toml")
    problem = info.value.problems[0]
    assert problem.path.startswith("ids")
    assert message in problem.message
    assert problem.line is not None


def test_postgres_needs_its_variable(steel_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = steel_site.read_text() + '\n[ids]\nbackend = "postgres"\ndsn_env = "F5G_TEST_DSN"\n'
    site = load_text(text, "site.toml")
    monkeypatch.delenv("F5G_TEST_DSN", raising=False)
    with pytest.raises(RuntimeError, match="F5G_TEST_DSN"):
        settings_from_site(site)
    monkeypatch.setenv("F5G_TEST_DSN", "host=db dbname=ids")
    assert settings_from_site(site).dsn == "host=db dbname=ids"
