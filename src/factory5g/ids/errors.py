"""Errors of the identifier node, each carrying the Handle ``responseCode`` it answers with.

The codes are those of the Handle protocol (RFC 3652 §2.2.2.3, and Handle.Net 9's
``AbstractMessage.RC_*``); :func:`http_status` maps them to HTTP the way Handle.Net's JSON REST
API does (see docs/ids.md).

IdsError(code)                                   2  ERROR (also: anything unexpected)
├── ServerTooBusy                                3  SERVER_TOO_BUSY
├── RecursionTooDeep(hops)                       6  RECURSION_COUNT_TOO_HIGH
├── HandleNotFound(handle)                     100  HANDLE_NOT_FOUND
├── HandleAlreadyExists(handle)                101  HANDLE_ALREADY_EXISTS
├── InvalidHandle(text, reason)                102  INVALID_HANDLE
├── ValuesNotFound(handle)                     200  VALUES_NOT_FOUND
├── ValueAlreadyExists(handle, indexes)        201  VALUE_ALREADY_EXISTS
├── InvalidValue(reason)                       202  INVALID_VALUE
├── ServerNotResponsible(handle)               301  SERVER_NOT_RESP
├── UpstreamUnavailable(handle, tried)           2  ERROR: no server of a referral answered
├── NotAnAdmin(identity, handle)               400  INVALID_ADMIN
├── InsufficientPermissions(identity, need)    401  INSUFFICIENT_PERMISSIONS
├── AuthenticationNeeded                       402  AUTHENTICATION_NEEDED
├── AuthenticationFailed(user)                 403  AUTHENTICATION_FAILED
└── InvalidCredential(reason)                  404  INVALID_CREDENTIAL

(``ImportFormatError(line, reason)`` for a malformed import file is a ValueError, not an answer
of the node: see :mod:`factory5g.ids.transfer`.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import IntEnum

__all__ = [
    "AuthenticationFailed",
    "AuthenticationNeeded",
    "HandleAlreadyExists",
    "HandleNotFound",
    "IdsError",
    "InsufficientPermissions",
    "InvalidCredential",
    "InvalidHandle",
    "InvalidValue",
    "NotAnAdmin",
    "RecursionTooDeep",
    "ResponseCode",
    "ServerNotResponsible",
    "ServerTooBusy",
    "UpstreamUnavailable",
    "ValueAlreadyExists",
    "ValuesNotFound",
    "http_status",
]


class ResponseCode(IntEnum):
    """Handle protocol response codes (RFC 3652 §2.2.2.3)."""

    SUCCESS = 1
    ERROR = 2
    SERVER_TOO_BUSY = 3
    PROTOCOL_ERROR = 4
    OPERATION_NOT_SUPPORTED = 5
    RECURSION_COUNT_TOO_HIGH = 6
    HANDLE_NOT_FOUND = 100
    HANDLE_ALREADY_EXISTS = 101
    INVALID_HANDLE = 102
    VALUES_NOT_FOUND = 200
    VALUE_ALREADY_EXISTS = 201
    INVALID_VALUE = 202
    EXPIRED_SITE_INFO = 300
    SERVER_NOT_RESP = 301
    SERVICE_REFERRAL = 302
    PREFIX_REFERRAL = 303
    INVALID_ADMIN = 400
    INSUFFICIENT_PERMISSIONS = 401
    AUTHENTICATION_NEEDED = 402
    AUTHENTICATION_FAILED = 403
    INVALID_CREDENTIAL = 404


def http_status(code: int, *, resolution: bool = False, created: bool = False) -> int:
    """The HTTP status Handle.Net's REST API answers a ``responseCode`` with.

    1 → 200 (201 on create); 2 → 500; 3 → 503; 100 → 404; 101 → 409; 102 → 400;
    200 → 200 on resolution, 400 otherwise; 201 → 409; 202 → 400; 402 → 401; other 40x → 403;
    referrals (302, 303) → 200 (a successful answer that points elsewhere); other codes → 400.
    """
    if code == ResponseCode.SUCCESS:
        return 201 if created else 200
    fixed = {
        ResponseCode.ERROR: 500,
        ResponseCode.SERVER_TOO_BUSY: 503,
        ResponseCode.OPERATION_NOT_SUPPORTED: 501,
        ResponseCode.HANDLE_NOT_FOUND: 404,
        ResponseCode.HANDLE_ALREADY_EXISTS: 409,
        ResponseCode.INVALID_HANDLE: 400,
        ResponseCode.VALUE_ALREADY_EXISTS: 409,
        ResponseCode.INVALID_VALUE: 400,
        ResponseCode.SERVICE_REFERRAL: 200,
        ResponseCode.PREFIX_REFERRAL: 200,
        ResponseCode.AUTHENTICATION_NEEDED: 401,
    }
    if code in fixed:
        return fixed[ResponseCode(code)]
    if code == ResponseCode.VALUES_NOT_FOUND:
        return 200 if resolution else 400
    if 400 <= code < 500:
        return 403
    return 400


class IdsError(Exception):
    """Base of every error of ``factory5g.ids``; ``code`` is the Handle responseCode."""

    code: int = ResponseCode.ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ServerTooBusy(IdsError):
    code = ResponseCode.SERVER_TOO_BUSY


class RecursionTooDeep(IdsError):
    code = ResponseCode.RECURSION_COUNT_TOO_HIGH

    def __init__(self, handle: str, hops: int) -> None:
        super().__init__(f"{handle}: more than {hops} referrals; giving up")
        self.handle = handle
        self.hops = hops


class HandleNotFound(IdsError):
    code = ResponseCode.HANDLE_NOT_FOUND

    def __init__(self, handle: str) -> None:
        super().__init__(f"handle not found: {handle}")
        self.handle = handle


class HandleAlreadyExists(IdsError):
    code = ResponseCode.HANDLE_ALREADY_EXISTS

    def __init__(self, handle: str) -> None:
        super().__init__(f"handle already exists: {handle}")
        self.handle = handle


class InvalidHandle(IdsError):
    code = ResponseCode.INVALID_HANDLE

    def __init__(self, text: str, reason: str) -> None:
        shown = text if len(text) <= 80 else text[:77] + "..."
        super().__init__(f"invalid handle {shown!r}: {reason}")
        self.text = text
        self.reason = reason


class ValuesNotFound(IdsError):
    code = ResponseCode.VALUES_NOT_FOUND

    def __init__(self, handle: str, what: str = "no value matches") -> None:
        super().__init__(f"{handle}: {what}")
        self.handle = handle


class ValueAlreadyExists(IdsError):
    code = ResponseCode.VALUE_ALREADY_EXISTS

    def __init__(self, handle: str, indexes: Iterable[int]) -> None:
        self.indexes = tuple(sorted(indexes))
        super().__init__(
            f"{handle}: value(s) at index {', '.join(map(str, self.indexes))} already exist "
            "(overwrite=false)"
        )
        self.handle = handle


class InvalidValue(IdsError):
    code = ResponseCode.INVALID_VALUE


class ServerNotResponsible(IdsError):
    code = ResponseCode.SERVER_NOT_RESP

    def __init__(self, handle: str, prefixes: Sequence[str]) -> None:
        served = ", ".join(prefixes) or "none"
        super().__init__(
            f"this node is not responsible for {handle} (it serves: {served}) "
            "and knows no referral for it"
        )
        self.handle = handle


class UpstreamUnavailable(IdsError):
    code = ResponseCode.ERROR

    def __init__(self, handle: str, tried: Sequence[str]) -> None:
        super().__init__(
            f"{handle}: no server of the responsible site answered (tried {'; '.join(tried)})"
        )
        self.handle = handle
        self.tried = tuple(tried)


class NotAnAdmin(IdsError):
    code = ResponseCode.INVALID_ADMIN

    def __init__(self, identity: str, handle: str) -> None:
        super().__init__(f"{identity} is not an administrator of {handle}")
        self.identity = identity


class InsufficientPermissions(IdsError):
    code = ResponseCode.INSUFFICIENT_PERMISSIONS

    def __init__(self, identity: str, handle: str, need: str) -> None:
        super().__init__(f"{identity} lacks the {need} permission on {handle} (HS_ADMIN)")
        self.identity = identity
        self.need = need


class AuthenticationNeeded(IdsError):
    code = ResponseCode.AUTHENTICATION_NEEDED

    def __init__(self, what: str = "this operation needs authentication") -> None:
        super().__init__(what)


class AuthenticationFailed(IdsError):
    code = ResponseCode.AUTHENTICATION_FAILED

    def __init__(self, user: str, why: str = "wrong secret key") -> None:
        super().__init__(f"authentication of {user} failed: {why}")
        self.user = user


class InvalidCredential(IdsError):
    code = ResponseCode.INVALID_CREDENTIAL
