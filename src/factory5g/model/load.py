"""Read and check a site file: every problem at once, each with file, key path, line and hint."""

from __future__ import annotations

import difflib
import re
import tomllib
import types
import typing
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from factory5g.model.errors import Problem, SiteError
from factory5g.model.locate import key_lines, line_of
from factory5g.model.signals import SignalRegistry
from factory5g.model.site import (
    BINDING_KINDS,
    INTERLOCK_RE,
    DataType,
    SiteFile,
)
from factory5g.model.units import UNITS, close_units

__all__ = ["Site", "check_site", "check_text", "load_site", "load_text"]


@dataclass(frozen=True)
class Site:
    """A validated site: the file's content plus the signal registry built from it."""

    file: SiteFile
    path: Path | None
    signals: SignalRegistry = field(compare=False)

    @property
    def name(self) -> str:
        return self.file.site.name

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def store_dir(self) -> Path:
        p = Path(self.file.store.path)
        return p if p.is_absolute() else self.base_dir / p

    def summary(self) -> str:
        f = self.file
        return (
            f"site {f.site.name!r} ({f.site.prefix}): {len(f.network.cell)} cells, "
            f"{len(f.network.slice)} slices, {len(f.device)} devices, "
            f"{len(f.equipment)} equipment, {len(self.signals)} signals, "
            f"{len(f.alarm)} alarm rules"
        )


def load_site(path: str | Path) -> Site:
    """Read ``path`` and return the Site, or raise SiteError listing every problem."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise SiteError(
            [Problem(str(p), "", f"cannot read the site file: {exc.strerror}")]
        ) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SiteError(
            [Problem(str(p), "", f"not UTF-8 text (byte {exc.start})", "save the file as UTF-8")]
        ) from exc
    return load_text(text, str(p), path=p)


def load_text(text: str, filename: str = "<site>", *, path: Path | None = None) -> Site:
    problems, model = _check(text, filename)
    if problems or model is None:
        raise SiteError(problems)
    return Site(model, path, _registry(model))


def check_site(path: str | Path) -> list[Problem]:
    try:
        load_site(path)
    except SiteError as exc:
        return list(exc.problems)
    return []


def check_text(text: str, filename: str = "<site>") -> list[Problem]:
    return _check(text, filename)[0]


def _registry(model: SiteFile) -> SignalRegistry:
    reg = SignalRegistry()
    for eq in model.equipment:
        for s in eq.signal:
            reg.add(
                eq.id,
                s.name,
                unit=s.unit,
                type=s.type,
                description=s.description,
                min=s.min,
                max=s.max,
                binding=s.binding.kind if s.binding else None,
            )
    return reg


# -- checking ---------------------------------------------------------------------------------


def _check(text: str, filename: str) -> tuple[list[Problem], SiteFile | None]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = getattr(exc, "msg", str(exc))
        line = _toml_error_line(exc, text)
        return [Problem(filename, "", f"not valid TOML: {msg}", None, line)], None
    lines = key_lines(text)
    problems: list[Problem] = []

    def add(loc: Sequence[str | int], message: str, hint: str | None = None) -> None:
        problems.append(Problem(filename, _fmt(loc), message, hint, line_of(lines, loc)))

    model: SiteFile | None = None
    try:
        model = SiteFile.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc, message, hint = _explain(err, data)
            add(loc, message, hint)
    for loc, message, hint in _cross_references(_stripped(data)):
        add(loc, message, hint)
    problems.sort(key=lambda p: (p.line or 0, p.path))
    return problems, (model if not problems else None)


_AT_LINE = re.compile(r"\(at line (\d+), column \d+\)$")


def _toml_error_line(exc: tomllib.TOMLDecodeError, text: str) -> int | None:
    """Line of a TOML syntax error: ``lineno`` since Python 3.14, before it only in the message."""
    line = getattr(exc, "lineno", None)
    if isinstance(line, int):
        return line
    m = _AT_LINE.search(str(exc))
    if m:
        return int(m.group(1))
    if str(exc).endswith("(at end of document)"):
        return text.rstrip("\r\n").count("\n") + 1  # the last line that has text
    return None


def _stripped(node: Any) -> Any:
    """``node`` with its strings stripped, as the schema sees them (``str_strip_whitespace``).

    Cross-references must compare what the model will hold: ``id = "f1 "`` *is* ``f1``.
    """
    if isinstance(node, str):
        return node.strip()
    if isinstance(node, Mapping):
        return {k: _stripped(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_stripped(v) for v in node]
    return node


def _fmt(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _explain(
    err: Mapping[str, Any], data: Mapping[str, Any]
) -> tuple[list[str | int], str, str | None]:
    raw_loc = list(err["loc"])
    loc: list[str | int] = []
    for i, part in enumerate(raw_loc):
        # pydantic puts the discriminator tag into the location of a tagged union member.
        if i > 0 and raw_loc[i - 1] == "binding" and part in BINDING_KINDS:
            continue
        loc.append(part)
    etype = err["type"]
    msg = str(err["msg"]).removeprefix("Value error, ")
    hint: str | None = None
    if etype == "extra_forbidden":
        known = _fields_at(loc[:-1], data)
        msg = f"unknown key {loc[-1]!r}"
        if known:
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
    elif etype == "missing":
        msg = f"required key {loc[-1]!r} is missing"
    elif etype == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag", "")
        loc.append("kind")
        msg = f"unknown binding kind {tag!r}"
        close = difflib.get_close_matches(str(tag), BINDING_KINDS, n=1)
        hint = (f"did you mean {close[0]!r}? " if close else "") + (
            f"known kinds: {', '.join(BINDING_KINDS)}"
        )
    elif etype == "union_tag_not_found":
        loc.append("kind")
        msg = "a binding needs a 'kind'"
        hint = f"one of: {', '.join(BINDING_KINDS)}"
    elif etype == "string_pattern_mismatch":
        value = err.get("input")
        msg = f"{value!r} is not a valid {loc[-1]}"
        hint = _pattern_hint(loc, err.get("ctx", {}).get("pattern", ""))
    elif etype == "literal_error":
        msg = f"{err.get('input')!r} is not allowed here"
        hint = str(err["msg"]).replace("Input should be ", "use ")
    return loc, msg, hint


def _pattern_hint(loc: Sequence[str | int], pattern: str) -> str:
    last = loc[-1] if loc else ""
    hints = {
        "id": "lower-case letters, digits, '_' and '-', starting with a letter or digit",
        "name": "lower-case letters, digits, '_' and '-'",
        "imsi": "14 or 15 digits (MCC+MNC+MSIN), optionally prefixed by 'imsi-'",
        "sd": "6 hexadecimal digits, e.g. 000001",
        "band": "an NR band such as n78, n79, n41 or n258",
        "prefix": "dot-separated parts such as 88.118.8",
        "node": "an OPC UA node id such as ns=2;s=Stand1.Speed or ns=3;i=1001",
        "endpoint": "an OPC UA endpoint such as opc.tcp://10.0.0.5:4840",
    }
    return hints.get(str(last), f"must match {pattern}")


def _fields_at(loc: Sequence[str | int], data: Mapping[str, Any]) -> list[str]:
    """Field names the schema allows at ``loc`` (for 'did you mean' hints)."""
    tp: Any = SiteFile
    node: Any = data
    for part in loc:
        if isinstance(node, Mapping | list):
            try:
                node = node[part]  # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                node = None
        if isinstance(part, int):
            continue
        model = _model_of(tp, node)
        if model is None:
            return []
        f = model.model_fields.get(str(part))
        if f is None:
            return []
        tp = f.annotation
    model = _model_of(tp, node)
    return sorted(model.model_fields) if model else []


def _model_of(tp: Any, node: Any) -> type[BaseModel] | None:
    """The BaseModel inside an annotation (tuple[X, ...], X | None, tagged unions)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _model_of(typing.get_args(tp)[0], node)
    if origin in (tuple, list):
        return _model_of(typing.get_args(tp)[0], None)
    if origin in (typing.Union, types.UnionType):
        models = [m for a in typing.get_args(tp) if (m := _model_of(a, node)) is not None]
        if len(models) == 1:
            return models[0]
        kind = node.get("kind") if isinstance(node, Mapping) else None
        for m in models:
            f = m.model_fields.get("kind")
            if f is not None and kind in typing.get_args(f.annotation):
                return m
    return None


def _items(data: Mapping[str, Any], *keys: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    node: Any = data
    for k in keys:
        node = node.get(k) if isinstance(node, Mapping) else None
    if isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, Mapping):
                yield i, item


def _dupes(
    items: list[tuple[int, Mapping[str, Any]]],
    key: str,
    what: str,
    prefix: Sequence[str | int],
    same: Callable[[str], str] = str,
) -> Iterator[tuple[list[str | int], str, str | None]]:
    """Entries whose ``key`` repeats an earlier one; ``same`` maps spellings of one value to one."""
    first: dict[Any, int] = {}
    for i, item in items:
        v = item.get(key)
        if not isinstance(v, str):
            continue
        if same(v) in first:
            yield (
                [*prefix, i, key],
                f"duplicate {what} {v!r}",
                f"first defined at {_fmt([*prefix, first[same(v)]])}",
            )
        else:
            first[same(v)] = i


def _ref(
    value: Any, known: Sequence[str], what: str, loc: list[str | int]
) -> Iterator[tuple[list[str | int], str, str | None]]:
    if isinstance(value, str) and value not in known:
        close = difflib.get_close_matches(value, known, n=1)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else (f"defined {what}s: {', '.join(known)}" if known else f"no {what} is defined")
        )
        yield loc, f"{what} {value!r} does not exist", hint


def _cross_references(data: Mapping[str, Any]) -> Iterator[tuple[list[str | int], str, str | None]]:
    """Checks that span entries: uniqueness and references. Tolerant of a malformed structure."""
    cells = list(_items(data, "network", "cell"))
    slices = list(_items(data, "network", "slice"))
    qos = list(_items(data, "network", "qos"))
    devices = list(_items(data, "device"))
    equipment = list(_items(data, "equipment"))

    yield from _dupes(cells, "id", "cell", ["network", "cell"])
    yield from _dupes(slices, "name", "slice", ["network", "slice"])
    yield from _dupes(qos, "name", "QoS profile", ["network", "qos"])
    yield from _dupes(devices, "id", "device", ["device"])
    # "imsi-" is an optional prefix of the same SUPI (TS 23.003 §2.2A)
    yield from _dupes(devices, "imsi", "IMSI", ["device"], lambda v: v.removeprefix("imsi-"))
    yield from _dupes(devices, "ipv4", "UE address", ["device"])
    yield from _dupes(devices, "msisdn", "MSISDN", ["device"])
    for i, d in devices:
        yield from _dupes(list(_items(d, "carries")), "name", "flow", ["device", i, "carries"])
    yield from _dupes(equipment, "id", "equipment", ["equipment"])
    opcua = list(_items(data, "opcua"))
    modbus = list(_items(data, "modbus"))
    yield from _dupes(opcua, "id", "OPC UA endpoint", ["opcua"])
    yield from _dupes(modbus, "id", "Modbus device", ["modbus"])
    opcua_ids = [str(o.get("id")) for _, o in opcua]
    modbus_ids = [str(m.get("id")) for _, m in modbus]

    cell_ids = [str(c.get("id")) for _, c in cells]
    slice_names = [str(s.get("name")) for _, s in slices]
    qos_names = [str(q.get("name")) for _, q in qos]
    device_ids = [str(d.get("id")) for _, d in devices]
    sst_sd = Counter((s.get("sst"), s.get("sd")) for _, s in slices)
    for i, s in slices:
        if sst_sd[(s.get("sst"), s.get("sd"))] > 1:
            yield (
                ["network", "slice", i, "sst"],
                f"S-NSSAI (sst={s.get('sst')}, sd={s.get('sd')}) is used by more than one slice",
                "give each slice its own SD",
            )

    for i, d in devices:
        yield from _ref(d.get("slice"), slice_names, "slice", ["device", i, "slice"])
        if d.get("qos") is not None:
            yield from _ref(d.get("qos"), qos_names, "QoS profile", ["device", i, "qos"])
        if d.get("cell") is not None:
            yield from _ref(d.get("cell"), cell_ids, "cell", ["device", i, "cell"])
        for j, f in _items(d, "carries"):
            if f.get("qos") is not None:
                yield from _ref(
                    f.get("qos"), qos_names, "QoS profile", ["device", i, "carries", j, "qos"]
                )

    site = data.get("site") if isinstance(data.get("site"), Mapping) else {}
    extra = site.get("extra_units", []) if isinstance(site, Mapping) else []
    units = UNITS | frozenset(u for u in extra if isinstance(u, str))
    signal_types: dict[str, str] = {}
    bound: dict[tuple[Any, ...], list[str | int]] = {}
    for i, eq in equipment:
        if eq.get("device") is not None:
            yield from _ref(eq.get("device"), device_ids, "device", ["equipment", i, "device"])
        sigs = list(_items(eq, "signal"))
        yield from _dupes(sigs, "name", "signal", ["equipment", i, "signal"])
        for j, s in sigs:
            loc: list[str | int] = ["equipment", i, "signal", j]
            unit = s.get("unit", "")
            if isinstance(unit, str) and unit not in units:
                close = close_units(unit, units)
                hint = (
                    f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
                ) + ("a site can declare more units in [site] extra_units")
                yield [*loc, "unit"], f"unknown unit {unit!r}", hint
            if isinstance(eq.get("id"), str) and isinstance(s.get("name"), str):
                signal_types[f"{eq['id']}.{s['name']}"] = str(s.get("type", "float"))
            b = s.get("binding")
            if isinstance(b, Mapping):
                endpoint = b.get("endpoint")
                if (
                    b.get("kind") == "opcua"
                    and isinstance(endpoint, str)
                    and not endpoint.startswith("opc.tcp://")
                ):
                    yield from _ref(endpoint, opcua_ids, "OPC UA endpoint", [*loc, "binding"])
                if b.get("kind") == "modbus" and b.get("device") is not None:
                    yield from _ref(b.get("device"), modbus_ids, "Modbus device", [*loc, "binding"])
                key = _binding_key(b)
                if key is not None:
                    if key in bound:
                        yield (
                            [*loc, "binding"],
                            "two signals are bound to the same source",
                            f"the other one is {_fmt(bound[key])}",
                        )
                    else:
                        bound[key] = loc
    known_signals = sorted(signal_types)

    for i, a in _items(data, "alarm"):
        sig = a.get("signal")
        yield from _ref(sig, known_signals, "signal", ["alarm", i, "signal"])
        if (
            isinstance(sig, str)
            and signal_types.get(sig) == DataType.STRING
            and a.get("kind") in ("high", "low", "rate")
        ):
            yield (
                ["alarm", i, "kind"],
                f"a {a.get('kind')} limit needs a numeric signal",
                f"{sig} is a string signal",
            )

    equipment_ids = [str(e.get("id")) for _, e in equipment]
    for i, m in _items(data, "sparkplug", "map"):
        yield from _ref(
            m.get("equipment"), equipment_ids, "equipment", ["sparkplug", "map", i, "equipment"]
        )

    for i, w in _items(data, "control", "writable"):
        sig = w.get("signal")
        yield from _ref(sig, known_signals, "signal", ["control", "writable", i, "signal"])
        if isinstance(sig, str) and signal_types.get(sig) == DataType.STRING:
            yield (["control", "writable", i, "signal"], "string signals cannot be written", None)
        locks = w.get("interlocks", [])
        if isinstance(locks, list):
            for k, expr in enumerate(locks):
                match = INTERLOCK_RE.match(expr) if isinstance(expr, str) else None
                if match:
                    yield from _ref(
                        match.group("signal"),
                        known_signals,
                        "signal",
                        ["control", "writable", i, "interlocks", k],
                    )
        yield from _control_refs(w, ["control", "writable", i], known_signals, equipment_ids)
    yield from _dupes(
        list(_items(data, "control", "writable")), "signal", "writable", ["control", "writable"]
    )
    methods = list(_items(data, "control", "method"))
    yield from _dupes(methods, "id", "control method", ["control", "method"])
    for i, m in methods:
        endpoint = m.get("endpoint")
        if isinstance(endpoint, str) and not endpoint.startswith("opc.tcp://"):
            yield from _ref(
                endpoint, opcua_ids, "OPC UA endpoint", ["control", "method", i, "endpoint"]
            )
        yield from _control_refs(
            m, ["control", "method", i], known_signals, equipment_ids, with_interlocks=True
        )


def _control_refs(
    entry: Mapping[str, Any],
    loc: list[str | int],
    known_signals: Sequence[str],
    equipment_ids: Sequence[str],
    *,
    with_interlocks: bool = False,
) -> Iterator[tuple[list[str | int], str, str | None]]:
    """References of a writable or a method: interlocks' signals (``with_interlocks``: a
    writable's are checked above), alarm interlocks' equipment."""
    if with_interlocks:
        locks = entry.get("interlocks", [])
        if isinstance(locks, list):
            for k, expr in enumerate(locks):
                match = INTERLOCK_RE.match(expr) if isinstance(expr, str) else None
                if match:
                    yield from _ref(
                        match.group("signal"), known_signals, "signal", [*loc, "interlocks", k]
                    )
    eqs = entry.get("alarm_interlocks", [])
    if isinstance(eqs, list):
        for k, eq in enumerate(eqs):
            yield from _ref(eq, equipment_ids, "equipment", [*loc, "alarm_interlocks", k])


def _binding_key(b: Mapping[str, Any]) -> tuple[Any, ...] | None:
    kind = b.get("kind")
    if kind == "sparkplug":
        return (kind, b.get("group"), b.get("edge"), b.get("device"), b.get("metric"))
    if kind == "opcua":
        return (kind, b.get("endpoint"), b.get("node"))
    if kind == "modbus":
        where = b.get("device") or (b.get("host"), b.get("port", 502), b.get("unit", 1))
        return (kind, where, b.get("table", "holding"), b.get("address"), b.get("bit"))
    if kind == "sim":
        return (kind, b.get("model"), b.get("output"), id(b))  # sim outputs may be shared
    return None
