"""Wireless M-Bus / OMS (EN 13757-4/-7): telegram decoding, decryption and per-meter keys."""

from drivers.wmbus.compact import CompactFormats
from drivers.wmbus.errors import (
    CrcError,
    KeyMissing,
    KeyWrong,
    Malformed,
    SenderHeader,
    TelegramError,
    Truncated,
    Unsupported,
)
from drivers.wmbus.keys import KeyFileError, KeyStore
from drivers.wmbus.telegram import Encryption, Telegram, decode_telegram, telegram_to_json

__all__ = [
    "CompactFormats", "CrcError", "Encryption", "KeyFileError", "KeyMissing", "KeyStore",
    "KeyWrong", "Malformed", "SenderHeader", "Telegram", "TelegramError", "Truncated",
    "Unsupported", "decode_telegram", "telegram_to_json",
]
