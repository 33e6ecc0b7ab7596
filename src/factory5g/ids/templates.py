"""Identifier templates: how the factory names its products, parts, batches and machines.

A template is a Python format string over these fields::

    prefix     the node's prefix (88.118.8)          kind       product, part, batch, ...
    line       ISA-95 line   area   cell             equipment  equipment id from the site file
    batch      batch identifier (suffix or handle)   date       a datetime: {date:%Y%m%d}
    seq        the sequence number: {seq:06d}

e.g. ``{prefix}/P{line}{date:%Y%m%d}{seq:06d}``. It must start with ``{prefix}/``. Sequence
numbers are counted per *scope* — the template with every field but ``seq`` filled in — and
reserved durably in the store, so two minting calls never hand out the same number, and the
numbers of a line restart each day when the template holds the date. A template without
``{seq}`` names one object per combination of fields (``{prefix}/EQ.{equipment}``).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from factory5g.ids.errors import InvalidValue

__all__ = ["DEFAULT_TEMPLATES", "FIELDS", "IdTemplate", "RenderedTemplate", "check_template"]

FIELDS = frozenset({"prefix", "kind", "line", "area", "cell", "equipment", "batch", "date", "seq"})
DEFAULT_TEMPLATES: Mapping[str, str] = {
    "product": "{prefix}/P{line}{date:%Y%m%d}{seq:06d}",
    "part": "{prefix}/T{date:%Y%m%d}{seq:08d}",
    "batch": "{prefix}/B{line}{date:%Y%m%d}{seq:04d}",
    "equipment": "{prefix}/EQ.{equipment}",
}


def check_template(text: str) -> list[str]:
    """The fields a template uses, or ValueError saying what is wrong with it."""
    if not text.startswith("{prefix}/"):
        raise ValueError(f"template {text!r} must start with '{{prefix}}/'")
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"template {text!r}: {exc}") from None
    used: list[str] = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in FIELDS:
            raise ValueError(
                f"template {text!r}: unknown field {{{name}}} (known: {', '.join(sorted(FIELDS))})"
            )
        if conversion:
            raise ValueError(f"template {text!r}: no !conversions")
        if spec and "{" in spec:
            raise ValueError(f"template {text!r}: no nested fields in format specs")
        if name == "seq" and "seq" in used:
            raise ValueError(f"template {text!r}: {{seq}} appears twice")
        used.append(name)
    if "seq" in used:
        try:
            format(1, _spec_of(parsed, "seq"))
        except ValueError as exc:
            raise ValueError(f"template {text!r}: bad {{seq}} format: {exc}") from None
    return used


def _spec_of(parsed: list[tuple[str, str | None, str | None, str | None]], field: str) -> str:
    for _, name, spec, _ in parsed:
        if name == field:
            return spec or ""
    return ""


@dataclass(frozen=True, slots=True)
class RenderedTemplate:
    """A template with every field but ``seq`` filled in: ``head + format(seq, spec) + tail``."""

    head: str
    spec: str
    tail: str
    has_seq: bool

    @property
    def scope(self) -> str:
        return f"{self.head}{{seq:{self.spec}}}{self.tail}" if self.has_seq else self.head

    def name(self, seq: int) -> str:
        return f"{self.head}{seq:{self.spec}}{self.tail}" if self.has_seq else self.head


@dataclass(frozen=True, slots=True)
class IdTemplate:
    kind: str
    text: str

    def __post_init__(self) -> None:
        check_template(self.text)

    def render(self, prefix: str, fields: Mapping[str, Any], date: datetime) -> RenderedTemplate:
        values: dict[str, Any] = {k: v for k, v in fields.items() if v is not None and k in FIELDS}
        values.update(prefix=prefix, kind=self.kind, date=date)
        head: list[str] = []
        tail: list[str] = []
        spec = ""
        has_seq = False
        for literal, name, fspec, _ in string.Formatter().parse(self.text):
            out = tail if has_seq else head
            out.append(literal)
            if name is None:
                continue
            if name == "seq":
                has_seq, spec = True, fspec or ""
                continue
            if name not in values:
                raise InvalidValue(f"the {self.kind} template {self.text!r} needs {name!r}")
            try:
                out.append(format(values[name], fspec or ""))
            except (ValueError, TypeError) as exc:
                raise InvalidValue(f"the {self.kind} template: field {name}: {exc}") from None
        return RenderedTemplate("".join(head), spec, "".join(tail), has_seq)
