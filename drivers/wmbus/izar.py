"""Diehl IZAR / PRIOS radio telegrams (manufacturer CI 0xA0-0xA3). Placeholder until decoded."""

from __future__ import annotations

from typing import Any


def handles(manufacturer: str, ci: int) -> bool:
    return False


def decode(body: bytes, base: dict[str, Any]) -> list:
    return []
