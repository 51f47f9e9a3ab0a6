"""`init`, `buffer export`, `selftest`, `completion`, `sim --help` and the help texts."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import time
from pathlib import Path

import click
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import loader as config_mod
from agent.commands import signing
from agent.cli.main import main
from agent.store.outbox import PRIO_EVENT, PRIO_TELEMETRY, Outbox
from tests.cli.helpers import write_config


def _walk(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, command in group.commands.items():
        out.append((*prefix, name))
        if isinstance(command, click.Group):
            out += _walk(command, (*prefix, name))
    return out


def test_every_new_command_has_help_with_an_example() -> None:
    runner = CliRunner()
    for path in _walk(main):
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        command = main
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        if not isinstance(command, click.Group) or command.invoke_without_command:
            assert "Example" in result.output, path


def test_init_by_flags_writes_a_valid_config(tmp_path: Path) -> None:
    out = tmp_path / "gw.yaml"
    result = CliRunner().invoke(main, [
        "init", "--no-input", "--gateway-id", "gw-0042", "--site", "res-les-pins",
        "--broker", "broker.example.org", "--bus", "rs485-1:modbus-rtu:port=/dev/ttyUSB0",
        "--bus", "meters:mbus:port=/dev/ttyUSB1", "--buffer", str(tmp_path / "o.db"),
        "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    config = config_mod.load(out)
    assert config.gateway.id == "gw-0042" and config.mqtt.port == 8883
    assert str(config.mqtt.tls.key) == "/etc/batigate/gw.key"
    assert [b.id for b in config.buses] == ["rs485-1", "meters"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    again = CliRunner().invoke(main, ["init", "--no-input", "--gateway-id", "gw-1", "--site",
                                      "s", "--broker", "b", "-o", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    bad = CliRunner().invoke(main, ["init", "--no-input", "--gateway-id", "GW_42", "--site", "s",
                                    "--broker", "b", "-o", str(tmp_path / "x.yaml")])
    assert bad.exit_code == 2 and "lower-case" in bad.output
    bad = CliRunner().invoke(main, ["init", "--no-input", "--gateway-id", "gw-1", "--site", "s",
                                    "--broker", "b", "--bus", "x:modbus-tcp:port=99999",
                                    "-o", str(tmp_path / "x.yaml")])
    assert bad.exit_code == 2 and "host" in bad.output
    assert not (tmp_path / "x.yaml").exists()


def test_init_says_how_commands_are_authenticated(tmp_path: Path) -> None:
    """Issue #16: without a key the gateway is read-only remotely, and init says so."""
    base = ["init", "--no-input", "--gateway-id", "gw-1", "--site", "s", "--broker", "b"]
    plain = CliRunner().invoke(main, [*base, "-o", str(tmp_path / "a.yaml")])
    assert plain.exit_code == 0 and "no command key" in plain.output
    assert config_mod.load(tmp_path / "a.yaml").commands.auth == "unsigned-readonly"
    ops_key = tmp_path / "ops.pub"
    ops_key.write_bytes(signing.public_pem(Ed25519PrivateKey.generate()))
    keyed = CliRunner().invoke(main, [*base, "--command-key", str(ops_key),
                                      "-o", str(tmp_path / "b.yaml")])
    assert keyed.exit_code == 0, keyed.output
    assert config_mod.load(tmp_path / "b.yaml").commands.auth == "signed"
    lab = CliRunner().invoke(main, [*base, "--allow-unsigned-commands",
                                    "-o", str(tmp_path / "c.yaml")])
    assert config_mod.load(tmp_path / "c.yaml").commands.auth == "unsigned-allow", lab.output
    wrong = CliRunner().invoke(main, [*base, "--command-key", str(tmp_path / "b.yaml"),
                                      "-o", str(tmp_path / "d.yaml")])
    assert wrong.exit_code == 2 and "Ed25519" in wrong.output


def test_init_wizard_refuses_invalid_answers_at_the_prompt(tmp_path: Path) -> None:
    out = tmp_path / "gw.yaml"
    ops_key = tmp_path / "ops.pub"
    ops_key.write_bytes(signing.public_pem(Ed25519PrivateKey.generate()))
    answers = "\n".join([
        "Bad Id!", "gw-0042",          # refused, then accepted
        "res-les-pins",
        "broker.example.org",
        "99999", "8883",               # port out of range, then good
        "", "", "",                    # CA, cert, key: the defaults
        str(tmp_path / "nope.pub"), str(ops_key),  # the command key: missing, then good
        "y",                           # add a bus
        "lan", "modbus-tcp", "192.0.2.10", "502",
        "n",                           # no more buses
    ]) + "\n"
    result = CliRunner().invoke(main, ["init", "-o", str(out)], input=answers)
    assert result.exit_code == 0, result.output
    assert result.output.count("Error") >= 3
    config = config_mod.load(out)
    assert config.gateway.id == "gw-0042" and config.mqtt.port == 8883
    assert config.commands.public_key == ops_key and config.commands.auth == "signed"
    assert config.buses[0].host == "192.0.2.10"


def _outbox_with_data(tmp_path: Path) -> Path:
    path = write_config(tmp_path, buses=[], devices=[])
    config = config_mod.load(path)
    outbox = Outbox(config.buffer.path, max_bytes=2**20, commit_interval=1.0, clock=time.time)
    now = time.time()
    outbox.enqueue("dev/vmc/tm", {"e": [{"bn": "urn:dev:bgw:gw-test:vmc:", "bt": now - 7200,
                                         "n": "exhaust_pressure", "u": "Pa", "v": 112.5},
                                        {"n": "fan_fault", "vb": False}],
                                  "bad": [{"n": "spare_input"}]},
                   prio=PRIO_TELEMETRY, sess=1, ts=now - 7200)
    outbox.enqueue("dev/vmc/tm", {"e": [{"bn": "urn:dev:bgw:gw-test:vmc:", "bt": now,
                                         "n": "exhaust_pressure", "u": "Pa", "v": 99.0}]},
                   prio=PRIO_TELEMETRY, sess=1, ts=now)
    outbox.enqueue("evt", {"type": "device.down", "dev": "vmc"}, prio=PRIO_EVENT, sess=1, ts=now)
    outbox.close()
    return path


def test_buffer_export_jsonl_and_csv_for_a_time_range(tmp_path: Path) -> None:
    path = _outbox_with_data(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["buffer", "export", "--config", str(path)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 3 and lines[0]["topic"] == "bgw/v1/site-a/gw-test/dev/vmc/tm"
    result = runner.invoke(main, ["buffer", "export", "--since", "1h", "--config", str(path)])
    assert len(result.stdout.splitlines()) == 2

    out = tmp_path / "week.csv"
    result = runner.invoke(main, ["buffer", "export", "--format", "csv", "--until", "1h", "-o",
                                  str(out), "--json", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows"] == 3
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [(r["device"], r["point"], r["value"], r["unit"]) for r in rows] == [
        ("vmc", "exhaust_pressure", "112.5", "Pa"), ("vmc", "fan_fault", "False", ""),
        ("vmc", "spare_input", "", "")]  # a point without a value (issue #15: in `bad`)
    assert [r["quality"] for r in rows] == ["good", "good", "bad"]
    bad = runner.invoke(main, ["buffer", "export", "--since", "yesterday", "--config", str(path)])
    assert bad.exit_code == 2
    stats = runner.invoke(main, ["buffer", "stats", "--json", "--config", str(path)])
    assert json.loads(stats.output)["depth"] == 3


def test_selftest_says_what_to_fix(tmp_path: Path) -> None:
    from tests.broker import free_port  # noqa: PLC0415

    path = write_config(tmp_path, buses=[
        {"id": "rs485-1", "driver": "modbus-rtu", "port": str(tmp_path / "ttyUSB9")},
        {"id": "lan", "driver": "modbus-tcp", "host": "127.0.0.1", "port": free_port()}],
        devices=[], broker_port=free_port())
    result = CliRunner().invoke(main, ["selftest", "--timeout", "1", "--json", "--config",
                                       str(path)])
    assert result.exit_code == 1, result.output
    checks = {c["name"]: c for c in json.loads(result.output)["checks"]}
    assert checks["config"]["result"] == "ok"
    assert checks["tls"]["result"] == "warn"
    assert checks["bus rs485-1"]["result"] == "fail" and "by-id" in checks["bus rs485-1"]["fix"]
    assert checks["bus lan"]["result"] == "fail"
    assert checks["broker"]["result"] == "fail" and "nothing listens" in checks["broker"]["detail"]
    assert checks["outbox"]["result"] == "ok"
    human = CliRunner().invoke(main, ["selftest", "--timeout", "1", "--config", str(path)])
    assert human.exit_code == 1 and "what to do" in human.output
    missing = CliRunner().invoke(main, ["selftest", "--config", str(tmp_path / "none.yaml")])
    assert missing.exit_code == 2


def test_shell_completion_script_and_device_names(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["completion", "bash"])
    assert result.exit_code == 0 and "_BATIGATE_COMPLETE" in result.output
    path = write_config(tmp_path, buses=[{"id": "lan", "driver": "modbus-tcp",
                                          "host": "127.0.0.1"}],
                        devices=[{"id": "vmc-b", "bus": "lan", "address": 1,
                                  "profile": "vmc-caisson"}])
    env = {"_BATIGATE_COMPLETE": "bash_complete", "COMP_WORDS": "batigate read v",
           "COMP_CWORD": "2", "BATIGATE_CONFIG": str(path)}
    result = CliRunner().invoke(main, [], env=env, prog_name="batigate")
    assert "vmc-b" in result.output


def test_sim_help_lists_the_scenarios() -> None:
    result = CliRunner().invoke(main, ["sim", "--help"])
    assert result.exit_code == 0
    assert "water-leak-night" in result.output and "--mbus-port" in result.output
    result = CliRunner().invoke(main, ["sim", "--scenario", "nope"])
    assert result.exit_code == 2 and "installed" in result.output


