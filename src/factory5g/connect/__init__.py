"""Equipment connectivity: adapters for Sparkplug B, OPC UA and Modbus, behind one protocol."""

from factory5g.connect.base import (
    Adapter,
    AdapterError,
    UnknownTargetError,
    WriteRejectedError,
    WriteResult,
    WriteValue,
)

__all__ = [
    "Adapter",
    "AdapterError",
    "UnknownTargetError",
    "WriteRejectedError",
    "WriteResult",
    "WriteValue",
]
