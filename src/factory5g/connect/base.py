"""The Adapter protocol: how equipment protocols plug into factory5g.

An adapter maps one protocol onto the platform: it decodes what the equipment sends into
columnar Batches published on the Bus, and turns ``write(signal, value)`` into the protocol's
write (Sparkplug NCMD/DCMD, OPC UA Write, Modbus write). It is an async context manager that
undoes its own start on failure, and it reports health counters for ``/api/v1/connect/...``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["Adapter", "AdapterError", "WriteResult", "WriteValue"]

WriteValue = float | int | bool | str


class AdapterError(Exception):
    """Base of the errors adapters raise.

    AdapterError
    ├── UnknownTargetError(signal)       the signal is not served by this adapter
    └── WriteRejectedError(signal, why)  the device or protocol refused the write
    """


class UnknownTargetError(AdapterError):
    def __init__(self, signal: int | str) -> None:
        super().__init__(f"signal {signal!r} is not served by this adapter")
        self.signal = signal


class WriteRejectedError(AdapterError):
    def __init__(self, signal: int | str, why: str) -> None:
        super().__init__(f"write to {signal!r} rejected: {why}")
        self.signal = signal
        self.why = why


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What the protocol said about a write: ``ok`` and the protocol's own status text."""

    signal: int
    ok: bool
    status: str = "sent"


@runtime_checkable
class Adapter(Protocol):
    name: str

    async def write(self, signal: int, value: WriteValue) -> WriteResult: ...

    def stats(self) -> dict[str, Any]: ...
