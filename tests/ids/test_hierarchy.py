"""Nodes on loopback: top (88) → secondary (88.118) → enterprise (88.118.8), and a recursive
resolver that knows only the top node. Referrals, recursion with a TTL-bound cache, a mirror
that is down, nodes that go down, and a referral loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from factory5g.ids.hierarchy import site_data, site_urls
from factory5g.ids.records import HandleValue, encode_values
from factory5g.ids.service import NodeConfig
from factory5g.ids.store import EmbeddedHandleStore, NewRecord
from tests.helpers import wait_until_sync
from tests.ids.conftest import ServerThread, free_tcp_port, serve_node

SECRET = "s3cret-admin"


def admin(prefix: str) -> tuple[str, str]:
    return (f"300%3A{prefix}/admin", SECRET)


def delegate(node: ServerThread, prefix: str, derived: str, urls: list[str]) -> None:
    value = {
        "index": 1,
        "type": "HS_SITE",
        "ttl": 3600,
        "data": {"format": "site", "value": site_data(urls)},
    }
    r = httpx.put(f"{node.url}/api/handles/0.NA/{derived}", json=[value], auth=admin(prefix))
    assert r.status_code == 201, r.text


def put(node: ServerThread, prefix: str, handle: str, value: str, ttl: int = 86400) -> None:
    v = {"index": 1, "type": "URL", "ttl": ttl, "data": {"format": "string", "value": value}}
    r = httpx.put(f"{node.url}/api/handles/{handle}", json=[v], auth=admin(prefix))
    assert r.status_code == 201, r.text


def get(node: ServerThread, handle: str) -> tuple[int, dict[str, Any]]:
    r = httpx.get(f"{node.url}/api/handles/{handle}", timeout=30)
    return r.status_code, r.json()


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[dict[str, ServerThread]]:
    dead_port = free_tcp_port()  # a mirror of the enterprise node that is down
    with contextlib.ExitStack() as stack:
        nodes = {
            name: stack.enter_context(
                serve_node(
                    tmp_path / f"{name}.sqlite",
                    NodeConfig(prefixes=(prefix,)),
                    init=prefix,
                    secret=SECRET,
                )
            )
            for name, prefix in (("top", "88"), ("secondary", "88.118"), ("enterprise", "88.118.8"))
        }
        nodes["resolver"] = stack.enter_context(
            serve_node(
                tmp_path / "resolver.sqlite",
                NodeConfig(recursive=True, upstream=(nodes["top"].url,), referral_timeout_s=2.0),
                init=None,
            )
        )
        delegate(nodes["top"], "88", "88.118", [nodes["secondary"].url])
        delegate(
            nodes["secondary"],
            "88.118",
            "88.118.8",
            [f"http://127.0.0.1:{dead_port}", nodes["enterprise"].url],
        )
        for i in range(1, 6):
            put(nodes["enterprise"], "88.118.8", f"88.118.8/P{i}", f"https://plant/{i}")
        put(nodes["enterprise"], "88.118.8", "88.118.8/SHORT", "https://plant/short", ttl=1)
        yield nodes


def test_referrals_walked_by_the_client(tree: dict[str, ServerThread]) -> None:
    status, body = get(tree["top"], "88.118.8/P1")
    assert (status, body["responseCode"], body["prefix"]) == (200, 303, "88.118")
    urls = site_urls(body["values"][0]["data"]["value"])
    assert urls == [tree["secondary"].url]
    status, body = get(tree["secondary"], "88.118.8/P1")
    assert (body["responseCode"], body["prefix"]) == (303, "88.118.8")
    urls = site_urls(body["values"][0]["data"]["value"])
    assert len(urls) == 2
    assert urls[1] == tree["enterprise"].url
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{urls[0]}/api/handles/88.118.8/P1")  # the first server is down...
    status, body = get(tree["enterprise"], "88.118.8/P1")  # ...the mirror answers
    assert (status, body["responseCode"]) == (200, 1)
    # Nodes answer for their own namespace: an undelegated derived prefix is not found.
    assert get(tree["top"], "88.999/x")[1]["responseCode"] == 100
    assert get(tree["secondary"], "77/x")[1]["responseCode"] == 301


def test_recursive_resolution_caches_and_survives_nodes_going_down(
    tree: dict[str, ServerThread],
) -> None:
    resolver = tree["resolver"]
    status, body = get(resolver, "88.118.8/P1")
    assert (status, body["responseCode"], body["handle"]) == (200, 1, "88.118.8/P1")
    assert body["values"][0]["data"]["value"] == "https://plant/1"
    assert get(resolver, "88.118.8/SHORT")[1]["responseCode"] == 1
    assert get(resolver, "88.118.8/none") == (
        404,
        {
            "responseCode": 100,
            "handle": "88.118.8/none",
            "message": f"answered by {tree['enterprise'].url}",
        },
    )

    # The top and secondary nodes go down: the referral to 88.118.8 was learned (TTL 3600 s),
    # so handles never asked before still resolve, straight at the enterprise node.
    tree["top"].stop()
    tree["secondary"].stop()
    status, body = get(resolver, "88.118.8/P2")
    assert (status, body["responseCode"]) == (200, 1)
    assert body["values"][0]["data"]["value"] == "https://plant/2"

    # The enterprise node goes down too: what is cached is still answered until its TTL...
    tree["enterprise"].stop()
    assert get(resolver, "88.118.8/P1")[1]["responseCode"] == 1
    # ...a handle never resolved is an error naming the servers tried...
    status, body = get(resolver, "88.118.8/P3")
    assert (status, body["responseCode"]) == (500, 2)
    assert "no server of the responsible site answered" in body["message"]
    assert tree["enterprise"].url in body["message"]
    # ...and an answer whose TTL (1 s) ran out is not served any more.
    wait_until_sync(
        lambda: get(resolver, "88.118.8/SHORT")[1]["responseCode"] == 2, 10, "the 1 s TTL to expire"
    )


def test_referral_loop_stops(tmp_path: Path) -> None:
    """A (77) delegates 77.1 to B; B, misconfigured, refers all of 77 back to A."""
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(
            serve_node(
                tmp_path / "a.sqlite", NodeConfig(prefixes=("77",)), init="77", secret=SECRET
            )
        )
        b = stack.enter_context(
            serve_node(
                tmp_path / "b.sqlite", NodeConfig(prefixes=("66",)), init="66", secret=SECRET
            )
        )
        delegate(a, "77", "77.1", [b.url])
        # B's REST API refuses 0.NA/77 (not its namespace), so write it into its store directly.
        back = HandleValue(1, "HS_SITE", site_data([a.url]), "site")

        async def misconfigure() -> None:
            async with EmbeddedHandleStore(tmp_path / "b.sqlite") as st:
                rec = NewRecord(encode_values([back]), True)
                assert await st.put("0.NA/77", rec, expect=None)

        asyncio.run(misconfigure())
        assert get(b, "77.1/x")[1]["prefix"] == "77"
        resolver = stack.enter_context(
            serve_node(
                tmp_path / "r.sqlite",
                NodeConfig(recursive=True, upstream=(a.url,), max_referrals=4),
                init=None,
            )
        )
        status, body = get(resolver, "77.1/x")
        assert (status, body["responseCode"]) == (400, 6)
        assert "more than 4 referrals" in body["message"]
        # Without upstream, a resolver knows nobody: not responsible.
        lone = stack.enter_context(
            serve_node(tmp_path / "l.sqlite", NodeConfig(recursive=True), init=None)
        )
        assert get(lone, "77.1/x") == (
            400,
            {
                "responseCode": 301,
                "handle": "77.1/x",
                "message": "this node is not responsible for 77.1/x (it serves: none) and knows "
                "no referral for it",
            },
        )
