"""The browse tool on the demo server: the tree, the site-file snippet, the command line."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from factory5g.connect.opcua import OpcUaAdapter, OpcUaConnectionError, OpcUaStatusError
from factory5g.connect.opcua.browse import (
    BrowsedNode,
    BrowseProgress,
    browse,
    equipment_id,
    render_tree,
    signal_name,
    site_snippet,
)
from factory5g.connect.opcua.cli import PASSWORD_ENV, app
from factory5g.model import check_text, load_text
from factory5g.model.site import ID_RE, SIGNAL_NAME_RE
from factory5g.sim import Plant
from factory5g.sim.opcua import OpcUaPeers
from factory5g.stream import MemoryBus, Quality
from tests.connect.opcua.conftest import WITHIN_S, LoopThread
from tests.connect.opcua.test_read import Collector
from tests.connect.opcua.test_sim import demo_site
from tests.helpers import wait_until

MINIMAL = """
[site]
name = "from-browse"
prefix = "88.1"
"""


@dataclass
class Demo:
    url: str
    plant: Plant


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    """The demo plant's server (a finishing stand), in a thread: the CLI tests reach it too."""
    with LoopThread("opcua-demo-server") as lt:
        site = demo_site("opc.tcp://127.0.0.1:0/demo")
        plant = Plant(site)
        peers = OpcUaPeers(site, plant)
        lt.run(peers.__aenter__())
        try:
            yield Demo(peers.url("mill"), plant)
        finally:
            lt.run(peers.__aexit__(None, None, None))


def by_name(node: BrowsedNode) -> dict[str, BrowsedNode]:
    return {c.browse_name: c for c in node.children}


async def test_browse_returns_the_demo_tree(demo: Demo) -> None:
    seen: list[BrowseProgress] = []
    root = await browse(demo.url, progress=seen.append)
    assert root.node_id == "i=85"
    assert root.browse_name == "Objects"
    assert set(by_name(root)) == {"f1"}  # namespace 0 (the Server object) left out
    f1 = by_name(root)["f1"]
    assert f1.node_class == "Object"
    assert f1.node_id == "ns=2;s=f1"
    nodes = by_name(f1)
    assert set(nodes) == {"speed", "speed_trim", "strip_present", "Set_speed_trim"}
    speed, trim, present = nodes["speed"], nodes["speed_trim"], nodes["strip_present"]
    assert (speed.node_class, speed.data_type, speed.access, speed.unit) == (
        "Variable",
        "Double",
        "read",
        "m/s",
    )
    assert speed.value == demo.plant.model("f1").values["speed"]
    assert (trim.access, trim.unit) == ("read/write", "%")
    assert (present.data_type, present.unit) == ("Boolean", None)
    assert isinstance(present.value, bool)
    assert nodes["Set_speed_trim"].node_class == "Method"
    (eu,) = speed.children  # depth 3 reaches the properties
    assert (eu.browse_name, eu.is_property) == ("EngineeringUnits", True)
    assert seen
    assert [p.visited for p in seen] == sorted(p.visited for p in seen)
    assert seen[-1].visited >= 5

    shallow = await browse(demo.url, depth=1)
    assert [c.browse_name for c in shallow.children] == ["f1"]
    assert shallow.children[0].children == ()
    everything = await browse(demo.url, depth=1, include_standard=True)
    assert {"f1", "Server"} <= set(by_name(everything))
    at_f1 = await browse(demo.url, node="ns=2;s=f1", depth=1)
    assert at_f1.browse_name == "f1"
    assert len(at_f1.children) == 4

    text = _render(root)
    assert "f1" in text
    assert "speed_trim" in text
    assert "m/s" in text
    assert "read/write" in text


def _render(root: BrowsedNode) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(render_tree(root))
    return console.export_text()


async def test_browse_errors(demo: Demo, free_port: int) -> None:
    with pytest.raises(OpcUaConnectionError, match="cannot connect: ConnectionRefused"):
        await browse(f"opc.tcp://127.0.0.1:{free_port}")
    with pytest.raises(OpcUaStatusError, match="BadNodeIdUnknown"):
        await browse(demo.url, node="ns=2;s=nowhere")
    with pytest.raises(ValueError, match="'nowhere' is not a node id"):
        await browse(demo.url, node="nowhere")


@pytest.mark.parametrize("endpoint", ["mill", None])
async def test_the_snippet_is_a_site_file_that_reads_the_server(
    demo: Demo, endpoint: str | None
) -> None:
    """Append the snippet to a minimal site: it checks clean, and the adapter it configures
    reads the demo server."""
    root = await browse(demo.url)
    snippet = site_snippet(root, url=demo.url, endpoint=endpoint)
    text = MINIMAL + "\n" + snippet
    assert check_text(text, "from-browse.toml") == []
    site = load_text(text)
    (eq,) = site.file.equipment
    assert eq.id == "f1"
    signals = {s.name: s for s in eq.signal}
    assert set(signals) == {"speed", "speed_trim", "strip_present"}
    assert signals["speed"].unit == "m/s"
    assert signals["speed_trim"].unit == "%"
    assert signals["strip_present"].type.value == "bool"
    binding = signals["speed"].binding
    assert binding is not None
    assert binding.kind == "opcua"
    assert binding.node == "ns=2;s=f1.speed"  # type: ignore[union-attr]
    assert binding.endpoint == (endpoint or demo.url)  # type: ignore[union-attr]
    if endpoint is not None:
        assert site.file.opcua[0].url == demo.url

    speed = site.signals.get("f1.speed").id
    async with MemoryBus() as bus:
        got = Collector(bus)
        async with OpcUaAdapter(site, bus) as adapter:
            await wait_until(lambda: got.seen(speed, Quality.GOOD), WITHIN_S, "f1.speed")
            assert adapter.stats()["endpoints"][0]["bad_items"] == 0


@given(st.text())
def test_names_are_made_valid(name: str) -> None:
    assert re.fullmatch(SIGNAL_NAME_RE, signal_name(name))
    assert re.fullmatch(ID_RE, equipment_id(name))


def test_names_read_well() -> None:
    assert signal_name("Motor Current (A)") == "motor_current_a"
    assert signal_name("2ndPass") == "s_2ndpass"
    assert signal_name("Speed") == "speed"
    assert equipment_id("Stand F1") == "stand_f1"
    assert equipment_id("Line-2") == "line-2"


def test_snippet_of_a_handmade_tree() -> None:
    """Duplicate names get suffixes, unknown units a note, integers type int, and text with
    quotes stays valid TOML."""

    def var(name: str, data_type: str, unit: str | None = None) -> BrowsedNode:
        return BrowsedNode(f"ns=3;s={name}", name, name, "Variable", data_type, "read", 0, unit)

    obj = BrowsedNode(
        "ns=3;i=1",
        'Press "A"',
        'Press "A"',
        "Object",
        children=(
            var("Count", "Int32"),
            var("count", "UInt16"),
            var("Label", "String"),
            var("Torque", "Double", "furlong"),
        ),
    )
    root = BrowsedNode("i=85", "Objects", "Objects", "Object", children=(obj,))
    snippet = site_snippet(root, url="opc.tcp://10.0.0.5:4840")
    assert "# not a known unit" in snippet
    site_text = MINIMAL + snippet
    problems = check_text(site_text)
    assert [p.message for p in problems] == ["unknown unit 'furlong'"]
    declared = 'prefix = "88.1"\nextra_units = ["furlong"]'
    fixed = load_text(site_text.replace('prefix = "88.1"', declared))
    names = [(s.name, s.type.value) for s in fixed.file.equipment[0].signal]
    assert names == [("count", "int"), ("count_2", "int"), ("label", "string"), ("torque", "float")]
    assert fixed.file.equipment[0].name == 'Press "A"'


# -- the command line -----------------------------------------------------------------------


def test_cli_prints_the_tree(demo: Demo) -> None:
    result = CliRunner().invoke(app, [demo.url, "--depth", "2"])
    assert result.exit_code == 0, result.output
    assert "f1" in result.output
    assert "speed_trim" in result.output
    assert "Set_speed_trim()" in result.output


def test_cli_prints_the_snippet_on_stdout(demo: Demo) -> None:
    result = CliRunner().invoke(app, [demo.url, "--snippet", "--endpoint", "mill"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("# OPC UA variables of")
    assert check_text(MINIMAL + result.stdout) == []
    assert "f1" in result.stderr  # the tree went to stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["opc.tcp://127.0.0.1:1"], "cannot connect"),
        (["http://example.com"], "is not an opc.tcp:// URL"),
        (["{url}", "--node", "garbage"], "--node 'garbage': 'garbage' is not a node id"),
        (["{url}", "--endpoint", "Bad Id"], "is not an endpoint id"),
        (["{url}", "--save-cert", "x.der"], "presents no certificate"),
    ],
)
def test_cli_errors_are_one_line(demo: Demo, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, [a.replace("{url}", demo.url) for a in args])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error ")
    assert message in lines[0]
    assert "Traceback" not in result.output


def test_cli_user_without_password_warns(demo: Demo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    result = CliRunner().invoke(app, [demo.url, "--user", "bob", "--depth", "1"])
    # the demo server takes anyone anonymous only: a user name is refused, clearly
    assert f"${PASSWORD_ENV} is not set" in result.output
    assert result.exit_code == 1
    assert "refused user 'bob'" in result.output
