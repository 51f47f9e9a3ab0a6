"""The simulated building's Modbus equipment with scenario hooks: the VMC caissons, the relevage
pit, the lift box and the I/O module's contacts, each with the variables a scenario may `set`."""

from __future__ import annotations

from typing import Any, Protocol

from agent.sim.modbus_building import Image, LiftStation, Table, VmcCaisson


class Settable(Protocol):
    variables: tuple[str, ...]  # what `set` accepts, checked before a scenario plays

    def set(self, name: str, value: Any) -> None: ...


def bool_value(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: true or false, not {value!r}")
    return value


def number(name: str, value: Any, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: a number{' or null' if optional else ''}, not {value!r}")
    return float(value)


def unknown(kind: str, name: str, known: str) -> ValueError:
    return ValueError(f"{kind} has no variable {name!r}; it has: {known}")


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
            self.forced_pressure = number(name, value, optional=True)
        elif name == "fault":
            self.fault = bool_value(name, value)
        elif name == "fan_enable":
            self.fan_enable = bool_value(name, value)
        elif name == "filter_clogged":
            self.forced_filter = None if value is None else bool_value(name, value)
        else:
            raise unknown("vmc", name, "depression, fault, fan_enable, filter_clogged")


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
            self.inflow_override = number(name, value, optional=True)
        elif name == "pumps_failed":
            self.pumps_failed = bool_value(name, value)
            if self.pumps_failed:
                self.running = [False, False]
        elif name == "level":
            level = number(name, value)
            assert level is not None
            self.level = max(0.0, min(level * 100.0, self.TOP_CM))
        else:
            raise unknown("pump", name, "inflow, pumps_failed, level")


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
            self.in_service = bool_value(name, value)
        elif name == "fault":
            self.fault = bool_value(name, value)
        elif name == "door_open":
            self.forced_door = None if value is None else bool_value(name, value)
        elif name == "floor":
            floor = number(name, value, optional=True)
            self.forced_floor = None if floor is None else int(floor)
        else:
            raise unknown("lift", name, "in_service, fault, door_open, floor")


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
            raise unknown("door contact", name, "open")
        self.module.inputs[self.index] = bool_value(name, value)


class NoVariables:
    variables: tuple[str, ...] = ()

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def set(self, name: str, value: Any) -> None:
        del value
        raise unknown(self.kind, name, "none (silent: only)")
