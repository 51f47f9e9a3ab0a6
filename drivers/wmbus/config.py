"""The wireless M-Bus part of the config file: one receiver per bus, radio meters, points.

A bus is one receiver: an IMST iM871A or an Amber AMB8465/AMB3665 on a serial port (or behind a
serial-over-TCP converter, `socket://HOST:PORT`), or a plain input of hex telegrams, one per
line, from a serial port, a TCP socket, or a command's stdout (rtl_sdr | rtl_wmbus). A meter is
a device whose `address:` is its 8-digit radio id (optionally narrowed by manufacturer and
version); its points pick records as wired M-Bus points do (`record:` or `index:`), and a
meter without points publishes every record under a generated name.

Radio meters are not polled: `interval:` is how often the meter transmits, and the meter is
down after `silence_factor` intervals without a telegram.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from agent.sdk.config import BusConfig, DeviceConfig
from agent.sdk.durations import Duration
from drivers.mbus.config import (MBusPointConfig, check_socket_url, id_text, is_meter_id,
                                 manufacturer_code)

Receiver = Literal["im871a", "amb8465", "amb3665", "hex"]
Mode = Literal["t1", "c1", "s1"]
DEFAULT_INTERVAL = 900.0  # 15 min: a common OMS stationary interval
_MODES = {"im871a": (("s1",), ("t1",), ("c1",), ("c1", "t1")),
          "amb8465": (("t1",), ("c1",), ("c1", "t1")),
          "amb3665": (("t1",), ("c1",), ("c1", "t1"))}


class WMBusBusConfig(BusConfig):
    driver: Literal["wmbus"]
    receiver: Receiver = Field(description="im871a, amb8465, amb3665, or hex (one telegram "
                                           "per line: SDR decoders)")
    port: str | None = Field(None, description="serial device (/dev/ttyUSB0) or "
                                               "socket://HOST:PORT")
    command: str | None = Field(None, description="hex receiver only: a command whose stdout "
                                                  "gives one telegram per line")
    baudrate: int | None = Field(None, description="default: the stick's own (iM871A 57600, "
                                                   "Amber 9600)")
    modes: list[Mode] = Field(default_factory=lambda: ["c1", "t1"],
                              description="link modes to receive")
    rssi: bool = Field(True, description="Amber: the stick appends the RSSI (RSSI_Enable = 1)")
    silence: Duration = Field(600.0, description="a receiver that delivers nothing for this "
                                                 "long is reset and initialised again")
    keys: Path | None = Field(None, description="the AES keys file (batigate wmbus keys import)")
    repeat_window: Duration = Field(60.0, description="the same telegram heard again within "
                                                      "this is a repeat and dropped")
    answer_timeout: Duration = Field(2.0, description="wait this long for the stick to answer "
                                                      "a command")

    @field_validator("modes")
    @classmethod
    def _some_modes(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one link mode (t1, c1, s1)")
        return sorted(set(value))

    @field_validator("port")
    @classmethod
    def _port_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip()
        if text.startswith("socket://"):
            check_socket_url(text)
        elif not text:
            raise ValueError("a serial device (/dev/ttyUSB0) or socket://HOST:PORT")
        return text

    @model_validator(mode="after")
    def _consistent(self) -> WMBusBusConfig:
        if (self.port is None) == (self.command is None):
            raise ValueError("give exactly one of port: (serial device or socket://HOST:PORT) "
                             "or command: (hex receiver only)")
        if self.command is not None and self.receiver != "hex":
            raise ValueError("command: is for receiver: hex (an SDR decoder's output); a stick "
                             "needs port:")
        allowed = _MODES.get(self.receiver)
        if allowed is not None and tuple(sorted(self.modes)) not in allowed:
            raise ValueError(f"{self.receiver} receives {', '.join('+'.join(m) for m in allowed)}"
                             f"; not {'+'.join(self.modes)}")
        return self


class WMBusPointConfig(MBusPointConfig):
    """A point picks one record of the decoded telegram, exactly as for a wired meter."""


class WMBusDeviceConfig(DeviceConfig):
    address: str = Field(description="the meter's 8-digit radio id")  # type: ignore[assignment]
    manufacturer: str | None = Field(None, description="3 letters (KAM, DME...): narrows the id")
    version: int | None = Field(None, ge=0, le=255)
    interval: Duration = Field(DEFAULT_INTERVAL, description="how often the meter transmits")
    silence_factor: float = Field(4.0, ge=1.5, le=100, description="down after this many "
                                                                    "intervals unheard")
    points: list[WMBusPointConfig] = Field(default_factory=list)  # type: ignore[assignment]

    @model_validator(mode="before")
    @classmethod
    def _poll_is_the_interval(cls, data: Any) -> Any:
        # Nothing polls a radio meter; `poll` (which a wired meter profile brings along) would
        # tell the birth inventory a period that means nothing: it is the transmit interval.
        if isinstance(data, dict):
            return {**data, "poll": data.get("interval", DEFAULT_INTERVAL)}
        return data

    @field_validator("address", mode="before")
    @classmethod
    def _eight_digits(cls, value: Any) -> Any:
        value = id_text(value)
        if not is_meter_id(value):
            raise ValueError(f"{value!r}: a radio meter's address is its 8-digit id (quote it "
                             "when it starts with 0)")
        return value

    @field_validator("manufacturer")
    @classmethod
    def _manufacturer_code(cls, value: str | None) -> str | None:
        return manufacturer_code(value)

    @property
    def silence(self) -> float:
        return self.interval * self.silence_factor

    def matches(self, ident: str, manufacturer: str | None, version: int | None) -> bool:
        return (ident == self.address
                and (self.manufacturer is None or self.manufacturer == manufacturer)
                and (self.version is None or self.version == version))
