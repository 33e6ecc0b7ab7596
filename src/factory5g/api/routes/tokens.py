"""``/api/v1/tokens`` (admin) and ``/api/v1/me`` (any token)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from factory5g.api.deps import Admin, TokensDep, Viewer
from factory5g.api.problems import Problem
from factory5g.api.tokens import TokenError, TokenInfo
from factory5g.model.site import Role

router = APIRouter(tags=["access"])


class NewToken(BaseModel):
    role: Role
    name: str | None = Field(None, min_length=1, max_length=100)


def token_dict(t: TokenInfo) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "role": t.role.value,
        "created_at": t.created_at,
        "revoked_at": t.revoked_at,
        "last_used_at": t.last_used_at,
    }


@router.get("/me", summary="The token making this request and its role")
async def me(who: Viewer) -> dict[str, Any]:
    return token_dict(who)


@router.get("/tokens", summary="Active API tokens (never their secrets)")
async def list_tokens(
    tokens: TokensDep, _: Admin, include_revoked: bool = False
) -> list[dict[str, Any]]:
    return [token_dict(t) for t in tokens.list(include_revoked=include_revoked)]


@router.post("/tokens", status_code=status.HTTP_201_CREATED, summary="Create a token (shown once)")
async def create_token(body: NewToken, tokens: TokensDep, _: Admin) -> dict[str, Any]:
    issued = tokens.create(body.role, body.name)
    return {**token_dict(issued.info), "token": issued.token}


@router.delete("/tokens/{ref}", summary="Revoke a token by id or name")
async def revoke_token(ref: str, tokens: TokensDep, _: Admin) -> dict[str, Any]:
    try:
        return token_dict(tokens.revoke(ref))
    except TokenError as exc:
        raise Problem(404, str(exc)) from None
