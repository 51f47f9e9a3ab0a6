"""Fixtures of the command tests: an agent built from a real config file, not running (the
validation paths need no broker or bus), and a key pair for signed commands."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import loader as config_mod
from agent.runtime import supervisor
from agent.sdk.clock import SystemClock
from agent.sim.modbus_building import DEMO_POINTS

GATEWAY = "gw-test"
_ids = itertools.count(1)


def config_doc(tmp_path: Path, *, modbus_port: int = 1, broker_port: int = 1883,
               **extra: Any) -> dict[str, Any]:
    """A lab config: commands run unsigned (`commands.unsigned: allow`) unless `commands=` says
    otherwise (the secure default is tested with `commands={}`)."""
    extra.setdefault("commands", {"unsigned": "allow"})
    return {
        "gateway": {"id": GATEWAY, "site": "site-a"},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "tls": False,
                 "username": "gw", "password": "hunter2", "reconnect_max": "1s"},
        "buffer": {"path": str(tmp_path / "outbox.db"), "commit_interval": "200ms"},
        "control": {"socket": str(tmp_path / "control.sock")},
        "buses": [{"id": "lan", "driver": "modbus-tcp", "host": "127.0.0.1",
                   "port": modbus_port}],
        "devices": [{"id": "vmc-a", "bus": "lan", "address": 1, "poll": "300ms",
                     "timeout": "300ms", "points": DEMO_POINTS[1]}],
        **extra,
    }


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def request(op: str, args: dict[str, Any] | None = None, *, ttl: float = 60,
            **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": f"cmd-{next(_ids)}-{time.monotonic_ns()}", "op": op,
                            "exp": int(time.time() + ttl)}
    if args is not None:
        body["args"] = args
    body.update(extra)
    return body


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write(tmp_path, config_doc(tmp_path))


@pytest.fixture
def agent(config_path: Path) -> Iterator[supervisor.Agent]:
    built = supervisor.Agent(config_mod.load(config_path), SystemClock())
    try:
        yield built
    finally:
        built.outbox.close()


@pytest.fixture
def private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def handler_agent(agent: supervisor.Agent) -> tuple[Any, supervisor.Agent]:
    from agent.commands import CommandHandler  # noqa: PLC0415

    return CommandHandler(agent), agent
