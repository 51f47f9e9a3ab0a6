"""A third-party driver package for a made-up protocol, `tinybus`, and its peer (tests only).

The package is what a driver author would publish: a driver module that imports nothing of the
agent but `agent.sdk`, declares its capabilities (a profile family and a package of profiles of
its own, two wizard questions with their English and French labels, a scan), and one profile.
It is installed through a dist-info entry point (tests.plugins), never imported from here.

The protocol, one line each way over TCP (the peer is a gateway of room sensors):
    LIST                     -> "ID <address> <kind>" per sensor, then "END"
    GET <address> <channel>  -> "VAL <number>" or "ERR"
"""

from __future__ import annotations

import asyncio

DRIVER = '''
import asyncio
from typing import ClassVar, Literal

from pydantic import Field

from agent.sdk.capabilities import (Capabilities, Question, Scan, ScanOption, ScanReport, host,
                                    say, tcp_port)
from agent.sdk.config import BusConfig, DeviceConfig, PointConfig
from agent.sdk.driver import BusStats
from agent.sdk.errors import DeviceUnavailable
from agent.sdk.models import PointValue, Quality
from agent.sdk.writes import check_write


class TinyBusConfig(BusConfig):
    driver: Literal["tinybus"]
    host: str
    port: int = Field(7000, ge=1, le=65535)


class TinyPointConfig(PointConfig):
    channel: int = Field(ge=1, le=8)


class TinyDeviceConfig(DeviceConfig):
    address: int = Field(ge=1, le=99)
    points: list[TinyPointConfig] = Field(default_factory=list)


async def _open(bus, timeout):
    try:
        return await asyncio.wait_for(asyncio.open_connection(bus.host, bus.port), timeout)
    except (OSError, TimeoutError) as exc:
        raise DeviceUnavailable(f"no tinybus gateway at {bus.host}:{bus.port} ({exc})") from None


async def _line(reader, timeout):
    return (await asyncio.wait_for(reader.readline(), timeout)).decode().strip()


async def scan(request, view):
    bus, timeout = request.bus, request.options["timeout"]
    reader, writer = await _open(bus, timeout)
    found = []
    try:
        writer.write(b"LIST\\n")
        while (line := await _line(reader, timeout)) not in ("END", ""):
            _, address, kind = line.split()
            found.append({"address": int(address), "kind": kind})
            view.step(say({"en": "listing", "fr": "inventaire"}), len(found), len(found))
    finally:
        writer.close()
    entries = [{"id": f"{request.prefix}-{f['address']}", "bus": bus.id,
                "address": f["address"], "profile": request.profile or f["kind"]}
               for f in found]
    return ScanReport(
        title=say({"en": "{count} room sensor(s) on {bus}",
                   "fr": "{count} capteur(s) de pièce sur {bus}"}, count=len(found), bus=bus.id),
        columns=[say({"en": "address", "fr": "adresse"}), say({"en": "kind", "fr": "type"})],
        rows=[(str(f["address"]), f["kind"]) for f in found], json={"found": found},
        entries=entries)


class TinyDriver:
    bus_model: ClassVar[type] = TinyBusConfig
    device_model: ClassVar[type] = TinyDeviceConfig
    point_model: ClassVar[type] = TinyPointConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        "tinybus", profiles="tinybus_profiles",
        questions=(Question("host", {"en": "  tinybus gateway address",
                                     "fr": "  adresse de la passerelle tinybus"}, check=host),
                   Question("port", {"en": "  tinybus port", "fr": "  port tinybus"}, 7000,
                            tcp_port)),
        scan=Scan("tinybus", "List the room sensors a tinybus gateway knows.", scan,
                  options=(ScanOption("timeout", "seconds to wait for the gateway", 1.0,
                                      kind=float, low=0.1, high=10),),
                  prefix="room"))

    def __init__(self, bus):
        self.bus = bus
        self.stats = BusStats()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return None

    async def poll(self, device):
        reader, writer = await _open(self.bus, device.timeout)
        values = []
        try:
            for point in device.points:
                self.stats.requests += 1
                writer.write(f"GET {device.address} {point.channel}\\n".encode())
                kind, _, value = (await _line(reader, device.timeout)).partition(" ")
                values.append(PointValue(point.name, float(value)) if kind == "VAL"
                              else PointValue(point.name, None, Quality.BAD))
        finally:
            writer.close()
        return values

    async def write(self, device, point, value):
        check_write(point, value, device)
'''

PROFILE = '''
name: room-sensor
description: a tinybus room temperature sensor
driver: tinybus
poll: 10s
points:
  - {name: temperature, channel: 1, unit: Cel, kind: sensor}
rules:
  too-hot: {type: threshold, point: temperature, above: 30, severity: minor}
'''


def package() -> dict[str, dict[str, str]]:
    """What `tests.plugins.installed` needs: the driver module and the profiles package."""
    return {"modules": {"tinybus_driver": DRIVER},
            "files": {"tinybus_profiles/__init__.py": "",
                      "tinybus_profiles/room-sensor.yaml": PROFILE}}


class Gateway:
    """A tinybus gateway on 127.0.0.1: room sensors by address, with their temperature."""

    def __init__(self, sensors: dict[int, float]) -> None:
        self.sensors = sensors
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := (await reader.readline()).decode().split():
                if line[0] == "LIST":
                    out = "".join(f"ID {a} room-sensor\n" for a in sorted(self.sensors)) + "END\n"
                elif line[0] == "GET" and int(line[1]) in self.sensors:
                    out = f"VAL {self.sensors[int(line[1])]}\n"
                else:
                    out = "ERR\n"
                writer.write(out.encode())
                await writer.drain()
        finally:
            writer.close()
