"""A third-party driver touches its own package only: installed like pip would (an entry point),
it declares its capabilities and appears in `batigate scan`, the `init` wizard and the profiles,
with no line of `agent/` knowing it (tests/plugins/tinybus.py is the package and its peer)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli.main import main
from agent.config import loader as config_mod
from agent.config import profiles
from agent.sdk import registry
from tests.cli.helpers import write_config
from tests.plugins import installed, tinybus

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[None]:
    with installed(tmp_path / "site", dist="batigate_tinybus", group="batigate.drivers",
                   entries={"tinybus": "tinybus_driver:TinyDriver"}, **tinybus.package()):
        yield


async def _invoke(args: list[str], **kwargs: object):
    return await asyncio.to_thread(CliRunner().invoke, main, args, **kwargs)


def test_the_agent_does_not_know_the_driver() -> None:
    # What the other tests show must come from the declaration, not from a line in agent/.
    mentions = [str(p.relative_to(ROOT)) for p in (ROOT / "agent").rglob("*.py")
                if "tinybus" in p.read_text(encoding="utf-8")]
    assert mentions == []
    assert "tinybus" not in registry.names(registry.DRIVERS)  # and it is not installed here


async def test_its_scan_is_a_subcommand_that_finds_and_adds(plugin: None, tmp_path: Path) -> None:
    gateway = tinybus.Gateway({3: 21.5, 7: 19.0})
    port = await gateway.start()
    try:
        path = write_config(tmp_path, buses=[{"id": "rooms", "driver": "tinybus",
                                              "host": "127.0.0.1", "port": port}], devices=[])
        listed = await _invoke(["scan", "--help"])
        assert "tinybus" in listed.output and "List the room sensors" in listed.output
        result = await _invoke(["scan", "tinybus", "--bus", "rooms", "--json", "--config",
                                str(path)])
        assert result.exit_code == 0, result.output
        doc = json.loads(result.output)
        assert doc == {"ok": True, "bus": "rooms", "added": [],
                       "found": [{"address": 3, "kind": "room-sensor"},
                                 {"address": 7, "kind": "room-sensor"}]}

        french = await _invoke(["--lang", "fr", "scan", "tinybus", "--bus", "rooms", "--add",
                                "--config", str(path)])
        assert french.exit_code == 0, french.output
        assert "2 capteur(s) de pièce sur rooms" in " ".join(french.output.split())  # its French
        assert "room-3, room-7" in french.output
        # the devices added use the driver's own profile: its points and its default rules
        config = config_mod.load(path)
        assert [(d.id, d.address, d.profile) for d in config.devices] == [
            ("room-3", 3, "room-sensor"), ("room-7", 7, "room-sensor")]
        assert [p.channel for p in config.devices[0].points] == [1]
        assert [r.id for r in config.rules] == ["room-3-too-hot", "room-7-too-hot"]
        # a bus of another driver is refused by the common frame, naming the fitting buses
        wrong = await _invoke(["scan", "modbus", "--bus", "rooms", "--config", str(path)])
        assert wrong.exit_code == 2 and "no modbus" in wrong.output
    finally:
        await gateway.stop()


async def test_an_absent_gateway_is_a_bus_error(plugin: None, tmp_path: Path) -> None:
    path = write_config(tmp_path, buses=[{"id": "rooms", "driver": "tinybus",
                                          "host": "127.0.0.1", "port": 1}], devices=[])
    result = await _invoke(["scan", "tinybus", "--bus", "rooms", "--timeout", "0.5",
                            "--config", str(path)])
    assert result.exit_code == 1 and "bus rooms: no tinybus gateway" in result.output


def test_the_wizard_offers_it_and_asks_its_questions(plugin: None, tmp_path: Path) -> None:
    out = tmp_path / "gw.yaml"
    answers = "\n".join([
        "gw-0042", "res-les-pins", "broker.example.org", "8883", "", "", "", "",
        "y", "rooms", "tinybus",
        "gw.local/x", "192.0.2.40",   # its host question with the SDK's check: refused, then good
        "70000", "7001",              # its port question: refused, then good
        "n",
    ]) + "\n"
    result = CliRunner().invoke(main, ["--lang", "fr", "init", "-o", str(out)], input=answers)
    assert result.exit_code == 0, result.output
    assert "tinybus" in result.output.split("pilote")[1].splitlines()[0]  # offered
    assert "adresse de la passerelle tinybus" in result.output  # its label, in French
    assert result.output.count("Erreur") >= 2
    bus = config_mod.load(out).buses[0]
    assert (bus.id, bus.driver, bus.host, bus.port) == ("rooms", "tinybus", "192.0.2.40", 7001)


def test_its_profiles_are_installed_and_kept_to_its_devices(plugin: None,
                                                            tmp_path: Path) -> None:
    assert "room-sensor" in profiles.installed() and "vmc-caisson" in profiles.installed()
    assert "tinybus" in profiles.families()
    assert registry.capabilities("tinybus").profiles == "tinybus_profiles"
    path = write_config(tmp_path, buses=[{"id": "lan", "driver": "modbus-tcp",
                                          "host": "127.0.0.1", "port": 1}],
                        devices=[{"id": "r1", "bus": "lan", "address": 1,
                                  "profile": "room-sensor"}])
    with pytest.raises(Exception, match="profile 'room-sensor' is for tinybus devices"):
        config_mod.load(path)


def test_without_the_package_nothing_of_it_is_left(tmp_path: Path) -> None:
    with installed(tmp_path / "site", dist="batigate_tinybus", group="batigate.drivers",
                   entries={"tinybus": "tinybus_driver:TinyDriver"}, **tinybus.package()):
        assert "room-sensor" in profiles.installed()
    assert "room-sensor" not in profiles.installed() and "tinybus" not in profiles.families()
    result = CliRunner().invoke(main, ["scan", "tinybus", "--help"])
    assert result.exit_code == 2 and "No such command 'tinybus'" in result.output
