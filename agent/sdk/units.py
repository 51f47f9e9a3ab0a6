"""Units: every value leaves the gateway in a SenML primary unit (RFC 8428 §12.1).

Technicians write the unit the device manual uses (`kWh`, `bar`, `m3/h`, `°C`); the agent converts
once, at normalization, so the backend never has to guess.
"""

from __future__ import annotations

# SenML units a value may already be in (the subset that building equipment produces).
PRIMARY = frozenset({
    "m", "kg", "g", "s", "A", "K", "cd", "mol", "Hz", "rad", "sr", "N", "Pa", "J", "W", "C", "V",
    "F", "Ohm", "S", "Wb", "T", "H", "Cel", "lm", "lx", "Bq", "Gy", "Sv", "kat", "m2", "m3", "l",
    "m/s", "m/s2", "m3/s", "l/s", "W/m2", "cd/m2", "bit", "bit/s", "lat", "lon", "pH", "dB", "dBW",
    "count", "/", "%", "%RH", "%EL", "EL", "1/s", "1/min", "beat/min", "beats", "S/m", "B", "VA",
    "VAs", "var", "vars", "J/m", "kg/m3", "deg", "NTU", "ms", "min", "h", "MHz", "kW", "kVA",
    "kvar", "Ah", "kWh", "kvarh", "ppm", "ppb", "mm", "mm/h", "dBm", "kg/s",
})

# unit as written in manuals -> (SenML primary unit, factor, offset): primary = v * factor + offset.
# SenML registers kWh, min, h, l... as secondary units; we still convert them so that one quantity
# always arrives in one unit (energy in J, volume in m3, time in s).
CONVERSIONS: dict[str, tuple[str, float, float]] = {
    "Wh": ("J", 3600.0, 0.0),
    "kWh": ("J", 3.6e6, 0.0),
    "MWh": ("J", 3.6e9, 0.0),
    "kJ": ("J", 1e3, 0.0),
    "MJ": ("J", 1e6, 0.0),
    "GJ": ("J", 1e9, 0.0),
    "kW": ("W", 1e3, 0.0),
    "MW": ("W", 1e6, 0.0),
    "mbar": ("Pa", 100.0, 0.0),
    "hPa": ("Pa", 100.0, 0.0),
    "kPa": ("Pa", 1e3, 0.0),
    "bar": ("Pa", 1e5, 0.0),
    "°C": ("Cel", 1.0, 0.0),
    "degC": ("Cel", 1.0, 0.0),
    "C": ("Cel", 1.0, 0.0),  # in building manuals a bare C is a temperature, not coulombs
    "l": ("m3", 1e-3, 0.0),
    "L": ("m3", 1e-3, 0.0),
    "m3/h": ("m3/s", 1 / 3600, 0.0),
    "l/h": ("m3/s", 1e-3 / 3600, 0.0),
    "l/min": ("m3/s", 1e-3 / 60, 0.0),
    "l/s": ("m3/s", 1e-3, 0.0),
    "ms": ("s", 1e-3, 0.0),
    "min": ("s", 60.0, 0.0),
    "h": ("s", 3600.0, 0.0),
    "d": ("s", 86400.0, 0.0),
    "mA": ("A", 1e-3, 0.0),
    "mV": ("V", 1e-3, 0.0),
    "rpm": ("1/min", 1.0, 0.0),
    "RH%": ("%RH", 1.0, 0.0),
    "Ah": ("C", 3600.0, 0.0),
    "kWh_th": ("J", 3.6e6, 0.0),
}

KEEP_AS_IS = frozenset({"Pa", "J", "W", "m3", "m3/s", "Cel", "K", "s", "V", "A", "%", "%RH",
                        "count", "1/min", "Hz", "ppm", "kg", "kg/s", "m", "m/s", "lx", "dB"})


def normalize(unit: str | None) -> tuple[str | None, float, float]:
    """Return (SenML unit, factor, offset) for a configured unit; raises ValueError if unknown."""
    if unit is None:
        return None, 1.0, 0.0
    if unit in CONVERSIONS:
        return CONVERSIONS[unit]
    if unit in PRIMARY:
        return unit, 1.0, 0.0
    known = sorted(KEEP_AS_IS | set(CONVERSIONS))
    msg = f"unknown unit {unit!r}; use a SenML unit or one of: {', '.join(known)}"
    raise ValueError(msg)


def check_display_unit(unit: str | None, display_unit: str) -> str | None:
    """Why `display_unit` cannot show a value configured in `unit`; None when it can."""
    try:
        target = normalize(display_unit)[0]
        source = normalize(unit)[0] if unit else None
    except ValueError as exc:
        return str(exc)
    if source is not None and source != target:
        return (f"{display_unit!r} measures {target}, but the point's unit {unit!r} is "
                f"{source}: pick a unit of the same quantity")
    return None
