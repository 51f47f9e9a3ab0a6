"""EN 13757-3 combinable ("orthogonal") VIFEs: what a VIFE after a VIF does to the record.

Table 15 of the standard (tags, dates, durations, counts, rates, correction factor and offset,
record errors) and the combinable extension table that VIFE 0x7C opens (phases, quadrants).
The VIF tables themselves are in units.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

# Durations coded as nn = 0..3: seconds, minutes, hours, days (as in units.py's VIF tables).
_DURATION = (Fraction(1), Fraction(60), Fraction(3600), Fraction(86400))

CombinableKind = Literal["tag", "date", "duration", "count", "rate", "factor", "offset", "none"]


@dataclass(frozen=True, slots=True)
class Combinable:
    """A combinable ("orthogonal") VIFE after a primary or extended VIF.

    kind says what it does to the record:
      tag       same quantity and unit, the name goes to Record.modifiers
      date      the data is a point in time (types G/F/I) about the quantity
      duration  the data is a duration in `seconds` units about the quantity
      count     the data is a number of events about the quantity
      rate      the value is the quantity per/times something; per a fixed time span it becomes
                the SenML per-second unit (`seconds_per`), otherwise it has no SenML unit
      factor    multiply by 10**power (correction factor)
      offset    add 10**power units of the VIF (correction constant)
      none      E000 0000 "no error": nothing to record
    """

    name: str
    kind: CombinableKind = "tag"
    seconds: Fraction = Fraction(1)
    power: int = 0
    seconds_per: Fraction | None = None  # a rate per a fixed time span: its length in seconds


_RECORD_ERRORS = {
    0x01: "too_many_difes", 0x02: "storage_not_implemented", 0x03: "unit_not_implemented",
    0x04: "tariff_not_implemented", 0x05: "function_not_implemented",
    0x06: "data_class_not_implemented", 0x07: "data_size_not_implemented",
    0x0B: "too_many_vifes", 0x0C: "illegal_vif_group", 0x0D: "illegal_vif_exponent",
    0x0E: "vif_dif_mismatch", 0x0F: "unimplemented_action", 0x15: "no_data_available",
    0x16: "data_overflow", 0x17: "data_underflow", 0x18: "data_error",
    0x1C: "premature_end_of_record",
}

_RATES = {
    0x20: "per_second", 0x21: "per_minute", 0x22: "per_hour", 0x23: "per_day",
    0x24: "per_week", 0x25: "per_month", 0x26: "per_year", 0x27: "per_measurement",
    0x2C: "per_litre", 0x2D: "per_m3", 0x2E: "per_kg", 0x2F: "per_kelvin",
    0x30: "per_kwh", 0x31: "per_gj", 0x32: "per_kw", 0x33: "per_kelvin_litre",
    0x34: "per_volt", 0x35: "per_ampere", 0x36: "times_second",
    0x37: "times_second_per_volt", 0x38: "times_second_per_ampere",
}

# The "per time" rates that have a fixed length (a month or a year does not).
_RATE_SECONDS = {0x20: Fraction(1), 0x21: Fraction(60), 0x22: Fraction(3600),
                 0x23: Fraction(86400), 0x24: Fraction(7 * 86400)}
# The SenML unit of "unit per second", for the units a per-time VIFE is seen on.
_PER_SECOND = {"m3": "m3/s", "J": "W", "kg": "kg/s", "l": "l/s"}


TIME_RATES = tuple(_RATES[code] for code in _RATE_SECONDS)  # per_second ... per_week


def per_second_unit(unit: str | None) -> str | None:
    """SenML unit of a rate of `unit` per second, or None when SenML has none."""
    return _PER_SECOND.get(unit) if unit is not None else None


_TAGS = {
    0x28: "increment_per_input_pulse_0", 0x29: "increment_per_input_pulse_1",
    0x2A: "increment_per_output_pulse_0", 0x2B: "increment_per_output_pulse_1",
    0x3A: "uncorrected", 0x3B: "accumulation_if_positive", 0x3C: "accumulation_if_negative",
    0x3E: "at_base_conditions", 0x40: "lower_limit", 0x48: "upper_limit",
    0x68: "lower_limit_exceed_value", 0x6C: "upper_limit_exceed_value",
    0x7E: "future_value", 0x7F: "manufacturer_specific",
}


# VIFE E111 1100 (EN 13757-3:2018, table of combinable VIFEs): "extension of combinable
# (orthogonal) VIFE codes": the VIFE after it is read in the combinable extension table, which
# says where an electricity quantity is measured (a phase, between two phases, a quadrant).
# Codes outside the ones below keep a neutral tag with their number (never a record error).
COMBINABLE_EXTENSION = 0x7C
_EXTENDED = {
    0x01: "at_phase_l1", 0x02: "at_phase_l2", 0x03: "at_phase_l3", 0x04: "at_neutral",
    0x05: "between_phases_l1_l2", 0x06: "between_phases_l2_l3", 0x07: "between_phases_l3_l1",
    0x08: "at_quadrant_q1", 0x09: "at_quadrant_q2", 0x0A: "at_quadrant_q3",
    0x0B: "at_quadrant_q4", 0x0C: "delta_import_export",
}


def extended_combinable_vife(code: int) -> Combinable:
    """Meaning of the VIFE after COMBINABLE_EXTENSION, `code` without its extension bit."""
    return Combinable(_EXTENDED.get(code, f"extended_vife_{code:02x}"))


def combinable_vife(code: int) -> Combinable:
    """Meaning of a combinable VIFE (table 15), `code` without its extension bit."""
    if code == 0x00:
        return Combinable("no_error", "none")
    if code <= 0x1F:
        return Combinable("record_error_" + _RECORD_ERRORS.get(code, f"{code:02x}"))
    if code in _RATES:
        return Combinable(_RATES[code], "rate", seconds_per=_RATE_SECONDS.get(code))
    if code in _TAGS:
        return Combinable(_TAGS[code])
    if code == 0x39:
        return Combinable("start_date", "date")
    limit = "upper" if code & 0x08 else "lower"
    first = "last" if code & 0x04 else "first"
    if code in (0x41, 0x49):
        return Combinable(f"{limit}_limit_exceed_count", "count")
    if code in (0x42, 0x43, 0x46, 0x47, 0x4A, 0x4B, 0x4E, 0x4F):
        edge = "end" if code & 0x01 else "begin"
        return Combinable(f"{first}_{limit}_limit_exceed_{edge}_date", "date")
    if 0x50 <= code <= 0x5F:
        return Combinable(f"{first}_{limit}_limit_exceed_duration", "duration", _DURATION[code & 3])
    if 0x60 <= code <= 0x67:
        return Combinable(f"{first}_duration", "duration", _DURATION[code & 3])
    if code in (0x6A, 0x6B, 0x6E, 0x6F):
        edge = "end" if code & 0x01 else "begin"
        return Combinable(f"{first}_{edge}_date", "date")
    if 0x70 <= code <= 0x77:
        return Combinable("correction_factor", "factor", power=(code & 0x07) - 6)
    if 0x78 <= code <= 0x7B:
        return Combinable("correction_offset", "offset", power=(code & 0x03) - 3)
    if code == 0x7D:
        return Combinable("correction_factor", "factor", power=3)
    return Combinable(f"reserved_vife_{code:02x}")
