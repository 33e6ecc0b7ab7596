"""Errors of the model package.

ModelError
└── SiteError(problems)    a site file that cannot be used; every Problem found, at once
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a site file, located as precisely as the file allows."""

    file: str
    path: str  # key path, e.g. "equipment[2].signal[0].unit"
    message: str
    hint: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = f" [{self.path}]" if self.path else ""
        text = f"{where}{key}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class ModelError(Exception):
    """Base of every error raised by ``factory5g.model``."""


class SiteError(ModelError):
    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        first = str(self.problems[0]) if self.problems else "invalid site"
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(first + more)

    @property
    def file(self) -> Path | None:
        return Path(self.problems[0].file) if self.problems else None
