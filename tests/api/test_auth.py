"""Access control: no token → 401, unknown/revoked token → 401, too small a role → 403."""

from __future__ import annotations

import pytest

from factory5g.model import Role

from .conftest import Api

PROTECTED = [
    ("GET", "/api/v1/site", Role.VIEWER),
    ("GET", "/api/v1/signals", Role.VIEWER),
    ("GET", "/api/v1/signals/press.force", Role.VIEWER),
    ("GET", "/api/v1/signals/press.force/history", Role.VIEWER),
    ("GET", "/api/v1/store", Role.VIEWER),
    ("GET", "/api/v1/me", Role.VIEWER),
    ("POST", "/api/v1/store/retention", Role.ENGINEER),
    ("GET", "/api/v1/tokens", Role.ADMIN),
]


async def test_health_is_open(api: Api) -> None:
    r = await api.client.get("/api/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["site"] == "Test press shop"
    assert body["signals"] == 3


@pytest.mark.parametrize(("method", "path", "_role"), PROTECTED)
async def test_no_token_is_401_problem(api: Api, method: str, path: str, _role: Role) -> None:
    r = await api.client.request(method, path)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")
    body = r.json()
    assert body["status"] == 401
    assert "token" in body["detail"]
    assert body["instance"] == path


@pytest.mark.parametrize(
    "header",
    [
        "Bearer f5g_deadbeef_notarealsecret",
        "Bearer nonsense",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
    ],
)
async def test_wrong_token_is_401(api: Api, header: str) -> None:
    r = await api.client.get("/api/v1/site", headers={"Authorization": header})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"


async def test_token_with_right_id_but_wrong_secret_is_401(api: Api) -> None:
    good = api.tokens[Role.ADMIN]
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    r = await api.client.get("/api/v1/site", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize(("method", "path", "needed"), PROTECTED)
async def test_role_matrix(api: Api, role: Role, method: str, path: str, needed: Role) -> None:
    r = await api.client.request(method, path, headers=api.auth(role))
    if role.allows(needed):
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 403
        body = r.json()
        assert r.headers["content-type"] == "application/problem+json"
        assert body["required_role"] == needed.value
        assert role.value in body["detail"]


async def test_me_reports_role(api: Api) -> None:
    r = await api.client.get("/api/v1/me", headers=api.auth(Role.OPERATOR))
    assert r.json()["role"] == "operator"
    assert r.json()["name"] == "test-operator"
    assert "token" not in r.json()


async def test_admin_creates_and_revokes_tokens(api: Api) -> None:
    admin = api.auth(Role.ADMIN)
    r = await api.client.post(
        "/api/v1/tokens", json={"role": "viewer", "name": "hmi-7"}, headers=admin
    )
    assert r.status_code == 201
    new = r.json()
    assert new["token"].startswith("f5g_")
    viewer = {"Authorization": f"Bearer {new['token']}"}
    assert (await api.client.get("/api/v1/site", headers=viewer)).status_code == 200
    listed = (await api.client.get("/api/v1/tokens", headers=admin)).json()
    assert "hmi-7" in [t["name"] for t in listed]
    assert all("token" not in t and "hash" not in t for t in listed)
    r = await api.client.delete("/api/v1/tokens/hmi-7", headers=admin)
    assert r.status_code == 200
    assert r.json()["revoked_at"] is not None
    assert (await api.client.get("/api/v1/site", headers=viewer)).status_code == 401
    r = await api.client.delete("/api/v1/tokens/hmi-7", headers=admin)
    assert r.status_code == 404
    assert "no active token" in r.json()["detail"]


async def test_bad_token_body_is_422_problem(api: Api) -> None:
    r = await api.client.post(
        "/api/v1/tokens", json={"role": "superuser"}, headers=api.auth(Role.ADMIN)
    )
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert "role" in r.json()["detail"]


async def test_tokens_are_stored_hashed(api: Api) -> None:
    raw = api.store.path.read_bytes()
    for token in api.tokens.values():
        assert token.encode() not in raw
        assert token.split("_", 2)[2].encode() not in raw
