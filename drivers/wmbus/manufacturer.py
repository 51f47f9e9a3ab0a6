"""Manufacturer-specific CI fields (0xA0-0xB7): a decoder where one exists, raw otherwise."""

from __future__ import annotations

from typing import Any

from drivers.wmbus import izar


def decode_manufacturer_ci(body: bytes, ci: int, payload: bytes, base: dict[str, Any],
                           encryption: Any):
    from drivers.wmbus.telegram import Telegram  # noqa: PLC0415  (no import cycle)

    records = []
    if izar.handles(base["manufacturer"], ci):
        records = izar.decode(body, base)
    return Telegram(**base, encryption=encryption, records=records, manufacturer_data=payload)
