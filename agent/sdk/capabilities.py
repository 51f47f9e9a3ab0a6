"""What a driver declares it can do, so the agent's tools hold no list of drivers.

A driver class sets `capabilities` (one `Capabilities`, or a mapping from each entry-point name
it serves to one: `modbus-tcp` and `modbus-rtu` ask different questions), and the agent reads it
through `agent.sdk.registry.capabilities(name)`:

- **profiles** (`agent/config/profiles.py`): `family` is the `driver:` that the driver's device
  profiles declare; `accepts` lists other families whose profiles fit its devices (a radio meter
  carries the records of a wired one); `profiles` names a package of `NAME.yaml` profile files
  the driver ships besides `drivers/profiles/`;
- **the init wizard** (`batigate init`): `questions`, what a bus of this driver needs, asked in
  order and checked at once;
- **scan** (`batigate scan COMMAND`): `scan`, a subcommand with its own options whose `run`
  finds what is on a bus and returns a `ScanReport` (a table, the `--json` fields, the device
  entries that `--add` writes).

A driver that declares nothing still works: its family is its name up to the first `-`, the
wizard does not offer it (`--bus ID:DRIVER:key=value` still does), and it has no scan.

Texts a person reads are `Text`: a key of the agent's catalogs (`agent/i18n`, for the drivers
shipped here) or a mapping `{"en": ..., "fr": ...}` that a third-party driver brings with it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.i18n import language, t
from agent.sdk.config import BusConfig, DeviceConfig

Text = str | Mapping[str, str]


def say(text: Text, **values: object) -> str:
    """`text` in the language in force (English when a mapping lacks it)."""
    if isinstance(text, Mapping):
        chosen = text.get(language()) or text.get("en") or next(iter(text.values()), "")
        return chosen.format(**values) if values else chosen
    return t(text, **values)


# -- the init wizard ------------------------------------------------------------------------------

Check = Callable[[str], Any]  # the answer as typed -> the value; ValueError(message): ask again


@dataclass(frozen=True, slots=True)
class Question:
    """One thing `batigate init` asks for a bus: the answer becomes `bus[key]`."""

    key: str
    label: Text
    default: str | int | None = None
    check: Check | None = None  # None: any non-empty text
    choices: tuple[str, ...] = ()  # shown after the label; any other answer is asked again


def text(value: str) -> str:
    value = str(value).strip()
    if not value:
        raise ValueError(t("init.bad_text"))
    return value


def host(value: str) -> str:
    value = str(value).strip()
    if not value or any(c.isspace() for c in value) or "/" in value:
        raise ValueError(t("init.bad_host"))
    return value


def tcp_port(value: str | int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(t("init.bad_port")) from None
    if not 1 <= number <= 65535:
        raise ValueError(t("init.bad_port"))
    return number


def whole(value: str | int) -> int:
    """A whole number above zero (a baud rate, a count)."""
    try:
        number = int(value)
    except ValueError:
        raise ValueError(t("init.bad_number")) from None
    if number <= 0:
        raise ValueError(t("init.bad_number"))
    return number


# -- scan -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScanOption:
    """One option of a driver's `batigate scan` subcommand besides the common ones (`--bus`,
    `--add`, `--profile`, `--prefix`, `--config`, `--json`).

    `name` is the option without its dashes (`ids`: `--ids`); `kind` bool gives a pair
    `--name/--no-name`. `parse` turns the text into the value the scan gets (ValueError with
    a message: the command refuses it as a usage error); `low`/`high` bound an int or float.
    The scan reads it as `request.options[name with '_' for '-']`."""

    name: str
    help: str
    default: Any = None
    kind: type = str
    low: float | None = None
    high: float | None = None
    parse: Callable[[str], Any] | None = None


@dataclass(frozen=True, slots=True)
class ScanRequest:
    bus: BusConfig
    options: Mapping[str, Any]
    devices: Sequence[DeviceConfig]  # the bus's devices already in the config
    prefix: str  # id prefix of the device entries to propose (`--prefix`)
    profile: str | None  # profile of the device entries (`--profile`), None: the scan's choice


@dataclass(slots=True)
class ScanReport:
    """What a scan found: a table for a person, fields for `--json`, entries for `--add`."""

    title: str
    columns: Sequence[str]
    rows: list[Sequence[str]]
    json: dict[str, Any]  # the --json answer besides `ok`, `bus` and `added`
    entries: list[dict[str, Any]] = field(default_factory=list)  # `devices:` entries to add
    caption: str | None = None
    notes: list[str] = field(default_factory=list)  # warnings shown after the table


class ScanView(Protocol):
    """How a scan shows that it is working (nothing with `--json`)."""

    def step(self, label: str, done: int, total: int) -> None:
        """A bar per `label`: `done` of `total`."""

    def show(self, report: ScanReport) -> None:
        """What was found so far, redrawn in place (a scan that listens for a while)."""


ScanRun = Callable[[ScanRequest, ScanView], Awaitable[ScanReport]]


@dataclass(frozen=True, slots=True)
class Scan:
    """`batigate scan COMMAND`: every driver whose scan has this `command` serves it (both
    Modbus drivers share `modbus`). `help` is the --help text (first line, then examples after a
    line holding only \\b). `run` raises `DriverError` when the bus cannot be used at all."""

    command: str
    help: str
    run: ScanRun
    options: tuple[ScanOption, ...] = ()
    prefix: str = "device"  # default id prefix of added devices


def id_list(low: int, high: int) -> Callable[[str], list[int]]:
    """A parser of `1-247`, `1,5,17`, `1-5,9` within low..high, for addresses to probe."""
    def parse(value: str) -> list[int]:
        ids: set[int] = set()
        for part in str(value).split(","):
            match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
            if match is None:
                raise ValueError(t("scan.bad_ids", part=part))
            start, end = int(match[1]), int(match[2] or match[1])
            if not low <= start <= end <= high:
                raise ValueError(t("scan.ids_range", part=part, low=low, high=high))
            ids.update(range(start, end + 1))
        return sorted(ids)
    return parse


# -- the declaration ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capabilities:
    family: str
    accepts: tuple[str, ...] = ()
    profiles: str | None = None
    questions: tuple[Question, ...] = ()
    scan: Scan | None = None

    def fits(self, profile_family: str) -> bool:
        """May a device of this driver use a profile written for `profile_family`?"""
        return profile_family == self.family or profile_family in self.accepts


def declared(driver: type, name: str) -> Capabilities:
    """What driver class `driver`, registered as `name`, declares (the defaults above when
    nothing)."""
    found = getattr(driver, "capabilities", None)
    if isinstance(found, Mapping):
        found = found.get(name)
    if isinstance(found, Capabilities):
        return found
    return Capabilities(family=name.split("-", 1)[0])
