"""The ISA-95 asset tree of a site: site → area → line → equipment → signals."""

from __future__ import annotations

from typing import Any

from factory5g.model.load import Site
from factory5g.model.signals import SignalInfo


def signal_dict(s: SignalInfo) -> dict[str, Any]:
    return {
        "id": s.id,
        "path": s.path,
        "equipment": s.equipment,
        "name": s.name,
        "unit": s.unit,
        "type": s.type.value,
        "description": s.description,
        "min": s.min,
        "max": s.max,
        "binding": s.binding,
    }


def asset_tree(site: Site) -> dict[str, Any]:
    """A JSON-ready tree; areas and lines keep the order of first appearance in the site file."""
    f = site.file
    areas: dict[str, dict[str, list[dict[str, Any]]]] = {}
    known = {eq.id for eq in f.equipment}
    for eq in f.equipment:
        lines = areas.setdefault(eq.area, {})
        lines.setdefault(eq.line, []).append(
            {
                "id": eq.id,
                "name": eq.name or eq.id,
                "kind": eq.kind,
                "cell": eq.cell,
                "device": eq.device,
                "signals": [signal_dict(s) for s in site.signals.for_equipment(eq.id)],
            }
        )
    # Signals registered at run time for equipment the site file does not know (e.g. an
    # unmapped Sparkplug edge node) are listed under "unassigned" rather than hidden.
    stray: dict[str, list[dict[str, Any]]] = {}
    for s in site.signals:
        if s.equipment not in known:
            stray.setdefault(s.equipment, []).append(signal_dict(s))
    if stray:
        areas.setdefault("unassigned", {})["unassigned"] = [
            {"id": eq, "name": eq, "kind": "", "cell": None, "device": None, "signals": sigs}
            for eq, sigs in stray.items()
        ]
    return {
        "name": f.site.name,
        "prefix": f.site.prefix,
        "timezone": f.site.timezone,
        "areas": [
            {
                "name": area,
                "lines": [{"name": line, "equipment": eqs} for line, eqs in lines.items()],
            }
            for area, lines in areas.items()
        ],
    }
