"""Engineering units a signal may declare (UCUM-like spellings that plant engineers use).

A unit that is not listed is a typo until proven otherwise: ``factory5g check`` reports it with the
closest known spellings. A site that needs more declares them under ``[site] extra_units``.
"""

from __future__ import annotations

import difflib
from typing import Final

UNITS: Final[frozenset[str]] = frozenset(
    {
        "",  # dimensionless
        "1",
        "%",
        "ppm",
        "count",
        "pcs",
        "pcs/h",
        "pcs/min",
        # length, position, speed, acceleration
        "nm",
        "µm",
        "um",
        "mm",
        "cm",
        "m",
        "km",
        "mm/s",
        "m/s",
        "m/min",
        "km/h",
        "m/s²",
        "m/s2",
        "g",
        # rotation
        "rpm",
        "rad",
        "rad/s",
        "deg",
        "°",
        # time, frequency
        "ns",
        "µs",
        "us",
        "ms",
        "s",
        "min",
        "h",
        "d",
        "Hz",
        "kHz",
        "MHz",
        "GHz",
        # mass, flow
        "mg",
        "kg",
        "t",
        "kg/s",
        "kg/h",
        "t/h",
        "l",
        "m³",
        "m3",
        "l/min",
        "l/s",
        "m³/h",
        "m3/h",
        "Nm³/h",
        "Nm3/h",
        # force, torque, pressure, stress
        "N",
        "kN",
        "MN",
        "N·m",
        "Nm",
        "kN·m",
        "kNm",
        "Pa",
        "kPa",
        "MPa",
        "bar",
        "mbar",
        "psi",
        # temperature
        "°C",
        "degC",
        "K",
        "°F",
        # electrical, power, energy
        "V",
        "kV",
        "mV",
        "A",
        "mA",
        "kA",
        "W",
        "kW",
        "MW",
        "VA",
        "kVA",
        "MVA",
        "var",
        "kvar",
        "Wh",
        "kWh",
        "MWh",
        "J",
        "kJ",
        "MJ",
        "Ω",
        "ohm",
        "kΩ",
        "MΩ",
        "pf",
        # vibration, sound, light, humidity
        "mm/s rms",
        "g rms",
        "dB",
        "dBA",
        "dBm",
        "lx",
        "%RH",
        # data and radio
        "bit/s",
        "kbit/s",
        "Mbit/s",
        "Gbit/s",
        "B",
        "kB",
        "MB",
        "GB",
    }
)


def close_units(unit: str, known: frozenset[str] = UNITS, n: int = 3) -> list[str]:
    """Known units that look like ``unit`` (for hints), best first."""
    exact_ci = [u for u in known if u and u.lower() == unit.lower()]
    if exact_ci:
        return exact_ci[:n]
    return difflib.get_close_matches(unit, [u for u in known if u], n=n, cutoff=0.5)
