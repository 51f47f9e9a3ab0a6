"""One check of a value before it is written to a point, the same for every driver and caller.

The `point.write` command, `batigate write` and each driver's `write()` call `check_write` before
anything reaches the bus, so a value is refused for the same reason, in the same words, wherever
it comes from. It reads only what every point has (`writable`, `min`, `max`) and asks the point
whether it holds a bool (`PointConfig.is_boolean()`, which a driver's point model overrides:
Modbus coils and `type: bool`), so it knows nothing of any protocol.

The message of a refusal is English (command answers, `evt` and logs are machine output); the
CLI shows `refusal.translated()` in the technician's language.
"""

from __future__ import annotations

import math

from agent.i18n import t
from agent.sdk.config import DeviceConfig, PointConfig
from agent.sdk.errors import DriverError, PointNotWritable


class WriteRefused(DriverError):
    """A write refused before it was sent; `translated()` says why in the language in force."""

    def __init__(self, key: str, **values: object) -> None:
        super().__init__(t(key, "en", **values))
        self.key, self.values = key, values

    def translated(self) -> str:
        return t(self.key, **self.values)


class NotWritable(WriteRefused, PointNotWritable):
    """The point is not declared `writable: true`."""


class ValueRefused(WriteRefused):
    """The value does not fit the point: a number for a bool, a bool for a number, not finite,
    outside `min`/`max`."""


def check_write(point: PointConfig, value: object, device: DeviceConfig | None = None) -> None:
    """Raise `NotWritable` or `ValueRefused` unless `value` may be written to `point`.

    `device`, when given, names the point as `device/point` in the message."""
    where = f"{device.id}/{point.name}" if device is not None else point.name
    if not point.writable:
        raise NotWritable("write.not_writable", point=where)
    if point.is_boolean():
        if not isinstance(value, bool):
            raise ValueRefused("write.want_bool", point=where, value=value)
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueRefused("write.want_number", point=where, value=value)
    if not math.isfinite(value):
        raise ValueRefused("write.not_finite", point=where, value=value)
    if point.min is not None and value < point.min:
        raise ValueRefused("write.below_min", value=value, limit=_plain(point.min), point=where)
    if point.max is not None and value > point.max:
        raise ValueRefused("write.above_max", value=value, limit=_plain(point.max), point=where)


def _plain(limit: float) -> str:
    """250.0 -> 250 (the config said 250), 0.5 stays 0.5."""
    return f"{limit:g}"
