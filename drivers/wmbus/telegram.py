"""Decode one wireless M-Bus / OMS telegram (EN 13757-4, -3, -7; OMS 4) into records.

    frame -> link layer (L C M A, formats A/B with CRCs, or stripped as sticks deliver it)
          -> ELL (CI 0x8C-0x8F, AES-CTR)  -> AFL (CI 0x90, message counter, MAC)
          -> TPL (CI 0x7A short, 0x72 long, 0x78 none; security modes 0, 5, 7)
          -> data records through the wired decoder (drivers/mbus/codec.decode_records)

Manufacturer-specific CIs (0xA0-0xB7) stay raw in `manufacturer_data`; compact frames (CI 0x79,
0x7B, 0x73: Kamstrup, Engelmann) need a `CompactFormats` cache that learnt the format from a
full frame. Every refusal is a
`TelegramError` subclass; a telegram that decodes has verified checksums and, if encrypted,
a verified decryption (0x2F2F, MAC or ELL payload CRC).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from drivers.mbus import codec
from drivers.mbus import units as mbus_units
from drivers.mbus.frames import MBusDecodeError, decode_manufacturer
from drivers.wmbus import crc, layers, mfct
from drivers.wmbus.compact import CompactFormats
from drivers.wmbus.errors import (
    KeyMissing,
    Malformed,
    SenderHeader,
    TelegramError,
    Truncated,
    Unsupported,
)
from drivers.wmbus.keys import KeyStore
from drivers.wmbus.wired import decode_wired

MAX_FRAME = 512  # a wM-Bus frame is at most 256 bytes plus CRCs; anything longer is refused
FRAME_FORMATS = ("auto", "stripped", "a", "b")

__all__ = ["FRAME_FORMATS", "Encryption", "Telegram", "decode_telegram", "telegram_to_json"]


@dataclass(frozen=True, slots=True)
class Encryption:
    mode: int  # TPL security mode (0 none, 5, 7 ...)
    decrypted: bool  # True when this decoder decrypted the payload (TPL or ELL) with a key
    ell: bool = False  # the ELL payload was AES-CTR encrypted on air


@dataclass(frozen=True, slots=True)
class Telegram:
    id: str  # 8 digits, as printed on the meter
    manufacturer: str  # 3 letters
    version: int
    medium: str
    medium_code: int
    access_number: int | None
    status: int | None
    encryption: Encryption
    records: list[codec.Record] = field(default_factory=list)
    meter_time: datetime | None = None
    manufacturer_data: bytes | None = None
    c_field: int = 0x44
    ci: int = 0
    link_id: str = ""  # the DLL address when a long TPL header names another meter
    # Bytes after the verified (decrypted) blocks that form no data record, left out of
    # `records` (e.g. a CRC a logger kept): a counted oddity, not a refusal.
    unparsed_tail: bytes = b""

    def address_key(self) -> tuple[str, str, int, int]:
        """The meter's identity, for de-duplication and device lookup."""
        return (self.manufacturer, self.id, self.version, self.medium_code)


def _ident(raw: bytes) -> str:
    return f"{int.from_bytes(raw, 'little'):08X}"


def _header(man: bytes, address: bytes) -> SenderHeader:
    return SenderHeader(
        id=_ident(address[:4]),
        manufacturer=decode_manufacturer(int.from_bytes(man, "little")),
        version=address[4],
        medium_code=address[5],
        medium=mbus_units.medium_name(address[5]),
    )


def link_frame(frame: bytes, frame_format: str) -> bytes:
    """The frame without DLL CRCs, L counting the bytes after it."""
    if frame_format not in FRAME_FORMATS:
        raise ValueError(f"frame_format must be one of {FRAME_FORMATS}")
    if not frame:
        raise Truncated("empty frame")
    total = frame[0] + 1
    a_length = crc.format_a_length(frame[0])
    if frame_format == "a" or (frame_format == "auto" and len(frame) == a_length != total):
        return crc.strip_format_a(frame)
    if frame_format == "b" or (frame_format == "auto" and len(frame) == total
                               and crc.format_b_valid(frame)):
        return crc.strip_format_b(frame)
    if len(frame) < total:
        raise Truncated(f"L field says {total} bytes, {len(frame)} received")
    if len(frame) > total:
        raise Malformed(f"L field says {total} bytes, {len(frame)} received")
    return frame


def decode_telegram(frame: bytes, keys: KeyStore | None = None, *, frame_format: str = "auto",
                    compact: CompactFormats | None = None,
                    stored_plaintext: bool = False) -> Telegram:
    """Decode one telegram; raises a `TelegramError` subclass, never returns garbage.

    `compact`: the receiver's cache of Kamstrup format signatures (learns from full frames).
    `stored_plaintext`: the telegram was saved by a tool after decryption (logs, test vectors):
    accept an encrypted-marked payload without a key when it already shows 0x2F2F. Never set
    for telegrams from the air.
    """
    frame = bytes(frame)
    if len(frame) > MAX_FRAME:
        raise Malformed(f"{len(frame)} bytes, longer than any wM-Bus frame")
    if len(frame) >= 4 and frame[0] == 0x68 and frame[3] == 0x68 and frame[1] == frame[2]:
        return _from_wired(decode_wired(frame))
    body = link_frame(frame, frame_format)
    if len(body) < 11:
        raise Truncated(f"{len(body)} bytes, a link header and CI need 11")
    man, address = body[2:4], body[4:10]
    header = _header(man, address)
    try:
        try:
            return _decode_layers(body, header, keys, compact, stored_plaintext)
        except (Malformed, MBusDecodeError):
            trimmed = _without_last_block_crc(body)
            if trimmed is None:
                raise
            return _decode_layers(trimmed, header, keys, compact, stored_plaintext)
    except TelegramError as exc:
        if exc.header is None:
            exc.header = header
        raise
    except MBusDecodeError as exc:
        raise Malformed(f"data records: {exc}", header) from None


def _without_last_block_crc(body: bytes) -> bytes | None:
    """A frame stored with its CRCs removed but the last format A block's CRC left in (as
    some logs keep it): the body without those 2 bytes if they are that CRC, else None.
    Only tried after a decode failed, and only on a CRC that checks, so never a guess.
    """
    end = len(body) - 2
    if end <= 10:
        return None
    start = 10 + 16 * ((end - 10 - 1) // 16)
    if crc.crc16(body[start:end]) != int.from_bytes(body[end:], "big"):
        return None
    return bytes((end - 1,)) + body[1:end]


def _decode_layers(body: bytes, header: SenderHeader, keys: KeyStore | None,
                   compact: CompactFormats | None, stored_plaintext: bool) -> Telegram:
    man, address = body[2:4], body[4:10]
    key = keys.lookup(header.id, header.manufacturer) if keys is not None else None
    r = layers.Reader(body, 10)
    ci = r.byte("CI")
    ell = None
    if ci in layers.CI_ELL:
        ell, rest = layers.read_ell(r, ci, man, address, key, stored_plaintext)
        r = layers.Reader(rest)
        ci = r.byte("CI after ELL")
    afl = None
    if ci == layers.CI_AFL:
        afl = layers.read_afl(r)
        ci = r.byte("CI after AFL")
    ell_enc = Encryption(0, bool(ell and ell.decrypted), bool(ell and ell.encrypted))
    base = {
        "id": header.id, "manufacturer": header.manufacturer, "version": header.version,
        "medium": header.medium, "medium_code": header.medium_code, "c_field": body[1],
        "ci": ci, "link_id": header.id, "status": None,
        "access_number": ell.access_number if ell else None,
    }
    if ci in layers.MANUFACTURER_CI:
        # The maker's own layout (Diehl PRIOS, Techem, Apator ...): header and raw payload only.
        payload = r.rest()
        return Telegram(**base, encryption=ell_enc, manufacturer_data=payload,
                        records=mfct.decode(header.manufacturer, header.version, "CI", payload))
    compact_ci = ci in layers.COMPACT_HEADER
    if compact_ci:
        ci = layers.COMPACT_HEADER[ci]
    elif ci not in (layers.CI_TPL_LONG, layers.CI_TPL_SHORT, layers.CI_TPL_NONE):
        raise Unsupported(f"CI field 0x{ci:02X} not decoded")
    tpl_start = r.pos
    tpl = layers.read_tpl(r, ci)
    payload = r.rest()
    iv_m, iv_a, ident = man, address, address[:4]
    if tpl.long_header is not None:
        iv_a, iv_m, ident = tpl.long_header[:4] + tpl.long_header[6:8], tpl.long_header[4:6], \
            tpl.long_header[:4]
    encryption = ell_enc
    if tpl.mode in (layers.MODE_AES_CBC_IV, layers.MODE_AES_CBC_KDF) and tpl.encrypted_blocks == 0:
        encryption = Encryption(tpl.mode, False, ell_enc.ell)  # 0 blocks: nothing is encrypted
    elif tpl.mode in (layers.MODE_AES_CBC_IV, layers.MODE_AES_CBC_KDF):
        tpl_key = key
        if tpl_key is None:
            if not (stored_plaintext and payload[:2] == b"\x2f\x2f"):
                raise KeyMissing(f"encrypted (security mode {tpl.mode}) and no key is known "
                                 f"for meter {header.id}")
            encryption = Encryption(tpl.mode, False, ell_enc.ell)
        else:
            mac_input = b""
            if afl is not None and afl.mac is not None:
                mac_input = (bytes((afl.mcl or 0,)) + (afl.counter or b"") +
                             (afl.length_field or b"") + r.data[tpl_start - 1 :])
            payload = layers.decrypt_tpl(tpl, payload, tpl_key, iv_m, iv_a, ident, afl, mac_input)
            encryption = Encryption(tpl.mode, True, ell_enc.ell)
    elif tpl.mode != 0:
        raise Unsupported(f"security mode {tpl.mode} not supported (only 0, 5 and 7)")
    if compact_ci:
        if compact is None:
            raise Unsupported("compact frame: needs the format learnt from a full frame first")
        if encryption.mode:
            payload = payload[2:]  # the 2F2F that vouched for the decryption
        payload = compact.expand(header, payload)
        compact = None  # nothing new to learn from a rebuilt frame
    verified = 0
    if encryption.mode in (layers.MODE_AES_CBC_IV, layers.MODE_AES_CBC_KDF) and not compact_ci:
        verified = 16 * tpl.encrypted_blocks
    return _finish(base, tpl, payload, encryption, compact=compact, header=header,
                   verified=verified)


def _records(data: bytes, verified: int) -> tuple[list[codec.Record], bytes]:
    """The data records, and the unparsed tail when only the plaintext after the `verified`
    (decrypted, 2F2F-checked) bytes fails to parse: those bytes are outside the encryption, so
    nothing vouches for them, and dropping them loses no verified value. Anything else that
    fails to parse is still refused."""
    try:
        return codec.decode_records(data)[0], b""
    except MBusDecodeError:
        if not 0 < verified < len(data):
            raise
        # If the verified part itself is broken, this raises and the telegram is refused.
        return codec.decode_records(data[:verified])[0], data[verified:]


def _finish(base: dict[str, Any], tpl: layers.Tpl, data: bytes, encryption: Encryption,
            compact: CompactFormats | None, header: SenderHeader,
            verified: int = 0) -> Telegram:
    if tpl.long_header is not None:
        lh = tpl.long_header
        base.update(id=_ident(lh[:4]),
                    manufacturer=decode_manufacturer(int.from_bytes(lh[4:6], "little")),
                    version=lh[6], medium_code=lh[7], medium=mbus_units.medium_name(lh[7]))
    if tpl.access_number is not None:
        base.update(access_number=tpl.access_number, status=tpl.status)
    records, tail = _records(data, verified)
    if compact is not None:
        compact.learn(header, records)
    raw = _mfct_data(records)
    if raw:
        # A maker's documented layout after DIF 0x0F (drivers/wmbus/mfct/), else kept raw only.
        records = records + mfct.decode(base["manufacturer"], base["version"], "0F", raw)
    return Telegram(**base, encryption=encryption, records=records,
                    meter_time=meter_time(records), manufacturer_data=raw,
                    unparsed_tail=tail)


def _from_wired(wired: codec.Telegram) -> Telegram:
    """A relayed wired telegram in the radio shape (no encryption, no link-layer id)."""
    assert wired.manufacturer is not None and wired.version is not None  # decode_wired checked
    assert wired.medium_code is not None
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
        manufacturer_data=_mfct_data(wired.records),
        c_field=0x08,
        ci=wired.ci,
    )


def meter_time(records: list[codec.Record]) -> datetime | None:
    for rec in records:
        if (rec.quantity == "date_time" and rec.storage == 0 and rec.subunit == 0
                and rec.tariff == 0 and isinstance(rec.value, str)):
            try:
                return datetime.fromisoformat(rec.value)
            except ValueError:
                return None
    return None


def _mfct_data(records: list[codec.Record]) -> bytes | None:
    for rec in records:
        if rec.quantity == "manufacturer_data" and isinstance(rec.value, str):
            return bytes.fromhex(rec.value.replace(" ", ""))
    return None


def telegram_to_json(t: Telegram) -> dict[str, Any]:
    return {
        **codec.header_to_json(t),
        "encryption": {"mode": t.encryption.mode, "decrypted": t.encryption.decrypted},
        "records": [codec.record_to_json(r) for r in t.records],
        "meter_time": t.meter_time.isoformat() if t.meter_time else None,
        "manufacturer_data": t.manufacturer_data.hex().upper() if t.manufacturer_data else None,
        "unparsed_tail": t.unparsed_tail.hex().upper() if t.unparsed_tail else None,
    }
