"""The HandleStore contract, run against both implementations (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

from factory5g.ids.store import HandleStore, ImportProgress, NewRecord


def rec(tag: str, search: tuple[tuple[str, str], ...] = ()) -> NewRecord:
    return NewRecord(f'[{{"tag":"{tag}"}}]'.encode(), True, search)


async def test_create_read_compare_and_set_delete(any_store: HandleStore) -> None:
    s = any_store
    assert await s.get("88.1/a") is None
    assert await s.put("88.1/a", rec("one"), expect=None)
    assert not await s.put("88.1/a", rec("two"), expect=None)  # exists: create fails
    got = await s.get("88.1/a")
    assert got is not None
    assert got.values == b'[{"tag":"one"}]'
    assert got.plain
    assert got.version == 1
    assert not await s.put("88.1/a", rec("stale"), expect=7)
    assert await s.put("88.1/a", rec("two"), expect=1)
    got = await s.get("88.1/a")
    assert got is not None
    assert got.version == 2
    assert b"two" in got.values
    assert not await s.delete("88.1/a", expect=1)
    assert await s.delete("88.1/a", expect=2)
    assert await s.get("88.1/a") is None
    assert not await s.delete("88.1/a", expect=2)


async def test_keys_are_bytes_not_collation(any_store: HandleStore) -> None:
    for k in ("88.1/a", "88.1/A", "88.1/é", "88.1/e"):
        assert await any_store.put(k, rec(k), expect=None)
    got = await any_store.get_many(["88.1/a", "88.1/A", "88.1/é", "88.1/missing"])
    assert sorted(got) == ["88.1/A", "88.1/a", "88.1/é"]
    assert await any_store.count() == 4


async def test_prefix_listing_is_exactly_the_prefix(any_store: HandleStore) -> None:
    keys = ["88.1/b", "88.1/a", "88.1/a/b", "88.10/x", "88.1.5/y", "88/z", "88.1./w"]
    rows = [(k, rec(k)) for k in keys]
    assert await any_store.put_many(rows) == []
    total, page = await any_store.list_keys("88.1", 0, 10)
    assert total == 3
    assert page == ["88.1/a", "88.1/a/b", "88.1/b"]
    assert await any_store.list_keys("88.1", 1, 1) == (3, ["88.1/a/b"])
    assert await any_store.list_keys("88.2", 0, 10) == (0, [])


async def test_scan_pages_in_key_order(any_store: HandleStore) -> None:
    keys = [f"88.1/{i:04d}" for i in range(25)] + ["88.2/x"]
    await any_store.put_many([(k, rec(k)) for k in keys])
    seen, after = [], None
    while batch := await any_store.scan("88.1", after, 7):
        seen += [r.key for r in batch]
        after = batch[-1].key
    assert seen == keys[:25]
    everything = await any_store.scan(None, None, 100)
    assert [r.key for r in everything] == sorted(keys)


async def test_put_many_skips_or_overwrites_and_saves_progress_atomically(
    any_store: HandleStore,
) -> None:
    s = any_store
    await s.put("88.1/b", rec("old"), expect=None)
    rows = [("88.1/a", rec("a")), ("88.1/b", rec("new")), ("88.1/c", rec("c"))]
    skipped = await s.put_many(rows, progress=ImportProgress("job", 123, 3, False))
    assert skipped == ["88.1/b"]
    b = await s.get("88.1/b")
    assert b is not None
    assert b"old" in b.values
    assert await s.progress("job") == ImportProgress("job", 123, 3, False)
    assert (
        await s.put_many(rows, overwrite=True, progress=ImportProgress("job", 200, 6, True)) == []
    )
    assert await s.put_many([], progress=ImportProgress("job", 200, 6, True)) == []
    b = await s.get("88.1/b")
    assert b is not None
    assert b"new" in b.values
    assert b.version == 2
    assert await s.progress("job") == ImportProgress("job", 200, 6, True)
    assert await s.progress("other") is None


async def test_search_by_type_with_wildcards(any_store: HandleStore) -> None:
    s = any_store
    await s.put("88.1/a", rec("a", (("URL", "https://Plant.example/a"),)), expect=None)
    await s.put_many(
        [("88.1/b", rec("b", (("URL", "https://plant.example/b"), ("F5G_BATCH", "88.1/B1"))))]
    )
    assert await s.search("URL", "https://plant.example/*", 10) == ["88.1/a", "88.1/b"]
    assert await s.search("URL", "*/b", 10) == ["88.1/b"]
    assert await s.search("URL", "https://plant.example/a", 10) == ["88.1/a"]
    assert await s.search("URL", "100%_literal*", 10) == []
    assert await s.search("F5G_BATCH", "88.1/B1", 10) == ["88.1/b"]
    assert await s.search("URL", "*", 1) == ["88.1/a"]
    # A rewrite replaces the indexed values; a delete removes them.
    assert await s.put("88.1/a", rec("a2", (("URL", "ftp://elsewhere"),)), expect=1)
    assert await s.search("URL", "https*", 10) == ["88.1/b"]
    got = await s.get("88.1/b")
    assert got is not None
    assert await s.delete("88.1/b", expect=got.version)
    assert await s.search("F5G_BATCH", "*", 10) == []


async def test_reserve_hands_out_disjoint_ranges(any_store: HandleStore) -> None:
    assert await any_store.reserve("scope-a", 10) == 1
    assert await any_store.reserve("scope-a", 5) == 11
    assert await any_store.reserve("scope-b", 1) == 1
    firsts = await asyncio.gather(*(any_store.reserve("scope-c", 3) for _ in range(20)))
    numbers = [f + i for f in firsts for i in range(3)]
    assert sorted(numbers) == list(range(1, 61))


async def test_concurrent_compare_and_set_loses_nothing(any_store: HandleStore) -> None:
    """Many writers appending to one record with read-modify-CAS: every append survives."""
    s = any_store
    await s.put("88.1/c", NewRecord(b"[]", True), expect=None)

    async def append(n: int) -> None:
        while True:
            cur = await s.get("88.1/c")
            assert cur is not None
            items = cur.values[1:-1]
            new = b"[" + (items + b"," if items else b"") + str(n).encode() + b"]"
            if await s.put("88.1/c", NewRecord(new, True), expect=cur.version):
                return

    await asyncio.gather(*(append(n) for n in range(40)))
    final = await s.get("88.1/c")
    assert final is not None
    import orjson

    assert sorted(orjson.loads(final.values)) == list(range(40))
    assert final.version == 41
