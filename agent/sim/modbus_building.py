"""A simulated building on Modbus TCP: two VMC caissons and a relevage (sump) pump controller.

Used by `batigate sim`/`demo` and by the tests. A real pymodbus server on 127.0.0.1 answers; the
device values are computed from an injectable clock each time a request reaches a device
(SimDevice `action` hook), so a test with a fake clock sees deterministic physics and the demo
sees live drift. No threads: everything runs in the caller's event loop.

Register maps follow public manuals (research/protocols.md §4.1-4.2):
- units 1 and 3, VMC caisson after the Caladair ECOBLUE/ECOVOR tables: input 1 depression,
  input 2 pressure-switch fault, holding 3 setpoint, input 21 general fault (K1);
- unit 2, lift-station controller after the Wilo-Control EC-L: holding 25 level, holding 61
  status bitmap (bits 8/9 pump 1/2 running), holding 138-139 fault bitmap (bit 15 high water);
  counters, hours and current in a vendor block from holding 300.

A real RS-485 line is silent for an absent slave, while pymodbus answers exception 04 for unknown
ids; the building drops those replies (and those of a unit told `set_silent`) in `trace_packet`.
"""

from __future__ import annotations

import logging
import math
import random
import struct
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal, Protocol

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

Table = Literal["coils", "discrete", "input", "holding"]
Image = dict[Table, dict[int, int]]  # table -> address -> register word (or 0/1 for bits)
Clock = Callable[[], float]

_TABLE_OF_FC: dict[int, Table] = {1: "coils", 5: "coils", 15: "coils", 2: "discrete",
                                  3: "holding", 6: "holding", 16: "holding", 22: "holding",
                                  23: "holding", 4: "input"}
_TABLE_ORDER: tuple[Table, ...] = ("coils", "discrete", "holding", "input")  # SimDevice tuple
_BIT_TABLES = ("coils", "discrete")
_UNUSED = 65520  # pymodbus wants every table declared: park an unused entry up here

_VMC_POINTS: list[dict[str, Any]] = [
    {"name": "exhaust_pressure", "register": "input:1", "type": "int16", "scale": 0.1,
     "unit": "Pa"},
    {"name": "pressure_fault", "register": "input:2", "type": "bool"},
    {"name": "fan_speed", "register": "input:4", "type": "uint16", "unit": "rpm"},
    {"name": "general_fault", "register": "input:21", "type": "bool"},
    {"name": "pressure_setpoint", "register": "holding:3", "type": "uint16", "unit": "Pa",
     "writable": True, "min": 50, "max": 250},
    {"name": "fan_enable", "register": "coils:0", "type": "bool", "writable": True},
    {"name": "fan_running", "register": "discrete:0", "type": "bool"},
    {"name": "filter_clogged", "register": "discrete:1", "type": "bool"},
]

# The points of each simulated unit exactly as a technician writes them in gateway.yaml.
DEMO_POINTS: dict[int, list[dict[str, Any]]] = {
    1: _VMC_POINTS,
    2: [
        {"name": "water_level", "register": "holding:25", "type": "int16", "scale": 0.01,
         "unit": "m"},
        {"name": "pump1_running", "register": "holding:61", "type": "bool", "bit": 8},
        {"name": "pump2_running", "register": "holding:61", "type": "bool", "bit": 9},
        {"name": "high_level_alarm", "register": "holding:139", "type": "bool", "bit": 15},
        {"name": "pump1_starts", "register": "holding:300", "type": "uint32", "unit": "count"},
        {"name": "pump2_starts", "register": "holding:302", "type": "uint32", "unit": "count"},
        {"name": "run_hours", "register": "holding:304", "type": "uint32", "word_order": "big",
         "unit": "h"},
        {"name": "motor_current", "register": "holding:306", "type": "float32",
         "word_order": "little", "unit": "A"},
    ],
    3: _VMC_POINTS,
}


def _int16(value: float) -> int:
    return struct.unpack(">H", struct.pack(">h", max(-0x8000, min(0x7FFF, round(value)))))[0]


def _uint32(value: int, order: str = "big") -> list[int]:
    words = list(struct.unpack(">2H", struct.pack(">I", value & 0xFFFF_FFFF)))
    return words if order == "big" else words[::-1]


def _float32(value: float, order: str = "big") -> list[int]:
    words = list(struct.unpack(">2H", struct.pack(">f", value)))
    return words if order == "big" else words[::-1]


def _noise(unit: int, t: float, spread: float) -> float:
    # Same time, same noise: tests with a fake clock stay deterministic.
    return random.Random(unit * 1_000_003 + int(t * 10)).uniform(-spread, spread)


class SimulatedDevice(Protocol):
    def advance(self, now: float) -> None: ...

    def image(self) -> Image: ...

    def write(self, table: Table, address: int, words: list[int]) -> bool: ...


class VmcCaisson:
    """A C4 extract caisson under constant-depression control."""

    SWITCH_PA = 40.0  # the DSC pressure switch trips below this depression

    def __init__(self, unit: int, start: float, setpoint: int = 120) -> None:
        self.unit = unit
        self.start = start
        self.now = start
        self.setpoint = setpoint
        self.fan_enable = True
        self.fault = False  # general fault (K1); tests and the demo can set it
        self.pressure = float(setpoint)

    def advance(self, now: float) -> None:
        self.now = now
        if self.fan_enable and not self.fault:
            drift = 6.0 * math.sin(2 * math.pi * (now - self.start) / 3600.0)
            self.pressure = self.setpoint + drift + _noise(self.unit, now, 2.0)
        else:
            self.pressure = abs(_noise(self.unit, now, 0.5))  # duct at rest: a few tenths of Pa

    @property
    def running(self) -> bool:
        return self.fan_enable and not self.fault

    def image(self) -> Image:
        days = (self.now - self.start) / 86400.0
        rpm = 600 + 6 * self.setpoint + _noise(self.unit + 7, self.now, 15.0) if self.running else 0
        return {
            "input": {1: _int16(self.pressure * 10), 2: int(self.pressure < self.SWITCH_PA),
                      3: _int16(180 + _noise(self.unit + 3, self.now, 5)),  # duct temp x0.1 °C
                      4: round(rpm), 5: 0, 21: int(self.fault)},
            "holding": {3: self.setpoint},
            "coils": {0: int(self.fan_enable)},
            "discrete": {0: int(self.running), 1: int(days > 40)},  # filter loaded after 40 days
        }

    def write(self, table: Table, address: int, words: list[int]) -> bool:
        if table == "holding" and address == 3 and len(words) == 1 and 50 <= words[0] <= 250:
            self.setpoint = words[0]
            return True
        if table == "coils" and address == 0 and len(words) == 1:
            self.fan_enable = bool(words[0])
            return True
        return False


class LiftStation:
    """A two-pump relevage pit: it fills, the duty pump empties it, pumps alternate."""

    START_CM, ASSIST_CM, STOP_CM = 120.0, 150.0, 40.0
    ALARM_ON_CM, ALARM_OFF_CM = 170.0, 160.0
    PUMP_CM_S = 0.25  # level drop per running pump

    def __init__(self, unit: int, start: float) -> None:
        self.unit = unit
        self.start = start
        self.last = start
        self.level = 80.0
        self.running = [False, False]
        self.starts = [104_211, 98_877]  # a pit that has worked for years
        self.run_seconds = 15_230 * 3600.0
        self.duty = 0  # the pump that starts first in the next cycle
        self.alarm = False

    def inflow(self, t: float) -> float:
        """cm/s: a steady trickle plus a rain surge every two hours."""
        surge = max(0.0, math.sin(2 * math.pi * (t - self.start) / 7200.0)) ** 8
        return 0.08 + 0.3 * surge

    def advance(self, now: float) -> None:
        now = max(now, self.last)  # a clock that goes back does not un-pump water
        t = self.last
        end = min(now, t + 6 * 3600)  # long gaps: simulate the last hours only
        t = max(t, end - 6 * 3600)
        while t < end:
            step = min(1.0, end - t)
            self._step(t, step)
            t += step
        self.last = now

    def _step(self, t: float, dt: float) -> None:
        pumping = sum(self.running)
        self.level = max(0.0, self.level + (self.inflow(t) - pumping * self.PUMP_CM_S) * dt)
        self.run_seconds += pumping * dt
        if self.level >= self.START_CM and not any(self.running):
            self._start(self.duty)
            self.duty = 1 - self.duty
        if self.level >= self.ASSIST_CM and not all(self.running):
            self._start(self.running.index(False))
        if self.level <= self.STOP_CM:
            self.running = [False, False]
        if self.level >= self.ALARM_ON_CM:
            self.alarm = True
        elif self.level <= self.ALARM_OFF_CM:
            self.alarm = False

    def _start(self, pump: int) -> None:
        self.running[pump] = True
        self.starts[pump] += 1

    def image(self) -> Image:
        status = (any(self.running) << 0) | (self.running[0] << 8) | (self.running[1] << 9)
        amps = sum(4.2 + _noise(self.unit + p, self.last, 0.15) for p in (0, 1) if self.running[p])
        holding: dict[int, int] = {0: 1000, 2: 8, 24: 11, 25: _int16(self.level), 61: status,
                                   138: 0, 139: int(self.alarm) << 15}
        for address, words in ((300, _uint32(self.starts[0])), (302, _uint32(self.starts[1])),
                               (304, _uint32(int(self.run_seconds // 3600))),
                               (306, _float32(amps, "little"))):
            holding[address], holding[address + 1] = words
        return {"holding": holding, "input": {}, "coils": {}, "discrete": {}}

    def write(self, table: Table, address: int, words: list[int]) -> bool:
        del table, address, words
        return False  # the demo keeps the pit in automatic mode


class ModbusBuilding:
    """The simulated building's Modbus TCP server; `async with` or start()/stop()."""

    def __init__(self, clock: Clock = time.monotonic, *, framer: Literal["tcp", "rtu"] = "tcp",
                 host: str = "127.0.0.1") -> None:
        self.clock = clock
        self.framer = FramerType.RTU if framer == "rtu" else FramerType.SOCKET
        self.host = host
        now = clock()
        self.devices: dict[int, SimulatedDevice] = {
            1: VmcCaisson(1, now), 2: LiftStation(2, now), 3: VmcCaisson(3, now, setpoint=110)}
        self.request_count: Counter[int] = Counter()  # requests seen per unit id
        self._silent: set[int] = set()
        self._garbage: set[int] = set()
        self._replying_to = 0
        self._server: ModbusTcpServer | None = None
        self.port = 0

    async def start(self, port: int = 0) -> int:
        """Listen on `host:port` (0 = a free port); return the bound port."""
        quiet = logging.getLogger("pymodbus")
        if quiet.level == logging.NOTSET:  # unknown ids are expected here, not errors
            quiet.setLevel(logging.CRITICAL)
        sims = [self._sim_device(unit, dev) for unit, dev in self.devices.items()]
        sims.append(SimDevice(id=0, simdata=SimData(_UNUSED, datatype=DataType.INVALID)))
        self._server = ModbusTcpServer(sims, address=(self.host, port), framer=self.framer,
                                       trace_packet=self._trace_packet,
                                       trace_pdu=self._trace_pdu)
        await self._server.serve_forever(background=True)
        self.port = int(self._server.transport.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    async def __aenter__(self) -> ModbusBuilding:
        await self.start(self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def set_silent(self, unit: int, silent: bool = True) -> None:
        """Make `unit` stop answering, like a slave unplugged from the RS-485 line."""
        (self._silent.add if silent else self._silent.discard)(unit)

    def set_garbage(self, unit: int, garbage: bool = True) -> None:
        """Corrupt `unit`'s replies (bad CRC on RTU, bad MBAP header on TCP)."""
        (self._garbage.add if garbage else self._garbage.discard)(unit)

    # -- pymodbus hooks ------------------------------------------------------------------------

    def _sim_device(self, unit: int, device: SimulatedDevice) -> SimDevice:
        image = device.image()
        tables = []
        for table in _TABLE_ORDER:
            values = image[table]
            if table in _BIT_TABLES:
                data = [SimData(a, values=bool(v), datatype=DataType.BITS)
                        for a, v in sorted(values.items())]
                tables.append(data or [SimData(_UNUSED, values=False, datatype=DataType.BITS)])
            else:
                # Only addresses the model publishes exist: the others answer exception 02,
                # as the holes in a real register map do.
                data = [SimData(a, values=v, datatype=DataType.UINT16)
                        for a, v in sorted(values.items())]
                tables.append(data or [SimData(_UNUSED, datatype=DataType.INVALID)])

        async def action(fc: int, start: int, address: int, count: int, registers: list[int],
                         values: list[int] | list[bool] | None) -> ExcCodes | None:
            del count
            table = _TABLE_OF_FC[fc]
            device.advance(self.clock())
            if values is not None and not device.write(table, address, [int(v) for v in values]):
                return ExcCodes.ILLEGAL_VALUE
            self._refresh(table, start, registers, device.image()[table])
            return None

        return SimDevice(id=unit, simdata=(tables[0], tables[1], tables[2], tables[3]),
                         action=action)

    @staticmethod
    def _refresh(table: Table, start: int, registers: list[int], values: dict[int, int]) -> None:
        # Bit tables are packed 16 to a register from `start` (in registers); word tables are
        # one register per address from `start`.
        for address, value in values.items():
            if table in _BIT_TABLES:
                index, bit = address // 16 - start, address % 16
                if 0 <= index < len(registers):
                    word = registers[index] & ~(1 << bit)
                    registers[index] = word | (int(bool(value)) << bit)
            elif 0 <= address - start < len(registers):
                registers[address - start] = value

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if sending:
            self._replying_to = pdu.dev_id  # read right after by _trace_packet, same call chain
        else:
            self.request_count[pdu.dev_id] += 1
        return pdu

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            return data
        unit = self._replying_to
        if unit in self._silent or unit not in self.devices:
            return b""
        if unit in self._garbage:
            if self.framer == FramerType.RTU:
                return data[:-1] + bytes([data[-1] ^ 0x5A])  # CRC no longer matches
            return data[:2] + b"\xbe\xef" + data[4:]  # protocol id must be 0
        return data
