"""The Modbus part of the config file: one bus (TCP endpoint or RS-485 line), devices, points.

`port` means two things on purpose (DESIGN §3.1): the TCP port for `modbus-tcp` and the serial
device for `modbus-rtu`, because that is how technicians write it. Field validators run in
declaration order, so `driver` is known when `host`/`port` are checked and every error names the
field it is about.
"""

from __future__ import annotations

import re
import warnings
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (BeforeValidator, Field, PlainSerializer, ValidationInfo, field_validator,
                      model_validator)

from agent.sdk.config import BusConfig, DeviceConfig, PointConfig
from agent.sdk.durations import parse_duration

Table = Literal["coils", "discrete", "input", "holding"]
PointType = Literal["bool", "int16", "uint16", "int32", "uint32", "float32"]
TABLES: tuple[Table, ...] = ("coils", "discrete", "input", "holding")
BIT_TABLES = frozenset({"coils", "discrete"})
WRITABLE_TABLES = frozenset({"coils", "holding"})
WIDE_TYPES = frozenset({"int32", "uint32", "float32"})  # two registers each

_REGISTER = re.compile(r"^\s*([a-z]+)\s*:\s*(\d+)\s*$", re.IGNORECASE)
# Manuals print 1-based "4xxxx" references; catching them here saves a site visit.
_LEGACY_PREFIX: dict[str, Table] = {"0": "coils", "1": "discrete", "3": "input", "4": "holding"}


class Register(NamedTuple):
    table: Table
    address: int

    def __str__(self) -> str:
        return f"{self.table}:{self.address}"


def parse_register(value: object) -> Register:
    """`holding:12` -> Register('holding', 12); a message that teaches the format otherwise."""
    if isinstance(value, Register):
        return value
    text = str(value).strip()
    match = _REGISTER.match(text)
    if match is None:
        hint = ""
        if text.isdigit() and len(text) in (5, 6) and text[0] in _LEGACY_PREFIX:
            number = int(text[1:]) - 1
            hint = (f"; {text} looks like 1-based Modbus notation, which is "
                    f"{_LEGACY_PREFIX[text[0]]}:{max(number, 0)}")
        msg = (f"{text!r} is not a register; write TABLE:ADDRESS with TABLE one of "
               f"coils, discrete, input, holding and a 0-based ADDRESS 0..65535{hint}")
        raise ValueError(msg)
    table, address = match.group(1).lower(), int(match.group(2))
    if table not in TABLES:
        msg = f"unknown register table {table!r}; use one of coils, discrete, input, holding"
        raise ValueError(msg)
    if address > 65535:
        raise ValueError(f"register address {address} is out of range 0..65535")
    return Register(table, address)  # type: ignore[arg-type]  # table checked just above


RegisterRef = Annotated[Register, BeforeValidator(parse_register), PlainSerializer(str)]


def _parse_gap(value: object) -> float:
    # A gap of zero is the normal case, which `Duration` (strictly positive) would refuse.
    if value in (0, "0", None):
        return 0.0
    return parse_duration(value)


Gap = Annotated[float, BeforeValidator(_parse_gap)]


class ModbusBusConfig(BusConfig):
    driver: Literal["modbus-tcp", "modbus-rtu"]
    host: str | None = Field(None, validate_default=True, description="modbus-tcp: peer address")
    port: int | str | None = Field(None, validate_default=True,
                                   description="modbus-tcp: TCP port (502); modbus-rtu: serial "
                                               "device or socket://HOST:PORT")
    baudrate: int = Field(9600, gt=0)
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[8] = 8
    gap: Gap = Field(0.0, description="silence kept before each request; on RTU only when "
                     "longer than the 3.5 characters always kept (slow slaves, gateways)")
    max_gap: int = Field(8, ge=0, le=120,
                         description="unused registers a coalesced read may bridge")

    @field_validator("host")
    @classmethod
    def _host_for_tcp(cls, value: str | None, info: ValidationInfo) -> str | None:
        driver = info.data.get("driver")
        if driver == "modbus-tcp" and not value:
            raise ValueError("required for driver modbus-tcp (the IP address or name of the "
                             "device or Modbus gateway)")
        if driver == "modbus-rtu" and value is not None:
            raise ValueError("not used by modbus-rtu; for a serial-over-TCP converter write "
                             "port: socket://HOST:PORT")
        return value

    @field_validator("port")
    @classmethod
    def _port_per_driver(cls, value: int | str | None, info: ValidationInfo) -> int | str | None:
        driver = info.data.get("driver")
        if driver == "modbus-tcp":
            if value is None:
                return 502
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            if not isinstance(value, int) or not 1 <= value <= 65535:
                raise ValueError(f"{value!r} is not a TCP port; modbus-tcp wants a number "
                                 "1..65535 (default 502)")
            return value
        if driver == "modbus-rtu":
            if not isinstance(value, str) or not value.strip():
                raise ValueError("required for driver modbus-rtu: the serial device "
                                 "(/dev/ttyUSB0, /dev/serial/by-id/...) or socket://HOST:PORT")
            return value.strip()
        return value

    @field_validator("baudrate", "parity", "stopbits", "bytesize")
    @classmethod
    def _serial_only(cls, value: Any, info: ValidationInfo) -> Any:
        # Runs only for keys written in the file: a serial setting on a TCP bus is a mix-up.
        if info.data.get("driver") == "modbus-tcp":
            raise ValueError(f"{info.field_name} is a serial-line setting; it only applies to "
                             "driver modbus-rtu")
        return value

    @property
    def is_rtu(self) -> bool:
        return self.driver == "modbus-rtu"


with warnings.catch_warnings():
    # `register` is the documented key (DESIGN §3.1). It only shadows ABCMeta.register, a
    # metaclass method that instances never see, so pydantic's warning does not apply.
    warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)

    class ModbusPointConfig(PointConfig):
        register: RegisterRef = Field(description="TABLE:ADDRESS, 0-based")
        type: PointType
        bit: int | None = Field(None, ge=0, le=15,
                                description="bool taken from one bit of a register")
        word_order: Literal["big", "little"] = "big"
        scale: float = 1.0
        offset: float = 0.0
        not_available: int | None = Field(
            None, description="the raw value the device sends for 'no value' (Grundfos 65535 = "
            "0xFFFF; -32768 = 0x8000 for an int16): read as quality bad, never as a number. For a "
            "bit point, the whole register is compared")

        @model_validator(mode="before")
        @classmethod
        def _default_type(cls, data: Any) -> Any:
            # The default type depends on the table: bits read as bool, registers as uint16.
            if isinstance(data, dict) and "type" not in data:
                try:
                    table = parse_register(data.get("register")).table
                except ValueError:
                    table = "holding"  # the register field reports the real problem
                return {**data, "type": "bool" if table in BIT_TABLES else "uint16"}
            return data

        @model_validator(mode="after")
        def _consistent(self) -> ModbusPointConfig:
            table, address = self.register
            set_keys = self.model_fields_set
            if table in BIT_TABLES and self.type != "bool":
                raise ValueError(f"type {self.type} cannot be read from {table}: they hold single "
                                 "bits; use type: bool or a register table (input, holding)")
            if self.bit is not None and (table in BIT_TABLES or self.type != "bool"):
                raise ValueError("bit: picks one bit of a register for a type: bool point on an "
                                 "input or holding register")
            if self.type == "bool" and ({"scale", "offset"} & set_keys):
                raise ValueError("scale and offset do not apply to a bool point")
            if "word_order" in set_keys and self.type not in WIDE_TYPES:
                raise ValueError(f"word_order applies to 32-bit types only, not {self.type}")
            if self.type in WIDE_TYPES and address > 65534:
                raise ValueError(f"{self.type} needs two registers; {table}:{address} is the "
                                 "last one")
            if self.scale == 0:
                raise ValueError("scale must not be 0")
            if self.not_available is not None and (table in BIT_TABLES
                                                   or self.type == "float32"):
                raise ValueError("not_available applies to integer registers (and bits of one), "
                                 f"not to {table if table in BIT_TABLES else 'float32'}")
            if self.writable and table not in WRITABLE_TABLES:
                raise ValueError(f"{table} are read-only in Modbus; only coils and holding "
                                 "registers can be writable")
            if self.writable and self.bit is not None:
                raise ValueError("writing one bit of a register is not supported; declare the "
                                 "whole register as a writable uint16 point")
            if self.min is not None and self.max is not None and self.min > self.max:
                raise ValueError(f"min {self.min} is above max {self.max}")
            return self

        def is_boolean(self) -> bool:
            return self.type == "bool"  # coils and discrete inputs are bool (checked above)

        @property
        def span(self) -> int:
            """Registers (or bits) this point occupies."""
            return 2 if self.type in WIDE_TYPES else 1


class ModbusDeviceConfig(DeviceConfig):
    address: int = Field(ge=0, le=247, description="Modbus unit id (RS-485 slave address)")
    points: list[ModbusPointConfig] = Field(default_factory=list)  # type: ignore[assignment]
