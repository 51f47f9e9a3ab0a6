"""What the wire profile tests share: the two-device building config they run the agent on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.sim.modbus_building import DEMO_POINTS
from tests.broker import Mosquitto
from tests.integration.helpers import write_config

# A threshold that is always crossed: every run has an active alarm to map.
VMC_LOW = {"id": "vmc-low", "type": "threshold", "point": "vmc-a/exhaust_pressure",
           "below": 1e6, "severity": "major"}


def two_devices_config(tmp_path: Path, broker: Mosquitto, modbus_port: int, *,
                       mqtt: dict[str, Any], rules: list[dict[str, Any]]) -> Path:
    """The VMC (unit 1) and the pump (unit 2) of the simulated building, polled every 300 ms."""
    return write_config(
        tmp_path, broker_port=broker.port, modbus_port=modbus_port,
        devices=[{"id": "vmc-a", "bus": "lan", "address": 1, "poll": "300ms", "timeout": "300ms",
                  "points": DEMO_POINTS[1]},
                 {"id": "pump-1", "bus": "lan", "address": 2, "poll": "300ms",
                  "timeout": "300ms", "points": DEMO_POINTS[2]}],
        mqtt=mqtt, rules=rules)
