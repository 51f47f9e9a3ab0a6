"""Config files for the CLI tests and an agent run in-process with its control socket."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml

from drivers.mbus.simulator import WaterMeter


def short_socket() -> Path:
    # A Unix socket path is limited to 107 bytes; pytest's tmp_path names can be longer.
    return Path(tempfile.mkdtemp(prefix="bg-")) / "control.sock"


def write_config(tmp_path: Path, *, buses: list[dict[str, Any]],
                 devices: list[dict[str, Any]], broker_port: int = 1, **extra: Any) -> Path:
    doc = {
        "gateway": {"id": "gw-test", "site": "site-a"},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "tls": False, "reconnect_max": "1s",
                 **extra.pop("mqtt", {})},
        "buffer": {"path": str(tmp_path / "outbox.db"), "commit_interval": "200ms"},
        "control": {"socket": str(short_socket())},
        "buses": buses,
        "devices": devices,
        **extra,
    }
    path = tmp_path / "gateway.yaml"
    path.write_text("# site notes: keep me\n" + yaml.safe_dump(doc, sort_keys=False))
    return path


def mbus_config(tmp_path: Path, port: int) -> Path:
    """One wired M-Bus bus `meters` behind a TCP converter on 127.0.0.1:port, no devices yet."""
    # 38400 baud: behind a TCP converter the rate only sizes the wait for a telegram
    return write_config(tmp_path, buses=[{"id": "meters", "driver": "mbus",
                                          "port": f"socket://127.0.0.1:{port}",
                                          "baudrate": 38400}], devices=[])


def colliding_meters() -> list[WaterMeter]:
    """Two meters left at the factory primary address 0 and one at 3 (a scan must say so)."""
    return [WaterMeter(0, "41000001", "SAP", 0x15, 0x07),
            WaterMeter(0, "41000002", "SAP", 0x15, 0x07),
            WaterMeter(3, "61000003", "ITW", 0x20, 0x16)]
