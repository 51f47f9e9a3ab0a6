"""ModbusDriver against real pymodbus servers on 127.0.0.1 (TCP, and RTU framing over socket://)."""

from __future__ import annotations

import asyncio
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from agent.config.loader import parse
from agent.sdk.errors import ConfigError, DeviceUnavailable, DriverError, PointNotWritable
from agent.sdk.models import Quality
from drivers.modbus.config import ModbusBusConfig, ModbusDeviceConfig, ModbusPointConfig
from drivers.modbus.driver import ModbusDriver

TIMEOUT = 0.2


class Server:
    """A pymodbus server on a free port that counts requests and can drop or spoil replies."""

    def __init__(self, devices: list[SimDevice], framer: FramerType = FramerType.SOCKET) -> None:
        self.devices = devices
        self.framer = framer
        self.requests: Counter[int] = Counter()  # per function code
        self.drop: Callable[[int], bool] = lambda fc: False
        self.spoil = False
        self._fc = 0
        self.port = 0
        self.server: ModbusTcpServer | None = None

    async def start(self, port: int = 0) -> int:
        self.server = ModbusTcpServer(self.devices, address=("127.0.0.1", port),
                                      framer=self.framer, trace_pdu=self._pdu,
                                      trace_packet=self._packet)
        await self.server.serve_forever(background=True)
        self.port = self.server.transport.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        assert self.server is not None
        await self.server.shutdown()

    def _pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.requests[pdu.function_code] += 1
        self._fc = pdu.function_code & 0x7F
        return pdu

    def _packet(self, sending: bool, data: bytes) -> bytes:
        if sending and self.drop(self._fc):
            return b""
        if sending and self.spoil:
            return data[:-1] + bytes([data[-1] ^ 0xFF])  # RTU: the CRC no longer matches
        return data

    @property
    def total(self) -> int:
        return sum(self.requests.values())


@asynccontextmanager
async def serving(devices: list[SimDevice],
                  framer: FramerType = FramerType.SOCKET) -> AsyncIterator[Server]:
    server = Server(devices, framer)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@asynccontextmanager
async def driver_for(server: Server, **bus: Any) -> AsyncIterator[ModbusDriver]:
    if server.framer == FramerType.RTU:
        config = {"driver": "modbus-rtu", "port": f"socket://127.0.0.1:{server.port}", **bus}
    else:
        config = {"driver": "modbus-tcp", "host": "127.0.0.1", "port": server.port, **bus}
    async with ModbusDriver(ModbusBusConfig(id="bus", **config)) as driver:
        yield driver


def device(points: list[dict[str, Any]], address: int = 1) -> ModbusDeviceConfig:
    return ModbusDeviceConfig(id="dev", bus="bus", address=address, timeout=TIMEOUT,
                              points=points)  # type: ignore[arg-type]


def words(fmt: str, *values: float) -> list[int]:
    data = struct.pack(f">{fmt}", *values)
    return list(struct.unpack(f">{len(data) // 2}H", data))


def regs(address: int, values: list[int], readonly: bool = False) -> SimData:
    return SimData(address, values=values, datatype=DataType.REGISTERS, readonly=readonly)


def bits(address: int, values: list[bool]) -> SimData:
    return SimData(address, values=values, datatype=DataType.BITS)


def swap(pair: list[int]) -> list[int]:
    return pair[::-1]


TYPES_DEVICE = SimDevice(id=1, simdata=(
    [bits(0, [True, False, True])],
    [bits(3, [True])],
    [regs(0, words("h", -12345) + words("H", 54321)
          + words("i", -123456789) + swap(words("i", -123456789))
          + words("I", 3_000_000_000) + swap(words("I", 3_000_000_000))
          + words("f", -12.5) + swap(words("f", 3.14))
          + [0b1000_0000_0000_0100, 2215, 0])],
    [regs(0, [1234])]))

TYPE_POINTS: list[dict[str, Any]] = [
    {"name": "i16", "register": "holding:0", "type": "int16", "unit": "Pa"},
    {"name": "u16", "register": "holding:1", "unit": "rpm"},
    {"name": "i32_big", "register": "holding:2", "type": "int32"},
    {"name": "i32_little", "register": "holding:4", "type": "int32", "word_order": "little"},
    {"name": "u32_big", "register": "holding:6", "type": "uint32", "unit": "count"},
    {"name": "u32_little", "register": "holding:8", "type": "uint32", "word_order": "little"},
    {"name": "f32_big", "register": "holding:10", "type": "float32", "unit": "A"},
    {"name": "f32_little", "register": "holding:12", "type": "float32", "word_order": "little"},
    {"name": "bit2", "register": "holding:14", "type": "bool", "bit": 2},
    {"name": "bit3", "register": "holding:14", "type": "bool", "bit": 3},
    {"name": "bit15", "register": "holding:14", "type": "bool", "bit": 15},
    {"name": "temp", "register": "holding:15", "scale": 0.1, "offset": -50, "unit": "Cel"},
    {"name": "word_flag", "register": "holding:16", "type": "bool"},
    {"name": "level", "register": "input:0", "type": "uint16", "scale": 0.01, "unit": "bar"},
    {"name": "coil0", "register": "coils:0"},
    {"name": "coil1", "register": "coils:1"},
    {"name": "coil2", "register": "coils:2"},
    {"name": "di3", "register": "discrete:3"},
]

EXPECTED = {"i16": -12345, "u16": 54321, "i32_big": -123456789, "i32_little": -123456789,
            "u32_big": 3_000_000_000, "u32_little": 3_000_000_000, "f32_big": -12.5,
            "f32_little": 3.14, "bit2": True, "bit3": False, "bit15": True, "temp": 171.5,
            "word_flag": False, "level": 12.34, "coil0": True, "coil1": False, "coil2": True,
            "di3": True}


async def test_every_point_type_decodes_from_a_real_server() -> None:
    dev = device(TYPE_POINTS)
    async with serving([TYPES_DEVICE]) as server, driver_for(server) as driver:
        values = await driver.poll(dev)
        assert {v.name: v.value for v in values} == EXPECTED
        assert all(v.quality is Quality.GOOD for v in values)
        assert [type(v.value) for v in values] == [type(EXPECTED[v.name]) for v in values]
        assert [p.unit for p in dev.points][:2] == ["Pa", "rpm"]  # units travel with the points
        assert server.total == 4  # one read per table
        assert driver.stats.requests == 4


def cluster_points() -> list[dict[str, Any]]:
    """20 points in 3 clusters, with small holes inside the clusters."""
    points: list[dict[str, Any]] = [{"name": f"h{a}", "register": f"holding:{a}"}
                                    for a in (0, 1, 2, 4, 5, 7, 8)]
    points += [{"name": f"w{a}", "register": f"holding:{a}", "type": "uint32"}
               for a in (100, 102, 106, 110, 112)]
    points += [{"name": f"i{a}", "register": f"input:{a}", "type": "int16"}
               for a in range(40, 48)]
    return points


async def test_coalescing_three_requests_per_poll_instead_of_twenty() -> None:
    sim = SimDevice(id=1, simdata=([bits(0, [False])], [bits(0, [False])],
                                   [regs(0, list(range(9))), regs(100, list(range(14)))],
                                   [regs(40, list(range(8)))]))
    dev = device(cluster_points())
    async with serving([sim]) as server, driver_for(server) as driver:
        await driver.poll(dev)
        assert server.total == 3
        await driver.poll(dev)
        assert server.total == 6
        assert driver.plan(dev) is driver.plan(dev)  # computed once per device
    assert len(dev.points) == 20


async def test_exception_on_one_block_marks_only_its_points_bad() -> None:
    async def refuse_inputs(fc: int, *_: object) -> ExcCodes | None:
        return ExcCodes.DEVICE_FAILURE if fc == 4 else None

    sim = SimDevice(id=1, simdata=([bits(0, [False])], [bits(0, [False])],
                                   [regs(0, list(range(9))), regs(100, list(range(14)))],
                                   [regs(40, list(range(8)))]), action=refuse_inputs)
    dev = device(cluster_points())
    async with serving([sim]) as server, driver_for(server) as driver:
        values = await driver.poll(dev)
        quality = {v.name: v.quality for v in values}
        bad = {n for n, q in quality.items() if q is Quality.BAD}
        assert bad == {f"i{a}" for a in range(40, 48)}
        assert all(v.value is None for v in values if v.quality is Quality.BAD)
        assert {v.name: v.value for v in values}["w112"] == (12 << 16) + 13
        assert driver.stats.exceptions == 1
        assert server.total == 3


async def test_refused_bridged_read_is_split_and_remembered() -> None:
    # Register 1 does not exist: the bridged read 0..2 gets exception 02.
    sim = SimDevice(id=1, simdata=[regs(0, [10]), regs(2, [12])])
    dev = device([{"name": "a", "register": "holding:0"}, {"name": "b", "register": "holding:2"}])
    async with serving([sim]) as server, driver_for(server) as driver:
        first = await driver.poll(dev)
        assert [(v.value, v.quality) for v in first] == [(10, Quality.GOOD), (12, Quality.GOOD)]
        assert server.total == 3  # the refused read, then the two pieces
        await driver.poll(dev)
        assert server.total == 5  # the split is kept: no refused read any more


async def test_a_refused_status_word_marks_its_bits_bad_and_the_poll_ends() -> None:
    # Several bit points of one register the device does not have (a profile for a variant with
    # a shorter map): splitting cannot help. Before the fix this re-sent the read forever.
    sim = SimDevice(id=1, simdata=[regs(0, [7])])
    dev = device([{"name": "ok", "register": "holding:0"},
                  {"name": "b0", "register": "holding:5", "type": "bool", "bit": 0},
                  {"name": "b1", "register": "holding:5", "type": "bool", "bit": 1}])
    async with serving([sim]) as server, driver_for(server) as driver:
        values = await asyncio.wait_for(driver.poll(dev), 5)
        assert [(v.value, v.quality) for v in values] == [
            (7, Quality.GOOD), (None, Quality.BAD), (None, Quality.BAD)]
        assert server.total <= 3  # the bridged read, then the two pieces; never a loop


async def test_not_available_values_read_bad() -> None:
    sim = SimDevice(id=1, simdata=[regs(0, [0x8000, 0x8001, 0xFFFF, 0xFFFF])])
    dev = device([
        {"name": "temp", "register": "holding:0", "type": "int16", "not_available": -32768},
        {"name": "near", "register": "holding:1", "type": "int16", "not_available": -32768},
        {"name": "count", "register": "holding:2", "type": "uint32", "not_available": 0xFFFFFFFF},
    ])
    async with serving([sim]) as server, driver_for(server) as driver:
        values = await driver.poll(dev)
    assert [(v.value, v.quality) for v in values] == [
        (None, Quality.BAD), (-32767, Quality.GOOD), (None, Quality.BAD)]


async def test_silent_device_is_unavailable_after_one_timeout() -> None:
    dev = device(cluster_points())
    sim = SimDevice(id=1, simdata=[regs(0, [0] * 120)])
    async with serving([sim]) as server, driver_for(server) as driver:
        server.drop = lambda fc: True
        started = time.perf_counter()
        with pytest.raises(DeviceUnavailable, match="no answer within 0.2s"):
            await driver.poll(dev)
        elapsed = time.perf_counter() - started
        assert TIMEOUT * 0.9 < elapsed < TIMEOUT * 2  # not one timeout per block
        assert driver.stats.timeouts == 1
        assert server.total == 1
        server.drop = lambda fc: False  # the slave is back: no reconnect dance needed
        assert len(await driver.poll(dev)) == 20


async def test_a_later_block_timing_out_marks_its_points_bad() -> None:
    sim = SimDevice(id=1, simdata=([bits(0, [True])], [bits(0, [False])],
                                   [regs(0, [7])], [regs(0, [8])]))
    dev = device([{"name": "c", "register": "coils:0"}, {"name": "i", "register": "input:0"},
                  {"name": "h", "register": "holding:0"}])
    async with serving([sim]) as server, driver_for(server) as driver:
        server.drop = lambda fc: fc == 4
        values = await driver.poll(dev)
        assert [(v.value, v.quality) for v in values] == [
            (True, Quality.GOOD), (None, Quality.BAD), (7, Quality.GOOD)]
        assert driver.stats.timeouts == 1


async def test_rtu_framing_over_socket_url() -> None:
    async with serving([TYPES_DEVICE], FramerType.RTU) as server, \
            driver_for(server, baudrate=19200, parity="E") as driver:
        values = await driver.poll(device(TYPE_POINTS))
        assert {v.name: v.value for v in values} == EXPECTED
        server.spoil = True  # bad CRC: pymodbus drops the frame silently
        with pytest.raises(DeviceUnavailable, match="no valid answer"):
            await driver.poll(device(TYPE_POINTS))
        assert driver.stats.garbage == 1
        assert driver.stats.timeouts == 0


async def test_rtu_gap_keeps_the_line_silent_between_requests() -> None:
    async with serving([TYPES_DEVICE], FramerType.RTU) as server, \
            driver_for(server, gap="50ms") as driver:
        started = time.perf_counter()
        await driver.poll(device(TYPE_POINTS))  # 4 requests, 3 gaps between them
        assert time.perf_counter() - started >= 0.15


async def test_gateway_without_its_slave_means_unavailable() -> None:
    async def no_slave(*_: object) -> ExcCodes:
        return ExcCodes.GATEWAY_NO_RESPONSE  # what a TCP->RTU gateway says for a dead slave

    sim = SimDevice(id=1, simdata=[regs(0, [1])], action=no_slave)
    dev = device([{"name": "a", "register": "holding:0", "writable": True}])
    async with serving([sim]) as server, driver_for(server) as driver:
        with pytest.raises(DeviceUnavailable, match="gateway reports exception 11"):
            await driver.poll(dev)
        with pytest.raises(DeviceUnavailable, match="gateway target failed to respond"):
            await driver.write(dev, dev.points[0], 3)
        assert driver.stats.exceptions == 2


async def test_peer_down_then_back_reconnects_lazily() -> None:
    sim = SimDevice(id=1, simdata=[regs(0, [42])])
    dev = device([{"name": "a", "register": "holding:0"}])
    server = Server([sim])
    port = await server.start()
    async with driver_for(server) as driver:
        assert [v.value for v in await driver.poll(dev)] == [42]
        await server.stop()
        await asyncio.sleep(0.05)
        with pytest.raises(DeviceUnavailable):
            await driver.poll(dev)
        with pytest.raises(DeviceUnavailable, match="cannot connect"):
            await driver.poll(dev)
        await server.start(port)
        try:
            assert [v.value for v in await driver.poll(dev)] == [42]
        finally:
            await server.stop()


# -- writes ------------------------------------------------------------------------------------

WRITE_POINTS: list[dict[str, Any]] = [
    {"name": "setpoint", "register": "holding:0", "scale": 0.1, "unit": "Pa", "writable": True,
     "min": 50, "max": 250},
    {"name": "limit", "register": "holding:1", "type": "float32", "word_order": "little",
     "writable": True},
    {"name": "counter", "register": "holding:3", "type": "uint32", "writable": True},
    {"name": "locked", "register": "holding:5", "writable": True},
    {"name": "measured", "register": "holding:6"},
    {"name": "enable", "register": "coils:2", "writable": True},
]


async def test_writes_reach_the_registers() -> None:
    sim = SimDevice(id=1, simdata=([bits(0, [False] * 4)], [bits(0, [False])],
                                   [regs(0, [0] * 5), regs(5, [9], readonly=True), regs(6, [0])],
                                   [regs(0, [0])]))
    dev = device(WRITE_POINTS)
    p = {pt.name: pt for pt in dev.points}
    async with serving([sim]) as server, driver_for(server) as driver:
        await driver.write(dev, p["setpoint"], 120.5)
        await driver.write(dev, p["limit"], -12.5)
        await driver.write(dev, p["counter"], 70000)
        await driver.write(dev, p["enable"], True)
        assert server.server is not None
        assert await server.server.async_getValues(1, 3, 0, 5) == [1205, 0, 0xC148, 1, 4464]
        values = {v.name: v.value for v in await driver.poll(dev)}
        assert values | {"locked": None} == {"setpoint": 120.5, "limit": -12.5, "counter": 70000,
                                              "locked": None, "measured": 0, "enable": True}
        assert server.requests[6] == 1 and server.requests[16] == 2 and server.requests[5] == 1

        with pytest.raises(PointNotWritable, match="dev/measured is not declared writable"):
            await driver.write(dev, p["measured"], 1)
        with pytest.raises(DriverError, match="260 is above the maximum 250 of dev/setpoint"):
            await driver.write(dev, p["setpoint"], 260)
        with pytest.raises(DriverError, match="outside uint32 range"):
            await driver.write(dev, p["counter"], -1)
        with pytest.raises(DriverError, match=r"refused the write to holding:5 with exception "
                                              r"02 \(illegal data address\)"):
            await driver.write(dev, p["locked"], 1)
        assert await server.server.async_getValues(1, 3, 0, 1) == [1205]


async def test_write_to_absent_device_is_unavailable() -> None:
    sim = SimDevice(id=1, simdata=[regs(0, [0])])
    dev = device(WRITE_POINTS[:1])
    async with serving([sim]) as server, driver_for(server) as driver:
        server.drop = lambda fc: True
        with pytest.raises(DeviceUnavailable):
            await driver.write(dev, dev.points[0], 100)


# -- config ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "message"), [
    ({"register": "holdings:3"}, "unknown register table 'holdings'"),
    ({"register": "holding"}, "write TABLE:ADDRESS"),
    ({"register": "30002"}, "30002 looks like 1-based Modbus notation, which is input:1"),
    ({"register": "input:70000"}, "out of range 0..65535"),
    ({"register": "coils:1", "type": "float32"}, "type float32 cannot be read from coils"),
    ({"register": "input:1", "writable": True}, "only coils and holding registers can be writable"),
    ({"register": "discrete:1", "writable": True}, "discrete are read-only"),
    ({"register": "holding:1", "type": "uint16", "bit": 3}, "bit: picks one bit"),
    ({"register": "holding:1", "type": "bool", "bit": 16}, "less than or equal to 15"),
    ({"register": "holding:65535", "type": "int32"}, "int32 needs two registers"),
    ({"register": "holding:1", "type": "float32", "not_available": 0},
     "not_available applies to integer registers"),
    ({"register": "coils:1", "not_available": 1}, "not to coils"),
    ({"register": "holding:1", "word_order": "little"}, "word_order applies to 32-bit types"),
    ({"register": "holding:1", "scale": 0}, "scale must not be 0"),
    ({"register": "coils:1", "scale": 2}, "scale and offset do not apply to a bool"),
    ({"register": "holding:1", "type": "bool", "bit": 1, "writable": True},
     "one bit of a register"),
])
def test_point_config_errors_are_clear(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModbusPointConfig.model_validate({"name": "p", **fields})


def test_point_defaults_follow_the_table() -> None:
    assert ModbusPointConfig(name="p", register="coils:1").type == "bool"
    assert ModbusPointConfig(name="p", register=" Holding : 7 ").type == "uint16"
    assert str(ModbusPointConfig(name="p", register="holding:7").register) == "holding:7"


@pytest.mark.parametrize(("fields", "where", "message"), [
    ({"driver": "modbus-tcp"}, "host", "required for driver modbus-tcp"),
    ({"driver": "modbus-tcp", "host": "h", "port": "/dev/ttyUSB0"}, "port", "is not a TCP port"),
    ({"driver": "modbus-tcp", "host": "h", "baudrate": 9600}, "baudrate", "serial-line setting"),
    ({"driver": "modbus-rtu"}, "port", "required for driver modbus-rtu"),
    ({"driver": "modbus-rtu", "port": "/dev/ttyUSB0", "host": "h"}, "host", "socket://HOST:PORT"),
    ({"driver": "modbus-rtu", "port": "/dev/ttyUSB0", "parity": "X"}, "parity", "'N', 'E' or 'O'"),
    ({"driver": "modbus-rtu", "port": "/dev/ttyUSB0", "gap": "soon"}, "gap", "not a duration"),
])
def test_bus_config_errors_name_the_field(fields: dict[str, Any], where: str,
                                          message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        ModbusBusConfig.model_validate({"id": "b", **fields})
    assert caught.value.errors()[0]["loc"] == (where,)


def test_bus_config_defaults() -> None:
    tcp = ModbusBusConfig(id="lan", driver="modbus-tcp", host="192.0.2.10")
    assert (tcp.port, tcp.max_gap, tcp.gap) == (502, 8, 0.0)
    rtu = ModbusBusConfig.model_validate({"id": "rs485-1", "driver": "modbus-rtu",
                                          "port": "/dev/ttyUSB0", "gap": "5ms"})
    assert (rtu.port, rtu.baudrate, rtu.parity, rtu.stopbits, rtu.bytesize) == (
        "/dev/ttyUSB0", 9600, "E", 1, 8)
    assert rtu.gap == pytest.approx(0.005)


def test_device_address_is_a_unit_id() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 247"):
        ModbusDeviceConfig(id="d", bus="b", address=248)
    with pytest.raises(ValidationError, match="address"):
        ModbusDeviceConfig.model_validate({"id": "d", "bus": "b"})


async def test_rtu_broadcast_address_is_refused() -> None:
    async with ModbusDriver(ModbusBusConfig(id="b", driver="modbus-rtu",
                                            port="socket://127.0.0.1:9")) as driver:
        with pytest.raises(DriverError, match="broadcast"):
            await driver.poll(device([], address=0))


GATEWAY = """\
gateway: {id: gw-0042, site: res-les-pins}
mqtt: {host: broker.example.org}
buses:
  - {id: lan, driver: modbus-tcp, port: 502}
  - {id: rs485-1, driver: modbus-rtu, port: /dev/ttyUSB0, baudrate: 9600, parity: E}
devices:
  - id: vmc-b
    bus: rs485-1
    address: 17
    points:
      - {name: exhaust_pressure, register: holding:0, type: int16, scale: 0.1, unit: Pa}
      - {name: fan_fault, register: discrete:3, type: float32}
"""


def test_errors_point_to_file_and_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(GATEWAY, "gateway.yaml")
    problems = caught.value.problems
    assert any(p.startswith("gateway.yaml:4: buses[0].host: required for driver modbus-tcp")
               for p in problems), problems
    assert any(p.startswith("gateway.yaml:12: devices[0].points[1]:") and "cannot be read from "
               "discrete" in p for p in problems), problems


def test_sample_config_is_valid() -> None:
    import yaml  # noqa: PLC0415 - only this test reads YAML directly

    from drivers.modbus import driver as module  # noqa: PLC0415

    sample = yaml.safe_load((Path(module.__file__).parent / "sample.yaml").read_text())
    assert [ModbusBusConfig.model_validate(b).id for b in sample["buses"]] == ["lan", "rs485-1"]
    assert all(ModbusDeviceConfig.model_validate(d).points for d in sample["devices"])
