"""The whole simulated building: every kind of equipment batigate meets, on two real servers.

- Modbus TCP (`agent.sim.modbus_building.ModbusBuilding`): unit 1 VMC caisson, unit 2 relevage
  pit, unit 3 spare VMC, unit 4 lift monitoring box, unit 5 a small I/O module whose discrete
  inputs carry the skydome (0) and garage-door (1) contacts: GPIO cannot travel over a network,
  so the contacts are simulated the way many sites wire them, through an I/O module.
- M-Bus over TCP (`drivers.mbus.simulator.MBusSimulator`): water meters 1-5 (meter 4 leaks
  6 l/h day and night) and heat meters 10-12, each billing a dwelling and keeping its set-day
  and month-end values with their dates (`agent.sim.meters`).
- Radio (`agent.sim.radio_meters`): the flats' wireless M-Bus meters, encrypted (OMS mode 5),
  heard by an emulated iM871A and an emulated Amber AMB8465 on TCP (`agent.sim.radio_stick`):
  flat 103's water leaks, flat 104's meter falls silent after 3 minutes, a neighbour's meter is
  heard too; `keys_file()` writes the keys the gateway needs.

The Modbus equipment's scenario hooks are in `agent.sim.scripted`. Every device reads the same
`SimClock`; `play(scenario, speed)` runs a scenario file against it
(see `agent.sim.scenario`). `gateway_sections()` gives the `buses:`/`devices:` a gateway config
needs, with the device profiles, so `batigate sim` and the demo share one description.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.sim.meters import MeterHandle, building_meters, meter_devices, meter_name
from agent.sim.modbus_building import ModbusBuilding
from agent.sim.radio_meters import RadioAir, default_radio_meters, gateway_devices, keys_file
from agent.sim.radio_stick import EmulatedStick
from agent.sim.scenario import SimClock, Step
from agent.sim.scenario import load as load_scenario
from agent.sim.scripted import (Contact, IoModule, LiftBox, NoVariables, ScriptedPit, ScriptedVmc,
                                Settable)
from drivers.mbus.simulator import MBusSimulator

LIFT_UNIT, IO_UNIT = 4, 5
SITE_TZ = "Europe/Paris"


class Building:
    """The simulated building's two servers and its scripted devices."""

    def __init__(self, clock: SimClock | None = None, host: str = "127.0.0.1",
                 radio_interval: float = 16.0) -> None:
        self.clock = clock or SimClock()
        self.host = host
        now = self.clock()
        self.modbus = ModbusBuilding(self.clock, host=host)
        self.io = IoModule()
        vmc, spare, pit, lift = (ScriptedVmc(1, now), ScriptedVmc(3, now, setpoint=110),
                                 ScriptedPit(2, now), LiftBox(now))
        self.modbus.devices.update({1: vmc, 2: pit, 3: spare, LIFT_UNIT: lift, IO_UNIT: self.io})
        # The meters keep French legal time, as the ones in a French building do.
        self.mbus = MBusSimulator(building_meters(self.clock, SITE_TZ), self.clock)
        self.units: dict[str, int] = {"vmc": 1, "pump": 2, "vmc-spare": 3, "lift": LIFT_UNIT,
                                      "io": IO_UNIT}
        self.targets: dict[str, Settable] = {
            "vmc": vmc, "pump": pit, "vmc-spare": spare, "lift": lift,
            "skydome": Contact(self.io, 0), "garage-door": Contact(self.io, 1),
            "io": NoVariables("io module")}
        for meter in self.mbus.meters.values():
            self.targets[meter_name(meter)] = MeterHandle(meter, self.clock)
        self.ports: tuple[int, int] = (0, 0)
        self.radio_meters = default_radio_meters(self.clock, interval=radio_interval, tz=SITE_TZ)
        self.air = RadioAir(self.radio_meters, self.clock)
        self.sticks = {"im871a": EmulatedStick("im871a"), "amber": EmulatedStick("amber")}
        self.air.sticks.extend(self.sticks.values())
        self.radio_ports: dict[str, int] = {}
        self._air_task: asyncio.Task[None] | None = None

    async def start(self, modbus_port: int = 0, mbus_port: int = 0,
                    radio_ports: tuple[int, int] = (0, 0)) -> tuple[int, int]:
        """Listen on every server (0 = a free port); return (modbus_port, mbus_port).

        The radio sticks' ports are in `radio_ports` ({"im871a": port, "amber": port})."""
        modbus = await self.modbus.start(modbus_port)
        try:
            mbus = await self.mbus.start(self.host, mbus_port)
            for (name, stick), port in zip(self.sticks.items(), radio_ports, strict=True):
                self.radio_ports[name] = await stick.start_tcp(self.host, port)
        except OSError:
            await self.stop()
            raise
        self.ports = (modbus, mbus)
        self._air_task = asyncio.ensure_future(self.air.run())
        return self.ports

    async def stop(self) -> None:
        if self._air_task is not None:
            self._air_task.cancel()
            await asyncio.gather(self._air_task, return_exceptions=True)
            self._air_task = None
        for stick in self.sticks.values():
            await stick.stop()
        await self.mbus.stop()
        await self.modbus.stop()

    async def __aenter__(self) -> Building:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- scenarios -------------------------------------------------------------------------------

    def check(self, steps: list[Step]) -> None:
        """Raise ValueError for a step naming an unknown device or variable, before playing."""
        for step in steps:
            if step.device is None:
                continue
            if step.device not in self.targets:
                raise ValueError(f"unknown device {step.device!r}; the building has: "
                                 f"{', '.join(sorted(self.targets))}")
            target = self.targets[step.device]
            for name in step.set:
                if name not in target.variables:
                    raise ValueError(f"{step.device} has no variable {name!r}; it has: "
                                     f"{', '.join(target.variables) or 'none (silent: only)'}")
            if step.silent is not None and not self._silenceable(step.device):
                raise ValueError(f"{step.device}: a contact of the I/O module cannot be silent "
                                 "on its own; silence device `io`")

    def _silenceable(self, device: str) -> bool:
        return device in self.units or device.startswith(("meter-", "heat-"))

    def apply(self, step: Step) -> None:
        """Apply one step now."""
        if step.time is not None:
            self.clock.jump_to(step.time)
        if step.device is None:
            return
        if step.silent is not None:
            self._silence(step.device, step.silent)
        target = self.targets[step.device]
        for name, value in step.set.items():
            target.set(name, value)

    def _silence(self, device: str, silent: bool) -> None:
        if device in self.units:
            self.modbus.set_silent(self.units[device], silent)
            return
        handle = self.targets[device]
        assert isinstance(handle, MeterHandle)
        self.mbus.set_silent(handle.meter.primary, silent)

    async def play(self, scenario: str | list[Step], speed: float = 1.0) -> None:
        """Run a scenario (a name or parsed steps); the building runs `speed` times faster."""
        steps = load_scenario(scenario) if isinstance(scenario, str) else scenario
        self.check(steps)
        loop = asyncio.get_running_loop()
        started = loop.time()
        previous = self.clock.rate
        self.clock.set_rate(speed)
        try:
            for step in steps:
                delay = step.at / speed - (loop.time() - started)
                if delay > 0:
                    await asyncio.sleep(delay)
                self.apply(step)
        finally:
            self.clock.set_rate(previous)

    # -- gateway config ------------------------------------------------------------------------

    def gateway_sections(self, poll: str | None = "2s", meter_poll: str | None = "10s",
                         keys: Path | None = None) -> dict[str, list[dict[str, Any]]]:
        """`buses:` and `devices:` for a gateway config that reads this building (once started).

        With `keys`, the radio meters' keys are written there and the radio bus (the emulated
        iM871A) and its meters are part of it."""
        modbus_port, mbus_port = self.ports
        if not modbus_port or not mbus_port:
            raise RuntimeError("start() the building first: the config needs its ports")
        buses = demo_buses(self.host, modbus_port, mbus_port)
        devices = demo_devices(poll=poll, meter_poll=meter_poll)
        if keys is not None:
            buses.append({"id": "radio", "driver": "wmbus", "receiver": "im871a",
                          "port": f"socket://{self.host}:{self.radio_ports['im871a']}",
                          "keys": str(keys_file(self.radio_meters, keys))})
            devices += gateway_devices(self.radio_meters, "radio")
        return {"buses": buses, "devices": devices}


def demo_buses(host: str, modbus_port: int, mbus_port: int) -> list[dict[str, Any]]:
    return [{"id": "lan", "driver": "modbus-tcp", "host": host, "port": modbus_port},
            {"id": "meters", "driver": "mbus", "port": f"socket://{host}:{mbus_port}"}]


def demo_devices(poll: str | None = "2s", meter_poll: str | None = "10s",
                 timeout: str = "500ms") -> list[dict[str, Any]]:
    """The building's devices as a technician would declare them: by profile."""
    fast = {"poll": poll} if poll else {}
    slow = {"poll": meter_poll} if meter_poll else {}
    modbus: list[dict[str, Any]] = [
        {"id": "vmc", "address": 1, "profile": "vmc-caisson"},
        {"id": "pump", "address": 2, "profile": "relevage-pump"},
        {"id": "vmc-spare", "address": 3, "profile": "vmc-caisson"},
        {"id": "lift", "address": LIFT_UNIT, "profile": "lift-box"},
        {"id": "skydome", "address": IO_UNIT, "profile": "door-contact-modbus"},
        {"id": "garage-door", "address": IO_UNIT, "profile": "door-contact-modbus",
         "points": [{"name": "open", "register": "discrete:1"}]},
    ]
    devices = [{**d, "bus": "lan", "timeout": timeout, **fast} for d in modbus]
    devices += meter_devices(slow)
    return devices


async def serve(modbus_port: int = 5020, mbus_port: int = 2400, *, host: str = "127.0.0.1",
                scenario: str | None = None, speed: float = 1.0,
                ready: Callable[[Building], None] | None = None,
                radio_ports: tuple[int, int] = (0, 0)) -> None:
    """Run the building until cancelled (for `batigate sim [--scenario NAME]`).

    `ready` gets the started building (its `ports`, `gateway_sections()`); the scenario, if any,
    is checked before the servers start, then plays once, and the building keeps running.
    """
    building = Building(host=host)
    steps = load_scenario(scenario) if scenario else None
    if steps is not None:
        building.check(steps)
    await building.start(modbus_port, mbus_port, radio_ports)
    try:
        if ready is not None:
            ready(building)
        if steps is not None:
            await building.play(steps, speed)
        await asyncio.Event().wait()
    finally:
        await building.stop()
