"""A wired M-Bus long frame (68 L L 68 ...) handed over where a radio telegram was expected.

Some radio converters and logs relay wired frames; the wired codec decodes them, and
`telegram.py` gives the result the radio `Telegram` shape (no encryption, no link-layer id).
"""

from __future__ import annotations

from drivers.mbus import codec
from drivers.mbus.frames import MBusDecodeError
from drivers.wmbus.errors import Malformed, Unsupported


def decode_wired(frame: bytes) -> codec.Telegram:
    """The wired telegram, refused unless it has the long header a radio telegram carries."""
    try:
        wired = codec.decode_frame(frame)
    except MBusDecodeError as exc:
        raise Malformed(f"wired M-Bus frame: {exc}") from None
    if wired.manufacturer is None or wired.version is None or wired.medium_code is None:
        raise Unsupported("wired frame without a long header (fixed or no-header structure)")
    return wired
