"""Config files for the CLI tests and an agent run in-process with its control socket."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml


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
