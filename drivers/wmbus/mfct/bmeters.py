"""B METERS (manufacturer code BMT) HYDRODIGIT water meter: the manufacturer data after DIF 0x0F.

Source: B METERS, "HYDRODIGIT Digital Single Jet water meter, User Manual v1.4.3", section
"Telegram reading (direction: meter -> other)" (pp. 12-15), public on the maker's and manual
sites. The telegram is standard (0C 13 volume, 04 6D date/time) up to DIF 0x0F; after it:

    MS code (1 byte), one bit per optional field, the fields in this order:
      bit 0  battery (1 byte)             -- the manual calls it "voltage" on p.12 and
                                             "percentage" on p.15: units unclear, not decoded
      bit 1  reverse flow (4 bytes)       -- binary ("HEX"), litres
      bit 2  fraud date (3 bytes)         -- dd mm yy; the month byte's high nibble is the fraud
                                             type (bit 6 reverse flow, bit 5 overflow), so the
                                             fields are read as binary numbers, not BCD
      bit 3  water leak date (3 bytes)    -- dd mm yy, 00 00 00 if it never happened
      bit 4  burst date (3 bytes)         -- dd mm yy, 00 00 00 if it never happened
      bit 5  value at memory day 1  \
      bit 6  value at memory day 2   }    -- sized on a page of the manual not available here:
      bit 7  historic (monthly values)/      decoding stops there, the rest stays raw

Registered for generation (version) 0x17, the one the manual's OMS v4 frame names. The file's
hydrodigit vectors are generations 0x13 and 0x15, whose MS code bits do NOT follow this table
(their bit 2 announces 4 bytes, not a 3-byte date): those generations stay raw.
"""

from __future__ import annotations

from drivers.mbus.codec import Record
from drivers.wmbus import mfct

NAME = "bmeters_hydrodigit"
TAG = f"mfct:{NAME}"
SOURCE = "B METERS HYDRODIGIT User Manual v1.4.3, 'Telegram reading', pp. 12-15"
_DATES = ((2, "fraud_date"), (3, "water_leak_date"), (4, "burst_date"))


def _date(raw: bytes) -> str | None:
    """dd mm yy, read as binary numbers: the month shares its byte with the fraud-type flags in
    the high nibble, so it cannot be BCD (months 10-12 would need that nibble). 00 00 00: never.
    """
    if raw == b"\x00\x00\x00":
        return None
    day, month, year = raw[0], raw[1] & 0x0F, raw[2]
    if not (1 <= day <= 31 and 1 <= month <= 12 and year <= 99):
        return None
    return f"{2000 + year:04d}-{month:02d}-{day:02d}"


def decode(data: bytes) -> list[Record]:
    if not data:
        return []
    code, pos, out = data[0], 1, []
    if code & 0x01:
        pos += 1  # battery: units contradictory in the manual, skipped
    if code & 0x02:
        if len(data) < pos + 4:
            return out
        litres = int.from_bytes(data[pos : pos + 4], "little")
        out.append(Record(litres / 1000, "m3", "volume",
                          modifiers=("accumulation_if_negative", TAG)))
        pos += 4
    for bit, name in _DATES:
        if code & (1 << bit):
            if len(data) < pos + 3:
                return out
            raw = data[pos : pos + 3]
            out.append(Record(_date(raw), None, name, modifiers=(TAG,)))
            if bit == 2:
                kind = ("reverse_flow" if raw[1] & 0x40 else "") + \
                    (" overflow" if raw[1] & 0x20 else "")
                out.append(Record(kind.strip() or None, None, "fraud_type", modifiers=(TAG,)))
            pos += 3
    return out


mfct.register("BMT", (0x17,), "0F", mfct.Registration(NAME, SOURCE, decode))
