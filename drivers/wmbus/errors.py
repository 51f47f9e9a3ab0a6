"""Why a wireless M-Bus telegram was refused: one exception class per outcome a receiver counts.

Every refusal is a `TelegramError` with a one-line message. When the link-layer header could be
read before the failure (a meter whose key is unknown, say), `header` names the sender, so a
scan can still list it and a counter can say which meter is undecryptable.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SenderHeader:
    """Who sent it, as far as the link layer (or the long TPL header) says."""

    id: str
    manufacturer: str
    version: int
    medium_code: int
    medium: str


class TelegramError(ValueError):
    """Base of every decode refusal; str(error) is one line."""

    reason = "malformed"

    def __init__(self, message: str, header: SenderHeader | None = None) -> None:
        super().__init__(message)
        self.header = header


class CrcError(TelegramError):
    """A data link layer (or ELL payload) CRC does not match: the bits were damaged on air."""

    reason = "bad_crc"


class Malformed(TelegramError):
    """The bytes do not form a telegram by the standard."""

    reason = "malformed"


class Truncated(Malformed):
    """The telegram ends before a field its header announces."""

    reason = "truncated"


class KeyMissing(TelegramError):
    """The payload is encrypted and no key is known for this meter."""

    reason = "key_missing"


class KeyWrong(TelegramError):
    """A key is known but decryption did not give 0x2F2F (or the MAC/payload CRC failed)."""

    reason = "key_wrong"


class Unsupported(TelegramError):
    """Valid by the standard but not decoded here (DES, TLS, an unknown CI, ...)."""

    reason = "unsupported"
