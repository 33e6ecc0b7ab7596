"""Dependencies shared by the routers: the runtime, the token store, and role checks."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from factory5g.api.problems import Problem
from factory5g.api.tokens import TokenInfo, TokenStore
from factory5g.model.site import Role
from factory5g.runtime import Runtime

_bearer = HTTPBearer(auto_error=False, description="an API token: factory5g token create")


# ``async def``, though they do not await: FastAPI runs a plain ``def`` dependency in its thread
# pool, two thread hops per request for an attribute read.
async def get_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def get_tokens(request: Request) -> TokenStore:
    tokens: TokenStore = request.app.state.tokens
    return tokens


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
TokensDep = Annotated[TokenStore, Depends(get_tokens)]


def authenticate(tokens: TokenStore, token: str | None) -> TokenInfo:
    """The token's info, or a 401 problem."""
    if not token:
        raise Problem(
            401,
            "this endpoint needs an API token: send 'Authorization: Bearer <token>' "
            "(create one with: factory5g token create --role viewer)",
            headers={"WWW-Authenticate": 'Bearer realm="factory5g"'},
        )
    info = tokens.verify(token)
    if info is None:
        raise Problem(
            401,
            "the API token is unknown or revoked",
            headers={"WWW-Authenticate": 'Bearer realm="factory5g", error="invalid_token"'},
        )
    return info


@functools.cache
def require(role: Role) -> Callable[..., Coroutine[Any, Any, TokenInfo]]:
    """A dependency that lets through tokens whose role is ``role`` or higher.

    Cached per role, so that a router-level and a route-level check of the same role are one
    dependency, which FastAPI evaluates once per request.
    """

    async def check(
        tokens: TokensDep,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> TokenInfo:
        info = authenticate(tokens, creds.credentials if creds else None)
        if not info.role.allows(role):
            raise Problem(
                403,
                f"token {info.name!r} has role {info.role.value!r}; this needs {role.value!r} "
                "or higher",
                required_role=role.value,
            )
        return info

    return check


Viewer = Annotated[TokenInfo, Depends(require(Role.VIEWER))]
Operator = Annotated[TokenInfo, Depends(require(Role.OPERATOR))]
Engineer = Annotated[TokenInfo, Depends(require(Role.ENGINEER))]
Admin = Annotated[TokenInfo, Depends(require(Role.ADMIN))]
