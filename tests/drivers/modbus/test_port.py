"""The serial side of the link: the silence between RTU frames, and a port that refuses a setting.

A Linux pseudo-terminal cannot do parity: it takes PARENB on the first tcsetattr without keeping
it, and refuses the next one with EINVAL (pymodbus' client applies the settings twice). That is
a real refusal path, the same `termios.error(22)` a USB adapter without parity gives.
"""

from __future__ import annotations

import json
import os
import pty
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
from click.testing import CliRunner

from agent.cli.main import main
from agent.sdk.errors import DeviceUnavailable
from drivers.modbus.config import ModbusBusConfig, ModbusDeviceConfig
from drivers.modbus.driver import ModbusDriver
from drivers.modbus.link import inter_frame_silence
from tests.cli.helpers import write_config


def rtu(**settings: object) -> ModbusBusConfig:
    return ModbusBusConfig.model_validate({"id": "rs485", "driver": "modbus-rtu",
                                           "port": "/dev/ttyUSB0", **settings})


def test_the_silence_is_three_and_a_half_characters_by_default() -> None:
    assert inter_frame_silence(rtu()) == pytest.approx(3.5 * 11 / 9600)  # 8E1: 4.01 ms
    assert inter_frame_silence(rtu(parity="N", stopbits=2)) == pytest.approx(3.5 * 11 / 9600)
    assert inter_frame_silence(rtu(baudrate=19200, parity="N")) == pytest.approx(3.5 * 10 / 19200)
    assert inter_frame_silence(rtu(baudrate=2400, parity="O")) == pytest.approx(3.5 * 11 / 2400)
    # above 19200 baud the specification fixes it at 1.75 ms
    assert inter_frame_silence(rtu(baudrate=38400)) == pytest.approx(0.00175)
    assert inter_frame_silence(rtu(baudrate=115200, parity="N")) == pytest.approx(0.00175)
    # `gap` only lengthens it
    assert inter_frame_silence(rtu(gap="1ms")) == pytest.approx(3.5 * 11 / 9600)
    assert inter_frame_silence(rtu(gap="20ms")) == pytest.approx(0.020)
    tcp = ModbusBusConfig.model_validate({"id": "lan", "driver": "modbus-tcp", "host": "h"})
    assert inter_frame_silence(tcp) == 0.0


@pytest.fixture
def pty_port() -> Iterator[str]:
    master, slave = pty.openpty()
    tty.setraw(slave)
    try:
        yield os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def device(name: str, unit: int) -> ModbusDeviceConfig:
    return ModbusDeviceConfig.model_validate({"id": name, "bus": "rs485", "address": unit,
                                              "poll": "1s", "timeout": "200ms", "points": [
                                                  {"name": "h0", "register": "holding:0"}]})


async def test_a_port_refusing_parity_is_named_released_and_retried(pty_port: str) -> None:
    bus = rtu(port=pty_port, parity="E")
    async with ModbusDriver(bus) as driver:
        for dev in (device("vmc-a", 1), device("vmc-b", 2), device("vmc-a", 1)):
            with pytest.raises(DeviceUnavailable) as info:
                await driver.poll(dev)
            message = str(info.value)
            assert f"serial port {pty_port} refuses parity E" in message
            # this kernel says EINVAL; one that silently drops PARENB is caught by reading back
            assert "Invalid argument" in message or "dropped the parity" in message
            # released: nobody holds the port (pyserial locks it exclusively while open)
            probe = serial.Serial(pty_port, exclusive=True)
            probe.close()
    # the same port with settings it can do works
    async with ModbusDriver(rtu(port=pty_port, parity="N")) as driver:
        with pytest.raises(DeviceUnavailable, match="no answer within 0.2s"):
            await driver.poll(device("vmc-a", 1))


async def test_a_missing_port_is_named(tmp_path: Path) -> None:
    async with ModbusDriver(rtu(port=str(tmp_path / "ttyUSB7"))) as driver:
        with pytest.raises(DeviceUnavailable, match=f"cannot open serial port {tmp_path}/ttyUSB7"):
            await driver.poll(device("vmc-a", 1))


async def test_a_port_held_by_another_program_is_named(pty_port: str) -> None:
    held = serial.Serial(pty_port, exclusive=True)
    try:
        async with ModbusDriver(rtu(port=pty_port, parity="N")) as driver:
            with pytest.raises(DeviceUnavailable, match=f"serial port {pty_port} is in use by "
                                                        "another program"):
                await driver.poll(device("vmc-a", 1))
    finally:
        held.close()


def test_read_prints_the_reason(tmp_path: Path, pty_port: str) -> None:
    path = write_config(tmp_path, buses=[{"id": "rs485", "driver": "modbus-rtu",
                                          "port": pty_port, "parity": "E"}],
                        devices=[{"id": "vmc-a", "bus": "rs485", "address": 1, "poll": "1s",
                                  "timeout": "200ms",
                                  "points": [{"name": "h0", "register": "holding:0"}]}])
    result = CliRunner().invoke(main, ["read", "vmc-a", "--json", "--config", str(path)])
    assert result.exit_code == 1, result.output
    error = json.loads(result.output)["error"]
    assert error.startswith(f"vmc-a: serial port {pty_port} refuses parity E"), error
    result = CliRunner().invoke(main, ["read", "vmc-a", "--config", str(path)])
    assert result.exit_code == 1
    assert "refuses parity E" in result.output and "internal error" not in result.output
