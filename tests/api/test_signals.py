"""Signals, latest values, history and problem documents, through create_app."""

from __future__ import annotations

import numpy as np
import pytest

from factory5g.model import Role
from factory5g.stream import Batch, Quality

from ..helpers import wait_until
from .conftest import Api

T0 = 1_800_000_000 * 10**9  # 2027-01-15, whole seconds


async def publish(api: Api, batch: Batch) -> None:
    target = api.runtime.written_samples + len(batch)
    await api.runtime.bus.publish(batch)
    await wait_until(lambda: api.runtime.written_samples >= target, what="store write")


async def test_site_tree(api: Api) -> None:
    r = await api.client.get("/api/v1/site", headers=api.auth(Role.VIEWER))
    tree = r.json()
    assert tree["name"] == "Test press shop"
    assert tree["prefix"] == "88.118.8"
    area = tree["areas"][0]
    assert area["name"] == "body-shop"
    assert [line["name"] for line in area["lines"]] == ["press-line", "welding"]
    press = area["lines"][0]["equipment"][0]
    assert press["id"] == "press"
    assert [s["path"] for s in press["signals"]] == ["press.force", "press.temp"]
    assert press["signals"][1]["unit"] == "°C"


async def test_signal_list_and_lookup(api: Api) -> None:
    h = api.auth(Role.VIEWER)
    sigs = (await api.client.get("/api/v1/signals", headers=h)).json()
    assert [(s["id"], s["path"]) for s in sigs] == [
        (0, "press.force"),
        (1, "press.temp"),
        (2, "robot.state"),
    ]
    only = (await api.client.get("/api/v1/signals?equipment=robot", headers=h)).json()
    assert [s["path"] for s in only] == ["robot.state"]
    assert (await api.client.get("/api/v1/signals/1", headers=h)).json()["path"] == "press.temp"
    assert (await api.client.get("/api/v1/signals/press.temp", headers=h)).json()["id"] == 1


async def test_unknown_signal_is_404_with_suggestion(api: Api) -> None:
    r = await api.client.get("/api/v1/signals/press.forse/latest", headers=api.auth(Role.VIEWER))
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert "press.forse" in body["detail"]
    assert body["suggestions"] == ["press.force"]
    r = await api.client.get("/api/v1/signals/99", headers=api.auth(Role.VIEWER))
    assert r.status_code == 404


async def test_latest(api: Api) -> None:
    h = api.auth(Role.VIEWER)
    r = await api.client.get("/api/v1/signals/press.force/latest", headers=h)
    assert r.status_code == 404
    assert "no sample yet" in r.json()["detail"]
    await publish(api, Batch.of([0, 0, 1], [T0, T0 + 10, T0 + 5], [1.5, 2.5, 80.0]))
    await publish(api, Batch.of([1], [T0 + 20], [np.nan], Quality.BAD_COMM_FAILURE))
    r = (await api.client.get("/api/v1/signals/press.force/latest", headers=h)).json()
    assert (r["ts"], r["value"], r["quality_text"]) == (T0 + 10, 2.5, "good")
    assert r["time"].startswith("2027-01-15T")
    r = (await api.client.get("/api/v1/signals/1/latest", headers=h)).json()
    assert (r["value"], r["quality"], r["quality_text"]) == (None, 0x18, "bad")


async def test_history_raw_and_aggregated_against_numpy(api: Api) -> None:
    rng = np.random.default_rng(7)
    n = 5_000
    ts = T0 + np.sort(rng.integers(0, 300 * 10**9, n))  # five minutes, random instants
    val = np.round(rng.normal(100, 10, n), 2)
    await publish(api, Batch.of(np.zeros(n, np.int32), ts, val))
    h = api.auth(Role.VIEWER)
    start, end = T0, T0 + 300 * 10**9
    raw = (
        await api.client.get(
            "/api/v1/signals/press.force/history",
            params={"start": start, "end": end, "limit": 100_000},
            headers=h,
        )
    ).json()
    assert raw["count"] == n
    assert raw["ts"] == ts.tolist()
    assert raw["value"] == val.tolist()
    assert raw["truncated"] is False
    every = 60 * 10**9
    bucket = (ts // every) * every
    for agg, fn in [("mean", np.mean), ("min", np.min), ("max", np.max), ("count", len)]:
        r = (
            await api.client.get(
                "/api/v1/signals/press.force/history",
                params={"start": start, "end": end, "every": "1m", "agg": agg},
                headers=h,
            )
        ).json()
        expected_ts = np.unique(bucket)
        assert r["ts"] == expected_ts.tolist()
        expected = [float(fn(val[bucket == b])) for b in expected_ts]
        np.testing.assert_allclose(r["value"], expected, rtol=1e-9)
    last = (
        await api.client.get(
            "/api/v1/signals/press.force/history",
            params={"start": start, "end": end, "every": "60s", "agg": "last"},
            headers=h,
        )
    ).json()
    assert last["value"] == [float(val[bucket == b][-1]) for b in np.unique(bucket)]


async def test_history_limit_truncates(api: Api) -> None:
    await publish(api, Batch.of(np.zeros(100, np.int32), T0 + np.arange(100), np.arange(100.0)))
    r = (
        await api.client.get(
            "/api/v1/signals/0/history",
            params={"start": T0, "end": T0 + 1000, "limit": 10},
            headers=api.auth(Role.VIEWER),
        )
    ).json()
    assert r["count"] == 10
    assert r["truncated"] is True
    assert r["value"] == list(map(float, range(10)))


async def test_history_time_forms(api: Api) -> None:
    # Europe/Berlin is UTC+1 in January: a naive ISO time is taken in the site's zone.
    await publish(api, Batch.of([0], [T0], [42.0]))
    h = api.auth(Role.VIEWER)
    for start, end in [
        ("2027-01-15T08:00:00Z", "2027-01-15T08:00:01Z"),
        ("2027-01-15T09:00:00", "2027-01-15T09:00:01"),
        ("2027-01-15T08:00:00+00:00", str(T0 + 1)),
    ]:
        r = await api.client.get(
            "/api/v1/signals/0/history", params={"start": start, "end": end}, headers=h
        )
        assert r.status_code == 200, r.text
        assert r.json()["value"] == [42.0], (start, end)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"start": "yesterday"}, "is not a time"),
        ({"every": "fortnight"}, "is not a duration"),
        ({"every": "0s"}, "must be positive"),
        ({"start": "now", "end": "-1h"}, "must be after start"),
        ({"start": "-3650d", "every": "1ms"}, "buckets"),
        ({"agg": "median"}, "agg"),
        ({"limit": 0}, "limit"),
    ],
)
async def test_history_bad_parameters(api: Api, params: dict[str, str], fragment: str) -> None:
    r = await api.client.get(
        "/api/v1/signals/0/history", params=params, headers=api.auth(Role.VIEWER)
    )
    assert r.status_code in (400, 422)
    assert r.headers["content-type"] == "application/problem+json"
    assert fragment in r.json()["detail"]


async def test_openapi_and_unknown_paths(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    for path in [
        "/api/v1/health",
        "/api/v1/site",
        "/api/v1/signals",
        "/api/v1/signals/{ref}/latest",
        "/api/v1/signals/{ref}/history",
    ]:
        assert path in spec["paths"]
    r = await api.client.get("/api/v1/nothing-here", headers=api.auth(Role.VIEWER))
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert "/api/v1/nothing-here" in r.json()["detail"]
    r = await api.client.delete("/api/v1/site", headers=api.auth(Role.ADMIN))
    assert r.status_code == 405
    assert "DELETE" in r.json()["detail"]


async def test_console_is_served_without_cdn(api: Api) -> None:
    r = await api.client.get("/")
    assert r.status_code == 200
    assert "text/html" in r.headers["content-type"]
    assert "factory5g" in r.text
    for host in ("cdn.", "unpkg", "googleapis", "jsdelivr"):
        assert host not in r.text


async def test_retention_endpoint_removes_old_samples(api: Api) -> None:
    old = T0 - 10**18  # decades before the 30-day window
    await publish(api, Batch.of([0, 0], [old, 2**62], [1.0, 2.0]))
    r = await api.client.post("/api/v1/store/retention", headers=api.auth(Role.ENGINEER))
    assert r.status_code == 200
    assert r.json()["removed_samples"] == 1
    stats = (await api.client.get("/api/v1/store", headers=api.auth(Role.VIEWER))).json()
    assert stats["retention_days"] == 30


async def test_events_endpoint(api: Api) -> None:
    from factory5g.stream import Event

    before = api.runtime.written_batches
    await api.runtime.bus.publish(
        Batch.of([], [], [], events=[Event(2, T0, {"recipe": "DC04", "rows": [[1, 2]]})])
    )
    await wait_until(lambda: api.runtime.written_batches > before, what="events stored")
    h = api.auth(Role.VIEWER)
    r = (
        await api.client.get(
            "/api/v1/signals/2/events", params={"start": T0, "end": T0 + 1}, headers=h
        )
    ).json()
    assert r["events"] == [
        {"ts": T0, "time": "2027-01-15T08:00:00Z", "data": {"recipe": "DC04", "rows": [[1, 2]]}}
    ]
    bad = await api.client.get(
        "/api/v1/signals/2/events", params={"start": "now", "end": "-1h"}, headers=h
    )
    assert bad.status_code == 400
