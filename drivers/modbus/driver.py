"""`ModbusDriver`: polls and writes the devices of one Modbus TCP endpoint or RTU line.

The poller calls `poll()` for one device at a time, holding the bus lock, and does scheduling,
retries and down/up bookkeeping; this class turns a device's points into coalesced reads,
decodes them, and tells a dead device (DeviceUnavailable) from a refused block (quality BAD).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Self

from agent.sdk.capabilities import Capabilities, Question, host, tcp_port, whole
from agent.sdk.config import BusConfig, DeviceConfig, PointConfig
from agent.sdk.driver import BusStats
from agent.sdk.errors import DeviceUnavailable, DriverError
from agent.sdk.models import PointValue, Quality, Value
from agent.sdk.writes import check_write
from drivers.modbus import codec
from drivers.modbus.config import (BIT_TABLES, ModbusBusConfig, ModbusDeviceConfig,
                                   ModbusPointConfig)
from drivers.modbus.link import ModbusLink, Refused
from drivers.modbus.plan import Block, coalesce, needs_of, split
from drivers.modbus.scan import SCAN

ILLEGAL_ADDRESS = 2
# A TCP->RTU gateway answers these when the slave behind it is silent: the device is absent.
GATEWAY_NO_DEVICE = frozenset({10, 11})


@dataclass(slots=True)
class _Plan:
    points: list[ModbusPointConfig]  # what the plan was built from, to notice a config change
    blocks: list[Block]


# What `batigate init` asks for a bus (agent.sdk.capabilities); both share `batigate scan modbus`.
SERIAL = (Question("port", "init.ask.serial", "/dev/ttyUSB0"),
          Question("baudrate", "init.ask.baudrate", 9600, whole),
          Question("parity", "init.ask.parity", "E", choices=("N", "E", "O")))
TCP = (Question("host", "init.ask.tcp_host", check=host),
       Question("port", "init.ask.tcp_port", 502, tcp_port))


class ModbusDriver:
    bus_model: ClassVar[type[BusConfig]] = ModbusBusConfig
    device_model: ClassVar[type[DeviceConfig]] = ModbusDeviceConfig
    point_model: ClassVar[type[PointConfig]] = ModbusPointConfig
    capabilities: ClassVar[dict[str, Capabilities]] = {
        "modbus-tcp": Capabilities("modbus", questions=TCP, scan=SCAN),
        "modbus-rtu": Capabilities("modbus", questions=SERIAL, scan=SCAN),
    }

    def __init__(self, bus: BusConfig) -> None:
        if not isinstance(bus, ModbusBusConfig):
            raise DriverError(f"bus {bus.id}: expected a Modbus bus config, got {type(bus)}")
        self.bus = bus
        self.stats = BusStats()
        self._link: ModbusLink | None = None
        self._plans: dict[str, _Plan] = {}

    async def __aenter__(self) -> Self:
        # No connection yet: an absent peer must not stop the agent; poll() connects.
        self._link = ModbusLink(self.bus, self.stats)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None

    def plan(self, device: ModbusDeviceConfig) -> list[Block]:
        """The read requests for `device`, computed once and kept until its points change."""
        cached = self._plans.get(device.id)
        if cached is None or cached.points != device.points:
            cached = _Plan(device.points, coalesce(needs_of(device.points), self.bus.max_gap))
            self._plans[device.id] = cached
        return cached.blocks

    async def poll(self, device: DeviceConfig) -> Sequence[PointValue]:
        device = self._modbus_device(device)
        link = await self._open(device)
        results: dict[int, PointValue] = {}
        answered = False  # has the device said anything in this poll?
        queue = list(self.plan(device))
        while queue:
            block = queue.pop(0)
            try:
                data = await link.read(block.table, block.start, block.count, device.address,
                                       device.timeout)
            except DeviceUnavailable as exc:
                if not answered:
                    raise  # a dead slave must not cost one timeout per block
                self._mark_bad(device, block, results, f"no answer to this read ({exc})")
                continue
            except Refused as exc:
                if exc.code in GATEWAY_NO_DEVICE and not answered:
                    raise DeviceUnavailable(f"{device.id}: gateway reports {exc}") from None
                answered = True
                if exc.code == ILLEGAL_ADDRESS and len(split(block)) > 1:
                    queue[:0] = self._split(device, block)  # read the pieces right away
                else:  # a single register (bits of one word included) refused: those are bad
                    self._mark_bad(device, block, results, f"refused by the device: {exc}")
                continue
            answered = True
            self._decode(device, block, data, results)
        return [results[i] for i in range(len(device.points))]

    async def write(self, device: DeviceConfig, point: PointConfig, value: Value) -> None:
        device = self._modbus_device(device)
        if not isinstance(point, ModbusPointConfig):
            raise DriverError(f"{device.id}/{point.name}: not a Modbus point")
        where = f"{device.id}/{point.name}"
        check_write(point, value, device)  # the agent checked it too; a direct caller may not
        try:
            payload = codec.encode(point, value)
        except ValueError as exc:
            raise DriverError(f"{device.id}/{exc}") from None
        link = await self._open(device)
        table, address = point.register
        try:
            if isinstance(payload, bool):
                await link.write_coil(address, payload, device.address, device.timeout)
            else:
                await link.write_registers(address, payload, device.address, device.timeout)
        except Refused as exc:
            if exc.code in GATEWAY_NO_DEVICE:
                raise DeviceUnavailable(f"{where}: gateway reports {exc}") from None
            raise DriverError(f"{where}: the device refused the write to {table}:{address} "
                              f"with {exc}") from None

    # -- helpers -------------------------------------------------------------------------------

    def _modbus_device(self, device: DeviceConfig) -> ModbusDeviceConfig:
        if not isinstance(device, ModbusDeviceConfig):
            raise DriverError(f"device {device.id}: not configured for a Modbus bus")
        if self.bus.is_rtu and device.address == 0:
            raise DriverError(f"device {device.id}: address 0 is the RTU broadcast address, "
                              "which never answers; use the slave address 1..247")
        return device

    async def _open(self, device: ModbusDeviceConfig) -> ModbusLink:
        if self._link is None:
            raise DriverError(f"bus {self.bus.id}: driver used outside `async with`")
        await self._link.open(device.timeout)
        return self._link

    def _split(self, device: ModbusDeviceConfig, block: Block) -> list[Block]:
        # Remember the split: the device will refuse the bridged read on every poll.
        pieces = split(block)
        blocks = self.plan(device)
        if block in blocks:
            at = blocks.index(block)
            blocks[at:at + 1] = pieces
        return pieces

    def _mark_bad(self, device: ModbusDeviceConfig, block: Block,
                  results: dict[int, PointValue], reason: str) -> None:
        for need in block.needs:
            results[need.index] = PointValue(device.points[need.index].name, None, Quality.BAD,
                                             reason=reason)

    def _decode(self, device: ModbusDeviceConfig, block: Block, data: list[int] | list[bool],
                results: dict[int, PointValue]) -> None:
        for need in block.needs:
            point = device.points[need.index]
            offset = need.address - block.start
            try:
                if point.register.table in BIT_TABLES:
                    value: Value = codec.decode_bit(point, bool(data[offset]))
                else:
                    value = codec.decode(point, [int(w) for w in data[offset:offset + need.span]])
            except codec.DecodeError as exc:
                results[need.index] = PointValue(point.name, None, Quality.BAD, reason=str(exc))
                continue
            results[need.index] = PointValue(point.name, value)
