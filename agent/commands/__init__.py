"""Remote commands over MQTT (DESIGN §3.3): `CommandHandler` answers what arrives on `cmd/req`.

    models   the request, the arguments of each operation, the answer and its codes
    ops      the operations themselves
    handler  decode, authenticate, de-duplicate, dispatch, audit
    store    the persisted answers (idempotency by id)
    schema   the JSON Schema of cmd/req, generated from the models

The names below are loaded on first use: `agent.config.loader` imports `agent.commands.models`
for the `commands:` section, and an eager import of the handler here would import the loader back.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OPERATIONS", "Code", "CommandHandler", "CommandsConfig", "Status"]


def __getattr__(name: str) -> Any:
    if name == "CommandHandler":
        from agent.commands.handler import CommandHandler  # noqa: PLC0415

        return CommandHandler
    if name == "OPERATIONS":
        from agent.commands.catalog import OPERATIONS  # noqa: PLC0415

        return OPERATIONS
    if name in ("Code", "CommandsConfig", "Status"):
        from agent.commands import models  # noqa: PLC0415

        return getattr(models, name)
    raise AttributeError(f"module 'agent.commands' has no attribute {name!r}")
