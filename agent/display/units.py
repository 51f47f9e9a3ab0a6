"""Human units for what a person reads; the wire stays in SenML primary units.

    human(90000169200, "J")   -> ("25,000", "kWh")     human(7.944e-05, "m3/s") -> ("286", "l/h")
    human(54830000, "s")      -> ("634.6", "d")        human(21.456, "Cel")     -> ("21.5", "°C")

Each quantity has a ladder of units, chosen by the size of the value, and a rounding that suits
what a technician compares (a meter index keeps its whole number, a temperature one decimal). A
point may name its own `display_unit:` in the config (e.g. `m3/h` for a flow that should never
switch to l/h); the value is then converted to that unit with `agent.sdk.units.CONVERSIONS`.
French writes a decimal comma and groups thousands with a space.
"""

from __future__ import annotations

import math

from agent.sdk import units as senml_units
from agent.i18n import language, t

# SenML unit -> ladder of (upper bound in the SenML unit, shown unit, divisor, decimals); the first
# rung whose bound exceeds |value| is used. Bounds are in the primary unit.
_LADDERS: dict[str, list[tuple[float, str, float, int]]] = {
    "J": [(3.6e3, "Wh", 3.6e3, 1), (3.6e11, "kWh", 3.6e6, 0), (math.inf, "MWh", 3.6e9, 1)],
    "W": [(1e3, "W", 1.0, 0), (1e6, "kW", 1e3, 2), (math.inf, "MW", 1e6, 2)],
    "s": [(120, "s", 1.0, 0), (7200, "min", 60.0, 0), (7 * 86400, "h", 3600.0, 1),
          (math.inf, "d", 86400.0, 1)],
    "m3/s": [(1 / 3600, "l/h", 1e-3 / 3600, 0), (math.inf, "m3/h", 1 / 3600, 2)],
    "m3": [(math.inf, "m3", 1.0, 3)],
    "Pa": [(1e4, "Pa", 1.0, 0), (1e5, "kPa", 1e3, 1), (math.inf, "bar", 1e5, 2)],
    "Cel": [(math.inf, "°C", 1.0, 1)],
    "K": [(math.inf, "K", 1.0, 1)],
    "%RH": [(math.inf, "%RH", 1.0, 0)],
    "%": [(math.inf, "%", 1.0, 0)],
    "V": [(math.inf, "V", 1.0, 1)],
    "A": [(math.inf, "A", 1.0, 2)],
    "count": [(math.inf, "", 1.0, 0)],
    "1/min": [(math.inf, "rpm", 1.0, 0)],
}

# Units as a person writes them (the wire's "m3" is "m³" on a screen).
_PRETTY = {"m3": "m³", "m3/h": "m³/h", "Cel": "°C", "m3/s": "m³/s", "1/min": "rpm"}

# Decimals for a declared display unit (the ladder's when it is on a ladder, else 3 significant).
_DISPLAY_DECIMALS = {shown: decimals for ladder in _LADDERS.values()
                     for _, shown, _, decimals in ladder}


def human(value: object, unit: str | None, display_unit: str | None = None,
          lang: str | None = None) -> tuple[str, str]:
    """(value text, unit text) for a person; None reads as an em dash."""
    lang = lang or language()
    if value is None:
        return "—", ""
    if isinstance(value, bool):
        return t("value.true" if value else "value.false", lang), ""
    if not isinstance(value, int | float) or not math.isfinite(value):
        return str(value), _pretty(unit, lang)
    if display_unit:
        return _in_unit(float(value), unit, display_unit, lang)
    ladder = _LADDERS.get(unit or "")
    if ladder is None:
        return number(float(value), _significant(float(value)), lang), _pretty(unit, lang)
    magnitude = abs(value)
    for bound, shown, divisor, decimals in ladder:
        if magnitude < bound:
            scaled = value / divisor
            if shown == "l/h" and abs(scaled) < 10:
                decimals = 1  # a slow leak (6 l/h) deserves its decimal
            return number(scaled, decimals, lang), _pretty(shown, lang)
    raise AssertionError("every ladder ends with an infinite bound")


def _in_unit(value: float, unit: str | None, display_unit: str, lang: str) -> tuple[str, str]:
    primary, factor, offset = senml_units.normalize(display_unit)
    if primary != unit:  # the config check refuses this; a driver-given unit may still differ
        return number(value, _significant(value), lang), _pretty(unit, lang)
    scaled = (value - offset) / factor
    decimals = _DISPLAY_DECIMALS.get(display_unit, _significant(scaled))
    return number(scaled, decimals, lang), _pretty(display_unit, lang)


def _significant(value: float) -> int:
    """Decimals for three significant digits, never fewer than 0 (none for a whole number)."""
    if value == 0 or value.is_integer():
        return 0
    return max(0, 2 - math.floor(math.log10(abs(value))))


def number(value: float, decimals: int, lang: str | None = None) -> str:
    """`value` rounded, thousands grouped: `25,000.5` in English, `25 000,5` in French."""
    text = f"{value:,.{decimals}f}"
    if text.startswith("-") and not any(c in "123456789" for c in text):
        text = text[1:]  # -0.0 reads as 0.0
    if (lang or language()) == "fr":
        text = text.replace(",", " ").replace(".", ",")
    return text


def _pretty(unit: str | None, lang: str) -> str:
    if not unit:
        return ""
    if unit == "d":
        return t("unit.day", lang)
    return _PRETTY.get(unit, unit)


def age(seconds: float | None, lang: str | None = None) -> str:
    """How long ago, short: 42 s, 12 min, 3.5 h, 2.0 d (French: 2,0 j)."""
    lang = lang or language()
    if seconds is None:
        return t("age.never", lang)
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{number(seconds / 3600, 1, lang)} h"
    return f"{number(seconds / 86400, 1, lang)} {t('unit.day', lang)}"
