"""A wired M-Bus long frame (68 L L 68 ...) handed over where a radio telegram was expected.

Some radio converters and logs relay wired frames; the wired codec decodes them and the result
is returned in the radio `Telegram` shape (no encryption, no link-layer id).
"""

from __future__ import annotations

from drivers.mbus import codec
from drivers.mbus.frames import MBusDecodeError
from drivers.wmbus.errors import Malformed, Unsupported


def decode_wired(frame: bytes):  # -> telegram.Telegram (imported late: no import cycle)
    from drivers.wmbus.telegram import Encryption, Telegram, meter_time  # noqa: PLC0415

    try:
        wired = codec.decode_frame(frame)
    except MBusDecodeError as exc:
        raise Malformed(f"wired M-Bus frame: {exc}") from None
    if wired.manufacturer is None or wired.version is None or wired.medium_code is None:
        raise Unsupported("wired frame without a long header (fixed or no-header structure)")
    mfct = next((r.value for r in wired.records if r.quantity == "manufacturer_data"), None)
    return Telegram(
        id=f"{int(wired.id, 16):08X}" if wired.id else "",
        manufacturer=wired.manufacturer,
        version=wired.version,
        medium=wired.medium or "",
        medium_code=wired.medium_code,
        access_number=wired.access_number,
        status=wired.status,
        encryption=Encryption(0, False),
        records=wired.records,
        meter_time=meter_time(wired.records),
        manufacturer_data=bytes.fromhex(mfct.replace(" ", "")) if isinstance(mfct, str) else None,
        c_field=0x08,
        ci=wired.ci,
    )
