"""The M-Bus bus, device and point configuration, alone and inside the agent's config file."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from agent.config import loader as agent_config
from agent.sdk.errors import ConfigError
from drivers.mbus import frames
from drivers.mbus.config import MBusBusConfig, MBusDeviceConfig, MBusPointConfig
from tests.drivers.mbus.helpers import meter, rec


def test_bus_config_forms() -> None:
    serial_bus = MBusBusConfig.model_validate({"id": "m", "driver": "mbus",
                                              "port": "/dev/ttyUSB1"})
    assert (serial_bus.baudrate, serial_bus.parity, serial_bus.stopbits) == (2400, "E", 1)
    assert (serial_bus.retries, serial_bus.max_telegrams) == (2, 10)
    assert serial_bus.endpoint.url == "/dev/ttyUSB1" and serial_bus.endpoint.host is None
    assert serial_bus.char_time == pytest.approx(11 / 2400)
    tcp = MBusBusConfig.model_validate({"id": "m", "driver": "mbus", "host": "10.0.0.5",
                                        "port": 10001})
    assert (tcp.endpoint.host, tcp.endpoint.port) == ("10.0.0.5", 10001)
    url = MBusBusConfig.model_validate({"id": "m", "driver": "mbus",
                                        "port": "socket://127.0.0.1:2400"})
    assert (url.endpoint.host, url.endpoint.port) == ("127.0.0.1", 2400)
    for bad, why in (({"port": 10001}, "no host"), ({"host": "h", "port": "/dev/x"}, "TCP port"),
                     ({"port": "socket://nohost"}, "socket://HOST:PORT"),
                     ({"port": "/dev/x", "baudrate": 2000}, "baud rate"),
                     ({"host": "h", "port": 1, "parity": "N"}, "converter"),
                     ({"port": "/dev/x", "retries": 9}, "less than or equal")):
        with pytest.raises(ValidationError, match=why):
            MBusBusConfig.model_validate({"id": "m", "driver": "mbus", **bad})


def test_device_and_point_config() -> None:
    primary = meter(address=5, points=[rec("volume", "volume"), {"name": "x", "index": 2}])
    assert primary.link_address == 5 and primary.selection() is None
    assert primary.points[0].unit == "m3"  # filled in from the codec's unit for the quantity
    assert primary.points[1].unit is None
    secondary = meter(secondary=12345678, manufacturer="kam")
    assert secondary.secondary == "12345678" and secondary.manufacturer == "KAM"
    assert secondary.link_address == 0xFD
    assert secondary.selection() == frames.select_secondary("12345678", "KAM")
    assert meter(address=1).timeout == 0.2 and MBusDeviceConfig.model_validate(
        {"id": "m", "bus": "b", "address": 1}).timeout == 0.5
    for bad, why in (({}, "exactly one of address"),
                     ({"address": 1, "secondary": "12345678"}, "exactly one of address"),
                     ({"address": 251}, "less than or equal to 250"),
                     ({"secondary": "1234"}, "8-digit id"),
                     ({"address": 1, "manufacturer": "KAM"}, "only narrow a secondary"),
                     ({"secondary": "12345678", "manufacturer": "K1M"}, "three letters")):
        with pytest.raises(ValidationError, match=why):
            meter(**bad)
    for bad_point, why in (({"name": "v"}, "exactly one of record"),
                           ({"name": "v", "index": 1, "record": {"quantity": "volume"}},
                            "exactly one of record"),
                           ({**rec("v", "volume"), "unit": "l"}, "SenML units already"),
                           ({**rec("v", "energy"), "unit": "W"}, "decoded in J"),
                           ({**rec("v", "volume"), "writable": True}, "read-only"),
                           ({"name": "v", "record": {"quantity": "volume", "storage": -1}},
                            "greater than or equal")):
        with pytest.raises(ValidationError, match=why):
            MBusPointConfig.model_validate(bad_point)


def test_the_agent_config_knows_the_driver() -> None:
    doc = {"gateway": {"id": "gw-1", "site": "s"}, "mqtt": {"host": "x", "tls": False},
           "buses": [{"id": "meters", "driver": "mbus", "port": "/dev/ttyUSB1"}],
           "devices": [{"id": "w", "bus": "meters", "address": 1,
                        "points": [rec("volume", "volume")]},
                       {"id": "bad", "bus": "meters", "address": 300}]}
    with pytest.raises(ConfigError) as caught:
        agent_config.parse(yaml.safe_dump(doc, sort_keys=False), "gw.yaml")
    (problem,) = caught.value.problems
    assert problem.startswith("gw.yaml:") and "devices[1].address" in problem


def test_the_sample_config_is_valid() -> None:
    from pathlib import Path

    import drivers.mbus

    doc = yaml.safe_load((Path(drivers.mbus.__file__).parent / "sample.yaml").read_text())
    doc.update({"gateway": {"id": "gw-1", "site": "s"}, "mqtt": {"host": "x", "tls": False}})
    loaded = agent_config.parse(yaml.safe_dump(doc))
    assert [d.id for d in loaded.devices] == ["eau-froide-a12", "calo-a12", "eau-chaude-a12"]
