"""OPC UA: the client adapter (read through subscriptions, write, call) and a browse tool.

The protocol stack is asyncua; this package maps it onto the platform (Batches, qualities,
signal ids, the site file's endpoints and certificates).
"""

from factory5g.connect.opcua.adapter import OpcUaAdapter
from factory5g.connect.opcua.errors import (
    OpcUaConnectionError,
    OpcUaError,
    OpcUaSecurityError,
    OpcUaStatusError,
    OpcUaUnknownEndpointError,
    OpcUaValueError,
)

__all__ = [
    "OpcUaAdapter",
    "OpcUaConnectionError",
    "OpcUaError",
    "OpcUaSecurityError",
    "OpcUaStatusError",
    "OpcUaUnknownEndpointError",
    "OpcUaValueError",
]
