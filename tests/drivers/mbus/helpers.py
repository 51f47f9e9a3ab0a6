"""What the M-Bus driver and scan tests share: a recording bus and short config builders."""

from __future__ import annotations

from typing import Any

from drivers.mbus import frames
from drivers.mbus.config import MBusBusConfig, MBusDeviceConfig
from drivers.mbus.simulator import MBusSimulator


class RecordingBus(MBusSimulator):
    """The simulated bus, keeping every frame the master sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heard: list[bytes] = []

    def handle(self, frame: bytes) -> bytes:
        self.heard.append(frame)
        return super().handle(frame)

    def req_ud2_c_fields(self, address: int) -> list[int]:
        return [f[1] for f in self.heard
                if f[0] == frames.START_SHORT and f[2] == address and f[1] & ~0x20 == 0x5B]



def bus_config(sim: MBusSimulator, **extra: Any) -> MBusBusConfig:
    return MBusBusConfig.model_validate({"id": "meters", "driver": "mbus",
                                         "port": f"socket://127.0.0.1:{sim.port}", **extra})


def meter(**fields: Any) -> MBusDeviceConfig:
    name = f"m-{fields.get('address', fields.get('secondary'))}".lower()
    return MBusDeviceConfig.model_validate({"id": name, "bus": "meters", "timeout": "200ms",
                                            **fields})


def rec(name: str, quantity: str, **selector: Any) -> dict[str, Any]:
    return {"name": name, "record": {"quantity": quantity, **selector}}


def by_name(values: Any) -> dict[str, Any]:
    return {v.name: v for v in values}
