"""What the M-Bus application layer decodes to: a Telegram of Records, and the CI field codes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Function = Literal["instantaneous", "maximum", "minimum", "error"]
Value = int | float | str | None

MAX_DIFE = 10  # EN 13757-3 limits each chain to ten extensions
MAX_VIFE = 10

CI_APPLICATION_ERROR = 0x70
CI_ALARM = 0x71
CI_VARIABLE_LONG = 0x72  # 12-byte header, multi-byte fields LSB first
CI_FIXED = 0x73
CI_VARIABLE_LONG_MSB = 0x76
CI_FIXED_MSB = 0x77
CI_VARIABLE_NONE = 0x78  # no header
CI_VARIABLE_SHORT = 0x7A  # 4-byte header: access number, status, signature

APPLICATION_ERRORS = {
    0: "unspecified error",
    1: "unimplemented CI field",
    2: "buffer too long, truncated",
    3: "too many records",
    4: "premature end of record",
    5: "more than 10 DIFEs",
    6: "more than 10 VIFEs",
    8: "application too busy for handling readout request",
    9: "too many readouts",
}


@dataclass(frozen=True, slots=True)
class Record:
    """One data record, its value already in a SenML unit (or a string for dates and raw data)."""

    value: Value
    unit: str | None
    quantity: str
    function: Function = "instantaneous"
    storage: int = 0
    tariff: int = 0
    subunit: int = 0
    # Not part of the JSON contract: what a driver needs to tell apart two records of the same
    # quantity (e.g. Itron's volume with a manufacturer-specific VIFE next to the plain one).
    modifiers: tuple[str, ...] = ()
    dib: bytes = b""
    vib: bytes = b""
    data: bytes = b""  # the data field as sent, LSB first: the meter's own digits (billing)


@dataclass(frozen=True, slots=True)
class Telegram:
    id: str
    manufacturer: str | None
    version: int | None
    medium: str | None
    access_number: int | None
    status: int | None
    records: list[Record] = field(default_factory=list)
    address: int = 0  # link-layer (primary) address of the answering slave
    ci: int = CI_VARIABLE_LONG
    medium_code: int | None = None
    signature: int = 0
    more_records_follow: bool = False  # DIF 0x1F: ask again with the FCB toggled
