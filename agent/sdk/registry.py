"""Drivers and rule types, found through entry points so a third-party one installs like ours."""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from agent.sdk.capabilities import Capabilities, declared

DRIVERS = "batigate.drivers"
RULES = "batigate.rules"


@cache
def _group(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def names(group: str) -> list[str]:
    return sorted(_group(group))


@cache
def load(group: str, name: str) -> Any:
    """The class registered as `name`; KeyError with the installed names when there is none."""
    eps = _group(group)
    if name not in eps:
        installed = ", ".join(sorted(eps)) or "none"
        raise KeyError(f"unknown {'driver' if group == DRIVERS else 'rule type'} {name!r}; "
                       f"installed: {installed}")
    return eps[name].load()


@cache
def capabilities(name: str) -> Capabilities:
    """What driver `name` declares for profiles, the init wizard and scan (`agent.sdk.capabilities`);
    KeyError like `load` when no such driver is installed."""
    return declared(load(DRIVERS, name), name)


def drivers() -> dict[str, Capabilities]:
    """Every installed driver name with its capabilities (this imports every driver)."""
    return {name: capabilities(name) for name in names(DRIVERS)}


def forget() -> None:
    """Find the plugins again (a test that installs or removes one; nothing else)."""
    _group.cache_clear()
    load.cache_clear()
    capabilities.cache_clear()
