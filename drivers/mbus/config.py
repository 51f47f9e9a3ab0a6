"""The wired M-Bus part of the config file: one bus (serial line or TCP converter), meters, points.

A bus is either a serial port with a level converter (`port: /dev/ttyUSB1`, 2400 8E1 unless
told otherwise) or a transparent serial-over-TCP converter (`host` + `port`, or
`port: socket://HOST:PORT`). A meter is found by its primary address (0..250) or by its
secondary address (the 8-digit id printed on it, optionally narrowed by manufacturer, version
and medium). A point picks one decoded record, by what it is (`record:`) or where it is
(`index:`); a meter without points publishes every record under a generated name (mapping.py).

Values leave the driver in SenML primary units already (the codec converts Wh, l, m3/h, °C...),
so a point's `unit` is not a conversion here: it must be the SenML unit the record comes in.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from agent.sdk import units as agent_units
from agent.sdk.config import BusConfig, DeviceConfig, Medium, PointConfig, Strict
from agent.sdk.durations import Duration
from drivers.mbus import frames
from drivers.mbus.mapping import QUANTITY_UNITS

Function = Literal["instantaneous", "maximum", "minimum", "error"]
BAUDRATES = (300, 600, 1200, 2400, 4800, 9600, 19200, 38400)  # the CI 0xB8..0xBF set
MAX_PRIMARY = 250  # 251..255 are reserved, network layer and broadcasts

_SECONDARY = re.compile(r"^\d{8}$")


def id_text(value: Any) -> Any:
    """A meter id as text: YAML reads 12345678 unquoted as a number (and 01234567 as 1234567)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:08d}"
    return value


def is_meter_id(value: Any) -> bool:
    """True for an 8-digit meter id (the secondary address, the radio id)."""
    return isinstance(value, str) and _SECONDARY.match(value) is not None


def manufacturer_code(value: str | None) -> str | None:
    """The 3-letter manufacturer code in capitals; raises with the rule when it cannot be one."""
    if value is None:
        return None
    frames.encode_manufacturer(value.upper())  # raises with the rule
    return value.upper()


def check_socket_url(text: str) -> None:
    """Refuse a `socket://` URL without a host or a valid TCP port (wired and radio buses)."""
    parts = urlsplit(text)
    try:
        tcp_port = parts.port
    except ValueError:  # a port outside 0..65535 or not a number
        tcp_port = None
    if not parts.hostname or tcp_port is None:
        raise ValueError(f"{text!r}: write socket://HOST:PORT")


class Endpoint(Strict):
    """Where the bytes go: a TCP converter (host, port) or a pyserial URL/device (url)."""

    host: str | None = None
    port: int | None = None
    url: str | None = None


class MBusBusConfig(BusConfig):
    driver: Literal["mbus"]
    host: str | None = Field(None, description="serial-over-TCP converter address")
    port: int | str = Field(description="serial device (/dev/ttyUSB1), socket://HOST:PORT, or "
                                        "the converter's TCP port when host is given")
    baudrate: int = Field(2400, description="line speed; behind a TCP converter it is only "
                                            "used to compute how long a telegram takes")
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[8] = 8
    retries: int = Field(2, ge=0, le=5,
                         description="repeats of an unanswered or garbled request")
    max_telegrams: int = Field(10, ge=1, le=64,
                               description="telegrams read per meter and poll (multi-telegram)")

    @field_validator("port")
    @classmethod
    def _port_shape(cls, value: int | str, info: ValidationInfo) -> int | str:
        host = info.data.get("host")
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if host:
            if not isinstance(value, int) or not 1 <= value <= 65535:
                raise ValueError(f"{value!r} is not a TCP port; with host: write the "
                                 "converter's port number (often 10001)")
            return value
        if isinstance(value, int):
            raise ValueError(f"port {value} is a TCP port but no host is given; write host: "
                             "too, or port: socket://HOST:PORT, or a serial device")
        text = value.strip()
        if not text:
            raise ValueError("required: a serial device (/dev/ttyUSB1) or socket://HOST:PORT")
        if text.startswith("socket://"):
            check_socket_url(text)
        return text

    @field_validator("baudrate")
    @classmethod
    def _standard_baudrate(cls, value: int) -> int:
        if value not in BAUDRATES:
            raise ValueError(f"{value} is no M-Bus baud rate; use one of "
                             f"{', '.join(map(str, BAUDRATES))} (2400 is the usual default)")
        return value

    @model_validator(mode="after")
    def _serial_settings_on_tcp(self) -> MBusBusConfig:
        # The converter sets parity and stop bits on its serial side; writing them here would
        # suggest the gateway controls them.
        if self.endpoint.url is None or self.endpoint.url.startswith("socket://"):
            written = {"parity", "stopbits", "bytesize"} & self.model_fields_set
            if written:
                raise ValueError(f"{', '.join(sorted(written))}: serial-line settings do not "
                                 "apply to a TCP converter; set them on the converter")
        return self

    @property
    def endpoint(self) -> Endpoint:
        if self.host:
            return Endpoint(host=self.host, port=int(self.port))
        text = str(self.port)
        if text.startswith("socket://"):
            parts = urlsplit(text)
            return Endpoint(host=parts.hostname, port=parts.port, url=text)
        return Endpoint(url=text)

    @property
    def char_time(self) -> float:
        """Seconds one character takes on the line: start + 8 data + parity + stop bits."""
        bits = 1 + self.bytesize + (self.parity != "N") + self.stopbits
        return bits / self.baudrate


class RecordSelector(Strict):
    """Which decoded record a point reads: the first one with all these properties."""

    quantity: str = Field(description="as the codec names it: volume, energy, power, "
                                      "flow_temperature, volume_flow, date_time, ...")
    storage: int = Field(0, ge=0, description="0 = current value, 1.. = stored (due date, month)")
    tariff: int = Field(0, ge=0)
    subunit: int = Field(0, ge=0)
    function: Function = "instantaneous"

    def label(self) -> str:
        return (f"{self.quantity} storage {self.storage} tariff {self.tariff} "
                f"subunit {self.subunit} {self.function}")


class MBusPointConfig(PointConfig):
    record: RecordSelector | None = None
    index: int | None = Field(None, ge=0, description="position of the record in the read-out, "
                                                      "all telegrams counted, 0-based")
    optional: bool = Field(False, description="a record not every meter keeps (a month-end "
                                               "value): when the read-out has none, the point is "
                                               "left out of the poll instead of reported bad")

    @model_validator(mode="before")
    @classmethod
    def _default_unit(cls, data: Any) -> Any:
        # The normalizer publishes the point's unit, and the codec's is the only right one, so a
        # known quantity brings its unit along.
        if isinstance(data, dict) and "unit" not in data and isinstance(data.get("record"), dict):
            expected = QUANTITY_UNITS.get(str(data["record"].get("quantity")))
            if expected is not None:
                return {**data, "unit": expected}
        return data

    @model_validator(mode="after")
    def _one_way_and_unit(self) -> MBusPointConfig:
        if (self.record is None) == (self.index is None):
            raise ValueError("give exactly one of record: {quantity: ..., storage: ...} or "
                             "index: N")
        if self.writable:
            raise ValueError("M-Bus meters are read-only here; remove writable")
        if self.unit is not None:
            senml, factor, offset = agent_units.normalize(self.unit)
            if senml != self.unit or factor != 1.0 or offset != 0.0:
                raise ValueError(f"unit {self.unit!r}: M-Bus values arrive in SenML units "
                                 f"already; write {senml!r} or leave unit out")
        if self.record is not None:
            expected = QUANTITY_UNITS.get(self.record.quantity)
            if expected is not None and self.unit != expected:
                raise ValueError(f"{self.record.quantity} is decoded in {expected}, not "
                                 f"{self.unit}; write unit: {expected} or leave it out")
        return self


class MBusDeviceConfig(DeviceConfig):
    address: int | None = Field(None, ge=0, le=MAX_PRIMARY,
                                description="primary address 0..250 (0 = not configured)")
    secondary: str | None = Field(None, description="8-digit id printed on the meter")
    manufacturer: str | None = Field(None, description="3 letters (KAM, SEN...), narrows "
                                                       "the secondary selection")
    version: int | None = Field(None, ge=0, le=255)
    # A number is the EN 13757-3 medium byte and narrows the secondary selection; a name
    # (cold_water, heat...) only says what the meter counts, for billing, on any meter.
    medium: Annotated[int, Field(ge=0, le=255)] | Medium | None = None  # type: ignore[assignment]
    # The time until the answer starts; the telegram's own wire time is added from the baud
    # rate (see link.py). The standard allows 330 bit times + 50 ms: 0.19 s at 2400 baud.
    timeout: Duration = Field(0.5, description="wait this long for the answer to start")
    points: list[MBusPointConfig] = Field(default_factory=list)  # type: ignore[assignment]

    @field_validator("secondary", mode="before")
    @classmethod
    def _secondary_digits(cls, value: Any) -> Any:
        value = id_text(value)
        if value is not None and not is_meter_id(value):
            raise ValueError(f"{value!r}: the secondary address is the meter's 8-digit id "
                             "(quote it when it starts with 0)")
        return value

    @field_validator("manufacturer")
    @classmethod
    def _manufacturer_code(cls, value: str | None) -> str | None:
        return manufacturer_code(value)

    @model_validator(mode="after")
    def _one_address(self) -> MBusDeviceConfig:
        if (self.address is None) == (self.secondary is None):
            raise ValueError("give exactly one of address: (primary 0..250) or secondary: "
                             "(the 8-digit id)")
        narrowing = {"manufacturer", "version", "medium"} & self.model_fields_set
        if not isinstance(self.medium, int):
            narrowing.discard("medium")
        if self.secondary is None and narrowing:
            raise ValueError(f"{', '.join(sorted(narrowing))} only narrow a secondary address")
        return self

    def selection(self) -> bytes | None:
        """The SND_UD select for this meter, or None for a primary-addressed one."""
        if self.secondary is None:
            return None
        return frames.select_secondary(self.secondary, self.manufacturer, self.version,
                                       self.medium if isinstance(self.medium, int) else None)

    @property
    def link_address(self) -> int:
        """Where REQ_UD2 goes: the primary address, or 0xFD once selected."""
        return frames.ADDR_NETWORK_LAYER if self.address is None else self.address
