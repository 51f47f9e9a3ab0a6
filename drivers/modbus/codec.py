"""Registers <-> engineering values for one point: types, word order, bit, scale and offset.

Modbus registers are 16-bit big-endian words; 32-bit values take two of them and devices disagree
on which comes first, hence `word_order` (big = high word first, the "Modbus standard" ABCD;
little = CDAB). Byte-swapped orders (BADC/DCBA) are rare and not supported.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from agent.sdk.models import Value
from drivers.modbus.config import ModbusPointConfig

_STRUCT = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f"}
_RANGE = {"int16": (-0x8000, 0x7FFF), "uint16": (0, 0xFFFF),
          "int32": (-0x8000_0000, 0x7FFF_FFFF), "uint32": (0, 0xFFFF_FFFF)}
_FLOAT32_MAX = 3.4028234663852886e38


class DecodeError(ValueError):
    """The registers hold no usable value (NaN, infinity, the device's "not available"): the
    point's quality is BAD; the message is the reason shown to the technician."""


def decode_bit(point: ModbusPointConfig, bit: bool) -> bool:
    """A coil or discrete input: already a bool."""
    del point  # bits carry no scaling; kept for a uniform call shape
    return bool(bit)


def decode(point: ModbusPointConfig, words: Sequence[int]) -> Value:
    """Turn the `point.span` registers read for `point` into its engineering value."""
    need = 1 if point.type == "bool" else point.span
    if len(words) < need:  # a short answer must be a refusal, never an IndexError
        raise DecodeError(f"{point.name}: {len(words)} register(s) for {need}")
    raw = words[0] if point.type == "bool" else _unpack(point, words)
    if raw == point.not_available:
        raise DecodeError(f"not available (the device sent {raw})")
    if point.type == "bool":
        return bool(raw >> point.bit & 1) if point.bit is not None else raw != 0
    if point.type == "float32":
        if not math.isfinite(raw):
            raise DecodeError(f"the device sent {'NaN' if math.isnan(raw) else raw} (float32)")
        # float32 carries ~7 significant digits; printing more only shows conversion noise.
        raw = float(f"{raw:.7g}")
    return _scaled(point, raw)


def encode(point: ModbusPointConfig, value: Value) -> bool | list[int]:
    """The coil state or the registers that make `point` read back as `value`.

    Raises ValueError (with the point name) when the value does not fit the register type.
    """
    if point.type == "bool":
        if not isinstance(value, bool) and value not in (0, 1):
            raise ValueError(f"{point.name} is a bool point; write true or false, not {value!r}")
        state = bool(value)
        return state if point.register.table == "coils" else [int(state)]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{point.name} takes a number, not {value!r}")
    raw = (value - point.offset) / point.scale
    if point.type == "float32":
        if not math.isfinite(raw) or abs(raw) > _FLOAT32_MAX:
            raise ValueError(f"{point.name}: {value!r} does not fit a float32 register")
        return _pack(point, raw)
    number = round(raw)
    low, high = _RANGE[point.type]
    if not low <= number <= high:
        raise ValueError(f"{point.name}: {value!r} is register value {number}, outside "
                         f"{point.type} range {low}..{high}")
    return _pack(point, number)


def _unpack(point: ModbusPointConfig, words: Sequence[int]) -> int | float:
    ordered = list(words[: point.span])
    if point.word_order == "little":
        ordered.reverse()
    data = struct.pack(f">{len(ordered)}H", *ordered)
    (raw,) = struct.unpack(f">{_STRUCT[point.type]}", data)
    return raw  # type: ignore[no-any-return]  # struct gives int or float per format


def _pack(point: ModbusPointConfig, raw: int | float) -> list[int]:
    data = struct.pack(f">{_STRUCT[point.type]}", raw)
    words = list(struct.unpack(f">{len(data) // 2}H", data))
    if point.word_order == "little":
        words.reverse()
    return words


def _scaled(point: ModbusPointConfig, raw: int | float) -> int | float:
    if point.scale == 1 and point.offset == 0:
        return raw  # keep counters and states as exact integers
    value = raw * point.scale + point.offset
    if not math.isfinite(value):  # an extreme scale: JSON has no infinity, SenML neither
        raise DecodeError(f"{point.name}: {raw} scaled by {point.scale} is out of range")
    # 1123 * 0.1 is 112.30000000000001 in binary floating point; the register had 4 digits.
    return round(value, 9)
