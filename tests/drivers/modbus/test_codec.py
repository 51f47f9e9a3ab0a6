"""Registers <-> values: every type, both word orders, bits, scale and offset, write encoding."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus import codec
from drivers.modbus.config import ModbusPointConfig


def point(**fields: Any) -> ModbusPointConfig:
    return ModbusPointConfig.model_validate({"name": "p", "register": "holding:0", **fields})


@pytest.mark.parametrize(("fields", "words", "expected"), [
    ({"type": "uint16"}, [54321], 54321),
    ({"type": "int16"}, [0xCFC7], -12345),
    ({"type": "int16"}, [0xFFFF], -1),
    ({"type": "int32"}, [0xF8A4, 0x32EB], -123456789),
    ({"type": "int32", "word_order": "little"}, [0x32EB, 0xF8A4], -123456789),
    ({"type": "uint32"}, [0x0001, 0xE240], 123456),
    # protocols.md §1.4: UINT32 123456 read with the words swapped gives 3795845121
    ({"type": "uint32", "word_order": "little"}, [0x0001, 0xE240], 3795845121),
    ({"type": "float32"}, [0xC148, 0x0000], -12.5),
    ({"type": "float32", "word_order": "little"}, [0x0000, 0xC148], -12.5),
    ({"type": "float32"}, list(struct.unpack(">2H", struct.pack(">f", 3.14))), 3.14),
    ({"type": "bool"}, [0], False),
    ({"type": "bool"}, [7], True),
    ({"type": "bool", "bit": 15}, [0x8000], True),
    ({"type": "bool", "bit": 14}, [0x8000], False),
])
def test_decode_types(fields: dict[str, Any], words: list[int], expected: object) -> None:
    value = codec.decode(point(**fields), words)
    assert value == expected
    assert type(value) is type(expected)


def test_unscaled_integers_stay_integers() -> None:
    assert isinstance(codec.decode(point(type="uint32"), [0, 5]), int)


def test_scale_and_offset_without_binary_noise() -> None:
    assert codec.decode(point(type="int16", scale=0.1), [1123]) == 112.3
    assert codec.decode(point(type="uint16", scale=0.1, offset=-50), [2215]) == 171.5
    assert codec.decode(point(type="int16", scale=0.01), [0xFF9C]) == -1.0


def test_nan_is_not_a_value() -> None:
    with pytest.raises(codec.DecodeError, match="the device sent NaN"):
        codec.decode(point(type="float32"), [0x7FC0, 0x0000])


def test_encode_scaled_register() -> None:
    setpoint = point(type="uint16", scale=0.1, writable=True)
    assert codec.encode(setpoint, 120.5) == [1205]
    assert codec.encode(point(type="int16"), -2) == [0xFFFE]
    assert codec.encode(point(type="uint32", word_order="little"), 123456) == [0xE240, 0x0001]
    assert codec.encode(point(type="float32"), -12.5) == [0xC148, 0x0000]


def test_encode_bool_on_coil_and_register() -> None:
    coil = ModbusPointConfig(name="c", register="coils:4", writable=True)
    assert codec.encode(coil, True) is True
    assert codec.encode(point(type="bool"), False) == [0]
    with pytest.raises(ValueError, match="write true or false"):
        codec.encode(coil, 3)


@pytest.mark.parametrize(("fields", "value", "message"), [
    ({"type": "uint16"}, 70000, "outside uint16 range 0..65535"),
    ({"type": "uint16"}, -1, "outside uint16 range"),
    ({"type": "int16", "scale": 0.1}, 4000, "register value 40000, outside int16"),
    ({"type": "float32"}, 1e39, "does not fit a float32"),
    ({"type": "uint16"}, "12", "takes a number"),
])
def test_encode_refuses_what_does_not_fit(fields: dict[str, Any], value: object,
                                          message: str) -> None:
    with pytest.raises(ValueError, match=message):
        codec.encode(point(**fields), value)  # type: ignore[arg-type]


INT_RANGES = {"int16": (-0x8000, 0x7FFF), "uint16": (0, 0xFFFF),
              "int32": (-0x8000_0000, 0x7FFF_FFFF), "uint32": (0, 0xFFFF_FFFF)}


@given(st.sampled_from(sorted(INT_RANGES)), st.sampled_from(["big", "little"]), st.data())
def test_integer_round_trip(kind: str, order: str, data: st.DataObject) -> None:
    low, high = INT_RANGES[kind]
    raw = data.draw(st.integers(low, high))
    fields: dict[str, Any] = {"type": kind}
    if kind.endswith("32"):
        fields["word_order"] = order
    p = point(**fields)
    words = codec.encode(p, raw)
    assert isinstance(words, list)
    assert all(0 <= w <= 0xFFFF for w in words)
    assert len(words) == p.span
    assert codec.decode(p, words) == raw


@given(st.floats(width=32, allow_nan=False, allow_infinity=False),
       st.sampled_from(["big", "little"]))
def test_float32_round_trip(value: float, order: str) -> None:
    p = point(type="float32", word_order=order)
    words = codec.encode(p, value)
    assert isinstance(words, list)
    decoded = codec.decode(p, words)
    assert isinstance(decoded, float)
    assert math.isclose(decoded, value, rel_tol=1e-6, abs_tol=1e-37)


@given(st.integers(0, 0xFFFF), st.sampled_from([0.1, 0.01, 0.5, 2.0]),
       st.sampled_from([0, -40, 273.15]))
def test_scaled_round_trip(raw: int, scale: float, offset: float) -> None:
    p = point(type="uint16", scale=scale, offset=offset)
    value = codec.decode(p, [raw])
    assert codec.encode(p, value) == [raw]
