"""Errors of the OPC UA adapter. Every one names the endpoint (id and URL) it happened on.

AdapterError
├── OpcUaError(endpoint, url)                          base of this package's errors
│   ├── OpcUaConnectionError(endpoint, url, reason)    no session (unreachable, refused, lost) or no
│   │                                  answer in time; raised by a write or call, it is also a
│   │                                  WriteRejectedError
│   ├── OpcUaSecurityError(endpoint, url, reason, thumbprint)
│   │                                  certificate or key unusable, server certificate not trusted,
│   │                                  security policy not offered, user identity refused
│   ├── OpcUaStatusError(endpoint, url, node, status_name, code)
│   │                                  the server answered a Bad status for a node: write, call,
│   │                                  unknown node id (also a WriteRejectedError)
│   └── OpcUaValueError(endpoint, url, node, data_type, value, why)
│                                      the value does not fit the node's DataType
│                                      (also a WriteRejectedError)
└── UnknownTargetError
    └── OpcUaUnknownEndpointError(endpoint)  ``call()`` names an endpoint the site does not have
"""

from __future__ import annotations

from factory5g.connect.base import AdapterError, UnknownTargetError, WriteRejectedError

__all__ = [
    "OpcUaConnectionError",
    "OpcUaError",
    "OpcUaSecurityError",
    "OpcUaStatusError",
    "OpcUaUnknownEndpointError",
    "OpcUaValueError",
]


class OpcUaError(AdapterError):
    """Something went wrong with one OPC UA endpoint."""

    def __init__(self, endpoint: str, url: str, message: str) -> None:
        # An inline endpoint's id is its URL: name it once.
        where = (
            f"OPC UA server {url}" if endpoint == url else f"OPC UA endpoint {endpoint!r} ({url})"
        )
        # AdapterError directly: the WriteRejectedError mix-ins below have their own signature.
        AdapterError.__init__(self, f"{where}: {message}")
        self.endpoint = endpoint
        self.url = url


class OpcUaConnectionError(OpcUaError, WriteRejectedError):
    """No session with the server (unreachable, refused, went away), or no answer in time.

    ``target`` is the signal id or node a write or call was for (None for the session itself).
    """

    def __init__(
        self, endpoint: str, url: str, reason: str, *, target: int | str | None = None
    ) -> None:
        super().__init__(endpoint, url, reason)
        self.reason = reason
        self.signal = target if target is not None else endpoint
        self.why = reason


class OpcUaSecurityError(OpcUaError):
    """Certificates, trust or identity: the session is refused on purpose, by us or the server."""

    def __init__(self, endpoint: str, url: str, reason: str, thumbprint: str | None = None) -> None:
        super().__init__(endpoint, url, reason)
        self.reason = reason
        self.thumbprint = thumbprint  # SHA-1 of the server certificate (OPC 10000-6 §6.2.3)


class OpcUaStatusError(OpcUaError, WriteRejectedError):
    """The server answered a Bad status code for ``node`` (write, call, read of its DataType)."""

    def __init__(
        self,
        endpoint: str,
        url: str,
        node: str,
        status_name: str,
        code: int,
        *,
        action: str = "write",
        target: int | str | None = None,
        doc: str = "",
    ) -> None:
        detail = f" — {doc}" if doc else ""
        super().__init__(
            endpoint, url, f"{action} on node {node} refused: {status_name} (0x{code:08X}){detail}"
        )
        self.node = node
        self.status_name = status_name
        self.code = code
        self.signal = target if target is not None else node
        self.why = status_name


class OpcUaValueError(OpcUaError, WriteRejectedError):
    """A value that cannot be written to ``node`` as its DataType (range, type, integrality)."""

    def __init__(
        self,
        endpoint: str,
        url: str,
        node: str,
        data_type: str,
        value: object,
        why: str,
        *,
        target: int | str | None = None,
    ) -> None:
        super().__init__(
            endpoint, url, f"cannot write {value!r} to node {node} ({data_type}): {why}"
        )
        self.node = node
        self.data_type = data_type
        self.value = value
        self.signal = target if target is not None else node
        self.why = why


class OpcUaUnknownEndpointError(UnknownTargetError):
    """``call()`` names an endpoint that is neither an ``[[opcua]]`` id nor a bound URL."""

    def __init__(self, endpoint: str, known: list[str]) -> None:
        AdapterError.__init__(
            self,
            f"no OPC UA endpoint {endpoint!r} in this site (known: {', '.join(known) or 'none'})",
        )
        self.signal = endpoint
        self.endpoint = endpoint
