"""The config file the end-to-end benchmarks run a real agent on: one bench gateway, no TLS,
health reports out of the way (1 h), the buses and devices the benchmark measures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def write_gateway_file(workdir: Path, broker: int, *, log_level: str,
                       buses: list[dict[str, Any]], devices: list[dict[str, Any]]) -> Path:
    doc = {
        "gateway": {"id": "gw-bench", "site": "bench"},
        "mqtt": {"host": "127.0.0.1", "port": broker, "tls": False},
        "buffer": {"path": str(workdir / "outbox.db")},
        "control": {"socket": str(workdir / "control.sock")},
        "health": {"interval": "1h"},
        "log_level": log_level,
        "buses": buses,
        "devices": devices,
    }
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path
