"""Shared pieces of the end-to-end tests: a config file for a broker and a Modbus peer, and an
in-process agent that the test can stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml

from agent.config import loader as config_mod
from agent.runtime import supervisor
from agent.sdk.clock import Clock
from agent.config.loader import Config


def write_config(tmp_path: Path, *, broker_port: int, modbus_port: int | None = None,
                 devices: list[dict[str, Any]], buses: list[dict[str, Any]] | None = None,
                 **extra: Any) -> Path:
    """gateway.yaml of a test agent: its broker, a Modbus TCP bus `lan` on `modbus_port` unless
    `buses` says otherwise, `devices`, and any other top-level section in `extra`."""
    if buses is None:
        assert modbus_port is not None, "a Modbus port for the `lan` bus, or buses="
        buses = [{"id": "lan", "driver": "modbus-tcp", "host": "127.0.0.1", "port": modbus_port}]
    doc = {
        "gateway": {"id": "gw-test", "site": "site-a"},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "tls": False,
                 "reconnect_max": "1s", **extra.pop("mqtt", {})},
        "buffer": {"path": str(tmp_path / "outbox.db"), "commit_interval": "200ms"},
        "control": {"socket": str(tmp_path / "control.sock")},
        "buses": buses,
        "devices": devices,
        **extra,
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@contextlib.asynccontextmanager
async def running_agent(config: Config, clock: Clock | None = None
                        ) -> AsyncIterator[supervisor.Agent]:
    """The agent served in this process (on `clock`, the system's by default) until the block
    ends."""
    stop = asyncio.Event()
    ready: asyncio.Future[supervisor.Agent] = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(supervisor.serve(config, shutdown_trigger=stop.wait,
                                                  clock=clock, ready=ready.set_result))
    try:
        yield await asyncio.wait_for(asyncio.shield(ready), 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def load(path: Path) -> Config:
    return config_mod.load(path)
