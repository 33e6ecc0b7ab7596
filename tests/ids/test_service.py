"""The service on both stores: registration, minting (templates, sequences, collisions),
case folding, and concurrent writers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from factory5g.ids.errors import (
    HandleAlreadyExists,
    HandleNotFound,
    InvalidValue,
    ValuesNotFound,
)
from factory5g.ids.records import HandleValue
from factory5g.ids.service import IdsService, NodeConfig
from factory5g.ids.store import HandleStore
from factory5g.ids.syntax import parse_handle
from factory5g.ids.templates import IdTemplate, check_template
from tests.ids.conftest import PREFIX

DAY = datetime(2025, 3, 1, tzinfo=UTC)


async def test_mint_on_both_stores(any_store: HandleStore) -> None:
    async with IdsService(any_store, NodeConfig(prefixes=(PREFIX,))) as svc:
        admin = await svc.init_prefix(PREFIX, secret="k")
        me = await svc.authenticate(admin.user, "k")
        # Someone registered a handle the sequence will reach: minting skips it.
        taken = parse_handle(f"{PREFIX}/PL120250301000003")
        await svc.put_values(taken, [HandleValue(1, "URL", "manual")], me)
        seen: list[int] = []
        result = await svc.mint(
            PREFIX, "product", 5, me, fields={"line": "L1"}, date=DAY, on_progress=seen.append
        )
        assert result.handles == [f"{PREFIX}/PL12025030100000{i}" for i in (1, 2, 4, 5, 6)]
        assert seen[-1] == 5
        res = await svc.resolve(parse_handle(result.handles[0]))
        types = {v["type"] for v in orjson.loads(res.values)}
        assert types == {"F5G_KIND", "F5G_LINE", "HS_ADMIN"}
        manual = await svc.resolve(taken)
        assert orjson.loads(manual.values)[0]["data"]["value"] == "manual"
        # One identifier per equipment: a template without {seq}.
        eq = await svc.mint(PREFIX, "equipment", 1, me, fields={"equipment": "press-1"})
        assert eq.handles == [f"{PREFIX}/EQ.press-1"]
        with pytest.raises(HandleAlreadyExists):
            await svc.mint(PREFIX, "equipment", 1, me, fields={"equipment": "press-1"})
        with pytest.raises(InvalidValue, match="names one identifier"):
            await svc.mint(PREFIX, "equipment", 2, me, fields={"equipment": "x"})
        with pytest.raises(InvalidValue, match="needs 'line'"):
            await svc.mint(PREFIX, "product", 1, me)
        big = await svc.mint(PREFIX, "part", 60_000, None, trusted=True, date=DAY)
        assert len(set(big.handles)) == 60_000
        assert big.handles[-1] == f"{PREFIX}/T2025030100060000"
        assert await any_store.count() == 2 + 1 + 5 + 1 + 60_000


async def test_concurrent_writers_on_both_stores(any_store: HandleStore) -> None:
    async with IdsService(any_store, NodeConfig(prefixes=(PREFIX,))) as svc:
        admin = await svc.init_prefix(PREFIX, secret="k")
        me = await svc.authenticate(admin.user, "k")
        h = parse_handle(f"{PREFIX}/shared")
        await svc.put_values(h, [HandleValue(1, "URL", "x")], me)
        await asyncio.gather(
            *(
                svc.put_values(
                    h, [HandleValue(10 + i, "NOTE", f"n{i}")], me, select=frozenset({10 + i})
                )
                for i in range(25)
            )
        )
        values = orjson.loads((await svc.resolve(h)).values)
        assert sorted(v["index"] for v in values) == [1, *range(10, 35), 100]
        await asyncio.gather(*(svc.delete(h, me, frozenset({10 + i})) for i in range(25)))
        values = orjson.loads((await svc.resolve(h)).values)
        assert sorted(v["index"] for v in values) == [1, 100]


async def test_fold_case_node(any_store: HandleStore) -> None:
    async with IdsService(any_store, NodeConfig(prefixes=(PREFIX,), fold_case=True)) as svc:
        admin = await svc.init_prefix(PREFIX, secret="k")
        me = await svc.authenticate(admin.user.upper(), "k")  # the user handle folds too
        await svc.put_values(parse_handle(f"{PREFIX}/Coil-7ä"), [HandleValue(1, "URL", "u")], me)
        res = await svc.resolve(parse_handle(f"{PREFIX}/COIL-7ä"))
        assert orjson.loads(res.values)[0]["data"]["value"] == "u"
        with pytest.raises(ValuesNotFound):
            await svc.resolve(parse_handle(f"{PREFIX}/coil-7ä"), types=["EMAIL"])
        with pytest.raises(HandleNotFound):  # folding is ASCII only (RFC 3650)
            await svc.resolve(parse_handle(f"{PREFIX}/coil-7Ä"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("P{seq}", "must start"),
        ("{prefix}/{serial}", "unknown field"),
        ("{prefix}/{seq}{seq}", "twice"),
        ("{prefix}/{seq:q}", "bad {seq} format"),
        ("{prefix}/{line!r}", "conversions"),
        ("{prefix}/{line", "expected"),
    ],
)
def test_bad_templates(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_template(text)


@given(st.integers(0, 10**9), st.text(alphabet="ABCxyz019-", min_size=1, max_size=8))
def test_template_names_are_head_seq_tail(seq: int, line: str) -> None:
    t = IdTemplate("product", "{prefix}/P{line}-{date:%Y%m%d}-{seq:06d}.{kind}")
    r = t.render("88.1", {"line": line}, DAY)
    assert r.name(seq) == f"88.1/P{line}-20250301-{seq:06d}.product"
    assert r.scope == f"88.1/P{line}-20250301-{{seq:06d}}.product"
