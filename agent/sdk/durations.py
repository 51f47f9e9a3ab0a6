"""Durations as technicians write them: `500ms`, `30s`, `5m`, `1h`, `2d` (seconds as float)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

from agent.i18n import t

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d)\s*$")


def parse_duration(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(t("config.duration"))  # noqa: TRY004 - pydantic wants ValueError
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _PATTERN.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(t("config.not_duration", value=value))
    if seconds <= 0:
        raise ValueError(t("config.duration_zero"))
    return seconds


def format_duration(seconds: float) -> str:
    for suffix, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{suffix}"
    return f"{round(seconds * 1000)}ms"


Duration = Annotated[float, BeforeValidator(parse_duration)]
