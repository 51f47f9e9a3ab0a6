"""The one table of operations: every operation module, listed here and nowhere else.

A new operation goes in one of these modules (or a new one added to OPERATION_MODULES); the
command handler, the control socket and the command schema all read `OPERATIONS`.
"""

from __future__ import annotations

from types import ModuleType

from agent.billing import command as meters
from agent.commands.ops import alarms, buffer, cert, config, gateway, points, update
from agent.commands.registry import HARMLESS, Op

OPERATION_MODULES: tuple[ModuleType, ...] = (gateway, points, config, alarms, buffer, update, cert,
                                             meters)


def build(modules: tuple[ModuleType, ...]) -> dict[str, Op]:
    table: dict[str, Op] = {}
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, Op):
                if value.name in table and table[value.name] is not value:
                    raise RuntimeError(f"operation {value.name} is defined twice "
                                       f"({module.__name__})")
                table[value.name] = value
    unknown = HARMLESS - table.keys()
    if unknown:
        raise RuntimeError(f"HARMLESS names operations that do not exist: {sorted(unknown)}")
    return table


OPERATIONS: dict[str, Op] = build(OPERATION_MODULES)
