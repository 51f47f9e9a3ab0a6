"""Device profiles: a device entry with `profile:` gets the profile's points and poll period.

The profile files themselves arrive with the equipment-profiles work; until then an unknown profile
is a config error, so nothing is silently ignored.
"""

from __future__ import annotations

from typing import Any


def apply(entry: dict[str, Any]) -> dict[str, Any]:
    name = entry.get("profile")
    if name is None:
        return entry
    raise ValueError(f"unknown profile {name!r}; no profiles are installed")
