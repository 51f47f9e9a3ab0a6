"""The simulator's own wireless M-Bus telegram encoder (EN 13757-4 link layer, OMS mode 5).

Written from the standard for the simulated building, independently of the decoder in
`drivers/wmbus/` (which it therefore tests):

    L | C=0x44 SND_NR | M(2, LE) | ID(4, BCD LE) | version | medium | CI=0x7A | ACC | STS |
    CFG(2, LE) | payload

Mode 5: CFG = 0x05 << 8 | blocks << 4; the payload is 2F 2F + records, padded with 2F to whole
16-byte blocks, encrypted with AES-128-CBC, IV = M ‖ A(6) ‖ ACC × 8 (the DLL M and A: a short
TPL header has none of its own). Mode 0: the records in clear, CFG 0.

`stripped()` is the frame as the USB sticks deliver it (no CRCs); `format_a()` adds the link
layer CRCs (CRC-16 poly 0x3D65, init 0, complemented, big-endian) as on air: after the first
10 bytes, then after every 16 bytes, and after the last shorter block.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from drivers.mbus import frames

C_SND_NR = 0x44
CI_SHORT_TPL = 0x7A
BLOCK = 16


def crc_en13757(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x3D65) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc ^ 0xFFFF


def link_address(ident: str, version: int, medium: int) -> bytes:
    return frames.encode_id(ident) + bytes((version, medium))


def stripped(ident: str, manufacturer: str, version: int, medium: int, access: int,
             records: bytes, *, key: bytes | None = None, status: int = 0) -> bytes:
    """One SND_NR telegram, short TPL header, mode 5 when a key is given, without CRCs."""
    man = frames.encode_manufacturer(manufacturer).to_bytes(2, "little")
    address = link_address(ident, version, medium)
    access &= 0xFF
    if key is None:
        cfg, payload = 0x0000, records
    else:
        plain = b"\x2f\x2f" + records
        plain += b"\x2f" * (-len(plain) % BLOCK)
        blocks = len(plain) // BLOCK
        if blocks > 15:
            raise ValueError(f"{len(plain)} bytes of records: mode 5 encrypts 15 blocks at most")
        iv = man + address + bytes((access,)) * 8
        encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        payload = encryptor.update(plain) + encryptor.finalize()
        cfg = 0x0500 | blocks << 4
    body = (bytes((C_SND_NR,)) + man + address
            + bytes((CI_SHORT_TPL, access, status)) + cfg.to_bytes(2, "little") + payload)
    if len(body) > 255:
        raise ValueError("telegram longer than an L field can say")
    return bytes((len(body),)) + body


def format_a(frame: bytes) -> bytes:
    """The stripped frame with its format A block CRCs, as a raw radio receiver hears it."""
    out = bytearray(frame[:10])
    out += crc_en13757(frame[:10]).to_bytes(2, "big")
    for start in range(10, len(frame), BLOCK):
        block = frame[start:start + BLOCK]
        out += block + crc_en13757(block).to_bytes(2, "big")
    return bytes(out)
