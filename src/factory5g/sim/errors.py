"""Errors of the sim package.

SimError
├── SimBindingError(problems)    sim bindings the simulator cannot feed; every one, at once
└── SimWriteError(signal, reason)  a write the simulated equipment does not accept
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BindingProblem", "SimBindingError", "SimError", "SimWriteError"]


@dataclass(frozen=True, slots=True)
class BindingProblem:
    """One ``kind = "sim"`` binding of the site file that names no known model or output."""

    equipment: str
    signal: str  # "equipment.signal"
    model: str
    output: str
    message: str

    def __str__(self) -> str:
        return (
            f"{self.signal} (equipment {self.equipment!r}, "
            f"model {self.model!r}, output {self.output!r}): {self.message}"
        )


class SimError(Exception):
    """Base of every error raised by ``factory5g.sim``."""


class SimBindingError(SimError, ValueError):
    """The site binds signals to simulator models or outputs that do not exist."""

    def __init__(self, problems: Sequence[BindingProblem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        super().__init__(
            f"{count} sim binding{'s' if count != 1 else ''} cannot be simulated:\n{lines}"
        )


class SimWriteError(SimError, ValueError):
    """A write to a simulated signal that is unknown, read-only, or out of range."""

    def __init__(self, signal: str | int, reason: str) -> None:
        super().__init__(f"cannot write {signal}: {reason}")
        self.signal = signal
        self.reason = reason
