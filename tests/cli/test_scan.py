"""`scan modbus` and `scan mbus` against the simulated building, and adding what was found."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner
from pymodbus.pdu.device import ModbusDeviceIdentification
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from agent.config import loader as config_mod
from agent.cli.main import main
from agent.cli.scan import add_devices
from agent.sim.building import Building
from drivers.mbus.simulator import HeatMeter, MBusSimulator, WaterMeter
from tests.cli.helpers import colliding_meters, mbus_config, write_config


async def _invoke(args: list[str]):
    return await asyncio.to_thread(CliRunner().invoke, main, args)


async def test_scan_modbus_finds_the_units_and_adds_them(tmp_path: Path) -> None:
    building = Building()
    await building.start(0, 0)
    try:
        modbus_port, _ = building.ports
        path = write_config(tmp_path, buses=[{"id": "lan", "driver": "modbus-tcp",
                                              "host": "127.0.0.1", "port": modbus_port}],
                            devices=[])
        result = await _invoke(["scan", "modbus", "--bus", "lan", "--ids", "1-7", "--timeout",
                                "0.2", "--json", "--config", str(path)])
        assert result.exit_code == 0, result.output
        doc = json.loads(result.output)
        assert [u["unit"] for u in doc["found"]] == [1, 2, 3, 4, 5]

        result = await _invoke(["scan", "modbus", "--bus", "lan", "--ids", "1", "--add",
                                "--profile", "vmc-caisson", "--config", str(path)])
        assert result.exit_code == 0, result.output
        assert "added to the config: unit-1" in result.output
        text = path.read_text()
        assert text.startswith("# site notes: keep me")  # the file's comments survive
        config = config_mod.load(path)
        assert [(d.id, d.address, d.profile) for d in config.devices] == [
            ("unit-1", 1, "vmc-caisson")]
        assert (tmp_path / "gateway.yaml.bak").exists()
        # found again: nothing added twice
        result = await _invoke(["scan", "modbus", "--bus", "lan", "--ids", "1", "--add",
                                "--profile", "vmc-caisson", "--config", str(path)])
        assert "nothing new" in result.output
        result = await _invoke(["scan", "modbus", "--bus", "nope", "--config", str(path)])
        assert result.exit_code == 2 and "lan" in result.output
        result = await _invoke(["scan", "modbus", "--bus", "lan", "--ids", "0-300",
                                "--config", str(path)])
        assert result.exit_code == 2
    finally:
        await building.stop()


async def test_scan_modbus_reads_device_identification(tmp_path: Path) -> None:
    identity = ModbusDeviceIdentification(info_name={"VendorName": "Caladair",
                                                     "ProductCode": "ECOBLUE-4",
                                                     "MajorMinorRevision": "2.1"})
    device = SimDevice(id=9, simdata=SimData(0, values=7, datatype=DataType.UINT16))
    server = ModbusTcpServer([device], address=("127.0.0.1", 0), identity=identity)
    await server.serve_forever(background=True)
    try:
        port = server.transport.sockets[0].getsockname()[1]
        path = write_config(tmp_path, buses=[{"id": "lan", "driver": "modbus-tcp",
                                              "host": "127.0.0.1", "port": port}], devices=[])
        result = await _invoke(["scan", "modbus", "--bus", "lan", "--ids", "9", "--json",
                                "--config", str(path)])
        assert result.exit_code == 0, result.output
        found = json.loads(result.output)["found"]
        assert found == [{"unit": 9, "identification": {"vendor": "Caladair",
                                                        "product": "ECOBLUE-4",
                                                        "revision": "2.1"}}]
        human = await _invoke(["scan", "modbus", "--bus", "lan", "--ids", "9", "--config",
                               str(path)])
        assert "Caladair" in human.output and "ECOBLUE-4" in human.output
    finally:
        await server.shutdown()


async def test_scan_mbus_primary_and_secondary(tmp_path: Path) -> None:
    # Two meters whose ids differ in the last digit: the wildcard walk must go 8 digits deep.
    meters = [WaterMeter(1, "21000001", "SAP", 0x15, 0x07), HeatMeter(10, "21000007", "KAM",
                                                                     0x34, 0x04)]
    simulator = MBusSimulator(meters)
    port = await simulator.start()
    try:
        path = mbus_config(tmp_path, port)
        result = await _invoke(["scan", "mbus", "--bus", "meters", "--addresses", "0-12",
                                "--no-secondary", "--timeout", "0.1", "--json", "--config",
                                str(path)])
        assert result.exit_code == 0, result.output
        doc = json.loads(result.output)
        assert [(m["primary"], m["id"], m["manufacturer"]) for m in doc["found"]] == [
            (1, "21000001", "SAP"), (10, "21000007", "KAM")]
        assert doc["collisions"] == []

        result = await _invoke(["scan", "mbus", "--bus", "meters", "--no-primary", "--add",
                                "--profile", "water-meter", "--timeout", "0.1", "--config",
                                str(path)])
        assert result.exit_code == 0, result.output
        assert "secondary" in result.output
        config = config_mod.load(path)
        assert sorted((d.id, d.secondary) for d in config.devices) == [
            ("meter-21000001", "21000001"), ("meter-21000007", "21000007")]
    finally:
        await simulator.stop()


async def test_scan_mbus_meters_sharing_factory_address_0(tmp_path: Path) -> None:
    simulator = MBusSimulator(colliding_meters())
    port = await simulator.start()
    try:
        path = mbus_config(tmp_path, port)
        result = await _invoke(["scan", "mbus", "--bus", "meters", "--addresses", "0-4",
                                "--add", "--timeout", "0.1", "--config", str(path)])
        assert result.exit_code == 0, result.output
        assert "collision at primary 0: 2 meters share this primary address (41000001, " \
               "41000002); they are read by secondary address" in result.output
        config = config_mod.load(path)
        assert sorted((d.id, d.address, d.secondary) for d in config.devices) == [
            ("meter-41000001", None, "41000001"), ("meter-41000002", None, "41000002"),
            ("meter-61000003", 3, None)]
    finally:
        await simulator.stop()


async def test_scan_refuses_while_the_agent_runs(tmp_path: Path) -> None:
    from tests.integration.helpers import running_agent  # noqa: PLC0415

    building = Building()
    await building.start(0, 0)
    try:
        path = write_config(tmp_path, **building.gateway_sections(poll="1s", meter_poll="5s"))
        config = config_mod.load(path)
        async with running_agent(config):
            for _ in range(100):
                if Path(config.control.socket).exists():
                    break
                await asyncio.sleep(0.05)
            result = await _invoke(["scan", "modbus", "--bus", "lan", "--ids", "1",
                                    "--config", str(path)])
        assert result.exit_code == 1 and "stop it first" in result.output
    finally:
        await building.stop()


def test_add_devices_keeps_the_text_around() -> None:
    text = "gateway: {id: g, site: s}  # here\ndevices:\n- id: a\n  bus: b\nrules: []\n"
    out = add_devices(text, [{"id": "x", "bus": "b", "address": 3}])
    assert out == ("gateway: {id: g, site: s}  # here\ndevices:\n- {id: \"x\", bus: \"b\", "
                   "address: 3}\n- id: a\n  bus: b\nrules: []\n")
    assert add_devices("devices: []\n", [{"id": "x"}]) == "devices:\n  - {id: \"x\"}\n"
    assert add_devices("a: 1", [{"id": "x"}]) == "a: 1\ndevices:\n  - {id: \"x\"}\n"
