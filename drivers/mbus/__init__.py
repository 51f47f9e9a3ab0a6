"""Wired M-Bus (EN 13757-2/-3): link-layer frames, telegram codec and a slave simulator."""

from drivers.mbus.codec import Record, Telegram, decode_frame, telegram_to_json
from drivers.mbus.frames import MBusDecodeError

__all__ = ["MBusDecodeError", "Record", "Telegram", "decode_frame", "telegram_to_json"]
