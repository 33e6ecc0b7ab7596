"""The Handle.Net JSON REST API over HTTP (in-process ASGI): every responseCode the node gives,
with the HTTP status Handle.Net maps it to, and bad input of every kind."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from factory5g.ids.api import create_ids_app
from factory5g.ids.records import HandleValue
from factory5g.ids.service import IdsService, NodeConfig
from factory5g.ids.store import EmbeddedHandleStore
from factory5g.ids.syntax import parse_handle
from tests.ids.conftest import PREFIX

SECRET = "s3cret-admin"
ADMIN = ("300%3A88.118.8/admin", SECRET)


class Api:
    def __init__(self, client: httpx.AsyncClient, svc: IdsService) -> None:
        self.c = client
        self.svc = svc

    async def put(
        self, handle: str, values: Any, auth: Any = ADMIN, **params: Any
    ) -> httpx.Response:
        return await self.c.put(
            f"/api/handles/{handle}", content=orjson.dumps(values), params=params, auth=auth
        )

    async def get(self, handle: str, **kw: Any) -> httpx.Response:
        return await self.c.get(f"/api/handles/{handle}", **kw)


@contextlib.asynccontextmanager
async def running_api(tmp_path: Path, config: NodeConfig | None = None) -> AsyncIterator[Api]:
    holder: list[IdsService] = []

    @contextlib.asynccontextmanager
    async def open_service() -> AsyncIterator[IdsService]:
        async with (
            EmbeddedHandleStore(tmp_path / "ids.sqlite") as st,
            IdsService(st, config or NodeConfig(prefixes=(PREFIX,))) as svc,
        ):
            holder.append(svc)
            yield svc

    async def ready(svc: IdsService) -> None:
        await svc.init_prefix(PREFIX, secret=SECRET)

    app = create_ids_app(open_service, on_ready=ready)
    async with app.app.router.lifespan_context(app.app):  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as c:
            yield Api(c, holder[0])


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path) as a:
        yield a


def url(value: str, index: int = 1) -> dict[str, Any]:
    return {"index": index, "type": "URL", "data": {"format": "string", "value": value}}


def assert_rc(resp: httpx.Response, http: int, code: int, handle: str | None = None) -> dict:
    body = resp.json()
    assert (resp.status_code, body["responseCode"]) == (http, code), body
    if handle is not None:
        assert body["handle"] == handle
    return body


# -- 1 SUCCESS --------------------------------------------------------------------------------


async def test_create_resolve_modify_delete(api: Api) -> None:
    h = "88.118.8/P1"
    assert_rc(await api.put(h, {"values": [url("https://a")]}), 201, 1, h)
    body = assert_rc(await api.get(h), 200, 1, h)
    values = {v["index"]: v for v in body["values"]}
    assert values[1]["data"] == {"format": "string", "value": "https://a"}
    assert values[1]["ttl"] == 86400
    assert values[1]["timestamp"].endswith("Z")
    # An HS_ADMIN naming the creator was added, as Handle.Net does.
    assert values[100]["data"]["value"] == {
        "handle": "88.118.8/admin",
        "index": 300,
        "permissions": "011111111111",
    }
    assert_rc(await api.put(h, [url("https://b")], index=1), 200, 1, h)
    body = assert_rc(await api.get(h, params={"index": 1}), 200, 1)
    assert [v["data"]["value"] for v in body["values"]] == ["https://b"]
    assert_rc(await api.c.delete(f"/api/handles/{h}", auth=ADMIN), 200, 1, h)
    assert_rc(await api.get(h), 404, 100, h)


async def test_fast_path_answers_like_the_full_path(api: Api) -> None:
    h = "88.118.8/Fast"
    await api.put(h, [url("https://x"), {"index": 2, "type": "DESC", "data": "ü ✓"}])
    fast = await api.get(h)
    full = await api.get(h, params={"publicOnly": "false"})
    assert fast.status_code == full.status_code == 200
    assert fast.json() == full.json()
    assert fast.headers["content-type"] == "application/json"


async def test_head_is_a_resolution_without_body_never_a_delete(api: Api) -> None:
    h = "88.118.8/Head"
    await api.put(h, [url("https://x")])
    for auth in (None, ADMIN):
        resp = await api.c.head(f"/api/handles/{h}", auth=auth)
        assert resp.status_code == 200
    assert_rc(await api.get(h), 200, 1, h)  # still there


async def test_handle_is_echoed_as_requested_and_prefix_case_folds(api: Api) -> None:
    await api.put("88.118.8/Case", [url("https://x")])
    body = assert_rc(await api.get("88.118.8/Case"), 200, 1, "88.118.8/Case")
    assert body["values"][0]["data"]["value"] == "https://x"
    assert_rc(await api.get("88.118.8/case"), 404, 100, "88.118.8/case")  # suffix: sensitive
    unicode = "88.118.8/Fräs-Ø"
    assert_rc(await api.put(unicode, [url("u")]), 201, 1, unicode)
    assert_rc(await api.get(unicode), 200, 1, unicode)


async def test_type_and_index_filters(api: Api) -> None:
    h = "88.118.8/F"
    await api.put(
        h,
        [
            url("a", 1),
            {"index": 2, "type": "URL.ALT", "data": "b"},
            {"index": 3, "type": "EMAIL", "data": "c"},
        ],
    )
    body = assert_rc(await api.get(h, params=[("type", "URL")]), 200, 1)
    assert sorted(v["index"] for v in body["values"]) == [1, 2]
    body = assert_rc(await api.get(h, params=[("index", 3), ("index", 1)]), 200, 1)
    assert sorted(v["index"] for v in body["values"]) == [1, 3]


async def test_put_body_forms_and_index_various(api: Api) -> None:
    h = "88.118.8/Forms"
    assert_rc(await api.put(h, [url("a")]), 201, 1)  # a bare array
    assert_rc(await api.put(h, url("b", 2), index=2), 200, 1)  # one value
    assert_rc(await api.put(h, {"values": [url("c", 3), url("d", 4)]}, index="various"), 200, 1)
    body = (await api.get(h)).json()
    assert sorted(v["index"] for v in body["values"]) == [1, 2, 3, 4, 100]


async def test_put_without_index_replaces_the_record(api: Api) -> None:
    h = "88.118.8/R"
    await api.put(h, [url("a", 1), url("b", 2)])
    assert_rc(await api.put(h, [url("z", 1)]), 200, 1)
    body = (await api.get(h)).json()
    assert [v["index"] for v in body["values"]] == [1]  # the HS_ADMIN went too: prefix governs
    assert_rc(await api.put(h, [url("zz", 1)]), 200, 1)


async def test_mint_new_suffix(api: Api) -> None:
    resp = await api.c.put(
        "/api/handles/88.118.8/",
        content=orjson.dumps([url("m")]),
        params={"mintNewSuffix": "true"},
        auth=ADMIN,
    )
    body = assert_rc(resp, 201, 1)
    assert body["handle"].startswith("88.118.8/")
    assert len(body["handle"]) == 9 + 36
    assert_rc(await api.get(body["handle"]), 200, 1)
    resp = await api.c.put(
        "/api/handles/88.118.8/lot/",
        content=orjson.dumps([url("m")]),
        params={"mintNewSuffix": "true"},
        auth=ADMIN,
    )
    assert assert_rc(resp, 201, 1)["handle"].startswith("88.118.8/lot/")


async def test_prefix_listing_with_paging(api: Api) -> None:
    for i in range(5):
        await api.put(f"88.118.8/L{i}", [url("x")])
    resp = await api.c.get(
        "/api/handles", params={"prefix": PREFIX, "page": 1, "pageSize": 2}, auth=ADMIN
    )
    body = assert_rc(resp, 200, 1)
    assert body["totalCount"] == "6"
    assert body["prefix"] == PREFIX
    assert body["handles"] == ["88.118.8/L2", "88.118.8/L3"]
    assert_rc(await api.c.get("/api/handles", params={"prefix": PREFIX}), 401, 402)
    assert_rc(await api.c.get("/api/handles", params={"prefix": "99"}, auth=ADMIN), 400, 301)
    assert_rc(
        await api.c.get("/api/handles", params={"prefix": PREFIX, "pageSize": 0}, auth=ADMIN),
        400,
        202,
    )


async def test_reverse_lookup(api: Api) -> None:
    await api.put("88.118.8/S1", [url("https://plant/1")])
    await api.put("88.118.8/S2", [url("https://plant/2")])
    await api.put("88.118.8/S3", [{**url("https://plant/3"), "permissions": "1100"}])
    resp = await api.c.get("/hrls/handles", params={"URL": "https://plant/*"})
    assert resp.status_code == 200
    assert resp.json() == ["88.118.8/S1", "88.118.8/S2"]
    assert (await api.c.get("/hrls/handles", params={"URL": "*2"})).json() == ["88.118.8/S2"]
    assert_rc(await api.c.get("/hrls/handles", params={"COLOUR": "x"}), 400, 202)
    assert_rc(
        await api.c.get(
            "/hrls/handles", params={"URL": "x"}, auth=("300%3A88.118.8/admin", "wrong")
        ),
        403,
        403,
    )


# -- errors -----------------------------------------------------------------------------------


async def test_100_handle_not_found_and_delete_404_has_a_body(api: Api) -> None:
    assert_rc(await api.get("88.118.8/none"), 404, 100, "88.118.8/none")
    assert_rc(
        await api.c.delete("/api/handles/88.118.8/none", auth=ADMIN), 404, 100, "88.118.8/none"
    )
    assert_rc(await api.put("88.118.8/none", [url("x")], index=1), 404, 100)


async def test_101_already_exists_with_overwrite_false(api: Api) -> None:
    await api.put("88.118.8/E", [url("a")])
    assert_rc(await api.put("88.118.8/E", [url("b")], overwrite="false"), 409, 101)
    assert (await api.get("88.118.8/E")).json()["values"][0]["data"]["value"] == "a"


@pytest.mark.parametrize(
    "raw",
    [
        "88.118.8/",  # empty suffix
        "88.118.8/%FF%FE",  # invalid UTF-8
        "88.118.8/a%00b",  # NUL
        "88.118.8/a%1Bb",  # ESC
        "88..8/x",
        "88.118.8/" + "x" * 10_000,  # 10 kB
    ],
)
async def test_102_invalid_handles(api: Api, raw: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        resp = await api.c.request(method, f"/api/handles/{raw}", content=b"[]", auth=ADMIN)
        body = assert_rc(resp, 400, 102)
        assert "invalid handle" in body["message"]


async def test_200_values_not_found(api: Api) -> None:
    await api.put("88.118.8/V", [url("a")])
    assert_rc(await api.get("88.118.8/V", params={"type": "EMAIL"}), 200, 200)  # resolution
    assert_rc(await api.get("88.118.8/V", params={"index": 9}), 200, 200)
    resp = await api.c.delete("/api/handles/88.118.8/V", params={"index": 9}, auth=ADMIN)
    assert_rc(resp, 400, 200)  # not a resolution
    await api.c.delete("/api/handles/88.118.8/V", params=[("index", 1), ("index", 100)], auth=ADMIN)
    assert_rc(await api.get("88.118.8/V"), 200, 200)  # a handle without values


async def test_201_value_already_exists(api: Api) -> None:
    await api.put("88.118.8/W", [url("a")])
    assert_rc(await api.put("88.118.8/W", [url("b")], index=1, overwrite="false"), 409, 201)
    assert_rc(await api.put("88.118.8/W", [url("b", 2)], index=2, overwrite="false"), 200, 1)


@pytest.mark.parametrize(
    ("body", "params", "message"),
    [
        (b"not json", {}, "not JSON"),
        (b'{"values": 3}', {}, "the body is"),
        (b'[{"index": 0, "type": "URL", "data": "x"}]', {}, "reserved"),
        (b'[{"index": 1, "type": "URL", "data": "x"}]', {"index": 2}, "not named by"),
        (b'[{"index": 1, "type": "URL", "data": "x"}]', {"index": "one"}, "index="),
        (b'[{"index": 1, "type": "URL", "data": "x"}]', {"overwrite": "maybe"}, "true or false"),
        (b'[{"index": 1, "type": "HS_SECKEY", "data": ""}]', {}, "HS_SECKEY data"),
    ],
)
async def test_202_invalid_values(api: Api, body: bytes, params: dict, message: str) -> None:
    resp = await api.c.put("/api/handles/88.118.8/bad", content=body, params=params, auth=ADMIN)
    assert message in assert_rc(resp, 400, 202)["message"]


async def test_301_not_responsible_and_303_referral(api: Api) -> None:
    assert_rc(await api.get("99.1/x"), 400, 301)
    assert_rc(await api.put("99.1/x", [url("a")]), 400, 301)
    # Delegate 88.118.8.1 to a child node: a referral with its HS_SITE and the prefix.
    site = {
        "servers": [
            {
                "serverId": 1,
                "address": "10.0.0.9",
                "interfaces": [{"query": True, "protocol": "HTTP", "port": 8001}],
            }
        ]
    }
    value = {"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": site}}
    assert_rc(await api.put("0.NA/88.118.8.1", [value]), 201, 1)
    body = assert_rc(await api.get("88.118.8.1/P7"), 200, 303, "88.118.8.1/P7")
    assert body["prefix"] == "88.118.8.1"
    assert body["values"][0]["data"]["value"]["servers"][0]["address"] == "10.0.0.9"
    # Derived from ours but not delegated: simply not found.
    assert_rc(await api.get("88.118.8.2/P7"), 404, 100)


async def test_400_not_an_admin_and_401_insufficient_permissions(api: Api) -> None:
    # A second user with a key, administering nothing.
    await api.put("88.118.8/op", [{"index": 300, "type": "HS_SECKEY", "data": "op-key"}])
    op = ("300%3A88.118.8/op", "op-key")
    await api.put("88.118.8/T", [url("a")])
    assert_rc(await api.put("88.118.8/T", [url("b")], auth=op, index=1), 403, 400)
    assert_rc(await api.put("88.118.8/new", [url("b")], auth=op), 403, 400)
    # Now an admin of T that may only add values.
    admin = {
        "index": 101,
        "type": "HS_ADMIN",
        "data": {
            "format": "admin",
            "value": {"handle": "88.118.8/op", "index": 300, "permissions": "000001000000"},
        },
    }
    assert_rc(await api.put("88.118.8/T", admin, index=101), 200, 1)
    assert_rc(await api.put("88.118.8/T", [url("c", 5)], auth=op, index=5), 200, 1)
    body = assert_rc(await api.put("88.118.8/T", [url("d", 1)], auth=op, index=1), 403, 401)
    assert "MODIFY_VALUE" in body["message"]
    resp = await api.c.delete("/api/handles/88.118.8/T", auth=("300%3A88.118.8/op", "op-key"))
    assert "DELETE_HANDLE" in assert_rc(resp, 403, 401)["message"]
    # A value without admin_write cannot be changed, even by the prefix admin.
    await api.put("88.118.8/T", [{**url("locked", 6), "permissions": "1010"}], index=6)
    assert_rc(await api.put("88.118.8/T", [url("x", 6)], index=6), 403, 401)


async def test_402_authentication_needed_and_private_values(api: Api) -> None:
    resp = await api.put("88.118.8/A", [url("a")], auth=None)
    assert_rc(resp, 401, 402)
    assert resp.headers["www-authenticate"].startswith("Basic")
    assert_rc(await api.c.delete("/api/handles/88.118.8/admin"), 401, 402)
    # The admin handle's secret key is not public: without credentials it is hidden...
    body = assert_rc(await api.get("88.118.8/admin"), 200, 1)
    assert [v["type"] for v in body["values"]] == ["HS_ADMIN"]
    assert_rc(await api.get("88.118.8/admin", params={"index": 300}), 401, 402)
    # ...and with READ_VALUE it is readable, as its hash only.
    body = assert_rc(await api.get("88.118.8/admin", params={"index": 300}, auth=ADMIN), 200, 1)
    stored = body["values"][0]["data"]["value"]
    assert stored.startswith("scrypt$")
    assert SECRET not in stored
    assert_rc(
        await api.get("88.118.8/admin", params={"index": 300, "publicOnly": "true"}, auth=ADMIN),
        403,
        401,
    )


async def test_403_wrong_credentials_and_404_malformed_credentials(api: Api) -> None:
    assert_rc(
        await api.put("88.118.8/X", [url("a")], auth=("300%3A88.118.8/admin", "nope")), 403, 403
    )
    assert_rc(
        await api.put("88.118.8/X", [url("a")], auth=("301%3A88.118.8/admin", SECRET)), 403, 403
    )
    assert_rc(
        await api.put("88.118.8/X", [url("a")], auth=("300%3A88.118.8/ghost", SECRET)), 403, 403
    )
    assert_rc(
        await api.put("88.118.8/X", [url("a")], auth=("100%3A88.118.8/admin", SECRET)), 403, 403
    )  # index 100 is HS_ADMIN, not a key
    assert_rc(await api.put("88.118.8/X", [url("a")], auth=("admin", SECRET)), 403, 404)
    for header in (
        "Basic !!!",
        "Basic " + base64.b64encode(b"nocolon").decode(),
        'Handle clientCert="true"',
    ):
        resp = await api.c.put(
            "/api/handles/88.118.8/X", content=b"[]", headers={"Authorization": header}
        )
        assert_rc(resp, 403, 404)
    # Wrong credentials fail a resolution too: they never silently read as anonymous.
    assert_rc(await api.get("88.118.8/admin", auth=("300%3A88.118.8/admin", "nope")), 403, 403)
    # The user and password are percent-decoded (the reference's Basic auth).
    assert_rc(
        await api.put("88.118.8/X", [url("a")], auth=("300%3A88.118.8%2Fadmin", "s3cret%2Dadmin")),
        201,
        1,
    )


async def test_2_internal_errors_are_handle_answers(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(key: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(api.svc.store, "get", broken)
    body = assert_rc(await api.get("88.118.8/x", params={"type": "URL"}), 500, 2, "88.118.8/x")
    assert "OSError" in body["message"]
    assert "disk on fire" in caplog.text


async def test_3_server_too_busy_when_writers_never_stop(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    await api.put("88.118.8/busy", [url("a")])

    async def always_lose(key: str, record: object, *, expect: int | None) -> bool:
        return False

    monkeypatch.setattr(api.svc.store, "put", always_lose)
    assert_rc(await api.put("88.118.8/busy", [url("b")]), 503, 3)


async def test_concurrent_writers_on_one_handle_lose_no_value(api: Api) -> None:
    h = "88.118.8/C"
    await api.put(h, [url("start", 1)])
    results = await asyncio.gather(
        *(api.put(h, [url(f"v{i}", 10 + i)], index=10 + i) for i in range(30))
    )
    assert all(r.status_code == 200 for r in results), [r.json() for r in results]
    body = (await api.get(h)).json()
    assert sorted(v["index"] for v in body["values"]) == [1, *range(10, 40), 100]


async def test_mint_endpoint(api: Api) -> None:
    resp = await api.c.post(
        f"/api/handles/{PREFIX}/mint",
        auth=ADMIN,
        json={
            "kind": "product",
            "count": 1200,
            "line": "L2",
            "equipment": "press",
            "batch": "B42",
            "date": "2025-03-01",
            "values": [{"index": 5, "type": "URL", "data": "https://mes/p"}],
        },
    )
    body = assert_rc(resp, 201, 1)
    assert body["count"] == 1200 == len(body["handles"])
    assert body["first"] == "88.118.8/PL220250301000001"
    assert body["last"] == "88.118.8/PL220250301001200"
    rec = assert_rc(await api.get(body["last"]), 200, 1)
    got = {v["type"]: v["data"]["value"] for v in rec["values"]}
    assert got["F5G_KIND"] == "product"
    assert got["F5G_LINE"] == "L2"
    assert got["F5G_EQUIPMENT"] == "88.118.8/EQ.press"
    assert got["F5G_BATCH"] == "88.118.8/B42"
    assert got["URL"] == "https://mes/p"
    again = await api.c.post(
        f"/api/handles/{PREFIX}/mint",
        auth=ADMIN,
        json={
            "kind": "product",
            "count": 2,
            "line": "L2",
            "date": "2025-03-01",
            "returnHandles": False,
        },
    )
    body = assert_rc(again, 201, 1)
    assert body["first"] == "88.118.8/PL220250301001201"
    assert "handles" not in body
    batch_members = await api.c.get(
        "/hrls/handles", params={"F5G_BATCH": "88.118.8/B42", "limit": 5000}
    )
    assert len(batch_members.json()) == 1200
    for payload, code in (
        ({"kind": "nope"}, 202),
        ({"kind": "product"}, 202),
        ({"kind": "product", "line": "L", "count": 0}, 202),
        ({"kind": "product", "line": "L", "extra": 1}, 202),
    ):
        assert_rc(
            await api.c.post(f"/api/handles/{PREFIX}/mint", auth=ADMIN, json=payload), 400, code
        )
    assert_rc(
        await api.c.post(f"/api/handles/{PREFIX}/mint", json={"kind": "product", "line": "L"}),
        401,
        402,
    )
    assert_rc(
        await api.c.post("/api/handles/99/mint", auth=ADMIN, json={"kind": "product", "line": "L"}),
        400,
        301,
    )


async def test_values_added_by_the_service_are_typed(api: Api) -> None:
    """HandleValue objects written through the service read back through HTTP unchanged."""
    h = parse_handle("88.118.8/typed")
    v = HandleValue(7, "HEX", "00ff", "hex", 60, False, 1_700_000_000)
    await api.svc.put_trusted(h, [v])
    body = assert_rc(await api.get("88.118.8/typed"), 200, 1)
    assert body["values"] == [
        {
            "index": 7,
            "type": "HEX",
            "data": {"format": "hex", "value": "00ff"},
            "ttl": 60,
            "timestamp": "2023-11-14T22:13:20Z",
        }
    ]
