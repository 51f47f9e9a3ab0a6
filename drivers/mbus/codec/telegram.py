"""Headers and frames: the fixed and variable data structures, a whole RSP_UD, a hex dump."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from drivers.mbus import units
from drivers.mbus.codec.model import (
    APPLICATION_ERRORS, CI_APPLICATION_ERROR, CI_FIXED, CI_FIXED_MSB, CI_VARIABLE_LONG,
    CI_VARIABLE_LONG_MSB, CI_VARIABLE_NONE, CI_VARIABLE_SHORT, Record, Telegram, Value,
)
from drivers.mbus.codec.records import decode_records_at
from drivers.mbus.codec.values import Cursor, bcd, print_id, scale_value
from drivers.mbus.frames import (
    C_RSP_MASK,
    C_RSP_UD,
    LongFrame,
    MBusDecodeError,
    decode_manufacturer,
    parse_frame,
)


def _fixed_structure(data: bytes, address: int, ci: int) -> Telegram:
    """The old fixed data structure: id, access, status, medium/units, two 4-byte counters."""
    if len(data) != 16:
        raise MBusDecodeError(f"fixed data structure must be 16 bytes, got {len(data)}")
    little = ci == CI_FIXED
    ordered = (lambda b: b) if little else (lambda b: b[::-1])
    ident = print_id(ordered(data[0:4]))
    access, status = data[4], data[5]
    medium_unit = data[6:8] if little else data[6:8][::-1]
    medium_code = ((medium_unit[1] >> 6) << 2) | (medium_unit[0] >> 6)
    unit1 = medium_unit[0] & 0x3F
    unit2 = medium_unit[1] & 0x3F
    binary = bool(status & 0x01)  # status bit 0: counters binary, else BCD
    historic = bool(status & 0x02)  # status bit 1: counters are fixed-date (historic) values
    records = []
    for unit_code, raw in ((unit1, data[8:12]), (unit2, data[12:16])):
        storage = 1 if historic else 0
        if unit_code == units.FIXED_UNIT_HISTORIC:
            unit_code, storage = unit1, 1
        info = units.fixed_unit(unit_code)
        counter = ordered(raw)
        value: Value = int.from_bytes(counter, "little") if binary else bcd(counter)
        if isinstance(value, int):
            value = scale_value(value, info, Fraction(1), Fraction(0))
        # A BCD counter with A-F digits is an error code: it keeps the counter's unit.
        unit = info.unit if isinstance(value, (int, float, str)) else None
        records.append(Record(value, unit, info.quantity, storage=storage, vib=bytes((unit_code,))))
    # The fixed structure carries no manufacturer and no version.
    return Telegram(ident, None, None, units.FIXED_MEDIUM[medium_code], access, status, records,
                    address=address, ci=ci, medium_code=medium_code)


def decode_user_data(ci: int, data: bytes, address: int = 0, base: int = 0) -> Telegram:
    """Decode the application layer: CI field and the bytes after it.

    `base` is the offset of `data` in the frame (7 in a long frame), used in error messages.
    """
    if ci == CI_APPLICATION_ERROR:
        if not data:
            raise MBusDecodeError("meter reports an application error without an error code")
        text = APPLICATION_ERRORS.get(data[0], f"reserved error code {data[0]}")
        raise MBusDecodeError(f"meter reports application error {data[0]}: {text}")
    if ci in (CI_FIXED, CI_FIXED_MSB):
        return _fixed_structure(data, address, ci)
    if ci not in (CI_VARIABLE_LONG, CI_VARIABLE_LONG_MSB, CI_VARIABLE_NONE, CI_VARIABLE_SHORT):
        raise MBusDecodeError(f"unsupported CI field 0x{ci:02X}")
    little = ci != CI_VARIABLE_LONG_MSB
    cur = Cursor(data, base)
    ident = ""
    manufacturer: str | None = None
    version: int | None = None
    medium_code: int | None = None
    access: int | None = None
    status: int | None = None
    signature = 0
    if ci in (CI_VARIABLE_LONG, CI_VARIABLE_LONG_MSB):
        if len(data) < 12:
            raise MBusDecodeError(f"variable data header needs 12 bytes, got {len(data)}")
        id_raw = cur.take(4, "id")
        man_raw = cur.take(2, "manufacturer")
        ident = print_id(id_raw if little else id_raw[::-1])
        manufacturer = decode_manufacturer(int.from_bytes(man_raw, "little" if little else "big"))
        version = cur.byte("version")
        medium_code = cur.byte("medium")
    if ci != CI_VARIABLE_NONE:
        if cur.remaining < 4:
            raise MBusDecodeError(f"short header needs 4 bytes, got {cur.remaining}")
        access = cur.byte("access number")
        status = cur.byte("status")
        signature = int.from_bytes(cur.take(2, "signature"), "little" if little else "big")
    records, more = decode_records_at(cur, little)
    return Telegram(
        id=ident,
        manufacturer=manufacturer,
        version=version,
        medium=None if medium_code is None else units.medium_name(medium_code),
        access_number=access,
        status=status,
        records=records,
        address=address,
        ci=ci,
        medium_code=medium_code,
        signature=signature,
        more_records_follow=more,
    )


def decode_frame(data: bytes) -> Telegram:
    """Decode one complete RSP_UD long frame (68 L L 68 C A CI ... CS 16)."""
    frame = parse_frame(bytes(data))
    if not isinstance(frame, LongFrame):
        raise MBusDecodeError(f"expected an RSP_UD long frame, got {type(frame).__name__}")
    if frame.c & C_RSP_MASK != C_RSP_UD:
        raise MBusDecodeError(f"C field 0x{frame.c:02X} is not RSP_UD")
    return decode_user_data(frame.ci, frame.data, frame.a, base=7)


def decode_hex(text: str) -> Telegram:
    """Decode a frame written as hex, with any whitespace between (or within) the bytes."""
    compact = "".join(text.split())
    try:
        data = bytes.fromhex(compact)
    except ValueError:
        raise MBusDecodeError("not hexadecimal text") from None
    return decode_frame(data)


def decode_hex_file(path: str | Path) -> Telegram:
    return decode_hex(Path(path).read_text(encoding="ascii", errors="replace"))
