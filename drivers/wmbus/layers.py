"""The layers between the link header and the data records: ELL, AFL and TPL (EN 13757-4/-7).

Each parser reads from a `Reader` that refuses to pass the end of the telegram (`Truncated`),
so every field is bounded by the frame length.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.wmbus import crypto
from drivers.wmbus.crc import crc16
from drivers.wmbus.errors import (
    CrcError,
    KeyMissing,
    KeyWrong,
    Malformed,
    Truncated,
    Unsupported,
)

CI_ELL = {0x8C: 2, 0x8D: 8, 0x8E: 10, 0x8F: 16}  # CI -> header bytes before any payload CRC
CI_AFL = 0x90
CI_TPL_LONG = 0x72
CI_TPL_SHORT = 0x7A
CI_TPL_NONE = 0x78
CI_COMPACT = 0x79  # compact frame, no header (format signature + full-frame CRC)
CI_COMPACT_SHORT = 0x7B  # compact frame, short header
CI_COMPACT_LONG = 0x73  # compact frame, long header (wired M-Bus used 0x73 for fixed data)
# The header each compact CI carries, as the TPL CI of the full frame with that header.
COMPACT_HEADER = {CI_COMPACT: 0x78, CI_COMPACT_SHORT: 0x7A, CI_COMPACT_LONG: 0x72}
MANUFACTURER_CI = range(0xA0, 0xB8)

MODE_NONE, MODE_AES_CBC_IV, MODE_AES_CBC_KDF = 0, 5, 7


class Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, count: int, what: str) -> bytes:
        if count > self.remaining:
            raise Truncated(f"telegram ends in {what} at byte {self.pos} ({count} needed, "
                            f"{self.remaining} left)")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk


@dataclass(frozen=True, slots=True)
class Ell:
    ci: int
    cc: int
    access_number: int
    encrypted: bool  # the payload was AES-CTR encrypted on air
    decrypted: bool  # ... and we decrypted it (False: it came stored in plaintext)


def read_ell(r: Reader, ci: int, manufacturer: bytes, address: bytes,
             key: bytes | None, stored_plaintext: bool) -> tuple[Ell, bytes]:
    """Read an ELL after its CI; returns the ELL and the rest of the telegram, decrypted."""
    cc = r.byte("ELL communication control")
    acc = r.byte("ELL access number")
    if ci in (0x8E, 0x8F):
        r.take(8, "ELL second address")  # M2 A2: the original sender behind a repeater
    if ci in (0x8C, 0x8E):
        return Ell(ci, cc, acc, False, False), r.rest()
    session = r.take(4, "ELL session number")
    enc = session[3] >> 5  # SN bits 31-29: encryption of the ELL payload
    payload = r.rest()
    if len(payload) < 2:
        raise Truncated("ELL payload CRC missing")
    if enc == 0:
        plain = payload
        ell = Ell(ci, cc, acc, False, False)
    elif enc != 1:
        raise Unsupported(f"ELL encryption {enc} (only 1, AES-128-CTR, is defined)")
    elif stored_plaintext and _payload_crc_ok(payload):
        plain = payload  # a tool stored it decrypted; its CRC says it is plaintext
        ell = Ell(ci, cc, acc, True, False)
    elif key is None:
        raise KeyMissing("ELL payload is AES-CTR encrypted and no key is known for this meter")
    else:
        plain = crypto.ctr_decrypt(key, crypto.ell_iv(manufacturer, address, cc, session), payload)
        if not _payload_crc_ok(plain):
            raise KeyWrong("ELL payload CRC fails after AES-CTR decryption: wrong key")
        ell = Ell(ci, cc, acc, True, True)
    if not _payload_crc_ok(plain):
        raise CrcError("ELL payload CRC does not match")
    return ell, plain[2:]


def _payload_crc_ok(payload: bytes) -> bool:
    return crc16(payload[2:]) == int.from_bytes(payload[:2], "little")


@dataclass(frozen=True, slots=True)
class Afl:
    fcl: int
    mcl: int | None
    counter: bytes | None  # MCR, 4 bytes as sent
    mac: bytes | None
    length_field: bytes | None  # ML, 2 bytes as sent

    @property
    def more_fragments(self) -> bool:
        return bool(self.fcl & 0x4000)


_MAC_LENGTH = {4: 4, 5: 8, 6: 12, 7: 16}  # MCL authentication type -> AES-CMAC bytes kept


def read_afl(r: Reader) -> Afl:
    length = r.byte("AFL length")
    body = Reader(r.take(length, "AFL"))
    fcl = int.from_bytes(body.take(2, "AFL fragmentation control"), "little")
    mcl = body.byte("AFL message control") if fcl & 0x2000 else None
    if fcl & 0x0200:
        body.take(2, "AFL key information")
    counter = body.take(4, "AFL message counter") if fcl & 0x0800 else None
    mac = None
    if fcl & 0x0400:
        auth = (mcl or 0) & 0x0F
        if auth not in _MAC_LENGTH:
            raise Unsupported(f"AFL authentication type {auth}")
        mac = body.take(_MAC_LENGTH[auth], "AFL MAC")
    ml = body.take(2, "AFL message length") if fcl & 0x1000 else None
    afl = Afl(fcl, mcl, counter, mac, ml)
    if afl.more_fragments or fcl & 0xFF not in (0, 1):
        raise Unsupported("fragmented telegram (AFL more fragments): reassembly not supported")
    return afl


@dataclass(frozen=True, slots=True)
class Tpl:
    ci: int
    long_header: bytes | None  # ID4 M2 V T as sent, for the long header
    access_number: int | None
    status: int | None
    config: int
    config_ext: int | None

    @property
    def mode(self) -> int:
        return (self.config >> 8) & 0x1F

    @property
    def encrypted_blocks(self) -> int:
        return (self.config >> 4) & 0x0F


def read_tpl(r: Reader, ci: int) -> Tpl:
    long_header = r.take(8, "TPL long header") if ci == CI_TPL_LONG else None
    if ci in (CI_TPL_NONE, CI_COMPACT):
        return Tpl(ci, None, None, None, 0, None)
    acc = r.byte("TPL access number")
    sts = r.byte("TPL status")
    config = int.from_bytes(r.take(2, "TPL configuration"), "little")
    mode = (config >> 8) & 0x1F
    ext = r.byte("TPL configuration extension") if mode == MODE_AES_CBC_KDF else None
    return Tpl(ci, long_header, acc, sts, config, ext)


def decrypt_tpl(tpl: Tpl, payload: bytes, key: bytes, iv_m: bytes, iv_a: bytes,
                ident: bytes, afl: Afl | None, mac_input: bytes) -> bytes:
    """Decrypt a TPL payload of mode 5 or 7 and check the 0x2F2F marker (and the MAC)."""
    blocks = tpl.encrypted_blocks
    size = 16 * blocks
    if len(payload) < size:
        raise Truncated(f"{blocks} encrypted blocks announced, {len(payload)} bytes present")
    if tpl.mode == MODE_AES_CBC_IV:
        assert tpl.access_number is not None  # mode 5 only comes with a short or long header
        plain = crypto.cbc_decrypt(key, crypto.mode5_iv(iv_m, iv_a, tpl.access_number),
                                   payload[:size])
    else:
        if afl is None or afl.counter is None:
            raise Malformed("security mode 7 without an AFL message counter")
        kdf = ((tpl.config_ext or 0) >> 4) & 0x03
        if kdf != 1:
            raise Unsupported(f"security mode 7 key derivation {kdf} (only 1, OMS KDF-A)")
        if afl.mac is not None:
            kmac = crypto.kdf_a(key, 0x01, afl.counter, ident)
            if crypto.cmac(kmac, mac_input)[: len(afl.mac)] != afl.mac:
                raise KeyWrong("AFL MAC does not match: wrong key or altered telegram")
        kenc = crypto.kdf_a(key, 0x00, afl.counter, ident)
        plain = crypto.cbc_decrypt(kenc, bytes(16), payload[:size])
    if plain[:2] != b"\x2f\x2f":
        raise KeyWrong(f"decryption (mode {tpl.mode}) does not start with 2F2F: wrong key")
    return plain + payload[size:]
