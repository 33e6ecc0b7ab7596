"""Times and durations in query strings: what a plant engineer types, turned into ns."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "min": 60 * 1_000_000_000,
    "h": 3_600 * 1_000_000_000,
    "d": 86_400 * 1_000_000_000,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|min|m|h|d)?\s*$")
_RELATIVE = re.compile(r"^\s*(?:now)?\s*-\s*(.+)$")


def parse_duration(text: str) -> int:
    """``"1m"``, ``"10s"``, ``"500ms"``, ``"2h"``, ``"1d"``, or plain seconds → ns (> 0)."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration (use e.g. 500ms, 10s, 1m, 2h, 1d)")
    ns = round(float(m.group(1)) * _UNITS_NS[m.group(2) or "s"])
    if ns <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return ns


def parse_time(text: str, now_ns: int, tz: tzinfo) -> int:
    """A point in time → ns since the epoch.

    Accepts ``now``, ``-15m`` / ``now-2h`` (relative to now), an integer of ns since the epoch,
    or ISO 8601 (``2026-11-21T08:00:00Z``; without an offset it is taken in the site's zone).
    """
    s = text.strip()
    if s == "now":
        return now_ns
    rel = _RELATIVE.match(s)
    if rel:
        return now_ns - parse_duration(rel.group(1))
    if re.fullmatch(r"-?\d+", s):
        return int(s)
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time (use ISO 8601 like 2026-11-21T08:00:00Z, ns since the epoch, "
            "'now' or a relative time like -15m)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    delta: timedelta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1_000
