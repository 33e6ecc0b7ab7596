"""Handle records: sets of typed values (RFC 3651 §3.1), and their JSON form in the REST API.

A value is ``index`` (uint32, 0 reserved), ``type`` (UTF-8, e.g. URL, HS_ADMIN), ``data`` (in a
``format``: string, base64, hex, admin, vlist, site), ``ttl`` (seconds, relative or absolute),
``timestamp`` (last change, seconds) and ``permissions`` (RFC 3651 §3.1: admin_read 0x08,
admin_write 0x04, public_read 0x02, public_write 0x01).

JSON, as Handle.Net servers speak it (``timestamp`` ISO 8601 in UTC, whole seconds)::

    {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://..."},
     "ttl": 86400, "timestamp": "2024-05-01T08:00:00Z"}

``permissions`` (four characters, admin_read admin_write public_read public_write, e.g.
``"1100"``) and ``ttlType`` (1: absolute) appear only when not the default (``"1110"``, relative),
so that ordinary values look exactly like Handle.Net's. Input is lenient where clients are (a plain
string as ``data``, an HS_ADMIN ``index`` as a string — pyhandle sends both) and strict otherwise:
anything unknown is an :class:`~factory5g.ids.errors.InvalidValue` that says what is wrong.

Stored records keep the same JSON (one array per handle), so that resolving a handle whose values
are all publicly readable is a copy of the stored bytes.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import IntFlag
from typing import Any

import orjson

from factory5g.ids.errors import InvalidValue

__all__ = [
    "ADMIN_TYPES",
    "DEFAULT_PERMISSIONS",
    "DEFAULT_TTL",
    "MAX_INDEX",
    "SECRET_PERMISSIONS",
    "HandleValue",
    "ValuePerm",
    "decode_values",
    "encode_values",
    "format_timestamp",
    "parse_timestamp",
    "parse_values",
    "public_json",
]

MAX_INDEX = 2**32 - 1
MAX_TTL = 2**31 - 1
MAX_TYPE_BYTES = 256
MAX_DATA_BYTES = 64 * 1024
DEFAULT_TTL = 86400
ADMIN_TYPES = frozenset({"HS_ADMIN"})
FORMATS = ("string", "base64", "hex", "admin", "vlist", "site")
_KNOWN_KEYS = frozenset(
    {"index", "type", "data", "ttl", "ttlType", "timestamp", "permissions", "references"}
)


class ValuePerm(IntFlag):
    """Per-value permissions (RFC 3651 §3.1)."""

    NONE = 0
    PUBLIC_WRITE = 0x01
    PUBLIC_READ = 0x02
    ADMIN_WRITE = 0x04
    ADMIN_READ = 0x08

    def to_text(self) -> str:
        return format(int(self), "04b")

    @classmethod
    def from_text(cls, text: str) -> ValuePerm:
        if len(text) != 4 or set(text) - {"0", "1"}:
            raise InvalidValue(
                f"permissions {text!r}: four 0/1 characters "
                "(admin_read admin_write public_read public_write), e.g. '1110'"
            )
        return cls(int(text, 2))


DEFAULT_PERMISSIONS = ValuePerm.ADMIN_READ | ValuePerm.ADMIN_WRITE | ValuePerm.PUBLIC_READ
SECRET_PERMISSIONS = ValuePerm.ADMIN_READ | ValuePerm.ADMIN_WRITE


def format_timestamp(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def parse_timestamp(text: str) -> int:
    try:
        return calendar.timegm(time.strptime(text.replace(".000", ""), "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        raise InvalidValue(f"timestamp {text!r} is not YYYY-MM-DDTHH:MM:SSZ") from None


@dataclass(frozen=True, slots=True)
class HandleValue:
    """One typed value of a handle record. ``data`` is the JSON value of its ``format``."""

    index: int
    type: str
    data: Any
    format: str = "string"
    ttl: int = DEFAULT_TTL
    ttl_absolute: bool = False
    timestamp: int = 0
    permissions: ValuePerm = DEFAULT_PERMISSIONS
    references: tuple[tuple[str, int], ...] = field(default=())

    @property
    def publicly_readable(self) -> bool:
        return bool(self.permissions & ValuePerm.PUBLIC_READ)

    @property
    def is_admin(self) -> bool:
        return self.type in ADMIN_TYPES

    def same_content(self, other: HandleValue) -> bool:
        """Equal but for the timestamp."""
        return replace(self, timestamp=0) == replace(other, timestamp=0)

    def type_matches(self, wanted: str) -> bool:
        """Handle type queries match the type or a sub-type: ``URL`` matches ``URL.ALT``
        (RFC 3651 §3.1), ASCII case-insensitively."""
        mine, want = self.type.upper(), wanted.upper()
        return mine == want or (mine.startswith(want) and mine[len(want)] == ".")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "type": self.type,
            "data": {"format": self.format, "value": self.data},
            "ttl": self.ttl,
            "timestamp": format_timestamp(self.timestamp),
        }
        if self.ttl_absolute:
            out["ttlType"] = 1
        if self.permissions != DEFAULT_PERMISSIONS or self.type == "HS_SECKEY":
            out["permissions"] = self.permissions.to_text()
        if self.references:
            out["references"] = [{"handle": h, "index": i} for h, i in self.references]
        return out

    @classmethod
    def from_json(
        cls,
        obj: Any,
        *,
        now: int,
        keep_timestamp: bool = False,
        default_permissions: ValuePerm | None = None,
    ) -> HandleValue:
        """Parse one value from a client (``keep_timestamp``: from an import or the store)."""
        if not isinstance(obj, Mapping):
            raise InvalidValue(f"a value is a JSON object, not {type(obj).__name__}")
        unknown = set(obj) - _KNOWN_KEYS
        if unknown:
            raise InvalidValue(f"unknown field(s) in a value: {', '.join(sorted(unknown))}")
        index = _index(obj.get("index"))
        type_ = obj.get("type")
        if not isinstance(type_, str) or not type_:
            raise InvalidValue(f"value {index}: 'type' must be a non-empty string")
        if len(type_.encode("utf-8", "surrogatepass")) > MAX_TYPE_BYTES or any(
            ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in type_
        ):
            raise InvalidValue(f"value {index}: type {type_[:40]!r} is too long or has controls")
        if "data" not in obj:
            raise InvalidValue(f"value {index} ({type_}): no 'data'")
        fmt, data = _data(index, type_, obj["data"])
        ttl = obj.get("ttl", DEFAULT_TTL)
        if isinstance(ttl, str) and ttl.isdigit():
            ttl = int(ttl)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 <= ttl <= MAX_TTL:
            raise InvalidValue(f"value {index}: ttl must be an integer 0..{MAX_TTL}")
        ttl_type = obj.get("ttlType", 0)
        if ttl_type not in (0, 1):
            raise InvalidValue(f"value {index}: ttlType is 0 (relative) or 1 (absolute)")
        perms_text = obj.get("permissions")
        if perms_text is None:
            # A secret key is not public unless asked for (Handle.Net's admin tool does the same).
            perms = (
                default_permissions
                if default_permissions is not None
                else SECRET_PERMISSIONS
                if type_ == "HS_SECKEY"
                else DEFAULT_PERMISSIONS
            )
        elif isinstance(perms_text, str):
            perms = ValuePerm.from_text(perms_text)
        else:
            raise InvalidValue(f"value {index}: permissions is a string like '1110'")
        refs = _references(index, obj.get("references", ()))
        ts = now
        if keep_timestamp and "timestamp" in obj:
            stamp = obj["timestamp"]
            ts = parse_timestamp(stamp) if isinstance(stamp, str) else _int(stamp, "timestamp")
        return cls(index, type_, data, fmt, ttl, ttl_type == 1, ts, perms, refs)


def _int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidValue(f"{what} must be an integer")
    return v


def _index(raw: Any) -> int:
    if isinstance(raw, str) and raw.isdigit():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise InvalidValue(f"index {raw!r}: an integer 1..{MAX_INDEX} is required")
    if not 1 <= raw <= MAX_INDEX:
        raise InvalidValue(f"index {raw}: must be 1..{MAX_INDEX} (0 is reserved)")
    return raw


def _references(index: int, raw: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(raw, list | tuple):
        raise InvalidValue(f"value {index}: references is a list of {{handle, index}}")
    out = []
    for r in raw:
        if not isinstance(r, Mapping) or not isinstance(r.get("handle"), str):
            raise InvalidValue(f"value {index}: a reference is {{handle, index}}")
        out.append((r["handle"], _index(r.get("index"))))
    return tuple(out)


def _data(index: int, type_: str, raw: Any) -> tuple[str, Any]:
    """(format, normalised JSON value) of a value's ``data``."""
    if isinstance(raw, str):  # pyhandle and b2handle send plain strings
        fmt, value = "string", raw
    elif isinstance(raw, Mapping):
        fmt = raw.get("format", "string")
        if "value" not in raw:
            raise InvalidValue(f"value {index} ({type_}): data has no 'value'")
        value = raw["value"]
    else:
        raise InvalidValue(f"value {index} ({type_}): data is a string or {{format, value}}")
    if fmt not in FORMATS:
        raise InvalidValue(
            f"value {index} ({type_}): unknown data format {fmt!r} (one of {', '.join(FORMATS)})"
        )
    if type_ == "HS_ADMIN" and fmt != "admin":
        raise InvalidValue(f"value {index}: HS_ADMIN data has format 'admin'")
    if type_ == "HS_VLIST" and fmt != "vlist":
        raise InvalidValue(f"value {index}: HS_VLIST data has format 'vlist'")
    if fmt in ("string", "base64", "hex"):
        if not isinstance(value, str):
            raise InvalidValue(f"value {index} ({type_}): {fmt} data is a JSON string")
        if len(value) > MAX_DATA_BYTES:
            raise InvalidValue(f"value {index} ({type_}): data longer than {MAX_DATA_BYTES}")
        try:
            if fmt == "base64":
                base64.b64decode(value, validate=True)
            elif fmt == "hex":
                bytes.fromhex(value)
        except (binascii.Error, ValueError):
            raise InvalidValue(f"value {index} ({type_}): not valid {fmt}") from None
        return fmt, value
    if fmt == "admin":
        from factory5g.ids.admin import AdminRef

        return fmt, AdminRef.from_json(value).to_json()
    if fmt == "vlist":
        if not isinstance(value, list):
            raise InvalidValue(f"value {index}: vlist data is a list of {{handle, index}}")
        refs = _references(index, value)
        return fmt, [{"handle": h, "index": i} for h, i in refs]
    if not isinstance(value, Mapping):  # site
        raise InvalidValue(f"value {index}: site data is a JSON object")
    return fmt, dict(value)


def parse_values(raw: Any, *, now: int) -> list[HandleValue]:
    """A PUT body: ``{"values": [...]}``, a bare array, or one value (Handle.Net accepts all
    three). Indexes must be unique."""
    if isinstance(raw, Mapping) and "values" in raw:
        items = raw["values"]
    elif isinstance(raw, Mapping):
        items = [raw]
    else:
        items = raw
    if not isinstance(items, list):
        raise InvalidValue('the body is {"values": [...]}, an array of values, or one value')
    values = [HandleValue.from_json(v, now=now) for v in items]
    seen: set[int] = set()
    for v in values:
        if v.index in seen:
            raise InvalidValue(f"index {v.index} appears twice")
        seen.add(v.index)
    return values


def encode_values(values: Iterable[HandleValue]) -> bytes:
    """The stored (and served) JSON array of a record, ordered by index."""
    return orjson.dumps([v.to_json() for v in sorted(values, key=lambda v: v.index)])


def decode_values(blob: bytes | str) -> list[HandleValue]:
    return [HandleValue.from_json(v, now=0, keep_timestamp=True) for v in orjson.loads(blob)]


def public_json(values: Sequence[HandleValue]) -> bytes:
    return encode_values(v for v in values if v.publicly_readable)
