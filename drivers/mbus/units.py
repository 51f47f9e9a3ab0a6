"""EN 13757-3 value information tables, expressed directly in SenML primary units.

Each VIF maps to a quantity name, a SenML unit and the factor that turns the raw record value
into that unit: value_senml = raw * 10**exponent * factor + offset.  Keeping the factor apart from
the power of ten lets the codec scale with exact fractions (12349 * 10**-2 is 123.49, not
123.49000000000001).

Tables transcribed from the standard: primary VIF (table 10), the 0xFD extension (table 12),
the 0xFB extension (table 14), the medium codes and the fixed-data-structure units of the old
CI 0x73 frames. The combinable "orthogonal" VIFEs (table 15) are in vife.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

Kind = Literal["number", "date"]

_ONE = Fraction(1)
_WH = Fraction(3600)  # 1 Wh = 3600 J
_PER_HOUR = Fraction(1, 3600)
_PER_MINUTE = Fraction(1, 60)
_BAR = Fraction(100_000)  # Pa
# Durations coded as nn = 0..3: seconds, minutes, hours, days.
_DURATION = (Fraction(1), Fraction(60), Fraction(3600), Fraction(86400))


@dataclass(frozen=True, slots=True)
class ValueInfo:
    quantity: str
    unit: str | None
    exponent: int = 0
    factor: Fraction = _ONE
    offset: Fraction = Fraction(0)
    kind: Kind = "number"


def _reserved(code: int) -> ValueInfo:
    return ValueInfo("reserved", None)


def primary_vif(code: int) -> ValueInfo:
    """VIF without its extension bit (0x00..0x7F), except 0x7B/0x7C/0x7D handled by the codec."""
    n3, n2 = code & 0x07, code & 0x03
    if code <= 0x07:
        return ValueInfo("energy", "J", n3 - 3, _WH)
    if code <= 0x0F:
        return ValueInfo("energy", "J", n3)
    if code <= 0x17:
        return ValueInfo("volume", "m3", n3 - 6)
    if code <= 0x1F:
        return ValueInfo("mass", "kg", n3 - 3)
    if code <= 0x23:
        return ValueInfo("on_time", "s", 0, _DURATION[n2])
    if code <= 0x27:
        return ValueInfo("operating_time", "s", 0, _DURATION[n2])
    if code <= 0x2F:
        return ValueInfo("power", "W", n3 - 3)
    if code <= 0x37:
        return ValueInfo("power", "W", n3, _PER_HOUR)  # J/h
    if code <= 0x3F:
        return ValueInfo("volume_flow", "m3/s", n3 - 6, _PER_HOUR)  # m3/h
    if code <= 0x47:
        return ValueInfo("volume_flow", "m3/s", n3 - 7, _PER_MINUTE)  # m3/min
    if code <= 0x4F:
        return ValueInfo("volume_flow", "m3/s", n3 - 9)
    if code <= 0x57:
        return ValueInfo("mass_flow", "kg/s", n3 - 3, _PER_HOUR)  # kg/h
    if code <= 0x5B:
        return ValueInfo("flow_temperature", "Cel", n2 - 3)
    if code <= 0x5F:
        return ValueInfo("return_temperature", "Cel", n2 - 3)
    if code <= 0x63:
        return ValueInfo("temperature_difference", "K", n2 - 3)
    if code <= 0x67:
        return ValueInfo("external_temperature", "Cel", n2 - 3)
    if code <= 0x6B:
        return ValueInfo("pressure", "Pa", n2 - 3, _BAR)
    if code == 0x6C:
        return ValueInfo("date", None, kind="date")
    if code == 0x6D:
        return ValueInfo("date_time", None, kind="date")
    if code == 0x6E:
        return ValueInfo("hca_units", None)  # heat cost allocator units are dimensionless
    if code == 0x6F:
        return _reserved(code)
    if code <= 0x73:
        return ValueInfo("averaging_duration", "s", 0, _DURATION[n2])
    if code <= 0x77:
        return ValueInfo("actuality_duration", "s", 0, _DURATION[n2])
    if code == 0x78:
        return ValueInfo("fabrication_no", None)
    if code == 0x79:
        return ValueInfo("enhanced_identification", None)
    if code == 0x7A:
        return ValueInfo("bus_address", None)
    if code == 0x7E:
        return ValueInfo("any", None)  # readout selection, master to slave
    if code == 0x7F:
        return ValueInfo("manufacturer_specific", None)
    return _reserved(code)  # 0x7B, 0x7D without extension bit: no table behind them


_FD_NAMED: dict[int, ValueInfo] = {
    0x08: ValueInfo("access_number", None),
    0x09: ValueInfo("medium", None),
    0x0A: ValueInfo("manufacturer", None),
    0x0B: ValueInfo("parameter_set_id", None),
    0x0C: ValueInfo("model_version", None),
    0x0D: ValueInfo("hardware_version", None),
    0x0E: ValueInfo("firmware_version", None),
    0x0F: ValueInfo("software_version", None),
    0x10: ValueInfo("customer_location", None),
    0x11: ValueInfo("customer", None),
    0x12: ValueInfo("access_code_user", None),
    0x13: ValueInfo("access_code_operator", None),
    0x14: ValueInfo("access_code_system_operator", None),
    0x15: ValueInfo("access_code_developer", None),
    0x16: ValueInfo("password", None),
    0x17: ValueInfo("error_flags", None),
    0x18: ValueInfo("error_mask", None),
    0x1A: ValueInfo("digital_output", None),
    0x1B: ValueInfo("digital_input", None),
    0x1C: ValueInfo("baud_rate", None),
    0x1D: ValueInfo("response_delay_bits", None),
    0x1E: ValueInfo("retry", None),
    0x1F: ValueInfo("remote_control", None),
    0x20: ValueInfo("first_storage_number", None),
    0x21: ValueInfo("last_storage_number", None),
    0x22: ValueInfo("storage_block_size", None),
    0x28: ValueInfo("storage_interval_months", None),
    0x29: ValueInfo("storage_interval_years", None),
    0x30: ValueInfo("tariff_start", None, kind="date"),
    0x38: ValueInfo("tariff_period_months", None),
    0x39: ValueInfo("tariff_period_years", None),
    0x3A: ValueInfo("dimensionless", None),
    0x60: ValueInfo("reset_counter", None),
    0x61: ValueInfo("cumulation_counter", None),
    0x62: ValueInfo("control_signal", None),
    0x63: ValueInfo("day_of_week", None),
    0x64: ValueInfo("week_number", None),
    0x65: ValueInfo("day_change_time", None),
    0x66: ValueInfo("parameter_activation_state", None),
    0x67: ValueInfo("special_supplier_information", None),
    0x6A: ValueInfo("duration_since_last_cumulation_months", None),
    0x6B: ValueInfo("duration_since_last_cumulation_years", None),
    0x6E: ValueInfo("battery_operating_time_months", None),
    0x6F: ValueInfo("battery_operating_time_years", None),
    0x70: ValueInfo("battery_change_date", None, kind="date"),
    0x71: ValueInfo("rf_level", "dBm"),
    0x74: ValueInfo("remaining_battery_lifetime", "s", 0, Fraction(86400)),  # days (OMS)
}


def fd_vif(code: int) -> ValueInfo:
    """Main extension table, selected by VIF 0xFD; `code` is the first VIFE without its E bit."""
    n2 = code & 0x03
    if code <= 0x03:
        return ValueInfo("credit", None, n2 - 3)  # currency units
    if code <= 0x07:
        return ValueInfo("debit", None, n2 - 3)
    if code in _FD_NAMED:
        return _FD_NAMED[code]
    if 0x24 <= code <= 0x27:
        return ValueInfo("storage_interval", "s", 0, _DURATION[n2])
    if 0x2C <= code <= 0x2F:
        return ValueInfo("duration_since_last_readout", "s", 0, _DURATION[n2])
    if 0x31 <= code <= 0x33:
        return ValueInfo("tariff_duration", "s", 0, _DURATION[n2])  # nn = 1..3: min, h, d
    if 0x34 <= code <= 0x37:
        return ValueInfo("tariff_period", "s", 0, _DURATION[n2])
    if 0x40 <= code <= 0x4F:
        return ValueInfo("voltage", "V", (code & 0x0F) - 9)
    if 0x50 <= code <= 0x5F:
        return ValueInfo("current", "A", (code & 0x0F) - 12)
    if code in (0x68, 0x69):
        return ValueInfo("duration_since_last_cumulation", "s", 0, _DURATION[2 + (code & 1)])
    if code in (0x6C, 0x6D):
        return ValueInfo("battery_operating_time", "s", 0, _DURATION[2 + (code & 1)])
    return _reserved(code)


_F_TO_K = Fraction(5, 9)
_F_OFFSET = Fraction(-160, 9)  # (F - 32) * 5/9 = F * 5/9 - 160/9


def fb_vif(code: int) -> ValueInfo:
    """Alternate extension table, selected by VIF 0xFB; `code` is the first VIFE sans E bit."""
    n1, n2 = code & 0x01, code & 0x03
    if code <= 0x01:
        return ValueInfo("energy", "J", n1 - 1 + 6, _WH)  # 0.1 MWh .. 1 MWh
    if 0x08 <= code <= 0x09:
        return ValueInfo("energy", "J", n1 - 1 + 9)  # 0.1 GJ .. 1 GJ
    if 0x10 <= code <= 0x11:
        return ValueInfo("volume", "m3", n1 + 2)  # 100 m3 .. 1000 m3
    if 0x18 <= code <= 0x19:
        return ValueInfo("mass", "kg", n1 + 2 + 3)  # 100 t .. 1000 t
    if 0x1A <= code <= 0x1B:
        return ValueInfo("relative_humidity", "%RH", n1 - 1)
    if code == 0x21:
        return ValueInfo("volume", "m3", -1, Fraction(28316846592, 10**12))  # 0.1 ft3
    if code == 0x22:
        return ValueInfo("volume", "m3", -1, Fraction(3785411784, 10**12))  # 0.1 US gallon
    if code == 0x23:
        return ValueInfo("volume", "m3", 0, Fraction(3785411784, 10**12))  # 1 US gallon
    if code == 0x24:
        return ValueInfo("volume_flow", "m3/s", -3, Fraction(3785411784, 10**12) / 60)
    if code == 0x25:
        return ValueInfo("volume_flow", "m3/s", 0, Fraction(3785411784, 10**12) / 60)
    if code == 0x26:
        return ValueInfo("volume_flow", "m3/s", 0, Fraction(3785411784, 10**12) / 3600)
    if 0x28 <= code <= 0x29:
        return ValueInfo("power", "W", n1 - 1 + 6)  # 0.1 MW .. 1 MW
    if 0x30 <= code <= 0x31:
        return ValueInfo("power", "W", n1 - 1 + 9, _PER_HOUR)  # 0.1 GJ/h .. 1 GJ/h
    if 0x58 <= code <= 0x5B:
        return ValueInfo("flow_temperature", "Cel", n2 - 3, _F_TO_K, _F_OFFSET)
    if 0x5C <= code <= 0x5F:
        return ValueInfo("return_temperature", "Cel", n2 - 3, _F_TO_K, _F_OFFSET)
    if 0x60 <= code <= 0x63:
        return ValueInfo("temperature_difference", "K", n2 - 3, _F_TO_K)
    if 0x64 <= code <= 0x67:
        return ValueInfo("external_temperature", "Cel", n2 - 3, _F_TO_K, _F_OFFSET)
    if 0x70 <= code <= 0x73:
        return ValueInfo("temperature_limit", "Cel", n2 - 3, _F_TO_K, _F_OFFSET)
    if 0x74 <= code <= 0x77:
        return ValueInfo("temperature_limit", "Cel", n2 - 3)
    if 0x78 <= code <= 0x7F:
        return ValueInfo("cumulative_max_power", "W", (code & 0x07) - 3)
    return _reserved(code)


MEDIUM: dict[int, str] = {
    0x00: "other", 0x01: "oil", 0x02: "electricity", 0x03: "gas", 0x04: "heat_outlet",
    0x05: "steam", 0x06: "warm_water", 0x07: "water", 0x08: "heat_cost_allocator",
    0x09: "compressed_air", 0x0A: "cooling_outlet", 0x0B: "cooling_inlet", 0x0C: "heat_inlet",
    0x0D: "heat_cooling", 0x0E: "bus_system", 0x0F: "unknown", 0x10: "irrigation_water",
    0x11: "water_logger", 0x12: "gas_logger", 0x13: "gas_converter", 0x14: "calorific_value",
    0x15: "hot_water", 0x16: "cold_water", 0x17: "dual_water", 0x18: "pressure",
    0x19: "ad_converter", 0x1A: "smoke_detector", 0x1B: "room_sensor", 0x1C: "gas_detector",
    0x20: "breaker_electricity", 0x21: "valve", 0x25: "customer_unit", 0x28: "waste_water",
    0x29: "garbage", 0x30: "service_unit", 0x36: "radio_converter_system",
    0x37: "radio_converter_meter",
}


def medium_name(code: int) -> str:
    return MEDIUM.get(code, f"reserved_0x{code:02x}")


# Old fixed data structure (CI 0x73/0x77): 4-bit medium and 6-bit unit codes.
FIXED_MEDIUM: dict[int, str] = {
    0x0: "other", 0x1: "oil", 0x2: "electricity", 0x3: "gas", 0x4: "heat", 0x5: "steam",
    0x6: "hot_water", 0x7: "water", 0x8: "heat_cost_allocator", 0x9: "compressed_air",
    0xA: "cooling_outlet", 0xB: "cooling_inlet", 0xC: "heat_inlet", 0xD: "heat_cooling",
    0xE: "bus_system", 0xF: "unknown",
}

FIXED_UNIT_HISTORIC = 0x3E  # "same unit as counter 1, but a historic value"


def fixed_unit(code: int) -> ValueInfo:
    """Unit of a counter in the fixed data structure: groups of three decades per base unit."""
    groups: list[tuple[int, ValueInfo]] = [
        (0x02, ValueInfo("energy", "J", 0, _WH)),  # Wh, Wh*10, Wh*100
        (0x05, ValueInfo("energy", "J", 3, _WH)),  # kWh ..
        (0x08, ValueInfo("energy", "J", 6, _WH)),  # MWh ..
        (0x0B, ValueInfo("energy", "J", 3)),  # kJ ..
        (0x0E, ValueInfo("energy", "J", 6)),  # MJ ..
        (0x11, ValueInfo("energy", "J", 9)),  # GJ ..
        (0x14, ValueInfo("power", "W", 0)),  # W ..
        (0x17, ValueInfo("power", "W", 3)),  # kW ..
        (0x1A, ValueInfo("power", "W", 6)),  # MW ..
        (0x1D, ValueInfo("power", "W", 3, _PER_HOUR)),  # kJ/h ..
        (0x20, ValueInfo("power", "W", 6, _PER_HOUR)),  # MJ/h ..
        (0x23, ValueInfo("power", "W", 9, _PER_HOUR)),  # GJ/h ..
        (0x26, ValueInfo("volume", "m3", -6)),  # ml ..
        (0x29, ValueInfo("volume", "m3", -3)),  # l ..
        (0x2C, ValueInfo("volume", "m3", 0)),  # m3 ..
        (0x2F, ValueInfo("volume_flow", "m3/s", -6, _PER_HOUR)),  # ml/h ..
        (0x32, ValueInfo("volume_flow", "m3/s", -3, _PER_HOUR)),  # l/h ..
        (0x35, ValueInfo("volume_flow", "m3/s", 0, _PER_HOUR)),  # m3/h ..
    ]
    for first, info in groups:
        if first <= code < first + 3:
            return ValueInfo(info.quantity, info.unit, info.exponent + code - first, info.factor)
    if code == 0x00:
        return ValueInfo("time", None)  # h,m,s
    if code == 0x01:
        return ValueInfo("date", None)  # D,M,Y
    if code == 0x38:
        return ValueInfo("temperature", "Cel", -3)
    if code == 0x39:
        return ValueInfo("hca_units", None)
    if code == 0x3F:
        return ValueInfo("dimensionless", None)
    return _reserved(code)
