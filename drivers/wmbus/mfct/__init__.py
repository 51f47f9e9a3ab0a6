"""Manufacturer-specific data decoders, one module per maker, each written from that maker's
PUBLIC documentation of the layout (never from another decoder's code, never fitted to example
telegrams). A decoder is registered for a manufacturer code and the versions (generations) the
document covers; anything else stays raw in `Telegram.manufacturer_data`.

`where` says which bytes a decoder reads: "0F" the data after a DIF 0x0F/0x1F record (to the end
of the application data), "CI" the payload of a manufacturer CI (0xA0-0xB7).

A decoder returns the records it could read, in SenML units, each tagged with the modifier
`mfct:<module>` (so profile mappings that select plain records never pick them by accident);
it stops at the first field the document does not size, and never raises on short data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from drivers.mbus.codec import Record

Decoder = Callable[[bytes], list[Record]]


@dataclass(frozen=True, slots=True)
class Registration:
    name: str  # module name, used in the records' modifier
    source: str  # the public document the layout comes from
    decode: Decoder


_REGISTRY: dict[tuple[str, int, str], Registration] = {}


def register(manufacturer: str, versions: tuple[int, ...], where: str,
             registration: Registration) -> None:
    for version in versions:
        _REGISTRY[(manufacturer, version, where)] = registration


def lookup(manufacturer: str, version: int, where: str) -> Registration | None:
    return _REGISTRY.get((manufacturer, version, where))


def decode(manufacturer: str, version: int, where: str, data: bytes) -> list[Record]:
    """The records a registered decoder reads from `data`; [] when none is registered."""
    found = lookup(manufacturer, version, where)
    return found.decode(data) if found is not None else []


def registered() -> list[tuple[str, int, str, str, str]]:
    """(manufacturer, version, where, module, source) of every registration, for docs/tests."""
    return [(m, v, w, r.name, r.source) for (m, v, w), r in sorted(_REGISTRY.items())]


# Importing the maker modules registers them.
from drivers.wmbus.mfct import bmeters  # noqa: E402,F401
