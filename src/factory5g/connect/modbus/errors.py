"""Errors of the Modbus TCP adapter.

::

    AdapterError                                    factory5g.connect.base
    ├── WriteRejectedError(signal, why)             read-only table, value out of the type's range
    │   └── ModbusExceptionError(device, function, address, code)  ← also a ModbusError
    └── ModbusError(device)                         something about one Modbus device
        ├── ModbusConfigError(device, reason)       bindings that cannot be polled as configured
        ├── ModbusConnectionError(device, reason)   no TCP connection (refused, lost, not yet up)
        ├── ModbusTimeoutError(device, function, address, count, tries, timeout_ms)
        ├── ModbusProtocolError(device, reason)     an answer that does not fit the request
        └── ModbusExceptionError(device, function, address, code)
                                                    the device answered with an exception
                                                    response (MODBUS Application Protocol
                                                    v1.1b3 §7)

    ValueError
    └── ModbusValueError(value, type, reason)       a value the register type cannot hold
                                                    (raised by the codec; write() turns it into
                                                    a WriteRejectedError)

A write the device refuses with an exception response is a :class:`WriteRejectedError` *and* a
:class:`ModbusError`: ``except WriteRejectedError`` catches every refusal, ``except
ModbusExceptionError as e`` gives the exception ``code`` and ``name``. A timed-out write is
neither refused nor known to have landed: it raises :class:`ModbusTimeoutError`.
"""

from __future__ import annotations

from typing import Final

from factory5g.connect.base import AdapterError, WriteRejectedError
from factory5g.model.site import ModbusDevice

__all__ = [
    "EXCEPTION_NAMES",
    "FUNCTION_NAMES",
    "ModbusConfigError",
    "ModbusConnectionError",
    "ModbusError",
    "ModbusExceptionError",
    "ModbusProtocolError",
    "ModbusTimeoutError",
    "ModbusValueError",
    "describe",
    "exception_name",
]

# MODBUS Application Protocol Specification v1.1b3 §7, "MODBUS Exception Codes".
EXCEPTION_NAMES: Final[dict[int, str]] = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}

# Same specification, §6: the function codes this adapter uses.
FUNCTION_NAMES: Final[dict[int, str]] = {
    1: "read coils",
    2: "read discrete inputs",
    3: "read holding registers",
    4: "read input registers",
    5: "write single coil",
    6: "write single register",
    15: "write multiple coils",
    16: "write multiple registers",
}


def exception_name(code: int) -> str:
    return EXCEPTION_NAMES.get(code, f"unknown exception {code}")


def describe(device: ModbusDevice) -> str:
    """``plc-7 (10.0.3.7:502 unit 1)``: how every log line and error names a device."""
    return f"{device.id} ({device.host}:{device.port} unit {device.unit})"


class ModbusError(AdapterError):
    """Something about one Modbus device; the message names it (id, host:port, unit)."""

    def __init__(self, device: ModbusDevice, message: str) -> None:
        # Not super(): in ModbusExceptionError the next class in the MRO is WriteRejectedError,
        # whose __init__ takes (signal, why). Both parents' fields are set by hand there.
        AdapterError.__init__(self, f"modbus device {describe(device)}: {message}")
        self.device = device


class ModbusConfigError(ModbusError):
    """Bindings of the device that cannot be polled as configured (e.g. a float64 while the
    device allows 2 registers per request)."""

    def __init__(self, device: ModbusDevice, reason: str) -> None:
        super().__init__(device, reason)
        self.reason = reason


class ModbusConnectionError(ModbusError):
    """No TCP connection to the device: not yet up, refused, or lost."""

    def __init__(self, device: ModbusDevice, reason: str) -> None:
        super().__init__(device, reason)
        self.reason = reason


class ModbusTimeoutError(ModbusError):
    """No answer within ``timeout_ms``, ``tries`` times in a row."""

    def __init__(
        self,
        device: ModbusDevice,
        function: int,
        address: int,
        count: int,
        tries: int,
        timeout_ms: float,
    ) -> None:
        what = FUNCTION_NAMES.get(function, f"function {function}")
        super().__init__(
            device,
            f"{what} (fc {function}) at {_span(address, count)}: no answer within "
            f"{timeout_ms:g} ms, {tries} {'try' if tries == 1 else 'tries'}",
        )
        self.function = function
        self.address = address
        self.count = count
        self.tries = tries
        self.timeout_ms = timeout_ms


class ModbusProtocolError(ModbusError):
    """The device answered, but not what the request asked for (too few registers, wrong id)."""

    def __init__(self, device: ModbusDevice, reason: str) -> None:
        super().__init__(device, reason)
        self.reason = reason


class ModbusExceptionError(ModbusError, WriteRejectedError):
    """The device answered with a Modbus exception response.

    ``code`` is the exception code, ``name`` its name in the specification (``illegal data
    address``...). Raised by ``write`` (then ``signal`` is the signal written); polls turn it
    into bad quality instead.
    """

    def __init__(
        self,
        device: ModbusDevice,
        function: int,
        address: int,
        code: int,
        *,
        count: int = 1,
        signal: int | str = "",
    ) -> None:
        self.function = function
        self.address = address
        self.count = count
        self.code = code
        self.name = exception_name(code)
        what = FUNCTION_NAMES.get(function, f"function {function}")
        why = f"{what} (fc {function}) at {_span(address, count)}: exception {code} {self.name}"
        ModbusError.__init__(self, device, why)
        # The WriteRejectedError fields, for callers that catch every refusal alike.
        self.signal = signal
        self.why = why


class ModbusValueError(ValueError):
    """A value the binding's register type cannot hold (out of range, not a number...)."""

    def __init__(self, value: object, type_: str, reason: str) -> None:
        super().__init__(f"{value!r} cannot be written as {type_}: {reason}")
        self.value = value
        self.type = type_
        self.reason = reason


def _span(address: int, count: int) -> str:
    return f"address {address}" if count == 1 else f"addresses {address}..{address + count - 1}"
