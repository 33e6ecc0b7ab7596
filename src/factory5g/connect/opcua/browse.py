"""Look into an OPC UA server: its address space as a tree, a site-file snippet, its certificate.

* :func:`browse` walks the hierarchical references (OPC 10000-3 §7.3) from Objects (or a given
  node) down to a depth limit, one Browse and one Read request per level and per batch of nodes
  rather than per node, and returns a :class:`BrowsedNode` tree: node id, browse name, node
  class, and for Variables their DataType, access level, value and EngineeringUnits.
  Standard nodes (namespace 0, such as the Server object) are left out below the start node
  unless asked for.
* :func:`render_tree` draws it as a ``rich.tree.Tree``.
* :func:`site_snippet` writes the ``[[equipment]]`` / ``[[equipment.signal]]`` entries that bind
  the Variables found (grouped by the Object holding them), ready for the site file.
* :func:`fetch_server_cert` / :func:`save_server_cert` get the server's application certificate
  from GetEndpoints, for an endpoint's ``trust`` list.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from asyncua import ua
from asyncua.client import Client
from asyncua.ua.status_codes import get_name_and_doc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from rich.markup import escape
from rich.tree import Tree

from factory5g.connect.opcua.convert import variant_type_of
from factory5g.connect.opcua.errors import (
    OpcUaConnectionError,
    OpcUaSecurityError,
    OpcUaStatusError,
)
from factory5g.connect.opcua.security import first_certificate, get_endpoints, thumbprint
from factory5g.connect.opcua.session import CONNECTION_ERRORS, close, describe, describe_status
from factory5g.model.units import UNITS

__all__ = [
    "NO_NONE_ENDPOINT",
    "OBJECTS",
    "BrowseProgress",
    "BrowsedNode",
    "ServerCertificate",
    "browse",
    "equipment_id",
    "fetch_server_cert",
    "render_tree",
    "save_server_cert",
    "signal_name",
    "site_snippet",
]

OBJECTS: Final = "i=85"
NO_NONE_ENDPOINT: Final = "the server offers no endpoint with security none, which browsing needs"
_PER_REQUEST: Final = 200  # nodes per Browse / Read request
_NODE_CLASSES: Final = ua.NodeClass.Object | ua.NodeClass.Variable | ua.NodeClass.Method
_READ: Final = 1 << ua.AccessLevel.CurrentRead
_WRITE: Final = 1 << ua.AccessLevel.CurrentWrite
_INT_TYPES: Final = frozenset(
    {
        ua.VariantType.SByte,
        ua.VariantType.Byte,
        ua.VariantType.Int16,
        ua.VariantType.UInt16,
        ua.VariantType.Int32,
        ua.VariantType.UInt32,
        ua.VariantType.Int64,
        ua.VariantType.UInt64,
    }
)


@dataclass(frozen=True, slots=True)
class BrowsedNode:
    """One node of the address space, with its children down to the depth browsed."""

    node_id: str
    browse_name: str  # the name part of the QualifiedName
    display_name: str
    node_class: str  # "Object", "Variable", "Method"...
    data_type: str | None = None  # Variables: "Double", "Boolean"... or the DataType's node id
    access: str | None = None  # Variables: "read", "write", "read/write" or "none"
    value: Any = None
    unit: str | None = None  # from the EngineeringUnits property
    is_property: bool = False  # reached through HasProperty (EURange, EngineeringUnits...)
    children: tuple[BrowsedNode, ...] = ()

    def walk(self) -> Iterable[tuple[BrowsedNode, tuple[BrowsedNode, ...]]]:
        """Every node below (and including) this one, with its ancestors, depth first."""
        stack: list[tuple[BrowsedNode, tuple[BrowsedNode, ...]]] = [(self, ())]
        while stack:
            node, ancestors = stack.pop()
            yield node, ancestors
            below = (*ancestors, node)
            stack.extend((c, below) for c in reversed(node.children))


@dataclass(frozen=True, slots=True)
class BrowseProgress:
    """Where a browse is: nodes done, nodes known but not done yet, the last node done."""

    visited: int
    queued: int
    node: str


@dataclass(slots=True)
class _Found:
    """A node being browsed (mutable until the tree is frozen)."""

    node_id: ua.NodeId
    browse_name: str
    display_name: str
    node_class: ua.NodeClass
    is_property: bool = False
    data_type: str | None = None
    data_type_id: ua.NodeId | None = None
    access: str | None = None
    value: Any = None
    unit: str | None = None
    children: list[_Found] = field(default_factory=list)

    def freeze(self) -> BrowsedNode:
        return BrowsedNode(
            self.node_id.to_string(),
            self.browse_name,
            self.display_name,
            self.node_class.name,
            self.data_type,
            self.access,
            self.value,
            self.unit,
            self.is_property,
            tuple(c.freeze() for c in self.children),
        )


Progress = Callable[[BrowseProgress], None]


def _ns0(identifier: int) -> ua.NodeId:
    return ua.NodeId(ua.Int32(identifier))


async def browse(
    url: str,
    *,
    node: str = OBJECTS,
    depth: int = 3,
    progress: Progress | None = None,
    username: str | None = None,
    password: str | None = None,
    timeout_s: float = 4.0,
    include_standard: bool = False,
    max_nodes: int = 20_000,
) -> BrowsedNode:
    """The address space below ``node`` down to ``depth`` levels (security None).

    Raises OpcUaConnectionError when the server cannot be reached or refuses the session,
    OpcUaSecurityError when it refuses the user, ValueError for a malformed ``node``.
    """
    try:
        start = ua.NodeId.from_string(node)
    except (ValueError, ua.UaError) as exc:
        raise ValueError(f"{node!r} is not a node id (such as i=85 or ns=2;s=Line1)") from exc
    client = Client(url, timeout=timeout_s)
    client.name = client.description = "factory5g browse"
    client.application_uri = "urn:factory5g:browse"
    client.session_timeout = 60_000  # a short look; asyncua asks for an hour by default
    if username is not None:
        client.set_user(username)
    if password is not None:
        client.set_password(password)
    try:
        await client.connect(auto_reconnect=False)
    except CONNECTION_ERRORS as exc:
        await close(client, timeout_s)
        if isinstance(exc, ua.UaStatusCodeError) and exc.code in (
            ua.StatusCodes.BadUserAccessDenied,
            ua.StatusCodes.BadIdentityTokenInvalid,
            ua.StatusCodes.BadIdentityTokenRejected,
        ):
            who = f"user {username!r}" if username else "the anonymous identity"
            raise OpcUaSecurityError(
                url, url, f"the server refused {who}: {describe(exc)}"
            ) from exc
        if "No matching endpoints" in str(exc):  # asyncua's CreateSession found no None endpoint
            raise OpcUaSecurityError(url, url, NO_NONE_ENDPOINT) from exc
        raise OpcUaConnectionError(url, url, f"cannot connect: {describe(exc)}") from exc
    try:
        walker = _Walker(client, url, progress, include_standard, max_nodes)
        return await walker.run(start, depth)
    except CONNECTION_ERRORS as exc:
        raise OpcUaConnectionError(url, url, f"browse failed: {describe(exc)}") from exc
    finally:
        await close(client, timeout_s)


class _Walker:
    def __init__(
        self,
        client: Client,
        url: str,
        progress: Progress | None,
        include_standard: bool,
        max_nodes: int,
    ) -> None:
        self.client = client
        self.url = url
        self.progress = progress
        self.include_standard = include_standard
        self.max_nodes = max_nodes
        self.visited = 0
        self.seen: set[ua.NodeId] = set()

    async def run(self, start: ua.NodeId, depth: int) -> BrowsedNode:
        root = await self._root(start)
        self.seen.add(start)
        level = [root]
        for _ in range(max(0, depth)):
            expand = [f for f in level if f.node_class != ua.NodeClass.Method]
            if not expand:
                break
            level = await self._children(expand, queued=len(level))
            await self._variables([f for f in level if f.node_class == ua.NodeClass.Variable])
            if len(self.seen) >= self.max_nodes:
                break
        await self._data_type_names(root)
        return root.freeze()

    async def _root(self, start: ua.NodeId) -> _Found:
        attrs = (ua.AttributeIds.BrowseName, ua.AttributeIds.DisplayName, ua.AttributeIds.NodeClass)
        dvs = await self.client.uaclient.read(
            ua.ReadParameters(
                NodesToRead=[ua.ReadValueId(NodeId=start, AttributeId=a) for a in attrs]
            )
        )
        status = dvs[0].StatusCode
        if status is not None and status.is_bad():
            code_name, doc = get_name_and_doc(status.value)
            raise OpcUaStatusError(
                self.url,
                self.url,
                start.to_string(),
                code_name,
                status.value,
                action="browse",
                doc=doc,
            )
        qname, display, cls = (dv.Value.Value if dv.Value is not None else None for dv in dvs)
        root = _Found(
            start,
            qname.Name if isinstance(qname, ua.QualifiedName) else str(qname),
            display.Text if isinstance(display, ua.LocalizedText) and display.Text else "",
            ua.NodeClass(cls) if isinstance(cls, int) else ua.NodeClass.Unspecified,
        )
        if root.node_class == ua.NodeClass.Variable:
            await self._variables([root])
        return root

    async def _children(self, parents: Sequence[_Found], queued: int) -> list[_Found]:
        found: list[_Found] = []
        for first in range(0, len(parents), _PER_REQUEST):
            chunk = parents[first : first + _PER_REQUEST]
            params = ua.BrowseParameters(
                RequestedMaxReferencesPerNode=0,
                NodesToBrowse=[
                    ua.BrowseDescription(
                        NodeId=p.node_id,
                        BrowseDirection=ua.BrowseDirection.Forward,
                        ReferenceTypeId=_ns0(ua.ObjectIds.HierarchicalReferences),
                        IncludeSubtypes=True,
                        NodeClassMask=int(_NODE_CLASSES),
                        ResultMask=int(ua.BrowseResultMask.All),
                    )
                    for p in chunk
                ],
            )
            results = await self.client.uaclient.browse(params)
            for j, (parent, result) in enumerate(zip(chunk, results, strict=True)):
                self.visited += 1
                for ref in result.References or []:
                    child_id = ref.NodeId
                    if child_id in self.seen or len(self.seen) >= self.max_nodes:
                        continue
                    if child_id.NamespaceIndex == 0 and not self.include_standard:
                        continue
                    self.seen.add(child_id)
                    child = _Found(
                        ua.NodeId(
                            child_id.Identifier, child_id.NamespaceIndex, child_id.NodeIdType
                        ),
                        ref.BrowseName.Name or "",
                        ref.DisplayName.Text or "",
                        ref.NodeClass,
                        is_property=ref.ReferenceTypeId == _ns0(ua.ObjectIds.HasProperty),
                    )
                    parent.children.append(child)
                    found.append(child)
                if self.progress is not None:
                    left = queued - (first + j + 1) + len(found)  # this level's, and the next's
                    self.progress(BrowseProgress(self.visited, left, parent.browse_name))
        return found

    async def _variables(self, variables: Sequence[_Found]) -> None:
        """DataType, AccessLevel and Value of each Variable, and its EngineeringUnits."""
        attrs = (ua.AttributeIds.DataType, ua.AttributeIds.AccessLevel, ua.AttributeIds.Value)
        for first in range(0, len(variables), _PER_REQUEST):
            chunk = variables[first : first + _PER_REQUEST]
            dvs = await self.client.uaclient.read(
                ua.ReadParameters(
                    NodesToRead=[
                        ua.ReadValueId(NodeId=v.node_id, AttributeId=a)
                        for v in chunk
                        for a in attrs
                    ]
                )
            )
            for i, v in enumerate(chunk):
                dtype, access, value = dvs[3 * i : 3 * i + 3]
                dt = dtype.Value.Value if dtype.Value is not None else None
                if isinstance(dt, ua.NodeId):
                    v.data_type_id = dt
                    vt = variant_type_of(dt)
                    v.data_type = vt.name if vt is not None else dt.to_string()
                bits = access.Value.Value if access.Value is not None else None
                if isinstance(bits, int):
                    v.access = {_READ: "read", _WRITE: "write", _READ | _WRITE: "read/write"}.get(
                        bits & (_READ | _WRITE), "none"
                    )
                if value.StatusCode is not None and value.StatusCode.is_bad():
                    v.value = describe_status(value.StatusCode.value).split(":", 1)[0]
                else:
                    v.value = value.Value.Value if value.Value is not None else None
            await self._units([v for v in chunk if not v.is_property])

    async def _units(self, variables: Sequence[_Found]) -> None:
        """The EngineeringUnits property of each Variable (OPC 10000-8 §5.6.3), if it has one."""
        if not variables:
            return
        path = ua.RelativePath.from_string("/0:EngineeringUnits")
        paths = [ua.BrowsePath(StartingNode=v.node_id, RelativePath=path) for v in variables]
        results = await self.client.uaclient.translate_browsepaths_to_nodeids(paths)
        where = [
            (v, r.Targets[0].TargetId)
            for v, r in zip(variables, results, strict=True)
            if r.StatusCode.is_good() and r.Targets
        ]
        if not where:
            return
        dvs = await self.client.uaclient.read(
            ua.ReadParameters(
                NodesToRead=[
                    ua.ReadValueId(
                        NodeId=ua.NodeId(t.Identifier, t.NamespaceIndex, t.NodeIdType),
                        AttributeId=ua.AttributeIds.Value,
                    )
                    for _, t in where
                ]
            )
        )
        for (v, _), dv in zip(where, dvs, strict=True):
            eu = dv.Value.Value if dv.Value is not None else None
            if isinstance(eu, ua.EUInformation) and eu.DisplayName.Text:
                v.unit = eu.DisplayName.Text

    async def _data_type_names(self, root: _Found) -> None:
        """Name the DataTypes that are not built in (enumerations, structures) by browse name."""
        pending: dict[ua.NodeId, list[_Found]] = {}
        stack = [root]
        while stack:
            f = stack.pop()
            stack.extend(f.children)
            if f.data_type_id is not None and variant_type_of(f.data_type_id) is None:
                pending.setdefault(f.data_type_id, []).append(f)
        if not pending:
            return
        ids = list(pending)
        dvs = await self.client.uaclient.read(
            ua.ReadParameters(
                NodesToRead=[
                    ua.ReadValueId(NodeId=i, AttributeId=ua.AttributeIds.BrowseName) for i in ids
                ]
            )
        )
        for i, dv in zip(ids, dvs, strict=True):
            name = dv.Value.Value if dv.Value is not None else None
            if isinstance(name, ua.QualifiedName) and name.Name:
                for f in pending[i]:
                    f.data_type = name.Name


# -- rendering ----------------------------------------------------------------------------------


def _value_text(value: Any, limit: int = 40) -> str:
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, ua.LocalizedText):
        text = value.Text or ""
    elif isinstance(value, ua.EUInformation):
        text = value.DisplayName.Text or ""
    else:
        text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_tree(root: BrowsedNode, *, title: str | None = None) -> Tree:
    """The browsed address space as a rich Tree: objects bold, variables with value and type."""

    def label(n: BrowsedNode) -> str:
        nid = f"[dim]{escape(n.node_id)}[/]"
        if n.node_class == "Variable":
            unit = f" {escape(n.unit)}" if n.unit else ""
            kind = "property" if n.is_property else (n.data_type or "?")
            return (
                f"[cyan]{escape(n.browse_name)}[/] = {escape(_value_text(n.value))}{unit}"
                f"  [magenta]{escape(kind)}[/] [yellow]{escape(n.access or '')}[/]  {nid}"
            )
        if n.node_class == "Method":
            return f"[green]{escape(n.browse_name)}()[/]  {nid}"
        return f"[bold]{escape(n.browse_name)}[/] [dim]({n.node_class})[/]  {nid}"

    tree = Tree(title if title is not None else label(root))
    stack: list[tuple[BrowsedNode, Tree]] = [(c, tree) for c in reversed(root.children)]
    while stack:
        node, parent = stack.pop()
        branch = parent.add(label(node))
        stack.extend((c, branch) for c in reversed(node.children))
    return tree


# -- the site-file snippet ----------------------------------------------------------------------


def signal_name(browse_name: str) -> str:
    """A browse name as a signal name (``^[a-z][a-z0-9_]*$``): ``Motor Current (A)`` →
    ``motor_current_a``, ``2ndPass`` → ``s_2ndpass``."""
    s = re.sub(r"[^a-z0-9]+", "_", browse_name.lower()).strip("_")
    if not s:
        return "signal"
    return s if s[0].isalpha() else f"s_{s}"


def equipment_id(browse_name: str) -> str:
    """A browse name as an equipment id (``^[a-z0-9][a-z0-9_-]*$``)."""
    s = re.sub(r"[^a-z0-9_-]+", "_", browse_name.lower()).strip("_-")
    return s or "equipment"


def _toml(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a TOML basic string


def _signal_type(data_type: str | None) -> str | None:
    if data_type == "Boolean":
        return "bool"
    if data_type in ("String", "LocalizedText"):
        return "string"
    known = data_type is not None and data_type in ua.VariantType.__members__
    if known and ua.VariantType[str(data_type)] in _INT_TYPES:
        return "int"
    return None  # float, the default


def site_snippet(
    root: BrowsedNode, *, url: str, endpoint: str | None = None, browsed_at: datetime | None = None
) -> str:
    """Site-file TOML binding the Variables found: one ``[[equipment]]`` per Object holding
    Variables (area and line to fill in), one ``[[equipment.signal]]`` per Variable.

    ``endpoint``: the id of an ``[[opcua]]`` entry to bind to (the snippet declares it with
    ``url``); None binds to ``url`` inline (anonymous, security None).
    """
    groups: dict[str, tuple[BrowsedNode, list[BrowsedNode]]] = {}
    for node, ancestors in root.walk():
        if node.node_class != "Variable" or node.is_property:
            continue
        if any(a.node_class == "Variable" for a in ancestors):
            continue  # a component of a complex variable: bind the variable itself
        holder = next((a for a in reversed(ancestors) if a.node_class == "Object"), root)
        groups.setdefault(holder.node_id, (holder, []))[1].append(node)
    when = f" on {browsed_at:%Y-%m-%d %H:%M}" if browsed_at else ""
    lines = [f"# OPC UA variables of {url}, browsed by factory5g{when}."]
    if endpoint is not None:
        lines += ["", "[[opcua]]", f"id = {_toml(endpoint)}", f"url = {_toml(url)}"]
    target = _toml(endpoint if endpoint is not None else url)
    used_ids: set[str] = set()
    for holder, variables in groups.values():
        eq = _unique(equipment_id(holder.browse_name), used_ids)
        lines += [
            "",
            "[[equipment]]",
            f"id = {_toml(eq)}",
            f"name = {_toml(holder.display_name or holder.browse_name)}",
            'area = "TODO"  # the ISA-95 area and line of this equipment',
            'line = "TODO"',
        ]
        names: set[str] = set()
        for v in variables:
            lines += [
                "  [[equipment.signal]]",
                f"  name = {_toml(_unique(signal_name(v.browse_name), names))}",
            ]
            if v.unit:
                note = (
                    "" if v.unit in UNITS else "  # not a known unit: add it to [site] extra_units"
                )
                lines.append(f"  unit = {_toml(v.unit)}{note}")
            kind = _signal_type(v.data_type)
            if kind is not None:
                lines.append(f"  type = {_toml(kind)}")
            if v.display_name and v.display_name != v.browse_name:
                lines.append(f"  description = {_toml(v.display_name)}")
            lines.append(
                f'  binding = {{ kind = "opcua", endpoint = {target}, node = {_toml(v.node_id)} }}'
            )
    return "\n".join(lines) + "\n"


def _unique(name: str, used: set[str]) -> str:
    out, n = name, 2
    while out in used:
        out, n = f"{name}_{n}", n + 1
    used.add(out)
    return out


# -- the server certificate ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    """A server's application instance certificate, as GetEndpoints gives it."""

    der: bytes
    thumbprint: str  # SHA-1, upper-case hex (OPC 10000-6 §6.2.3)
    subject: str
    not_after: datetime

    def pem(self) -> bytes:
        cert = x509.load_der_x509_certificate(self.der)
        return cert.public_bytes(serialization.Encoding.PEM)


async def fetch_server_cert(url: str, *, timeout_s: float = 4.0) -> ServerCertificate | None:
    """The certificate the server presents in GetEndpoints, or None if it has none."""
    try:
        endpoints = await get_endpoints(url, timeout_s)
    except CONNECTION_ERRORS as exc:
        raise OpcUaConnectionError(url, url, f"GetEndpoints failed: {describe(exc)}") from exc
    for ep in endpoints:
        if ep.ServerCertificate:
            der = first_certificate(ep.ServerCertificate)
            cert = x509.load_der_x509_certificate(der)
            return ServerCertificate(
                der, thumbprint(der), cert.subject.rfc4514_string(), cert.not_valid_after_utc
            )
    return None


async def save_server_cert(url: str, path: Path, *, timeout_s: float = 4.0) -> ServerCertificate:
    """Fetch the server's certificate and write it to ``path`` (PEM if it ends in .pem, else
    DER), for an endpoint's ``trust``. Raises OpcUaSecurityError if the server has none."""
    cert = await fetch_server_cert(url, timeout_s=timeout_s)
    if cert is None:
        raise OpcUaSecurityError(
            url, url, "the server presents no certificate (security None only)"
        )
    data = cert.pem() if path.suffix.lower() == ".pem" else cert.der
    await asyncio.to_thread(path.write_bytes, data)
    return cert
