"""Industrial internet identifiers: a Handle-compatible enterprise node.

Handle syntax and records, the HS_ADMIN permission model, a durable registry store (SQLite or
PostgreSQL), the Handle.Net JSON REST API, prefix referrals and recursive resolution between
nodes, identifier templates with bulk minting, and streaming import/export. See docs/ids.md.
"""

from factory5g.ids.admin import AdminPerm, AdminRef, Identity
from factory5g.ids.errors import IdsError, ResponseCode, http_status
from factory5g.ids.records import HandleValue, ValuePerm
from factory5g.ids.service import IdsService, NodeConfig, Resolution
from factory5g.ids.store import EmbeddedHandleStore, HandleStore
from factory5g.ids.syntax import Handle, parse_handle

__all__ = [
    "AdminPerm",
    "AdminRef",
    "EmbeddedHandleStore",
    "Handle",
    "HandleStore",
    "HandleValue",
    "Identity",
    "IdsError",
    "IdsService",
    "NodeConfig",
    "Resolution",
    "ResponseCode",
    "ValuePerm",
    "http_status",
    "parse_handle",
]
