"""`agent.sdk.writes.check_write`: one validation of a written value for every driver and caller,
asking the point whether it holds a bool instead of reading a Modbus field."""

from __future__ import annotations

import math
from typing import Any

import pytest

from agent.i18n import set_language
from agent.sdk.config import DeviceConfig, PointConfig
from agent.sdk.errors import PointNotWritable
from agent.sdk.writes import NotWritable, ValueRefused, check_write
from drivers.modbus.config import ModbusPointConfig


class SwitchPoint(PointConfig):
    """A third-party driver's point that holds a bool without any `type:` field."""

    line: int = 0

    def is_boolean(self) -> bool:
        return True


DEVICE = DeviceConfig(id="dev", bus="b")


def number(**fields: Any) -> PointConfig:
    return PointConfig.model_validate({"name": "setpoint", "writable": True, **fields})


def test_a_point_not_declared_writable_is_refused_as_the_driver_contract_says() -> None:
    with pytest.raises(NotWritable, match="dev/setpoint is not declared writable") as caught:
        check_write(number(writable=False), 1, DEVICE)
    assert isinstance(caught.value, PointNotWritable)  # what a driver must raise


@pytest.mark.parametrize(("fields", "value", "words"), [
    ({"min": 10}, 9.5, "9.5 is below the minimum 10 of setpoint"),
    ({"max": 10}, 11, "11 is above the maximum 10 of setpoint"),
    ({}, True, "setpoint is numeric: the value must be a number, not True"),
    ({}, "12", "setpoint is numeric: the value must be a number, not '12'"),
    ({}, math.nan, "the value must be a finite number"),
    ({}, -math.inf, "the value must be a finite number"),
])
def test_a_numeric_point_refuses_what_does_not_fit(fields: dict[str, Any], value: Any,
                                                   words: str) -> None:
    with pytest.raises(ValueRefused, match=words):
        check_write(number(**fields), value)


def test_a_numeric_point_takes_a_number_within_its_limits() -> None:
    check_write(number(min=10, max=20), 10)
    check_write(number(min=10, max=20), 20.0)
    check_write(number(), -1e6)


def test_the_bool_question_is_the_points_own_not_a_modbus_field() -> None:
    switch = SwitchPoint(name="relay", writable=True)
    check_write(switch, False)
    with pytest.raises(ValueRefused, match="relay is a bool point"):
        check_write(switch, 1)
    # Modbus answers it from its type: a coil is a bool, a holding register a number
    coil = ModbusPointConfig.model_validate({"name": "fan", "register": "coils:1",
                                             "writable": True})
    holding = ModbusPointConfig.model_validate({"name": "speed", "register": "holding:1",
                                                "writable": True})
    assert coil.is_boolean() and not holding.is_boolean()
    check_write(coil, True)
    with pytest.raises(ValueRefused, match="bool point"):
        check_write(coil, 0)
    with pytest.raises(ValueRefused, match="numeric"):
        check_write(holding, True)


def test_the_message_is_english_and_the_translation_is_asked_for() -> None:
    set_language("fr")
    try:
        with pytest.raises(ValueRefused) as caught:
            check_write(number(max=10), 11, DEVICE)
    finally:
        set_language("en")
    assert str(caught.value) == "11 is above the maximum 10 of dev/setpoint"  # machine output
    set_language("fr")
    try:
        assert caught.value.translated() == "11 est au-dessus du maximum 10 de dev/setpoint"
    finally:
        set_language(None)
