"""The HS_ADMIN permission model (RFC 3651 §3.2.1) and secret keys (HS_SECKEY).

An HS_ADMIN value names an administrator — a value reference ``index:handle`` — and what it may
do to the handle holding the value, as twelve permission bits. On the wire of the REST API the
bits are a string, most significant first (``"011111111111"``: everything but LIST_HANDLES).

An identity ``300:88.118.8/admin`` is an administrator through an HS_ADMIN value when

* the value refers to it directly (same handle; same index, or index 0 meaning any index), or
* the value refers to an HS_VLIST (a group: RFC 3651 §3.2.5) that lists it, directly or through
  nested groups, up to :data:`MAX_GROUP_DEPTH` levels.

Creating a handle and listing a prefix are governed by the HS_ADMIN values of the prefix handle
``0.NA/<prefix>`` (RFC 3651 §3.2.1: ADD_HANDLE and LIST_HANDLES are "naming authority"
permissions); everything else by the handle's own HS_ADMIN values. A handle without any HS_ADMIN
value is governed by its prefix handle, so that it never becomes unmanageable.

HS_SECKEY data is never stored in clear: it is kept as ``scrypt$N$r$p$salt$hash`` (RFC 7914
parameters), and Basic-auth passwords are checked against it in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntFlag
from typing import Any

from factory5g.ids.errors import InvalidCredential, InvalidValue
from factory5g.ids.records import HandleValue

__all__ = [
    "MAX_GROUP_DEPTH",
    "AdminPerm",
    "AdminRef",
    "Identity",
    "admin_permissions",
    "hash_secret",
    "is_hashed_secret",
    "parse_identity",
    "verify_secret",
]

MAX_GROUP_DEPTH = 4
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class AdminPerm(IntFlag):
    """HS_ADMIN permission bits (RFC 3651 §3.2.1)."""

    NONE = 0
    ADD_HANDLE = 0x0001
    DELETE_HANDLE = 0x0002
    ADD_DERIVED_PREFIX = 0x0004
    DELETE_DERIVED_PREFIX = 0x0008
    MODIFY_VALUE = 0x0010
    REMOVE_VALUE = 0x0020
    ADD_VALUE = 0x0040
    READ_VALUE = 0x0080
    MODIFY_ADMIN = 0x0100
    REMOVE_ADMIN = 0x0200
    ADD_ADMIN = 0x0400
    LIST_HANDLES = 0x0800

    def to_text(self) -> str:
        return format(int(self), "012b")

    @classmethod
    def from_text(cls, text: str) -> AdminPerm:
        if not 1 <= len(text) <= 12 or set(text) - {"0", "1"}:
            raise InvalidValue(
                f"HS_ADMIN permissions {text!r}: up to twelve 0/1 characters, "
                "most significant first (LIST_HANDLES ... ADD_HANDLE)"
            )
        return cls(int(text, 2))

    @property
    def names(self) -> str:
        return "|".join(p.name or "" for p in AdminPerm if p and p in self) or "NONE"


ALL_ADMIN = AdminPerm(0x0FFF)
HANDLE_ADMIN = ALL_ADMIN & ~AdminPerm.LIST_HANDLES  # "011111111111"


@dataclass(frozen=True, slots=True)
class AdminRef:
    """The data of an HS_ADMIN value: administrator ``index:handle`` and permissions."""

    handle: str
    index: int
    perms: AdminPerm

    def to_json(self) -> dict[str, Any]:
        return {"handle": self.handle, "index": self.index, "permissions": self.perms.to_text()}

    @classmethod
    def from_json(cls, raw: Any) -> AdminRef:
        if not isinstance(raw, Mapping):
            raise InvalidValue("HS_ADMIN data is {handle, index, permissions}")
        handle, index, perms = raw.get("handle"), raw.get("index"), raw.get("permissions")
        if isinstance(index, str) and index.isdigit():  # pyhandle sends "200"
            index = int(index)
        if not isinstance(handle, str) or "/" not in handle:
            raise InvalidValue("HS_ADMIN handle must be a handle (prefix/suffix)")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 2**32:
            raise InvalidValue("HS_ADMIN index must be an integer (0: any index)")
        if not isinstance(perms, str):
            raise InvalidValue("HS_ADMIN permissions is a string of 0/1, e.g. '011111111111'")
        return cls(handle, index, AdminPerm.from_text(perms))


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated administrator: the secret key at ``index`` of ``handle``."""

    index: int
    handle: str  # as the client wrote it
    key: str  # the handle's canonical key

    def __str__(self) -> str:
        return f"{self.index}:{self.handle}"


def parse_identity(user: str) -> tuple[int, str]:
    """``300:88.118.8/admin`` → (300, "88.118.8/admin")."""
    index, colon, handle = user.partition(":")
    if not colon or not index.isdigit() or not handle:
        raise InvalidCredential(f"user {user[:80]!r} is not index:handle (e.g. 300:88.118.8/admin)")
    return int(index), handle


Loader = Callable[[str], Awaitable[list[HandleValue] | None]]


async def admin_permissions(
    identity: Identity,
    values: Iterable[HandleValue],
    load: Loader,
    key_of: Callable[[str], str | None],
) -> AdminPerm | None:
    """What ``identity`` may do according to the HS_ADMIN values among ``values``: the union
    of the permissions of every HS_ADMIN value naming it; None if none names it."""
    granted: AdminPerm | None = None
    for v in values:
        if v.type != "HS_ADMIN":
            continue
        ref = AdminRef.from_json(v.data)
        if await _member(identity, ref.handle, ref.index, load, key_of, 0):
            granted = (granted or AdminPerm.NONE) | ref.perms
    return granted


async def _member(
    identity: Identity,
    handle: str,
    index: int,
    load: Loader,
    key_of: Callable[[str], str | None],
    depth: int,
) -> bool:
    key = key_of(handle)
    if key is None:
        return False
    if key == identity.key and index in (0, identity.index):
        return True
    if depth >= MAX_GROUP_DEPTH:
        return False
    group = await load(key)
    if not group:
        return False
    for v in group:
        if v.type == "HS_VLIST" and index in (0, v.index):
            for member in v.data:
                if await _member(
                    identity, member["handle"], member["index"], load, key_of, depth + 1
                ):
                    return True
    return False


# -- secret keys ------------------------------------------------------------------------------


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    dk = hashlib.scrypt(
        secret.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(dk)}"


def is_hashed_secret(data: str) -> bool:
    parts = data.split("$")
    return len(parts) == 6 and parts[0] == "scrypt" and all(p.isdigit() for p in parts[1:4])


def verify_secret(secret: str, stored: str) -> bool:
    if not is_hashed_secret(stored):
        return False
    _, n, r, p, salt, want = stored.split("$")
    try:
        dk = hashlib.scrypt(
            secret.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=32,
            maxmem=256 * 1024 * 1024,
        )
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(dk, base64.b64decode(want))
