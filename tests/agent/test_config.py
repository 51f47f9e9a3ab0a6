"""The config file: typed, every problem reported at once with FILE:LINE: path: what."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.config import loader as config
from agent.cli.main import main
from agent.sdk.errors import ConfigError

GOOD = """\
gateway: {id: gw-0042, site: res-les-pins}
mqtt:
  host: broker.example.org
  port: 8883
  tls: {ca: /etc/batigate/ca.pem, cert: /etc/batigate/gw.crt, key: /etc/batigate/gw.key}
  namespace: bgw/v1
  encoding: json
buffer: {path: /var/lib/batigate/outbox.db, max_mb: 256}
buses:
  - {id: lan, driver: modbus-tcp, host: 192.0.2.10, port: 502}
  - {id: rs485-1, driver: modbus-rtu, port: /dev/ttyUSB0, baudrate: 9600, parity: E}
devices:
  - id: vmc-b
    bus: rs485-1
    address: 17
    poll: 30s
    points:
      - {name: exhaust_pressure, register: holding:0, type: int16, scale: 0.1, unit: Pa}
      - {name: fan_fault, register: discrete:3, type: bool}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config.load(write(tmp_path, text))
    return caught.value.problems


def test_the_design_example_is_valid(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, GOOD))
    assert cfg.root == "bgw/v1/res-les-pins/gw-0042"
    device = cfg.device("vmc-b")
    assert device.poll == 30.0
    assert [p.name for p in device.points] == ["exhaust_pressure", "fan_fault"]
    assert cfg.mqtt.tls is not None and cfg.mqtt.protocol == "5"


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("5m", 300),
                                               ("1h", 3600), ("2d", 172800)])
def test_durations(tmp_path: Path, text: str, seconds: float) -> None:
    cfg = config.load(write(tmp_path, GOOD.replace("poll: 30s", f"poll: {text}")))
    assert cfg.device("vmc-b").poll == seconds


def test_every_error_is_reported_at_once_with_file_and_line(tmp_path: Path) -> None:
    text = GOOD.replace("port: 8883", "port: 88830").replace("poll: 30s", "poll: soon").replace(
        "type: int16", "type: int17").replace("encoding: json", "encoding: json\n  colour: red")
    found = problems(tmp_path, text)
    path = tmp_path / "gateway.yaml"
    # mqtt errors are found in phase one; fix them to see the device errors too
    assert any(p.startswith(f"{path}:4: mqtt.port:") for p in found), found
    assert any(p.startswith(f"{path}:8: mqtt.colour: unknown key") for p in found), found
    text = text.replace("port: 88830", "port: 8883").replace("\n  colour: red", "")
    found = problems(tmp_path, text)
    assert any(p.startswith(f"{path}:16: devices[0].poll:") and "duration" in p
               for p in found), found
    assert any(p.startswith(f"{path}:18: devices[0].points[0].type:") for p in found), found
    assert len(found) == 2


def test_cross_references(tmp_path: Path) -> None:
    text = GOOD + (
        "  - {id: vmc-b, bus: rs485-9, address: 18}\n"
        "  - {id: vmc-b, bus: lan, address: 19}\n")
    text = text.replace("  - {id: rs485-1,", "  - {id: lan, driver: modbus-tcp, host: x}\n"
                                              "  - {id: rs485-1,")
    found = problems(tmp_path, text)
    joined = "\n".join(found)
    assert ":11: buses[1].id: bus id 'lan' is used twice" in joined
    assert ":21: devices[1].bus: unknown bus 'rs485-9'" in joined
    assert ":22: devices[2].id: device id 'vmc-b' is used twice" in joined


def test_unknown_driver_and_yaml_syntax(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD.replace("driver: modbus-tcp", "driver: bacnet"))
    assert any(":10: buses[0].driver: unknown driver 'bacnet'" in p and "modbus-tcp" in p
               for p in found), found
    found = problems(tmp_path, GOOD.replace("gateway: {", "gateway: {{"))
    assert len(found) == 1 and "(yaml)" in found[0]


def test_tls_false_is_allowed_but_cert_needs_key(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, GOOD.replace(
        "tls: {ca: /etc/batigate/ca.pem, cert: /etc/batigate/gw.crt, key: /etc/batigate/gw.key}",
        "tls: false")))
    assert cfg.mqtt.tls is None
    found = problems(tmp_path, GOOD.replace(", key: /etc/batigate/gw.key", ""))
    assert any("mqtt.tls: cert and key go together" in p for p in found), found


def test_unknown_unit_is_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD.replace("unit: Pa", "unit: furlong"))
    assert any("devices[0].points[0].unit: unknown unit 'furlong'" in p for p in found), found


def test_cli_check_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    good = write(tmp_path, GOOD)
    result = runner.invoke(main, ["config", "check", str(good)])
    assert result.exit_code == 0, result.output
    assert "OK (2 buses, 1 devices, 2 points, 0 rules)" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("address: 17", "address: 300"))
    result = runner.invoke(main, ["config", "check", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:15: devices[0].address:" in result.output
    result = runner.invoke(main, ["run", "--config", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:15: devices[0].address:" in result.output
