"""Errors of the ``factory5g.net`` package (private 5G planning, provisioning, NEF, emulation).

NetError
├── CapacityError(what)            a carrier the formula cannot evaluate (TS 38.306 §4.1.2)
│   └── BandwidthError(bandwidth_mhz, scs_khz, fr, allowed)
│                                  no N_PRB for this bandwidth and SCS (TS 38.101-1/-2)
├── TddPatternError(pattern)       a slot pattern or special-slot split that cannot be used
├── FiveQIError(value)             a 5QI that is not in TS 23.501 Table 5.7.4-1
├── DemandError(device, field)     a negative or impossible traffic demand
├── PlanError                      the site cannot be planned (no cell, a device on no cell...)
├── ProvisionError                 subscriber export or push failed
│   └── SecretsError(path, key)    the secrets file is missing, malformed, or lacks a key;
│                                  never carries a key value
├── NefError(status, cause)        an NEF answered with a ProblemDetails (client side)
└── LinkEmulatorError              a proxy could not start, or an unknown device
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BandwidthError",
    "CapacityError",
    "DemandError",
    "FiveQIError",
    "LinkEmulatorError",
    "NefError",
    "NetError",
    "PlanError",
    "ProvisionError",
    "SecretsError",
    "TddPatternError",
]


class NetError(Exception):
    """Base of every error raised by ``factory5g.net``."""


class CapacityError(NetError, ValueError):
    def __init__(self, message: str, *, what: str = "") -> None:
        self.what = what
        super().__init__(message)


class BandwidthError(CapacityError):
    def __init__(
        self, bandwidth_mhz: float, scs_khz: int, fr: str, allowed: Sequence[float]
    ) -> None:
        self.bandwidth_mhz = bandwidth_mhz
        self.scs_khz = scs_khz
        self.fr = fr
        self.allowed = tuple(allowed)
        table = "TS 38.101-1 Table 5.3.2-1" if fr == "FR1" else "TS 38.101-2 Table 5.3.2-1"
        if self.allowed:
            hint = "use " + ", ".join(f"{b:g}" for b in self.allowed) + " MHz"
        else:
            hint = f"{scs_khz} kHz is not an SCS of {fr} data channels"
        super().__init__(
            f"{bandwidth_mhz:g} MHz is not a channel bandwidth defined for {scs_khz} kHz SCS "
            f"in {fr} ({table}): {hint}",
            what="bandwidth_mhz",
        )


class TddPatternError(NetError, ValueError):
    def __init__(self, pattern: str, message: str) -> None:
        self.pattern = pattern
        super().__init__(message)


class FiveQIError(NetError, ValueError):
    def __init__(self, value: object, message: str) -> None:
        self.value = value
        super().__init__(message)


class DemandError(NetError, ValueError):
    def __init__(self, message: str, *, device: str = "", field: str = "") -> None:
        self.device = device
        self.field = field
        super().__init__(message)


class PlanError(NetError):
    pass


class ProvisionError(NetError):
    pass


class SecretsError(ProvisionError):
    """Names the file and the entry, never a key value."""

    def __init__(self, message: str, *, path: str = "", key: str = "") -> None:
        self.path = path
        self.key = key
        super().__init__(message)


class NefError(NetError):
    def __init__(
        self, status: int, detail: str, *, cause: str | None = None, body: object = None
    ) -> None:
        self.status = status
        self.cause = cause
        self.detail = detail
        self.body = body
        super().__init__(f"NEF answered {status}{f' {cause}' if cause else ''}: {detail}")


class LinkEmulatorError(NetError):
    pass
