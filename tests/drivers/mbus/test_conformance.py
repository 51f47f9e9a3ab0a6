"""The libmbus conformance vectors: every real frame decodes to its .norm.xml, every error frame
is rejected with MBusDecodeError.

libmbus' normalized XML gives SI-ish units (Wh, m^3/h, °C) printed with six decimals; we compare
in SenML units after the same conversion, to 1e-9 relative plus the half unit of the sixth
decimal that printf("%f") rounding costs (only real32 values come near it).

A few records are decoded differently on purpose, where libmbus' output is not what the frame
says.  They are listed in DEVIATIONS with the reason (also in drivers/mbus/README.md); for each
we first check libmbus really says what we claim, then assert our decode.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pytest

from drivers.mbus.codec import MBusDecodeError, Record, Telegram, decode_frame, decode_hex_file


def conformance_dir() -> Path:
    """The shared vectors live beside the repository: ../shared/conformance/mbus-libmbus (from
    /work/main), ../../shared from a worktree under /work/wt: the first ancestor that has it."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "shared" / "conformance" / "mbus-libmbus").is_dir():
            return parent / "shared" / "conformance" / "mbus-libmbus"
    return here.parents[3].parent / "shared" / "conformance" / "mbus-libmbus"


FRAMES = sorted((conformance_dir() / "test-frames").glob("*.hex"))
ERROR_FRAMES = sorted((conformance_dir() / "error-frames").glob("*.hex"))

# libmbus normalized unit -> (SenML unit, factor to multiply the XML value by).
UNITS: dict[str, tuple[str | None, Fraction]] = {
    "Wh": ("J", Fraction(3600)),
    "kWh": ("J", Fraction(3_600_000)),
    "J": ("J", Fraction(1)),
    "m^3": ("m3", Fraction(1)),
    "l": ("m3", Fraction(1, 1000)),
    "W": ("W", Fraction(1)),
    "°C": ("Cel", Fraction(1)),
    "K": ("K", Fraction(1)),
    "m^3/h": ("m3/s", Fraction(1, 3600)),
    "s": ("s", Fraction(1)),
    "V": ("V", Fraction(1)),
    "A": ("A", Fraction(1)),
    "": (None, Fraction(1)),
    "-": (None, Fraction(1)),
    "Units for H.C.A.": (None, Fraction(1)),
    "Reserved": (None, Fraction(1)),
}

QUANTITIES = {
    "Energy": "energy",
    "Volume": "volume",
    "Power": "power",
    "Volume flow": "volume_flow",
    "Flow temperature": "flow_temperature",
    "Return temperature": "return_temperature",
    "Temperature difference": "temperature_difference",
    "External temperature": "external_temperature",
    "Time point (date)": "date",
    "Time point (date & time)": "date_time",
    "Fabrication No": "fabrication_no",
    "Voltage": "voltage",
    "Current": "current",
    "On time": "on_time",
    "Operating time": "operating_time",
    "Averaging Duration": "averaging_duration",
    "Actuality Duration": "actuality_duration",
    "Error flags": "error_flags",
    "Software version": "software_version",
    "Firmware version": "firmware_version",
    "Model / Version": "model_version",
    "Parameter set identification": "parameter_set_id",
    "Customer location": "customer_location",
    "Digital Input": "digital_input",
    "Digital Output": "digital_output",
    "Dimensionless": "dimensionless",
    "H.C.A.": "hca_units",
    "Manufacturer specific": "manufacturer_specific",  # VIF 0x7F
    "Medium": "medium",
    "(Enhanced) Identification": "enhanced_identification",
    "Reset counter": "reset_counter",
    "Special supplier information": "special_supplier_information",
    "Reserved": "reserved",
    "%RH": "relative_humidity",  # plain-text VIF "%RH"
    # Other plain-text VIFs keep the meter's own text as the quantity.
    "cust. ID": "cust. ID",
    "bat. time": "bat. time",
    "C": "C",
    "c": "c",
    "PW": "PW",
}

FUNCTIONS = {
    "Instantaneous value": "instantaneous",
    "Actual value": "instantaneous",  # fixed data structure, counters not historic
    "Maximum value": "maximum",
    "Minimum value": "minimum",
    "Value during error state": "error",
    # DIF 0x0F / 0x1F: manufacturer data kept raw as one record.
    "Manufacturer specific": "instantaneous",
    "More records follow": "instantaneous",
}

MEDIA = {
    "Water": "water",
    "Cold water": "cold_water",
    "Warm water (30-90°C)": "warm_water",
    "Electricity": "electricity",
    "Breaker: Electricity": "breaker_electricity",
    "Gas": "gas",
    "Heat: Outlet": "heat_outlet",
    "Heat: Inlet": "heat_inlet",
    "Heat": "heat",  # fixed data structure medium 4
    "Heat / Cooling load meter": "heat_cooling",
    "Heat Cost Allocator": "heat_cost_allocator",
    "Bus/System": "bus_system",
    "Oil": "oil",
    "Other": "other",
}


@dataclass(frozen=True)
class Deviation:
    libmbus_value: str  # what the .norm.xml says (checked, so this table cannot go stale)
    value: object  # what we decode
    unit: str | None
    quantity: str
    reason: str
    storage: int | None = None


_INVALID_BCD = (
    "BCD data with hex digits A-F: the meter flags an invalid value during the error state; "
    "libmbus turns the nibbles into a meaningless number, we keep the digits as a string "
    "with the VIF's unit (issue #15)"
)
_NO_DATE = "date with month 0 (type G 00 00, 'not set'): no calendar date, so None"

DEVIATIONS: dict[tuple[str, int], Deviation] = {
    ("ELS_Elster-F96-Plus", 4): Deviation(
        "13131113.000000", "DDDDEBBD", "W", "power", _INVALID_BCD
    ),
    ("ELS_Elster-F96-Plus", 5): Deviation(
        "131.113000", "DDEBBD", "m3/s", "volume_flow", _INVALID_BCD
    ),
    ("abb_f95", 2): Deviation("1311041.300000", "DDEBB4DD", "W", "power", _INVALID_BCD),
    ("abb_f95", 3): Deviation("11.041300", "EBB4DD", "m3/s", "volume_flow", _INVALID_BCD),
    ("ACW_Itron-BM-plus-m", 2): Deviation("2000-00-00", None, None, "date", _NO_DATE),
    ("itron_bm_+m", 2): Deviation("2000-00-00", None, None, "date", _NO_DATE),
    ("siemens_water", 3): Deviation("2000-00-00", None, None, "date", _NO_DATE),
    ("siemens_wfh21", 3): Deviation("2000-00-00", None, None, "date", _NO_DATE),
    ("REL-Relay-Padpuls2", 1): Deviation(
        "1900-01-00T00:00:00Z", None, None, "date_time",
        "type F with the IV (invalid) bit set in byte 0 (A1): libmbus prints a 1900-01-00 "
        "sentinel, we return None",
    ),
    ("landis+gyr_ultraheat_t230", 19): Deviation(
        "0.000000", None, None, "power_last_end_date",
        "VIFE 0x6F is 'date/time of' (table 15, E110 1f1b): the data is a type F time point "
        "(here all zero: not set), not a power",
    ),
    ("landis+gyr_ultraheat_t230", 20): Deviation(
        "0.000000", None, None, "volume_flow_last_end_date",
        "VIFE 0x6F: a time point (all zero: not set), not a flow",
    ),
    ("landis+gyr_ultraheat_t230", 21): Deviation(
        "41065374.600000", "2011-08-26T20:50:00", None, "flow_temperature_last_end_date",
        "VIFE 0x6F: the time of the maximum flow temperature (32 14 7A 18, type F); libmbus "
        "reads the date bits as 41 million °C",
    ),
    ("landis+gyr_ultraheat_t230", 22): Deviation(
        "40953732.300000", "2011-08-09T11:43:00", None, "return_temperature_last_end_date",
        "VIFE 0x6F: the time of the maximum return temperature (2B 0B 69 18, type F)",
    ),
    ("SEN_Pollustat", 12): Deviation(
        "11582321.000000", 11582321, "s", "volume_flow_first_lower_limit_exceed_duration",
        "VIFE 0x50 is 'duration of limit exceed' in seconds (table 15, E101 ufnn), not a flow",
    ),
    ("SEN_Pollustat", 13): Deviation(
        "756.000000", 756, "s", "volume_flow_first_upper_limit_exceed_duration",
        "VIFE 0x58: duration of the upper limit exceed in seconds, not a flow",
    ),
    ("manual_frame2", 1): Deviation(
        "135", Fraction(135, 1000), "m3", "volume",
        "fixed data structure unit 0x3E means 'same unit as counter 1 (litres), historic "
        "value': 135 l at storage 1; libmbus prints it unitless",
        storage=1,
    ),
    ("sen_pollutherm", 2): Deviation(
        "", 302, None, "reserved",
        "VIF 0x7B without extension bit has no table entry; libmbus prints an empty record, "
        "we keep the BCD value 302 under quantity 'reserved'",
    ),
}


def _load_norm(path: Path) -> tuple[dict[str, str], list[dict[str, str]]]:
    # The files declare ISO-8859-1 but hold UTF-8 (°C): parse the text ourselves.
    text = path.read_bytes().decode("utf-8")
    root = ET.fromstring(re.sub(r"^<\?xml[^>]*\?>", "", text.lstrip()))
    info_el = root.find("SlaveInformation")
    assert info_el is not None
    info = {child.tag: (child.text or "") for child in info_el}
    records = [{child.tag: (child.text or "") for child in r} for r in root.findall("DataRecord")]
    return info, records


def _check_number(got: object, expected: float, factor: Fraction, where: str) -> None:
    assert isinstance(got, (int, float)) and not isinstance(got, bool), f"{where}: {got!r}"
    target = float(Fraction(expected) * factor)
    # %f printing in libmbus: half a unit of the sixth decimal, in the XML's unit.
    assert got == pytest.approx(target, rel=1e-9, abs=float(factor) * 5e-7), where


def _check_deviation(name: str, index: int, exp: dict[str, str], rec: Record) -> None:
    dev = DEVIATIONS[(name, index)]
    where = f"{name} record {index} ({dev.reason})"
    assert exp.get("Value", "") == dev.libmbus_value, f"{where}: libmbus value changed"
    if isinstance(dev.value, Fraction):
        _check_number(rec.value, float(dev.value), Fraction(1), where)
    else:
        assert rec.value == dev.value, where
        assert type(rec.value) is type(dev.value), where
    assert rec.unit == dev.unit, where
    assert rec.quantity == dev.quantity, where
    expected_storage = dev.storage if dev.storage is not None else int(exp.get("StorageNumber", 0))
    assert rec.storage == expected_storage, where


def _check_record(name: str, index: int, exp: dict[str, str], rec: Record, t: Telegram) -> None:
    where = f"{name} record {index}"
    if (name, index) in DEVIATIONS:
        _check_deviation(name, index, exp, rec)
        return
    function = exp["Function"]
    assert rec.function == FUNCTIONS[function], where
    assert rec.storage == int(exp.get("StorageNumber", "0")), where
    assert rec.tariff == int(exp.get("Tariff", "0")), where
    assert rec.subunit == int(exp.get("Device", "0")), where
    value = exp["Value"]
    if function in ("Manufacturer specific", "More records follow"):
        assert rec.quantity == "manufacturer_data", where
        assert rec.value == value and rec.unit is None, where
        assert t.more_records_follow == (function == "More records follow"), where
        assert index == len(t.records) - 1, f"{where}: manufacturer data must end the records"
        return
    unit, factor = UNITS[exp["Unit"]]
    quantity = QUANTITIES[exp["Quantity"]] if "Quantity" in exp else _fixed_quantity(exp["Unit"])
    assert rec.quantity == quantity, where
    if quantity == "relative_humidity":
        unit = "%RH"
    assert rec.unit == unit, where
    if quantity in ("date", "date_time"):
        # libmbus appends Z, but meters keep local time: we print no zone.
        assert rec.value == value.removesuffix("Z"), where
        return
    try:
        number = float(value)
    except ValueError:
        assert rec.value == value, where  # text (plain-text VIF, LVAR string) or raw hex
        return
    _check_number(rec.value, number, factor, where)


def _fixed_quantity(unit: str) -> str:
    return {"l": "volume", "kWh": "energy"}[unit]


def test_vectors_are_present() -> None:
    # Guard: an empty directory would silently turn the parametrized tests into nothing.
    assert len(FRAMES) >= 76, conformance_dir()
    assert len(ERROR_FRAMES) >= 20, conformance_dir()
    assert all(p.with_suffix(".norm.xml").exists() for p in FRAMES)


@pytest.mark.parametrize("path", FRAMES, ids=lambda p: p.stem)
def test_frame_matches_libmbus(path: Path) -> None:
    info, expected = _load_norm(path.with_suffix(".norm.xml"))
    t = decode_hex_file(path)
    assert t.id == info["Id"]
    assert t.manufacturer == (info["Manufacturer"] if "Manufacturer" in info else None)
    assert t.version == (int(info["Version"]) if "Version" in info else None)
    assert t.medium == MEDIA[info["Medium"]]
    assert t.access_number == int(info["AccessNumber"])
    assert t.status == int(info["Status"], 16)
    assert len(t.records) == len(expected)
    for index, (exp, rec) in enumerate(zip(expected, t.records)):
        _check_record(path.stem, index, exp, rec, t)


def test_deviations_refer_to_real_records() -> None:
    names = {p.stem for p in FRAMES}
    for name, index in DEVIATIONS:
        assert name in names
        _, expected = _load_norm(conformance_dir() / "test-frames" / f"{name}.norm.xml")
        assert index < len(expected)


@pytest.mark.parametrize("path", ERROR_FRAMES, ids=lambda p: p.stem)
def test_error_frame_is_rejected(path: Path) -> None:
    with pytest.raises(MBusDecodeError) as info:
        decode_hex_file(path)
    message = str(info.value)
    assert message and "\n" not in message


def test_application_error_names_the_error() -> None:
    frame = bytes.fromhex((conformance_dir() / "error-frames" / "application_busy.hex").read_text())
    with pytest.raises(MBusDecodeError, match="application error 8: application too busy"):
        decode_frame(frame)
