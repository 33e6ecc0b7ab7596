"""The signal registry: dense integer ids for every signal, the keys of every Batch column."""

from __future__ import annotations

import difflib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from factory5g.model.site import DataType

__all__ = ["SignalInfo", "SignalRegistry", "UnknownSignalError"]


class UnknownSignalError(KeyError):
    """A signal reference (id or ``equipment.signal`` path) that the registry does not know."""

    def __init__(self, ref: str | int, suggestions: list[str] | None = None) -> None:
        super().__init__(ref)
        self.ref = ref
        self.suggestions = suggestions or []

    def __str__(self) -> str:
        text = f"unknown signal {self.ref!r}"
        if self.suggestions:
            text += f"; did you mean {' or '.join(repr(x) for x in self.suggestions)}?"
        return text


@dataclass(frozen=True, slots=True)
class SignalInfo:
    id: int
    path: str  # "equipment.signal"
    equipment: str
    name: str
    unit: str = ""
    type: DataType = DataType.FLOAT
    description: str = ""
    min: float | None = None
    max: float | None = None
    binding: str | None = None  # binding kind


class SignalRegistry:
    """Signals by dense id and by path. Ids are assigned in order and never reused.

    The site file's signals come first, in file order; signals discovered at run time (Sparkplug
    births, for instance) are appended with :meth:`add`, which is thread-safe.
    """

    def __init__(self) -> None:
        self._by_id: list[SignalInfo] = []
        self._by_path: dict[str, SignalInfo] = {}
        self._lock = threading.Lock()

    def add(
        self,
        equipment: str,
        name: str,
        *,
        unit: str = "",
        type: DataType = DataType.FLOAT,
        description: str = "",
        min: float | None = None,
        max: float | None = None,
        binding: str | None = None,
    ) -> SignalInfo:
        """Register a signal, or return the existing one with that path."""
        path = f"{equipment}.{name}"
        with self._lock:
            known = self._by_path.get(path)
            if known is not None:
                return known
            info = SignalInfo(
                len(self._by_id), path, equipment, name, unit, type, description, min, max, binding
            )
            self._by_id.append(info)
            self._by_path[path] = info
            return info

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[SignalInfo]:
        return iter(tuple(self._by_id))

    def __contains__(self, ref: object) -> bool:
        if isinstance(ref, int):
            return 0 <= ref < len(self._by_id)
        return ref in self._by_path

    def get(self, ref: str | int) -> SignalInfo:
        """The signal with id or path ``ref``; a numeric string is taken as an id."""
        # isdecimal, not isdigit: "²" is a digit that int() cannot read
        if isinstance(ref, str) and ref.isdecimal():
            ref = int(ref)
        if isinstance(ref, int):
            if 0 <= ref < len(self._by_id):
                return self._by_id[ref]
            raise UnknownSignalError(ref)
        info = self._by_path.get(ref)
        if info is None:
            raise UnknownSignalError(
                ref, difflib.get_close_matches(ref, list(self._by_path), n=3, cutoff=0.75)
            )
        return info

    def for_equipment(self, equipment: str) -> list[SignalInfo]:
        return [s for s in self._by_id if s.equipment == equipment]
