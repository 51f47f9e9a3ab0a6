"""The whole simulated building: every kind of equipment batigate meets, on two real servers.

- Modbus TCP (`agent.sim.modbus_building.ModbusBuilding`): unit 1 VMC caisson, unit 2 relevage
  pit, unit 3 spare VMC, unit 4 lift monitoring box, unit 5 a small I/O module whose discrete
  inputs carry the skydome (0) and garage-door (1) contacts: GPIO cannot travel over a network,
  so the contacts are simulated the way many sites wire them, through an I/O module.
- M-Bus over TCP (`drivers.mbus.simulator.MBusSimulator`): water meters 1-5 (meter 4 leaks
  6 l/h day and night) and heat meters 10-12.
- Radio (`agent.sim.radio_meters`): the flats' wireless M-Bus meters, encrypted (OMS mode 5),
  heard by an emulated iM871A and an emulated Amber AMB8465 on TCP (`agent.sim.radio_stick`):
  flat 103's water leaks, flat 104's meter falls silent after 3 minutes, a neighbour's meter is
  heard too; `keys_file()` writes the keys the gateway needs.

Every device reads the same `SimClock`; `play(scenario, speed)` runs a scenario file against it
(see `agent.sim.scenario`). `gateway_sections()` gives the `buses:`/`devices:` a gateway config
needs, with the device profiles, so `batigate sim` and the demo share one description.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from pathlib import Path

from agent.sim.modbus_building import Image, LiftStation, ModbusBuilding, Table, VmcCaisson
from agent.sim.radio_meters import RadioAir, default_radio_meters, gateway_devices, keys_file
from agent.sim.radio_stick import EmulatedStick
from agent.sim.scenario import SimClock, Step
from agent.sim.scenario import load as load_scenario
from drivers.mbus.simulator import HeatMeter, MBusSimulator, SimMeter, WaterMeter, default_meters

LIFT_UNIT, IO_UNIT = 4, 5
SITE_TZ = "Europe/Paris"
# Billing keys of the simulated meters: the landlord's lot reference and what each one counts.
METER_BILLING = {1: ("A-011", "cold_water"), 2: ("A-012", "cold_water"), 3: ("A-012", "hot_water"),
                 4: ("B-021", "cold_water"), 5: ("B-022", "cold_water"), 10: ("A-011", "heat"),
                 11: ("A-012", "heat"), 12: ("B-021", "heat")}


class Settable(Protocol):
    variables: tuple[str, ...]  # what `set` accepts, checked before a scenario plays

    def set(self, name: str, value: Any) -> None: ...


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: true or false, not {value!r}")
    return value


def _number(name: str, value: Any, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: a number{' or null' if optional else ''}, not {value!r}")
    return float(value)


def _unknown(kind: str, name: str, known: str) -> ValueError:
    return ValueError(f"{kind} has no variable {name!r}; it has: {known}")


# -- Modbus devices with scenario hooks --------------------------------------------------------


class ScriptedVmc(VmcCaisson):
    """The VMC caisson, plus `depression` (Pa, null = back to physics), `fault`, `fan_enable`,
    `filter_clogged`."""

    variables = ("depression", "fault", "fan_enable", "filter_clogged")

    def __init__(self, unit: int, start: float, setpoint: int = 120) -> None:
        super().__init__(unit, start, setpoint)
        self.forced_pressure: float | None = None
        self.forced_filter: bool | None = None

    def advance(self, now: float) -> None:
        super().advance(now)
        if self.forced_pressure is not None:
            self.pressure = self.forced_pressure

    def image(self) -> Image:
        image = super().image()
        if self.forced_filter is not None:
            image["discrete"][1] = int(self.forced_filter)
        return image

    def set(self, name: str, value: Any) -> None:
        if name == "depression":
            self.forced_pressure = _number(name, value, optional=True)
        elif name == "fault":
            self.fault = _bool(name, value)
        elif name == "fan_enable":
            self.fan_enable = _bool(name, value)
        elif name == "filter_clogged":
            self.forced_filter = None if value is None else _bool(name, value)
        else:
            raise _unknown("vmc", name, "depression, fault, fan_enable, filter_clogged")


class ScriptedPit(LiftStation):
    """The relevage pit, plus the EC-L float-switch register and pump faults.

    Variables: `inflow` (cm/s, null = the natural trickle and rain surges), `pumps_failed`
    (both pumps tripped), `level` (m, moved once; physics goes on from there). The pit is
    200 cm deep; from 195 cm the high-water float reports overflow (holding 197 = 4).
    """

    TOP_CM, OVERFLOW_CM = 200.0, 195.0
    variables = ("inflow", "pumps_failed", "level")

    def __init__(self, unit: int, start: float) -> None:
        super().__init__(unit, start)
        self.inflow_override: float | None = None
        self.pumps_failed = False

    def inflow(self, t: float) -> float:
        return self.inflow_override if self.inflow_override is not None else super().inflow(t)

    def _start(self, pump: int) -> None:
        if not self.pumps_failed:  # a tripped pump ignores the controller's start
            super()._start(pump)

    def _step(self, t: float, dt: float) -> None:
        super()._step(t, dt)
        self.level = min(self.level, self.TOP_CM)  # the pit overflows, it does not fill higher

    def float_switch(self) -> int:
        # Wilo-Control EC-L 40198: 1 pumps off, 2 P1 on, 3 P2 on, 4 high water.
        if self.level >= self.OVERFLOW_CM:
            return 4
        if self.running[1]:
            return 3
        return 2 if self.running[0] else 1

    def image(self) -> Image:
        image = super().image()
        holding = image["holding"]
        failed = int(self.pumps_failed)
        holding[61] |= failed << 1  # SSM collective fault
        holding[139] |= (failed << 5) | (failed << 6)  # pump 1 / pump 2 error
        holding[197] = self.float_switch()
        return image

    def set(self, name: str, value: Any) -> None:
        if name == "inflow":
            self.inflow_override = _number(name, value, optional=True)
        elif name == "pumps_failed":
            self.pumps_failed = _bool(name, value)
            if self.pumps_failed:
                self.running = [False, False]
        elif name == "level":
            level = _number(name, value)
            assert level is not None
            self.level = max(0.0, min(level * 100.0, self.TOP_CM))
        else:
            raise _unknown("pump", name, "inflow, pumps_failed, level")


class LiftBox:
    """A lift monitoring box: discrete 0 in service, 1 fault, 2 door open; holding 0 floor.

    In service, the car visits floors 0-5 a floor a minute and opens its door for 10 s at each.
    Variables: `in_service`, `fault`, `door_open` (null = back to the car's own cycle), `floor`.
    """

    FLOORS = 6
    variables = ("in_service", "fault", "door_open", "floor")

    def __init__(self, start: float) -> None:
        self.start = start
        self.now = start
        self.in_service = True
        self.fault = False
        self.forced_door: bool | None = None
        self.forced_floor: int | None = None

    def advance(self, now: float) -> None:
        self.now = now

    def _floor(self) -> int:
        if self.forced_floor is not None or not self.in_service:
            return self.forced_floor or 0
        cycle = int((self.now - self.start) // 60) % (2 * self.FLOORS - 2)
        return cycle if cycle < self.FLOORS else 2 * self.FLOORS - 2 - cycle

    def _door(self) -> bool:
        if self.forced_door is not None:
            return self.forced_door
        return self.in_service and (self.now - self.start) % 60 < 10

    def image(self) -> Image:
        return {"discrete": {0: int(self.in_service), 1: int(self.fault), 2: int(self._door())},
                "holding": {0: self._floor()}, "coils": {}, "input": {}}

    def write(self, table: Table, address: int, words: list[int]) -> bool:
        del table, address, words
        return False  # a monitoring box is read-only

    def set(self, name: str, value: Any) -> None:
        if name == "in_service":
            self.in_service = _bool(name, value)
        elif name == "fault":
            self.fault = _bool(name, value)
        elif name == "door_open":
            self.forced_door = None if value is None else _bool(name, value)
        elif name == "floor":
            floor = _number(name, value, optional=True)
            self.forced_floor = None if floor is None else int(floor)
        else:
            raise _unknown("lift", name, "in_service, fault, door_open, floor")


class IoModule:
    """A small Modbus I/O module: dry contacts on its discrete inputs."""

    def __init__(self, inputs: int = 4) -> None:
        self.inputs = [False] * inputs

    def advance(self, now: float) -> None:
        del now  # contacts change only when a scenario moves them

    def image(self) -> Image:
        return {"discrete": dict(enumerate(int(v) for v in self.inputs)), "coils": {},
                "holding": {}, "input": {}}

    def write(self, table: Table, address: int, words: list[int]) -> bool:
        del table, address, words
        return False


class Contact:
    """One door / skydome contact on an input of the I/O module; variable `open`."""

    variables = ("open",)

    def __init__(self, module: IoModule, index: int) -> None:
        self.module = module
        self.index = index

    def set(self, name: str, value: Any) -> None:
        if name != "open":
            raise _unknown("door contact", name, "open")
        self.module.inputs[self.index] = _bool(name, value)


class MeterHandle:
    """An M-Bus meter in a scenario: water meters take `leak` (l/h) and `daily` (l/day)."""

    def __init__(self, meter: SimMeter, clock: Callable[[], float]) -> None:
        self.meter = meter
        self.clock = clock
        self.variables = ("leak", "daily") if isinstance(meter, WaterMeter) else ()

    def set(self, name: str, value: Any) -> None:
        meter = self.meter
        if not isinstance(meter, WaterMeter) or name not in ("leak", "daily"):
            known = "leak, daily" if isinstance(meter, WaterMeter) else "none (silent: only)"
            raise _unknown(f"meter {meter.primary}", name, known)
        amount = _number(name, value)
        assert amount is not None
        # The index integrates the flow since `started`: restart the integral from the index
        # now, or the new flow would rewrite the past and the index would jump.
        now = self.clock()
        meter.base_litres, meter.started = meter.litres(now), now
        if name == "leak":
            meter.leak_lph = amount
        else:
            meter.daily_litres = amount


# -- the building --------------------------------------------------------------------------------


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
        self.mbus = MBusSimulator(default_meters(self.clock, SITE_TZ), self.clock)
        self.units: dict[str, int] = {"vmc": 1, "pump": 2, "vmc-spare": 3, "lift": LIFT_UNIT,
                                      "io": IO_UNIT}
        self.targets: dict[str, Settable] = {
            "vmc": vmc, "pump": pit, "vmc-spare": spare, "lift": lift,
            "skydome": Contact(self.io, 0), "garage-door": Contact(self.io, 1),
            "io": _NoVariables("io module")}
        for meter in self.mbus.meters.values():
            self.targets[_meter_id(meter)] = MeterHandle(meter, self.clock)
        self.ports: tuple[int, int] = (0, 0)
        self.radio_meters = default_radio_meters(self.clock, interval=radio_interval)
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


class _NoVariables:
    variables: tuple[str, ...] = ()

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def set(self, name: str, value: Any) -> None:
        del value
        raise _unknown(self.kind, name, "none (silent: only)")


def _meter_id(meter: SimMeter) -> str:
    return f"heat-{meter.primary}" if isinstance(meter, HeatMeter) else f"meter-{meter.primary}"


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
    meters = [_meter_id(m) for m in default_meters()]
    devices = [{**d, "bus": "lan", "timeout": timeout, **fast} for d in modbus]
    devices += [{"id": name, "bus": "meters", "address": int(name.split("-")[1]),
                 "profile": "heat-meter" if name.startswith("heat") else "water-meter",
                 "dwelling": METER_BILLING[int(name.split("-")[1])][0],
                 "medium": METER_BILLING[int(name.split("-")[1])][1],
                 "timeout": "1s", **slow} for name in meters]
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
