"""The AES operations of EN 13757-4/-7 and OMS 4, on `cryptography`'s primitives.

- TPL security mode 5: AES-128-CBC, IV = M(2) A(6) ACC x 8.
- TPL security mode 7: AES-128-CBC with a zero IV under an ephemeral key from OMS KDF-A:
  K = AES-CMAC(Kmaster, D || MCR(4) || ID(4) || 0x07 x 7), D = 0x00 for Kenc, 0x01 for Kmac.
- ELL (CI 0x8D/0x8F): AES-128-CTR, IV = M(2) A(6) CC SN(4) FN(2) BC(1).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

BLOCK = 16


def cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """Decrypt whole blocks (the caller passes a multiple of 16 bytes)."""
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def ctr_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def cmac(key: bytes, data: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def kdf_a(master: bytes, direction: int, counter: bytes, ident: bytes) -> bytes:
    """OMS KDF-A ephemeral key: direction 0x00 Kenc (meter to other), 0x01 Kmac."""
    return cmac(master, bytes((direction,)) + counter + ident + b"\x07" * 7)


def mode5_iv(manufacturer: bytes, address: bytes, access_number: int) -> bytes:
    return manufacturer + address + bytes((access_number,)) * 8


def ell_iv(manufacturer: bytes, address: bytes, cc: int, session: bytes) -> bytes:
    # The hop-count (0x10) and repeated-access (0x02) bits may change on the way: not in the IV.
    return manufacturer + address + bytes((cc & ~0x12 & 0xFF,)) + session + b"\x00\x00\x00"
