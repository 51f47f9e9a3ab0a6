"""What every receiver hands the driver: one radio telegram, and what it says about the stick.

A receiver (`imst.py`, `amber.py`, `hexline.py`) turns the bytes of its serial line into
`Received` items: a telegram (`Radio`: the link-layer frame starting at the L field, CRCs removed
as the sticks deliver it, with the RSSI when the stick gives one), a stick answer to a command
(`Answer`), or bytes it could not frame (`Garbage`, counted by the driver). Parsers are
incremental and bounded: whatever arrives, in whatever chunks, ends as one of these three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Radio:
    frame: bytes  # L C M(2) A(6) CI ... as delivered by the stick (link CRCs already checked)
    rssi: float | None = None  # dBm
    crc_checked: bool = True  # False for raw input (hex lines) that may still carry DLL CRCs


@dataclass(frozen=True, slots=True)
class Answer:
    """A stick's response to a command (message id), with its payload."""

    kind: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Garbage:
    count: int  # bytes dropped
    why: str


def resync(buf: bytearray, start: int, why: str) -> Garbage:
    """Drop the bytes before the next `start` byte after buf[0] (all when there is none): a
    stick's stream picks up again at the next frame."""
    found = buf.find(start, 1)
    dropped = len(buf) if found < 0 else found
    del buf[:dropped]
    return Garbage(dropped, why)


Received = Radio | Answer | Garbage


class Parser(Protocol):
    def feed(self, data: bytes) -> list[Received]:
        """Everything complete in what has arrived so far; keeps a bounded partial frame."""
        ...


class Stick(Protocol):
    """One kind of receiver: its line settings, its parser and its commands."""

    name: str
    baudrate: int

    def parser(self) -> Parser: ...

    def setup(self, modes: tuple[str, ...]) -> list[tuple[bytes, int]]:
        """Commands to send after opening (or a reset), each with the answer kind it expects."""
        ...

    def reset(self) -> tuple[bytes, int] | None:
        """The command that restarts the stick, with its answer kind (None: reopen the line)."""
        ...


def cc1101_dbm(raw: int) -> float:
    """RSSI register of a CC1101-type transceiver (two's complement, 0.5 dB steps) to dBm.

    The Amber sticks give the register of their CC1101 as is; its datasheet offset at 868 MHz
    is 74 dB. The iM871A's field is documented as an approximate level and read the same way.
    """
    value = raw - 256 if raw >= 128 else raw
    return value / 2 - 74
