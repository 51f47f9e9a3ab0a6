"""Telegrams built from the standard's description with `cryptography`'s AES and CMAC, where
no public vector with its key exists (ELL AES-CTR with a key, security mode 7)."""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC


def ctr_encrypt(frame: bytes, key: bytes) -> bytes:
    """Encrypt the ELL payload of a Kamstrup frame stored decrypted (AES-CTR, EN 13757-4 IV)."""
    cc, session = frame[11], frame[13:17]
    iv = frame[2:4] + frame[4:10] + bytes((cc & ~0x12 & 0xFF,)) + session + bytes(3)
    enc = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return frame[:17] + enc.update(frame[17:]) + enc.finalize()


def _cmac(key: bytes, data: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def mode7_telegram(key: bytes, records: bytes, counter: int = 0x1234) -> bytes:
    """DLL + ELL-I + AFL(MCL, MCR, 8-byte MAC) + TPL short header mode 7, per OMS 4 KDF-A.

    No public mode 7 telegram with its key exists in the vectors (all are stored decrypted), so
    this one is built from the standard's description with cryptography's AES and CMAC.
    """
    dll = bytes.fromhex("44C514") + bytes.fromhex("78563412") + bytes((0x30, 0x07))
    ident = dll[3:7]
    mcr = counter.to_bytes(4, "little")
    plain = b"\x2f\x2f" + records
    plain += b"\x2f" * (-len(plain) % 16)
    kenc = _cmac(key, b"\x00" + mcr + ident + b"\x07" * 7)
    kmac = _cmac(key, b"\x01" + mcr + ident + b"\x07" * 7)
    enc = Cipher(algorithms.AES(kenc), modes.CBC(bytes(16))).encryptor()
    cipher = enc.update(plain) + enc.finalize()
    blocks = len(plain) // 16
    cfg = (7 << 8) | (blocks << 4)
    tpl = bytes((0x7A, 0x21, 0x00)) + cfg.to_bytes(2, "little") + bytes((0x10,)) + cipher
    mcl = 0x25
    mac = _cmac(kmac, bytes((mcl,)) + mcr + tpl)[:8]
    afl = bytes((0x90, 15)) + (0x2C00).to_bytes(2, "little") + bytes((mcl,)) + mcr + mac
    ell = bytes((0x8C, 0x20, 0x21))
    body = dll + ell + afl + tpl
    return bytes((len(body),)) + body


def mode5_telegram(key: bytes, records: bytes, tail: bytes = b"", access: int = 0x42) -> bytes:
    """DLL + TPL short header, security mode 5 (AES-CBC, IV = M A ACC x8), then `tail` left in
    plaintext after the encrypted blocks (as partial encryption allows)."""
    dll = bytes.fromhex("44C514") + bytes.fromhex("78563412") + bytes((0x30, 0x07))
    plain = b"\x2f\x2f" + records
    plain += b"\x2f" * (-len(plain) % 16)
    iv = dll[1:3] + dll[3:9] + bytes((access,)) * 8
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    cipher = enc.update(plain) + enc.finalize()
    cfg = (5 << 8) | ((len(plain) // 16) << 4)
    body = dll + bytes((0x7A, access, 0x00)) + cfg.to_bytes(2, "little") + cipher + tail
    return bytes((len(body),)) + body
